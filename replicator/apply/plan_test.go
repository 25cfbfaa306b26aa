package apply

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/makuo/makuo/replicator/chunk"
	"github.com/makuo/makuo/replicator/stage"
	"github.com/makuo/makuo/replicator/tree"
	"github.com/makuo/makuo/replicator/wire"
)

// basisFixture is a base directory with an index and one indexed file,
// "f", of 1 MiB with an mtime an hour old (so its read is not racy).
type basisFixture struct {
	base    string
	dir     *stage.Dir
	ix      *tree.Index
	content []byte
	entry   tree.Entry // Index.Chunks("f") once written
	mtime   time.Time
}

func newBasisFixture(t *testing.T) *basisFixture {
	t.Helper()
	fx := &basisFixture{base: t.TempDir(), mtime: time.Now().Add(-time.Hour).Truncate(time.Second)}
	fx.content = make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{9}).Read(fx.content)
	fx.write(t, "f", fx.content)
	var err error
	if fx.dir, err = stage.Open(fx.base); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fx.dir.Close() })
	root, err := os.OpenRoot(fx.base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	if fx.ix, err = tree.New(root, tree.Options{SkipName: stage.IsTempName}); err != nil {
		t.Fatal(err)
	}
	if fx.entry, err = fx.ix.Chunks("f"); err != nil {
		t.Fatal(err)
	}
	if len(fx.entry.Chunks) < 4 || fx.entry.Racy || fx.entry.Unstable {
		t.Fatalf("fixture entry: %d chunks, racy %v, unstable %v", len(fx.entry.Chunks), fx.entry.Racy, fx.entry.Unstable)
	}
	return fx
}

// write puts b at rel with the fixture's mtime.
func (fx *basisFixture) write(t *testing.T, rel string, b []byte) {
	t.Helper()
	p := filepath.Join(fx.base, rel)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, fx.mtime, fx.mtime); err != nil {
		t.Fatal(err)
	}
}

// overwrite changes bytes of f in place and puts its mtime back: size and
// mtime are as indexed, the content and the ctime are not.
func (fx *basisFixture) overwrite(t *testing.T, off int64) {
	t.Helper()
	p := filepath.Join(fx.base, "f")
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("changed behind the index's back"), off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, fx.mtime, fx.mtime); err != nil {
		t.Fatal(err)
	}
}

func refsOf(chunks []chunk.Chunk) []wire.ChunkRef {
	refs := make([]wire.ChunkRef, len(chunks))
	for i, c := range chunks {
		refs[i] = wire.ChunkRef{Size: c.Size, Hash: c.Hash}
	}
	return refs
}

