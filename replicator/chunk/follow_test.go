package chunk

import (
	"bytes"
	"io"
	"slices"
	"testing"

	"github.com/cespare/xxhash/v2"
)

func xxhashOf(b []byte) uint64 { return xxhash.Sum64(b) }

// split chunks data, following old (with shift) if old is set, and counts
// the chunks Follow supplied.
func split(t testing.TB, c *Chunker, data []byte, old []Chunk) (chunks []Chunk, whole uint64, followed int) {
	t.Helper()
	c.Reset(bytes.NewReader(data))
	if old != nil {
		var oldSize int64
		if len(old) > 0 {
			oldSize = old[len(old)-1].End()
		}
		c.Follow(old, int64(len(data))-oldSize)
	}
	for {
		if len(c.prev.old) > 0 {
			// Whether the next chunk will be Follow's: Next fills the
			// buffer as here first, and follow has no side effect but
			// moving its cursors forward.
			if c.end-c.start < MaxSize && c.err == nil {
				c.fill()
			}
			if _, _, ok := c.follow(); ok && c.start < c.end {
				followed++
			}
		}
		ch, _, err := c.Next()
		if err == io.EOF {
			return chunks, c.Sum(), followed
		}
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, ch)
	}
}

// TestFollow: following the chunk list of an earlier version gives
// exactly the chunks and hash of chunking from scratch, after every kind
// of edit, and takes most unchanged chunks from the list.
func TestFollow(t *testing.T) {
	base := randBytes(7, 4<<20)
	edit := func(f func([]byte) []byte) []byte { return f(slices.Clone(base)) }
	tests := []struct {
		name        string
		data        []byte
		minFollowed float64 // share of the new chunks Follow supplied
	}{
		{"unchanged", base, 1},
		{"overwrite in the middle", edit(func(b []byte) []byte { copy(b[2<<20:], bytes.Repeat([]byte{'x'}, 4096)); return b }), 0.9},
		{"insert near the start", edit(func(b []byte) []byte { return slices.Insert(b, 1000, []byte("inserted")...) }), 0.9},
		{"delete in the middle", edit(func(b []byte) []byte { return slices.Delete(b, 1<<20, 1<<20+5000) }), 0.9},
		{"append", edit(func(b []byte) []byte { return append(b, randBytes(8, 100<<10)...) }), 0.9},
		{"truncate", edit(func(b []byte) []byte { return b[:3<<20+12345] }), 0.9},
		{"the old last chunk now mid-stream", edit(func(b []byte) []byte { return append(b, b[:1<<20]...) }), 0.6},
		{"two edits", edit(func(b []byte) []byte {
			copy(b[500<<10:], "one")
			return slices.Insert(b, 3<<20, []byte("two")...)
		}), 0.8},
		{"all new", randBytes(9, 4<<20), 0},
		{"empty", nil, 0},
	}
	c := new(Chunker)
	old, _, _ := split(t, c, base, nil)
	for _, tt := range tests {
		want, wantSum, _ := split(t, c, tt.data, nil)
		got, gotSum, followed := split(t, c, tt.data, old)
		if !slices.Equal(got, want) || gotSum != wantSum {
			t.Errorf("%s: following gives %d chunks (sum %x), from scratch %d (sum %x)", tt.name, len(got), gotSum, len(want), wantSum)
		}
		if len(want) > 0 && float64(followed) < tt.minFollowed*float64(len(want)) {
			t.Errorf("%s: %d of %d chunks followed, want at least %.0f%%", tt.name, followed, len(want), tt.minFollowed*100)
		}
	}
}

// BenchmarkChunkerFollow is BenchmarkChunker for a stream that has not
// changed since its chunk list was taken: hashing without rolling.
func BenchmarkChunkerFollow(b *testing.B) {
	data := randBytes(1, benchSize)
	old, _ := SplitBytes(data)
	r := bytes.NewReader(data)
	c := New(r)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(data)
		c.Reset(r)
		c.Follow(old, 0)
		for {
			_, _, err := c.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestFollowRefusesOddSizes: a list that no chunker made, with the right
// hashes for the bytes (a chunk past MaxSize, one below MinSize before the
// end), is not followed there: what Next returns stays what chunking from
// scratch gives, which a saved index accepts.
func TestFollowRefusesOddSizes(t *testing.T) {
	data := randBytes(11, 2<<20)
	want, wantSum := SplitBytes(data)
	sum := func(off, n int) Chunk {
		return Chunk{Offset: int64(off), Size: uint32(n), Hash: xxhashOf(data[off : off+n])}
	}
	for _, tt := range []struct {
		name string
		old  []Chunk
	}{
		{"past MaxSize", []Chunk{sum(0, MaxSize+1), sum(MaxSize+1, len(data)-MaxSize-1)}},
		{"below MinSize mid-stream", []Chunk{sum(0, 100), sum(100, len(data)-100)}},
	} {
		c := new(Chunker)
		got, gotSum, _ := split(t, c, data, tt.old)
		if !slices.Equal(got, want) || gotSum != wantSum {
			t.Errorf("%s: following gives %d chunks, from scratch %d", tt.name, len(got), len(want))
		}
	}
}
