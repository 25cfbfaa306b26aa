package source

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/tree"
	"github.com/makuo/makuo/replicator/wire"
)

// TestPredigestBeforeScan: Predigest offers every directory under the
// roots with the hash the index held before the scan (nothing for a tree
// the index does not know yet, nothing twice for overlapping roots), and
// Same prunes only directories every member matched whose hash the scan
// left as offered: one edited behind the index's back stays offered,
// with every directory above it.
func TestPredigestBeforeScan(t *testing.T) {
	base := t.TempDir()
	for _, p := range []string{"a/x", "a/deep/y", "b/z"} {
		if err := os.MkdirAll(filepath.Join(base, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(base, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.OpenRoot(base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	ix, err := tree.New(root, tree.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := Predigest(ix, []string{"."}); got != nil {
		t.Fatalf("an index that never scanned offers %d directories, want none", len(got))
	}
	if _, err := ix.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	dirs := Predigest(ix, []string{".", "a"})
	var paths []string
	for _, d := range dirs {
		if d.Kind != wire.KindDir || d.Flags != wire.EntryDigest {
			t.Errorf("%s: kind %v flags %v, want a directory with EntryDigest only", d.Path, d.Kind, d.Flags)
		}
		if h, _ := ix.DirHash(d.Path); h != d.Hash {
			t.Errorf("%s offered with hash %x, the index has %x", d.Path, d.Hash, h)
		}
		paths = append(paths, d.Path)
	}
	if want := []string{".", "a", "a/deep", "b"}; !slices.Equal(paths, want) {
		t.Fatalf("predigest offers %v, want %v", paths, want)
	}

	// Same size, another content and mtime: only a scan sees it.
	edit := filepath.Join(base, "a/deep/y")
	if err := os.WriteFile(edit, []byte("A/DEEP/Y"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(edit, old, old); err != nil {
		t.Fatal(err)
	}
	sc, err := Build(context.Background(), ix, []string{"."}, Options{Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	everyoneSame := func(int) bool { return true }
	same := sc.Same(ix, dirs, everyoneSame)
	if want := map[string]bool{"b": true}; len(same) != len(want) || !same["b"] {
		t.Fatalf("after an edit in a/deep, prunable %v, want only b", same)
	}
	if got := sc.Same(ix, dirs, func(i int) bool { return dirs[i].Path != "b" }); len(got) != 0 {
		t.Fatalf("with b different on a member, prunable %v, want none", got)
	}
	sc.Prune(same)
	var offered []string
	for _, e := range sc.Entries {
		offered = append(offered, e.Path)
	}
	if want := []string{".", "a", "a/deep", "a/deep/y", "a/x", "b"}; !slices.Equal(offered, want) {
		t.Fatalf("offered after pruning %v, want %v", offered, want)
	}
}
