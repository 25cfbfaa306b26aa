package tree

import (
	"context"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
)

// TestMerkleGolden pins the record layout and the hash of a small tree:
// every member must compute the same roots, so a change here is a
// protocol change.
func TestMerkleGolden(t *testing.T) {
	f := &node{name: "f", kind: KindFile, mode: 0o644, uid: 1, gid: 2, size: 5, mtime: 7, hash: 0x1122334455667788}
	const fileRecord = "01000000" + "66" + "01" + "a4010000" + "01000000" + "02000000" +
		"0500000000000000" + "0700000000000000" + "8877665544332211"
	if got := hex.EncodeToString(appendRecord(nil, f)); got != fileRecord {
		t.Errorf("file record\n got %s\nwant %s", got, fileRecord)
	}
	l := &node{name: "l", kind: KindSymlink, mode: 0o777, mtime: -1, ext: &extData{target: "f"}}
	const linkRecord = "01000000" + "6c" + "03" + "00000000" + "00000000" + "00000000" +
		"0000000000000000" + "ffffffffffffffff" + "01000000" + "66"
	if got := hex.EncodeToString(appendRecord(nil, l)); got != linkRecord {
		t.Errorf("symlink record\n got %s\nwant %s", got, linkRecord)
	}
	c := &node{name: "c", kind: KindCharDev, mode: 0o600, mtime: 1, ext: &extData{rdev: 0x0103}}
	const devRecord = "01000000" + "63" + "05" + "80010000" + "00000000" + "00000000" +
		"0000000000000000" + "0100000000000000" + "0301000000000000"
	if got := hex.EncodeToString(appendRecord(nil, c)); got != devRecord {
		t.Errorf("device record\n got %s\nwant %s", got, devRecord)
	}

	x := &Index{}
	empty := &node{name: "e", kind: KindDir, mode: 0o755, dir: &dirData{dirty: true}}
	if h := x.hashDir(empty); h != 0xef46db3751d8e999 || h != xxhash.Sum64(nil) {
		t.Errorf("empty directory hash %#x", h)
	}
	const dirRecord = "01000000" + "65" + "02" + "ed010000" + "00000000" + "00000000" + "99e9d85137db46ef"
	if got := hex.EncodeToString(appendRecord(nil, empty)); got != dirRecord {
		t.Errorf("directory record\n got %s\nwant %s", got, dirRecord)
	}

	top := &node{kind: KindDir, dir: &dirData{dirty: true}}
	for _, k := range []*node{c, empty, f, l} { // sorted by name
		k.parent = top
		top.dir.kids = append(top.dir.kids, k)
	}
	rec, _ := hex.DecodeString(devRecord + dirRecord + fileRecord + linkRecord)
	if got, want := x.hashDir(top), xxhash.Sum64(rec); got != want {
		t.Errorf("root %#x, want xxhash of the records %#x", got, want)
	}
	const pinned = 0x4e873492b6ffbdaf
	if got := x.hashDir(top); got != pinned {
		t.Errorf("root %#x, pinned %#x", got, uint64(pinned))
	}
}

// buildTree builds the sample tree in a new directory, with directory
// times from dirTime so that two builds differ in them (and in every inode).
func buildTree(t *testing.T, dirTime time.Time) string {
	t.Helper()
	dir := t.TempDir()
	apply(t, dir, sampleTree()...)
	apply(t, dir, writeFile("dir/sub/deeper/d.txt", "delta"))
	for _, d := range []string{"dir", "dir/sub", "dir/sub/deeper", "dir/emptydir", "sticky"} {
		apply(t, dir, chtimes(d, dirTime))
	}
	return dir
}

