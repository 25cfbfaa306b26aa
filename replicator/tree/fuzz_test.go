package tree

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/makuo/makuo/replicator/chunk"
)

// FuzzLoad feeds the index file decoder arbitrary bytes. It must never
// panic, must fail only with ErrCorrupt or ErrVersion, and whatever it
// accepts must encode back to exactly the same bytes. Each input is tried
// as is and with its checksum trailer fixed, so that mutations reach the
// field checks instead of stopping at the checksum.
func FuzzLoad(f *testing.F) {
	dir := f.TempDir()
	apply(f, dir, sampleTree()...)
	apply(f, dir, writeFile("big", string(bytes.Repeat([]byte("0123456789abcdef"), 8<<10))))
	x := newIndex(f, dir, Options{})
	scan(f, x)
	if _, err := x.Chunks("big"); err != nil {
		f.Fatal(err)
	}
	file := filepath.Join(f.TempDir(), "index")
	if err := x.Save(file); err != nil {
		f.Fatal(err)
	}
	saved, err := os.ReadFile(file)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(saved)
	f.Add(appendIndex(nil, nil, 0))
	top := &node{kind: KindDir, dir: &dirData{}}
	big := &node{name: "b", parent: top, kind: KindFile, flags: flagUnstable, size: chunk.MaxSize + 1,
		ext: &extData{chunks: []chunk.Chunk{{Size: chunk.MaxSize}, {Offset: chunk.MaxSize, Size: 1}}}}
	dev := &node{name: "c", parent: top, kind: KindCharDev, ext: &extData{rdev: 0x0103}}
	top.dir.kids = []*node{big, dev}
	f.Add(appendIndex(nil, top, 3))
	f.Add([]byte("MAKUOIDX\x02\x00"))

	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(b []byte) {
			top, count, err := decodeIndex(b)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
					t.Fatalf("error without a sentinel: %v", err)
				}
				return
			}
			if top == nil && count != 0 || top != nil && subtreeLen(top) != count {
				t.Fatalf("count %d does not match the tree", count)
			}
			if out := appendIndex(nil, top, count); !bytes.Equal(out, b) {
				t.Fatalf("round trip differs:\n in %x\nout %x", b, out)
			}
		}
		check(data)
		if len(data) > trailerLen {
			body := data[:len(data)-trailerLen]
			check(binary.LittleEndian.AppendUint64(slices.Clone(body), xxhash.Sum64(body)))
		}
	})
}
