package tree

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// baseNs is the mtime (unix ns) tests give everything they want identical.
const baseNs = 1_700_000_000_123_456_789

// newIndex opens dir as a root and returns an Index of it. Unless opt sets
// RacyWindow, the racy guard is off: tests scan files they just wrote.
func newIndex(t testing.TB, dir string, opt Options) *Index {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	if opt.RacyWindow == 0 {
		opt.RacyWindow = -1
	}
	x, err := New(root, opt)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// scan runs a full Scan and fails the test on an error.
func scan(t testing.TB, x *Index) Stats {
	t.Helper()
	st, err := x.Scan(context.Background())
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	checkInvariants(t, x)
	return st
}

// op is one step that builds or changes a test tree under dir.
type op func(t testing.TB, dir string)

func writeFile(rel, content string) op {
	return func(t testing.TB, dir string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, time.Unix(0, baseNs), time.Unix(0, baseNs)); err != nil {
			t.Fatal(err)
		}
	}
}

// mtimeNow sets rel's mtime to now (writeFile leaves an old one), which
// with the ctime of a fresh write makes a file racy.
func mtimeNow(rel string) op {
	return func(t testing.TB, dir string) {
		t.Helper()
		if err := os.Chtimes(filepath.Join(dir, rel), time.Time{}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
}

func mkdir(rel string) op {
	return func(t testing.TB, dir string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func symlink(rel, target string) op {
	return func(t testing.TB, dir string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		_ = os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		ts := []unix.Timespec{unix.NsecToTimespec(baseNs), unix.NsecToTimespec(baseNs)}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	}
}

func mkfifo(rel string) op {
	return func(t testing.TB, dir string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := unix.Mkfifo(p, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, time.Unix(0, baseNs), time.Unix(0, baseNs)); err != nil {
			t.Fatal(err)
		}
	}
}

// mknod makes a device node, or skips the test where that is not allowed
// (fails it in CI).
func mknod(rel string, mode uint32, major, minor uint32) op {
	return func(t testing.TB, dir string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		err := unix.Mknod(p, mode|0o600, int(unix.Mkdev(major, minor)))
		if errors.Is(err, unix.EPERM) {
			cannotRun(t, "mknod %s: %v (needs root or CAP_MKNOD)", rel, err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, time.Unix(0, baseNs), time.Unix(0, baseNs)); err != nil {
			t.Fatal(err)
		}
	}
}

func chmod(rel string, mode fs.FileMode) op {
	return func(t testing.TB, dir string) {
		t.Helper()
		if err := os.Chmod(filepath.Join(dir, rel), mode); err != nil {
			t.Fatal(err)
		}
	}
}

func removeAll(rel string) op {
	return func(t testing.TB, dir string) {
		t.Helper()
		if err := os.RemoveAll(filepath.Join(dir, rel)); err != nil {
			t.Fatal(err)
		}
	}
}

func chtimes(rel string, mtime time.Time) op {
	return func(t testing.TB, dir string) {
		t.Helper()
		if err := os.Chtimes(filepath.Join(dir, rel), mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

func apply(t testing.TB, dir string, ops ...op) {
	t.Helper()
	for _, o := range ops {
		o(t, dir)
	}
}

// sampleTree is a small tree with every kind of entry and special modes.
func sampleTree() []op {
	return []op{
		writeFile("a.txt", "hello"),
		writeFile("empty", ""),
		writeFile("dir/b.txt", "bravo"),
		writeFile("dir/sub/c.txt", "charlie"),
		mkdir("dir/emptydir"),
		writeFile("setuid", "x"),
		chmod("setuid", 0o755|fs.ModeSetuid|fs.ModeSetgid),
		mkdir("sticky"),
		chmod("sticky", 0o777|fs.ModeSticky),
		symlink("link", "dir/b.txt"),
		symlink("dir/up", "../a.txt"),
		symlink("dangling", "no/such/file"),
		mkfifo("fifo"),
	}
}

// paths returns the paths of the index in walk order.
func paths(t testing.TB, x *Index, prefix string) []string {
	t.Helper()
	var ps []string
	if err := x.Walk(prefix, func(e Entry) error {
		ps = append(ps, e.Path)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ps
}

// entries returns every entry of the index in walk order.
func entries(t testing.TB, x *Index) []Entry {
	t.Helper()
	var es []Entry
	if err := x.Walk("", func(e Entry) error {
		es = append(es, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return es
}

// checkInvariants verifies the tree structure: sorted, unique children
// with the right parents, the entry count, and that a dirty directory has
// dirty ancestors.
func checkInvariants(t testing.TB, x *Index) {
	t.Helper()
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := 0
	var check func(d *node, path string)
	check = func(d *node, path string) {
		n++
		if d.dir == nil {
			return
		}
		if d.dir.dirty && d.parent != nil && !d.parent.dir.dirty {
			t.Errorf("%s dirty under a clean parent", path)
		}
		for i, k := range d.dir.kids {
			if k.parent != d {
				t.Errorf("%s/%s: wrong parent", path, k.name)
			}
			if i > 0 && d.dir.kids[i-1].name >= k.name {
				t.Errorf("%s: children out of order: %q, %q", path, d.dir.kids[i-1].name, k.name)
			}
			if (k.kind == KindDir) != (k.dir != nil) {
				t.Errorf("%s/%s: kind %s with dir data %v", path, k.name, k.kind, k.dir != nil)
			}
			check(k, path+"/"+k.name)
		}
	}
	if x.top != nil {
		check(x.top, ".")
	}
	if n != x.count {
		t.Errorf("count %d, tree holds %d entries", x.count, n)
	}
}

// sorted returns a sorted copy of ss.
func sorted(ss []string) []string {
	c := slices.Clone(ss)
	slices.Sort(c)
	return c
}

// stripKeys clears the fields that legitimately differ between two trees
// built alike: the cache key and the link count of directories.
func stripKeys(es []Entry) []Entry {
	out := slices.Clone(es)
	for i := range out {
		out[i].Dev, out[i].Ino, out[i].Ctime = 0, 0, 0
		if out[i].Kind == KindDir {
			out[i].Mtime, out[i].Nlink = 0, 0
		}
	}
	return out
}

func joinLines(ss []string) string { return strings.Join(ss, "\n") }