func TestMerkleRoots(t *testing.T) {
	refDir := buildTree(t, time.Unix(1000, 0))
	ref := newIndex(t, refDir, Options{})
	scan(t, ref)
	refRoot := ref.Root()

	tests := []struct {
		name    string
		change  []op
		same    bool
		touched string // a subtree whose hash must differ ("" for none)
	}{
		{"identical", nil, true, ""},
		{"directory mtime", []op{chtimes("dir/sub", time.Unix(5, 0))}, true, ""},
		{"content, same size and mtime", []op{writeFile("dir/sub/c.txt", "charliE")}, false, "dir/sub"},
		{"file mode", []op{chmod("a.txt", 0o600)}, false, ""},
		{"file mtime", []op{chtimes("dir/b.txt", time.Unix(7, 0))}, false, "dir"},
		{"directory mode", []op{chmod("dir/sub/deeper", 0o700)}, false, "dir/sub"},
		{"symlink target", []op{symlink("link", "dir/c.txt")}, false, ""},
		{"file added", []op{writeFile("dir/sub/deeper/new", "")}, false, "dir/sub/deeper"},
		{"file removed", []op{removeAll("dir/sub/c.txt")}, false, "dir/sub"},
		{"empty directory added", []op{mkdir("dir/another")}, false, "dir"},
		{"empty directory removed", []op{removeAll("dir/emptydir")}, false, "dir"},
		{"file renamed", []op{removeAll("a.txt"), writeFile("A.txt", "hello")}, false, ""},
		{"fifo becomes file", []op{removeAll("fifo"), writeFile("fifo", "")}, false, ""},
		{"owner", []op{func(t testing.TB, dir string) {
			if err := os.Lchown(filepath.Join(dir, "dir/b.txt"), 4242, 4242); err != nil {
				cannotRun(t, "chown: %v (needs root)", err)
			}
		}}, false, "dir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := buildTree(t, time.Unix(2000, 0))
			apply(t, dir, tc.change...)
			x := newIndex(t, dir, Options{})
			scan(t, x)
			if got := x.Root() == refRoot; got != tc.same {
				t.Errorf("root %#x, reference %#x: same = %v, want %v", x.Root(), refRoot, got, tc.same)
			}
			if tc.touched != "" {
				h, ok := x.DirHash(tc.touched)
				r, _ := ref.DirHash(tc.touched)
				if !ok || h == r {
					t.Errorf("DirHash(%q) = %#x, %v; reference %#x", tc.touched, h, ok, r)
				}
			}
			// Subtrees the change did not touch keep their hashes.
			for _, d := range []string{"sticky", "dir/emptydir"} {
				h, ok := x.DirHash(d)
				r, _ := ref.DirHash(d)
				if ok && h != r {
					t.Errorf("untouched DirHash(%q) = %#x, reference %#x", d, h, r)
				}
			}
		})
	}
	if _, ok := ref.DirHash("a.txt"); ok {
		t.Error("DirHash of a file succeeded")
	}
	if _, ok := ref.DirHash("missing"); ok {
		t.Error("DirHash of a missing path succeeded")
	}
	if y := newIndex(t, refDir, Options{}); y.Root() != 0 {
		t.Errorf("empty index root %#x", y.Root())
	}
}

// fullHash computes the hash of directory n from scratch, ignoring every
// cached hash.
func fullHash(n *node) uint64 {
	d := xxhash.New()
	for _, k := range n.dir.kids {
		if k.dir != nil {
			saved := *k.dir
			k.dir.hash = fullHash(k)
			_, _ = d.Write(appendRecord(nil, k))
			*k.dir = saved
			continue
		}
		_, _ = d.Write(appendRecord(nil, k))
	}
	return d.Sum64()
}

// TestIncrementalRoot applies random changes, each followed by Update or
// UpdateTree, and checks the incrementally maintained root against a
// computation from scratch and, now and then, against a fresh scan.
func TestIncrementalRoot(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(7, 7))
	randPath := func() string {
		p := fmt.Sprintf("d%d", r.IntN(4))
		for r.IntN(2) == 0 {
			p += fmt.Sprintf("/d%d", r.IntN(3))
		}
		return p + fmt.Sprintf("/f%d", r.IntN(5))
	}
	for range 60 {
		apply(t, dir, writeFile(randPath(), "seed"))
	}
	x := newIndex(t, dir, Options{})
	scan(t, x)
	for step := range 300 {
		p := randPath()
		if r.IntN(3) == 0 {
			p = filepath.Dir(p)
		}
		abs := filepath.Join(dir, p)
		switch r.IntN(6) {
		case 0:
			os.RemoveAll(abs)
		case 1:
			os.MkdirAll(filepath.Dir(abs), 0o755)
			os.RemoveAll(abs)
			os.WriteFile(abs, []byte(fmt.Sprint(step)), 0o644)
		case 2:
			// The owner keeps rwx: a directory it cannot enter would be
			// unreadable unless the test runs as root.
			os.Chmod(abs, fs.FileMode(0o700|r.IntN(0o100)))
		case 3:
			os.MkdirAll(filepath.Dir(abs), 0o755)
			os.RemoveAll(abs)
			os.Symlink(fmt.Sprint("t", step%3), abs)
		case 4:
			os.MkdirAll(abs, 0o755)
		case 5:
			os.Chtimes(abs, time.Unix(int64(step), 0), time.Unix(int64(step), 0))
		}
		var err error
		if r.IntN(2) == 0 {
			_, err = x.Update(p)
			// A path created below directories the index has not seen
			// brings them in; Update also refreshes the ancestors.
		} else {
			_, err = x.UpdateTree(context.Background(), filepath.Dir(p))
		}
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if r.IntN(3) == 0 {
			continue // let dirtiness accumulate over several changes
		}
		got := x.Root()
		x.mu.RLock()
		want := fullHash(x.top)
		x.mu.RUnlock()
		if got != want {
			t.Fatalf("step %d (%s): incremental root %#x, from scratch %#x", step, p, got, want)
		}
		checkInvariants(t, x)
		if step%25 == 0 {
			if _, err := x.Scan(context.Background()); err != nil {
				t.Fatal(err)
			}
			fresh := newIndex(t, dir, Options{})
			scan(t, fresh)
			if x.Root() != fresh.Root() {
				t.Fatalf("step %d: root %#x, fresh scan %#x", step, x.Root(), fresh.Root())
			}
		}
	}
}