// TestTrustBasis: the basis's chunk list is trusted only while its index
// key is the open file's and the index's read of it was neither racy nor
// unstable.
func TestTrustBasis(t *testing.T) {
	tests := []struct {
		name  string
		craft func(t *testing.T, fx *basisFixture, e *tree.Entry)
		want  bool
	}{
		{"as indexed", func(*testing.T, *basisFixture, *tree.Entry) {}, true},
		{"rewritten in place, size and mtime kept", func(t *testing.T, fx *basisFixture, _ *tree.Entry) { fx.overwrite(t, 300<<10) }, false},
		{"replaced by a copy (another inode)", func(t *testing.T, fx *basisFixture, _ *tree.Entry) {
			fx.write(t, "g", fx.content)
			if err := os.Rename(filepath.Join(fx.base, "g"), filepath.Join(fx.base, "f")); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"read racy", func(_ *testing.T, _ *basisFixture, e *tree.Entry) { e.Racy = true }, false},
		{"read unstable", func(_ *testing.T, _ *basisFixture, e *tree.Entry) { e.Unstable = true }, false},
		{"no chunk list", func(_ *testing.T, _ *basisFixture, e *tree.Entry) { e.Chunks = nil }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newBasisFixture(t)
			e := fx.entry
			tt.craft(t, fx, &e)
			f, err := fx.dir.Open("f")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if got := trustBasis(f, &e); got != tt.want {
				t.Errorf("trustBasis = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestStaleBasisNotTrusted: a basis changed after it was indexed, its
// cached chunk list kept (a crafted index entry: the change falls between
// the index's look and the copy), still claims every chunk of the old
// content. The copies then carry the change, so the plan must not trust
// the list; the whole-file hash it falls back to tells the result apart.
func TestStaleBasisNotTrusted(t *testing.T) {
	fx := newBasisFixture(t)
	stale := fx.entry
	fx.overwrite(t, 700<<10)
	refs := refsOf(stale.Chunks) // the sender has the content as indexed
	src, err := fx.dir.Open("f")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	tmp, err := fx.dir.CreateTemp("out")
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Abort()
	have := make([]bool, len(refs))
	var cs stage.CopyStats
	trusted, err := copyRuns(tmp, src, &stale, matchRuns(refs, stale.Chunks), have, &cs)
	if err != nil {
		t.Fatal(err)
	}
	if trusted {
		t.Fatal("a basis whose key changed since it was indexed was trusted")
	}
	for c, h := range have {
		if !h {
			t.Fatalf("chunk %d not copied: the stale list claims them all", c)
		}
	}
	got := make([]byte, len(fx.content))
	if _, err := tmp.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if xxhash.Sum64(got) == xxhash.Sum64(fx.content) {
		t.Fatal("the copies do not carry the change: the test proves nothing")
	}

	fresh, err := fx.ix.Chunks("f")
	if err != nil {
		t.Fatal(err)
	}
	have = make([]bool, len(refs))
	if trusted, err := copyRuns(tmp, src, &fresh, matchRuns(refs, fresh.Chunks), have, &cs); err != nil || !trusted {
		t.Fatalf("the index's fresh entry: trusted %v, %v", trusted, err)
	}
	changed := 0
	for _, h := range have {
		if !h {
			changed++
		}
	}
	if changed != 1 {
		t.Errorf("with the fresh list %d chunks are left to fetch, want the 1 changed", changed)
	}
}

// TestMatchRuns: consecutive chunks that follow each other in the basis
// too make one run; a moved chunk starts a new one; and repeated content
// (equal chunks) does not cut a run.
func TestMatchRuns(t *testing.T) {
	zeros := []chunk.Chunk{{Offset: 0, Size: 8, Hash: 5}, {Offset: 8, Size: 8, Hash: 5}, {Offset: 16, Size: 8, Hash: 5}, {Offset: 24, Size: 3, Hash: 6}}
	zrefs := []wire.ChunkRef{{Size: 8, Hash: 5}, {Size: 8, Hash: 5}, {Size: 8, Hash: 5}, {Size: 3, Hash: 6}}
	if got := matchRuns(zrefs, zeros); len(got) != 1 || got[0] != (copyRun{src: 0, dst: 0, n: 27, first: 0, end: 4, next: 4}) {
		t.Errorf("repeated chunks: runs %+v, want one of the whole file", got)
	}
	basis := []chunk.Chunk{{Offset: 0, Size: 10, Hash: 1}, {Offset: 10, Size: 20, Hash: 2}, {Offset: 30, Size: 5, Hash: 3}, {Offset: 35, Size: 7, Hash: 4}}
	refs := []wire.ChunkRef{{Size: 10, Hash: 1}, {Size: 20, Hash: 2}, {Size: 9, Hash: 99}, {Size: 7, Hash: 4}, {Size: 5, Hash: 3}, {Size: 6, Hash: 2}}
	got := matchRuns(refs, basis)
	want := []copyRun{{src: 0, dst: 0, n: 30, first: 0, end: 2, next: 2}, {src: 35, dst: 39, n: 7, first: 3, end: 4, next: 4}, {src: 30, dst: 46, n: 5, first: 4, end: 5, next: 3}}
	if len(got) != len(want) {
		t.Fatalf("runs %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("run %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}
