package source

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/makuo/makuo/exclude"
	"github.com/makuo/makuo/replicator/stage"
	"github.com/makuo/makuo/replicator/tree"
)

// BenchmarkBuildNoChange measures what a no-change resync of a
// 100,000-file tree costs the sender before the offer: the index brought
// up to date (a listing per directory, an fstatat per entry, nothing
// read) and the entries built.
func BenchmarkBuildNoChange(b *testing.B) {
	const files, dirs = 100000, 1000
	base := b.TempDir()
	buf := make([]byte, 64)
	for d := range dirs {
		if err := os.Mkdir(filepath.Join(base, fmt.Sprintf("d%04d", d)), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for i := range files {
		buf[0], buf[1] = byte(i), byte(i>>8)
		if err := os.WriteFile(filepath.Join(base, fmt.Sprintf("d%04d/f%06d", i%dirs, i)), buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	root, err := os.OpenRoot(base)
	if err != nil {
		b.Fatal(err)
	}
	defer root.Close()
	excl, err := exclude.New(exclude.DefaultPatterns())
	if err != nil {
		b.Fatal(err)
	}
	// The daemon's options; the racy guard is off: these files were all
	// written just now, and the steady state this measures has none so
	// recent.
	ix, err := tree.New(root, tree.Options{Exclude: excl.Match, ExcludeListed: excl.MatchListed, SkipName: stage.IsTempName, RacyWindow: -1})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := ix.Scan(ctx); err != nil {
		b.Fatal(err)
	}
	opt := Options{Recursive: true}
	for b.Loop() {
		sc, err := Build(ctx, ix, []string{"."}, opt)
		if err != nil || len(sc.Entries) != files+dirs+1 {
			b.Fatalf("build: %d entries, %v", len(sc.Entries), err)
		}
	}
}
