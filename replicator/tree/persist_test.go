package tree

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/makuo/makuo/replicator/chunk"
)

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	apply(t, dir, sampleTree()...)
	data := make([]byte, 300<<10)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	apply(t, dir, writeFile("big", string(data)))
	x := newIndex(t, dir, Options{})
	scan(t, x)
	if _, err := x.Chunks("big"); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "index")
	if err := x.Save(file); err != nil {
		t.Fatal(err)
	}
	saved, _ := os.ReadFile(file)

	y := newIndex(t, dir, Options{})
	if err := y.Load(file); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, y)
	if !slices.EqualFunc(entries(t, x), entries(t, y), equalEntry) || x.Len() != y.Len() {
		t.Fatal("loaded entries differ from the saved index")
	}
	if x.Root() != y.Root() {
		t.Errorf("root %#x after Load, %#x before Save", y.Root(), x.Root())
	}
	st := scan(t, y)
	if st.FilesHashed != 0 || st.BytesRead != 0 || st.Changed != nil {
		t.Errorf("Scan after Load: %+v; want nothing read or changed", st)
	}
	if e, _ := y.Lookup("big"); len(e.Chunks) < 2 {
		t.Errorf("chunk list lost: %d chunks", len(e.Chunks))
	}
	if err := y.Save(file); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(file); !bytes.Equal(again, saved) {
		t.Error("Save after Load gave different bytes")
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(file), "*.tmp")); len(m) != 0 {
		t.Errorf("temp files left: %q", m)
	}

	// An empty index round-trips too.
	empty := newIndex(t, dir, Options{})
	if err := empty.Save(file); err != nil {
		t.Fatal(err)
	}
	if err := y.Load(file); err != nil || y.Len() != 0 || y.Root() != 0 {
		t.Errorf("Load of an empty index: %v, Len %d", err, y.Len())
	}
}

// TestFileGolden pins the encoding of a one-file index.
func TestFileGolden(t *testing.T) {
	top := &node{kind: KindDir, mode: 0o755, nlink: 2, mtime: 1, ctime: 2, dev: 3, ino: 4, dir: &dirData{}}
	f := &node{name: "f", parent: top, kind: KindFile, flags: flagRacy, mode: 0o644, uid: 1000, gid: 1000,
		nlink: 1, mtime: -1, ctime: 5, dev: 3, ino: 300, size: 2, hash: 0x0102030405060708}
	top.dir.kids = []*node{f}
	got := appendIndex(nil, top, 2)
	body := "4d414b554f494458" + "0100" + "02" + // magic, version, count
		"02" + "00" + "ed03" + "00" + "00" + "02" + "02" + "04" + "03" + "04" + // base
		"01" + "01" + "66" + // parent distance, name
		"01" + "02" + "a403" + "e807" + "e807" + "01" + "01" + "0a" + "03" + "ac02" + "02" + "0807060504030201"
	b, _ := hex.DecodeString(body)
	want := hex.EncodeToString(binary.LittleEndian.AppendUint64(b, xxhash.Sum64(b)))
	if hex.EncodeToString(got) != want {
		t.Errorf("encoding\n got %x\nwant %s", got, want)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	apply(t, dir, sampleTree()...)
	x := newIndex(t, dir, Options{})
	scan(t, x)
	tmp := t.TempDir()
	good := filepath.Join(tmp, "good")
	if err := x.Save(good); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(good)
	fixSum := func(b []byte) []byte {
		body := b[:len(b)-trailerLen]
		return binary.LittleEndian.AppendUint64(slices.Clone(body), xxhash.Sum64(body))
	}
	edit := func(f func(b []byte) []byte) []byte { return f(slices.Clone(b)) }

	otherDir := t.TempDir()
	apply(t, otherDir, sampleTree()...)
	other := newIndex(t, otherDir, Options{})
	scan(t, other)
	otherFile := filepath.Join(tmp, "other")
	if err := other.Save(otherFile); err != nil {
		t.Fatal(err)
	}
	otherBytes, _ := os.ReadFile(otherFile)

	tests := []struct {
		name string
		data []byte // nil: no file
		want error
	}{
		{"missing", nil, fs.ErrNotExist},
		{"empty", []byte{}, ErrCorrupt},
		{"bad magic", edit(func(b []byte) []byte { b[0] = 'm'; return b }), ErrCorrupt},
		{"version 2", edit(func(b []byte) []byte { b[8] = 2; return b }), ErrVersion},
		{"truncated", b[:len(b)-9], ErrCorrupt},
		{"bit flip", edit(func(b []byte) []byte { b[len(b)/2] ^= 1; return b }), ErrCorrupt},
		{"trailing byte", fixSum(append(slices.Clone(b[:len(b)-trailerLen]), 0, 0, 0, 0, 0, 0, 0, 0, 0)), ErrCorrupt},
		{"bad base kind, valid checksum", edit(func(b []byte) []byte { b[headerLen+1] = 9; return fixSum(b) }), ErrCorrupt},
		{"other base directory", otherBytes, ErrWrongBase},
	}
	y := newIndex(t, dir, Options{})
	scan(t, y)
	before := y.Root()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(tmp, "case")
			os.Remove(p)
			if tc.data != nil {
				if err := os.WriteFile(p, tc.data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := y.Load(p)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Load: %v, want %v", err, tc.want)
			}
			if y.Root() != before || y.Len() != x.Len() {
				t.Error("a failed Load changed the index")
			}
		})
	}
}

