package tree

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/chunk"
)

// TestUpdateWrittenChunks: a vouched-for chunk list that tiles the file is
// kept as the file's own, one that does not is dropped; and Entry.Racy
// tells which vouched-for files the key cannot prove yet.
func TestUpdateWrittenChunks(t *testing.T) {
	b := make([]byte, 600<<10)
	rand.NewChaCha8([32]byte{5}).Read(b)
	content := string(b)
	dir := t.TempDir()
	apply(t, dir, writeFile("f", content), writeFile("fresh", content), mtimeNow("fresh"))
	x := newIndex(t, dir, Options{RacyWindow: time.Hour})
	chunks, whole := chunk.SplitBytes([]byte(content))
	if len(chunks) < 2 {
		t.Fatalf("%d chunks: the test needs several", len(chunks))
	}
	gap := slices.Clone(chunks)
	gap[1].Offset++
	// The same bytes in chunks no chunker makes: one below MinSize, then
	// the rest of its chunk.
	small := slices.Concat(chunks[:1], []chunk.Chunk{{Offset: chunks[1].Offset, Size: 100}, {Offset: chunks[1].Offset + 100, Size: chunks[1].Size - 100}}, chunks[2:])
	tests := []struct {
		name   string
		chunks []chunk.Chunk
		keep   bool
	}{
		{"tiles the file", chunks, true},
		{"a gap", gap, false},
		{"a small chunk mid-list", small, false},
		{"short of the end", chunks[:len(chunks)-1], false},
		{"none", nil, false},
	}
	for _, tt := range tests {
		for _, f := range []string{"f", "fresh"} {
			// Touch the ctime so the entry is not reusable as it stands.
			if err := os.Chmod(filepath.Join(dir, f), 0o600+os.FileMode(len(tt.name)%2)*0o40); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			c := Content{Size: fi.Size(), Mtime: fi.ModTime().UnixNano(), Hash: whole, Chunks: tt.chunks}
			if st, err := x.UpdateWritten([]Written{{Path: f, Content: c}}); err != nil || st.FilesHashed != 0 {
				t.Fatalf("%s: read %d files, %v", tt.name, st.FilesHashed, err)
			}
			e, _ := x.Lookup(f)
			if got := len(e.Chunks) > 0; got != tt.keep || tt.keep && !slices.Equal(e.Chunks, chunks) {
				t.Errorf("%s, %s: kept %d chunks, want %v", tt.name, f, len(e.Chunks), tt.keep)
			}
			if e.Racy != (f == "fresh") {
				t.Errorf("%s, %s: Racy %v", tt.name, f, e.Racy)
			}
		}
	}
}

// TestChunksAfterEdit: a file chunked again after an edit, following its
// old chunk list, gets the list of chunking it from scratch.
func TestChunksAfterEdit(t *testing.T) {
	b := make([]byte, 2<<20)
	rand.NewChaCha8([32]byte{6}).Read(b)
	dir := t.TempDir()
	apply(t, dir, writeFile("f", string(b)))
	x := newIndex(t, dir, Options{})
	for i, edit := range []func([]byte) []byte{
		func(b []byte) []byte { return b },
		func(b []byte) []byte { copy(b[1<<20:], "overwritten"); return b },
		func(b []byte) []byte { return slices.Insert(b, 5000, []byte("inserted")...) },
		func(b []byte) []byte { return b[:len(b)-70000] },
	} {
		b = edit(b)
		apply(t, dir, writeFile("f", string(b)), chtimes("f", time.Unix(1_600_000_000+int64(i), 0)))
		e, err := x.Chunks("f")
		if err != nil {
			t.Fatal(err)
		}
		want, whole := chunk.SplitBytes(b)
		if !slices.Equal(e.Chunks, want) || e.Hash != whole {
			t.Errorf("edit %d: %d chunks, hash %x; from scratch %d, %x", i, len(e.Chunks), e.Hash, len(want), whole)
		}
	}
}

// TestChunksLike: a file with no chunk list of its own, chunked following
// the list of another version of it, gets the list of chunking it from
// scratch.
func TestChunksLike(t *testing.T) {
	b := make([]byte, 2<<20)
	rand.NewChaCha8([32]byte{8}).Read(b)
	newer := slices.Insert(slices.Clone(b), 700<<10, []byte("a newer version")...)
	like, _ := chunk.SplitBytes(newer)
	dir := t.TempDir()
	apply(t, dir, writeFile("f", string(b)))
	x := newIndex(t, dir, Options{})
	scan(t, x) // hashed, not chunked
	if e, _ := x.Lookup("f"); e.Chunks != nil {
		t.Fatal("the scan chunked the file: the test wants one without a list")
	}
	e, err := x.ChunksLike("f", like)
	if err != nil {
		t.Fatal(err)
	}
	want, whole := chunk.SplitBytes(b)
	if !slices.Equal(e.Chunks, want) || e.Hash != whole {
		t.Errorf("%d chunks, hash %x; from scratch %d, %x", len(e.Chunks), e.Hash, len(want), whole)
	}
}
