package stage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestLstatMatchesOS: Lstat and LstatCache describe every kind of entry
// as os.Lstat does, the special mode bits and the whole stat included.
func TestLstatMatchesOS(t *testing.T) {
	d, base := newDir(t)
	mtime := time.Unix(1_700_000_000, 123456789)
	put(t, d, "dir/f", "content", Meta{Mode: fs.ModeSetuid | fs.ModeSetgid | 0o751, Mtime: mtime})
	must(t, d.Mkdir("dir/sticky", Meta{Mode: fs.ModeDir | fs.ModeSticky | 0o777}))
	must(t, d.Symlink("dir/link", "f", Meta{Mtime: mtime}))
	must(t, d.Mknod("dir/fifo", Meta{Mode: fs.ModeNamedPipe | 0o640}, 0))
	must(t, d.Symlink("top", "dir", Meta{}))
	c := d.LstatCache()
	defer c.Close()
	for _, rel := range []string{"dir", "dir/f", "dir/sticky", "dir/link", "dir/fifo", "top"} {
		want, err := os.Lstat(filepath.Join(base, rel))
		must(t, err)
		ws := want.Sys().(*syscall.Stat_t)
		for name, lstat := range map[string]func(string) (fs.FileInfo, error){"Dir": d.Lstat, "LstatCache": c.Lstat} {
			fi, err := lstat(rel)
			if err != nil {
				t.Fatalf("%s.Lstat(%q): %v", name, rel, err)
			}
			st, ok := fi.Sys().(*syscall.Stat_t)
			switch {
			case !ok:
				t.Errorf("%s.Lstat(%q).Sys() is %T", name, rel, fi.Sys())
			case fi.Name() != want.Name() || fi.Mode() != want.Mode() || fi.IsDir() != want.IsDir() ||
				fi.Size() != want.Size() || !fi.ModTime().Equal(want.ModTime()):
				t.Errorf("%s.Lstat(%q) = %q %v %d %v, want %q %v %d %v", name, rel,
					fi.Name(), fi.Mode(), fi.Size(), fi.ModTime(), want.Name(), want.Mode(), want.Size(), want.ModTime())
			case *st != *ws:
				t.Errorf("%s.Lstat(%q).Sys() = %+v, want %+v", name, rel, *st, *ws)
			case !SameFile(fi, want):
				t.Errorf("SameFile(%s.Lstat(%q), os.Lstat) = false", name, rel)
			}
		}
	}
	f, _ := d.Lstat("dir/f")
	l, _ := d.Lstat("dir/link")
	if SameFile(f, l) {
		t.Error("SameFile of a file and a link to it = true")
	}
}

// TestLstatCacheResolves: the cache answers for paths in every directory
// in turn, resolving a directory again whenever the paths move to
// another, so that a symbolic link planted meanwhile is refused.
func TestLstatCacheResolves(t *testing.T) {
	d, base := newDir(t)
	outside := t.TempDir()
	must(t, os.WriteFile(filepath.Join(outside, "f"), []byte("outside"), 0o644))
	put(t, d, "a/f", "a", Meta{Mode: 0o644})
	put(t, d, "b/f", "b", Meta{Mode: 0o644})
	put(t, d, "top", "top", Meta{Mode: 0o644})
	c := d.LstatCache()
	defer c.Close()
	for _, rel := range []string{"a/f", "a", "b/f", "top", "a/f", "a/missing"} {
		fi, err := c.Lstat(rel)
		want, werr := d.Lstat(rel)
		if (err == nil) != (werr == nil) || err == nil && !SameFile(fi, want) {
			t.Errorf("Lstat(%q) = %v, %v; Dir.Lstat: %v, %v", rel, fi, err, want, werr)
		}
	}
	if _, err := c.Lstat("bad//path"); !errors.Is(err, ErrBadPath) {
		t.Errorf("Lstat of a bad path = %v, want ErrBadPath", err)
	}
	// "a" is now kept; b is replaced by a link to the outside directory,
	// which the move to b resolves again and refuses.
	must(t, os.Rename(filepath.Join(base, "b"), filepath.Join(base, "b.old")))
	must(t, os.Symlink(outside, filepath.Join(base, "b")))
	if fi, err := c.Lstat("b/f"); !errors.Is(err, ErrSymlinkInPath) {
		t.Errorf("Lstat through a planted link = %v, %v; want ErrSymlinkInPath", fi, err)
	}
	// After a failure and after Close it starts afresh.
	for range 2 {
		if fi, err := c.Lstat("a/f"); err != nil || fi.Size() != 1 {
			t.Errorf("Lstat(a/f) = %v, %v", fi, err)
		}
		c.Close()
	}
}

// TestTruncateSize: Truncate to the size written leaves the content as
// it is; to another size it cuts or extends; and once the temp was
// reopened after a Park, whatever it holds then is cut to the size asked
// for, even if it grew behind the Temp's back.
func TestTruncateSize(t *testing.T) {
	d, base := newDir(t)
	tmp, err := d.CreateTemp("f")
	must(t, err)
	defer tmp.Abort()
	size := func() int64 {
		t.Helper()
		n, err := tmp.Size()
		must(t, err)
		return n
	}
	_, err = tmp.WriteAt([]byte("0123456789"), 0)
	must(t, err)
	_, err = tmp.WriteAt([]byte("ab"), 3)
	must(t, err)
	for _, tc := range []struct{ to, want int64 }{{10, 10}, {12, 12}, {12, 12}, {4, 4}, {4, 4}} {
		must(t, tmp.Truncate(tc.to))
		if got := size(); got != tc.want {
			t.Fatalf("Truncate(%d): size %d, want %d", tc.to, got, tc.want)
		}
	}
	buf := make([]byte, 4)
	if _, err := tmp.ReadAt(buf, 0); err != nil || string(buf) != "012a" {
		t.Fatalf("content %q, %v", buf, err)
	}
	must(t, tmp.Park())
	f, err := os.OpenFile(filepath.Join(base, tmp.Name()), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.Write([]byte("appended"))
	must(t, f.Close())
	must(t, err)
	must(t, tmp.Truncate(4))
	if got := size(); got != 4 {
		t.Fatalf("Truncate(4) after a reopen: size %d", got)
	}
	must(t, tmp.Commit(Meta{Mode: 0o644}))
	if b, _ := os.ReadFile(filepath.Join(base, "f")); string(b) != "012a" {
		t.Errorf("committed %q", b)
	}
}