func TestDecodeRejectsNonCanonical(t *testing.T) {
	mk := func(top *node, count int) []byte { return appendIndex(nil, top, count) }
	dirNode := func(name string) *node { return &node{name: name, kind: KindDir, dir: &dirData{}} }
	fileNode := func(name string) *node { return &node{name: name, kind: KindFile} }
	link := func(p *node, kids ...*node) *node {
		for _, k := range kids {
			k.parent = p
			p.dir.kids = append(p.dir.kids, k)
		}
		return p
	}
	tests := []struct {
		name  string
		bytes []byte
	}{
		{"names out of order", mk(link(dirNode(""), fileNode("b"), fileNode("a")), 3)},
		{"duplicate names", mk(link(dirNode(""), fileNode("a"), fileNode("a")), 3)},
		{"bad name", mk(link(dirNode(""), fileNode("a/b")), 2)},
		{"dot name", mk(link(dirNode(""), fileNode("..")), 2)},
		{"count too high", mk(link(dirNode(""), fileNode("a")), 3)},
		{"count too low", mk(link(dirNode(""), fileNode("a")), 1)},
		{"base not a directory", mk(&node{kind: KindFile}, 1)},
		{"chunks of a small file", mk(link(dirNode(""), &node{name: "s", kind: KindFile, size: 10,
			ext: &extData{chunks: []chunk.Chunk{{Size: 10}}}}), 2)},
		{"chunks not adding up", mk(link(dirNode(""), &node{name: "s", kind: KindFile, size: 2 * chunk.MaxSize,
			ext: &extData{chunks: []chunk.Chunk{{Size: chunk.MaxSize}}}}), 2)},
		{"empty link target", mk(link(dirNode(""), &node{name: "l", kind: KindSymlink}), 2)},
		{"flags on a directory", mk(&node{kind: KindDir, flags: flagRacy, dir: &dirData{}}, 1)},
		{"mode out of range", mk(&node{kind: KindDir, mode: 0o10000, dir: &dirData{}}, 1)},
	}
	for _, tc := range tests {
		if _, _, err := decodeIndex(tc.bytes); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", tc.name, err)
		}
	}
	// A non-minimal varint with a valid checksum.
	b := mk(&node{kind: KindDir, dir: &dirData{}}, 1)
	body := slices.Concat(b[:headerLen], []byte{0x81, 0x00}, b[headerLen+1:len(b)-trailerLen])
	body = binary.LittleEndian.AppendUint64(body, xxhash.Sum64(body))
	if _, _, err := decodeIndex(body); !errors.Is(err, ErrCorrupt) {
		t.Errorf("non-minimal varint: %v", err)
	}
}
