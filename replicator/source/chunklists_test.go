package source

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/makuo/makuo/replicator/chunk"
	"github.com/makuo/makuo/replicator/tree"
	"github.com/makuo/makuo/replicator/wire"
)

// TestChunkLists: the chunk list sent for an offered file is the one of
// the offered content: taken from the index as read with the offered hash
// (a file just edited, which the index would read again, included), read
// where the index has none, and none where the file changed since.
func TestChunkLists(t *testing.T) {
	base := t.TempDir()
	content := make([]byte, 600<<10)
	rand.NewChaCha8([32]byte{4}).Read(content)
	for _, f := range []string{"listed", "unlisted"} {
		if err := os.WriteFile(filepath.Join(base, f), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.OpenRoot(base)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	ix, err := tree.New(root, tree.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := ix.Chunks("listed"); err != nil || !e.Racy {
		t.Fatalf("listed: racy %v, %v: the test wants a file the index would read again", e.Racy, err)
	}
	sc, err := Build(context.Background(), ix, []string{"listed", "unlisted"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	chunks, _ := chunk.SplitBytes(content)
	want := make([]wire.ChunkRef, len(chunks))
	for i, c := range chunks {
		want[i] = wire.ChunkRef{Size: c.Size, Hash: c.Hash}
	}
	// Both change after the scan: a read now would find another hash.
	changed := slices.Clone(content)
	copy(changed[300<<10:], "changed after the offer")
	for _, f := range []string{"listed", "unlisted"} {
		if err := os.WriteFile(filepath.Join(base, f), changed, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lists := ChunkLists(ix, sc, []int{0, 1})
	if got := lists[0]; !slices.Equal(got, want) {
		t.Errorf("listed: %d refs, want the offered content's %d", len(got), len(want))
	}
	if got, ok := lists[1]; ok {
		t.Errorf("unlisted changed since the offer: got a list of %d refs, want none (sent whole)", len(got))
	}
}
