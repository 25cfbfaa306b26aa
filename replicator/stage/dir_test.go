package stage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestOpenBase(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(file); !errors.Is(err, ErrNotDir) {
		t.Errorf("Open(file) = %v, want ErrNotDir", err)
	}
	if _, err := Open(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want ErrNotExist", err)
	}
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d.Base() != dir {
		t.Errorf("Base() = %q", d.Base())
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateTemp("x"); err == nil {
		t.Error("CreateTemp after Close succeeded")
	}
}

func TestBadPathEverywhere(t *testing.T) {
	d, _ := newDir(t)
	m := Meta{Mode: 0o644}
	for _, rel := range []string{"", "..", "../x", "/abs", "a/../b", "a//b", "a/", ".", ".makuo-0123456789abcdef.tmp"} {
		ops := map[string]error{
			"Mkdir":     d.Mkdir(rel, Meta{Mode: 0o755}),
			"Symlink":   d.Symlink(rel, "t", m),
			"Link":      d.Link(rel, "x"),
			"Link old":  d.Link("x", rel),
			"Mknod":     d.Mknod(rel, Meta{Mode: fs.ModeNamedPipe | 0o644}, 0),
			"SetMeta":   d.SetMeta(rel, m),
			"Remove":    d.Remove(rel),
			"RemoveAll": d.RemoveAll(rel),
		}
		_, ops["CreateTemp"] = d.CreateTemp(rel)
		_, ops["Open"] = d.Open(rel)
		_, ops["Lstat"] = d.Lstat(rel)
		_, ops["Readlink"] = d.Readlink(rel)
		for op, err := range ops {
			if !errors.Is(err, ErrBadPath) {
				t.Errorf("%s(%q) = %v, want ErrBadPath", op, rel, err)
			}
		}
	}
}

func TestMkdir(t *testing.T) {
	d, base := newDir(t)
	mtime := time.Unix(1234567890, 5)
	if err := d.Mkdir("a/b", Meta{Mode: fs.ModeDir | fs.ModeSetgid | 0o750, Mtime: mtime}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(base, "a/b"))
	if err != nil {
		t.Fatal(err)
	}
	if want := fs.ModeDir | fs.ModeSetgid | 0o750; fi.Mode() != want {
		t.Errorf("mode %v, want %v", fi.Mode(), want)
	}
	if !fi.ModTime().Equal(mtime) {
		t.Errorf("mtime %v", fi.ModTime())
	}
	// Existing directory: metadata only, content kept.
	put(t, d, "a/b/f", "x", Meta{Mode: 0o644})
	if err := d.Mkdir("a/b", Meta{Mode: 0o700}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(filepath.Join(base, "a/b")); fi.Mode() != fs.ModeDir|0o700 {
		t.Errorf("mode after update %v", fi.Mode())
	}
	if _, err := os.Lstat(filepath.Join(base, "a/b/f")); err != nil {
		t.Errorf("content lost: %v", err)
	}
	// A non-directory is not replaced.
	if err := d.Mkdir("a/b/f", Meta{Mode: 0o755}); !errors.Is(err, ErrNotDir) {
		t.Errorf("Mkdir over file = %v, want ErrNotDir", err)
	}
	if err := d.Symlink("ln", "a", Meta{}); err != nil {
		t.Fatal(err)
	}
	if err := d.Mkdir("ln", Meta{Mode: 0o755}); !errors.Is(err, ErrNotDir) {
		t.Errorf("Mkdir over symlink = %v, want ErrNotDir", err)
	}
	if err := d.Mkdir("x", Meta{Mode: fs.ModeSymlink | 0o755}); !errors.Is(err, ErrBadMode) {
		t.Errorf("Mkdir with symlink mode = %v, want ErrBadMode", err)
	}
}

func TestMkdirOwner(t *testing.T) {
	needRoot(t)
	d, base := newDir(t)
	if err := d.Mkdir("d", Meta{Mode: 0o755, Uid: 42, Gid: 43, SetOwner: true}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Lstat(filepath.Join(base, "d"))
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 42 || st.Gid != 43 {
		t.Errorf("owner %d:%d", st.Uid, st.Gid)
	}
}

func TestSymlink(t *testing.T) {
	d, base := newDir(t)
	mtime := time.Unix(1500000000, 424242)
	targets := []string{"plain", "../../../../etc/passwd", "/abs/dangling", "with\nnewline \xff"}
	for i, target := range targets {
		// Each round replaces the previous link atomically.
		if err := d.Symlink("l", target, Meta{Mode: fs.ModeSymlink | 0o777, Mtime: mtime.Add(time.Duration(i))}); err != nil {
			t.Fatal(err)
		}
		got, err := os.Readlink(filepath.Join(base, "l"))
		if err != nil || got != target {
			t.Fatalf("Readlink = %q, %v; want %q", got, err, target)
		}
		if got, err := d.Readlink("l"); err != nil || got != target {
			t.Fatalf("d.Readlink = %q, %v; want %q", got, err, target)
		}
		fi, err := d.Lstat("l")
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != fs.ModeSymlink || !fi.ModTime().Equal(mtime.Add(time.Duration(i))) {
			t.Errorf("link: mode %v mtime %v", fi.Mode(), fi.ModTime())
		}
	}
	// A file is replaced by a link, and a link by a file.
	put(t, d, "f", "x", Meta{Mode: 0o644})
	if err := d.Symlink("f", "l", Meta{}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(filepath.Join(base, "f")); fi.Mode().Type() != fs.ModeSymlink {
		t.Errorf("f is %v", fi.Mode())
	}
	put(t, d, "f", "file again", Meta{Mode: 0o644})
	if fi, _ := os.Lstat(filepath.Join(base, "f")); !fi.Mode().IsRegular() {
		t.Errorf("f is %v", fi.Mode())
	}
	// Refusals.
	if err := d.Mkdir("dir", Meta{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	if err := d.Symlink("dir", "x", Meta{}); !errors.Is(err, ErrIsDir) {
		t.Errorf("Symlink over dir = %v, want ErrIsDir", err)
	}
	for _, bad := range []string{"", "a\x00b", string(make([]byte, MaxPathLen+1))} {
		if err := d.Symlink("bad", bad, Meta{}); !errors.Is(err, ErrBadTarget) {
			t.Errorf("Symlink target %.20q = %v, want ErrBadTarget", bad, err)
		}
	}
	if err := d.Symlink("bad", "x", Meta{Mode: 0o644 | fs.ModeDir}); !errors.Is(err, ErrBadMode) {
		t.Errorf("Symlink with dir mode = %v, want ErrBadMode", err)
	}
	noTemps(t, base)
}

func TestSymlinkOwner(t *testing.T) {
	needRoot(t)
	d, base := newDir(t)
	put(t, d, "target", "x", Meta{Mode: 0o644})
	if err := d.Symlink("l", "target", Meta{Uid: 77, Gid: 88, SetOwner: true}); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(base, "l"), &st); err != nil || st.Uid != 77 || st.Gid != 88 {
		t.Errorf("link owner %d:%d %v", st.Uid, st.Gid, err)
	}
	if err := unix.Stat(filepath.Join(base, "target"), &st); err != nil || st.Uid != 0 {
		t.Errorf("target owner changed to %d: %v", st.Uid, err)
	}
}

func TestLink(t *testing.T) {
	d, base := newDir(t)
	put(t, d, "orig", "shared", Meta{Mode: 0o640})
	put(t, d, "sub/other", "to be replaced", Meta{Mode: 0o644})
	for _, rel := range []string{"hard", "sub/other", "new/dir/hard"} {
		if err := d.Link(rel, "orig"); err != nil {
			t.Fatal(err)
		}
		if !SameFile(lstat(t, base, "orig"), lstat(t, base, rel)) {
			t.Errorf("%s is not the same inode as orig", rel)
		}
	}
	// Linking again to the same inode changes nothing and leaves no temp.
	if err := d.Link("hard", "orig"); err != nil {
		t.Fatal(err)
	}
	if err := d.Link("orig", "orig"); err != nil {
		t.Fatal(err)
	}
	if n := lstat(t, base, "orig").Sys().(*syscall.Stat_t).Nlink; n != 4 {
		t.Errorf("nlink %d, want 4", n)
	}
	// A symlink is linked itself, not its target.
	if err := d.Symlink("sl", "orig", Meta{}); err != nil {
		t.Fatal(err)
	}
	if err := d.Link("sl2", "sl"); err != nil {
		t.Fatal(err)
	}
	if !SameFile(lstat(t, base, "sl"), lstat(t, base, "sl2")) {
		t.Error("sl2 is not a link to the symlink sl")
	}
	// Failures.
	if err := d.Link("x", "missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Link to missing = %v", err)
	}
	if err := d.Link("x", "sub"); err == nil {
		t.Error("hard link to a directory succeeded")
	}
	if err := d.Link("sub", "orig"); !errors.Is(err, ErrIsDir) {
		t.Errorf("Link over dir = %v, want ErrIsDir", err)
	}
	noTemps(t, base)
}

func TestMknodFIFO(t *testing.T) {
	d, base := newDir(t)
	mtime := time.Unix(1111111111, 111)
	if err := d.Mknod("p/fifo", Meta{Mode: fs.ModeNamedPipe | 0o620, Mtime: mtime}, 0); err != nil {
		t.Fatal(err)
	}
	fi := lstat(t, base, "p/fifo")
	if fi.Mode() != fs.ModeNamedPipe|0o620 || !fi.ModTime().Equal(mtime) {
		t.Errorf("fifo: %v %v", fi.Mode(), fi.ModTime())
	}
	// Open refuses it without blocking.
	if _, err := d.Open("p/fifo"); !errors.Is(err, ErrNotRegular) {
		t.Errorf("Open(fifo) = %v, want ErrNotRegular", err)
	}
	// SetMeta works on it without opening it.
	if err := d.SetMeta("p/fifo", Meta{Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	if fi := lstat(t, base, "p/fifo"); fi.Mode() != fs.ModeNamedPipe|0o600 {
		t.Errorf("after SetMeta: %v", fi.Mode())
	}
	// A file is replaced by a FIFO.
	put(t, d, "f", "x", Meta{Mode: 0o644})
	if err := d.Mknod("f", Meta{Mode: fs.ModeNamedPipe | 0o644}, 0); err != nil {
		t.Fatal(err)
	}
	if fi := lstat(t, base, "f"); fi.Mode().Type() != fs.ModeNamedPipe {
		t.Errorf("f: %v", fi.Mode())
	}
	for _, m := range []fs.FileMode{0o644, fs.ModeDir | 0o755, fs.ModeSymlink | 0o777} {
		if err := d.Mknod("bad", Meta{Mode: m}, 0); !errors.Is(err, ErrBadMode) {
			t.Errorf("Mknod mode %v = %v, want ErrBadMode", m, err)
		}
	}
	if err := d.Mknod("p", Meta{Mode: fs.ModeNamedPipe | 0o644}, 0); !errors.Is(err, ErrIsDir) {
		t.Errorf("Mknod over dir = %v, want ErrIsDir", err)
	}
	noTemps(t, base)
}

func TestMknodDevice(t *testing.T) {
	needRoot(t)
	d, base := newDir(t)
	tests := []struct {
		rel  string
		mode fs.FileMode
		dev  uint64
	}{
		{"null", fs.ModeDevice | fs.ModeCharDevice | 0o666, unix.Mkdev(1, 3)},
		{"loop", fs.ModeDevice | 0o660, unix.Mkdev(7, 0)},
	}
	for _, tt := range tests {
		err := d.Mknod(tt.rel, Meta{Mode: tt.mode, Uid: 5, Gid: 6, SetOwner: true}, tt.dev)
		if errors.Is(err, unix.EPERM) {
			cannotRun(t, "mknod of devices not permitted here (container without CAP_MKNOD?): %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		fi := lstat(t, base, tt.rel)
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode() != tt.mode || st.Rdev != tt.dev || st.Uid != 5 || st.Gid != 6 {
			t.Errorf("%s: mode %v rdev %x owner %d:%d", tt.rel, fi.Mode(), st.Rdev, st.Uid, st.Gid)
		}
	}
	noTemps(t, base)
}

func TestSetMeta(t *testing.T) {
	d, base := newDir(t)
	put(t, d, "f", "x", Meta{Mode: 0o644})
	mtime := time.Unix(2000000000, 999999999)
	if err := d.SetMeta("f", Meta{Mode: 0o600, Mtime: mtime}); err != nil {
		t.Fatal(err)
	}
	if fi := lstat(t, base, "f"); fi.Mode() != 0o600 || !fi.ModTime().Equal(mtime) {
		t.Errorf("f: %v %v", fi.Mode(), fi.ModTime())
	}
	if err := d.SetMeta("f", Meta{Mode: fs.ModeDir | 0o755}); !errors.Is(err, ErrBadMode) {
		t.Errorf("SetMeta with wrong type = %v, want ErrBadMode", err)
	}
	if err := d.SetMeta("missing", Meta{Mode: 0o644}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("SetMeta(missing) = %v, want ErrNotExist", err)
	}
	// On a symlink: the link's times change, the target is untouched.
	if err := d.Symlink("l", "f", Meta{}); err != nil {
		t.Fatal(err)
	}
	lt := time.Unix(1000000000, 1)
	if err := d.SetMeta("l", Meta{Mode: fs.ModeSymlink | 0o777, Mtime: lt}); err != nil {
		t.Fatal(err)
	}
	if fi := lstat(t, base, "l"); !fi.ModTime().Equal(lt) {
		t.Errorf("link mtime %v", fi.ModTime())
	}
	if fi := lstat(t, base, "f"); fi.Mode() != 0o600 || !fi.ModTime().Equal(mtime) {
		t.Errorf("target changed through link: %v %v", fi.Mode(), fi.ModTime())
	}
}

func TestRemove(t *testing.T) {
	d, base := newDir(t)
	put(t, d, "f", "x", Meta{Mode: 0o644})
	put(t, d, "full/f", "x", Meta{Mode: 0o644})
	if err := d.Mkdir("empty", Meta{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	if err := d.Symlink("l", "full", Meta{}); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"f", "empty", "l", "missing", "missing/below", "f/below"} {
		if err := d.Remove(rel); err != nil {
			t.Errorf("Remove(%q) = %v", rel, err)
		}
	}
	if err := d.Remove("full"); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Errorf("Remove(non-empty) = %v, want ENOTEMPTY", err)
	}
	if got := listNames(t, base); !slices.Equal(got, []string{"full"}) {
		t.Errorf("left %q", got)
	}
	if _, err := os.Lstat(filepath.Join(base, "full/f")); err != nil {
		t.Errorf("link target removed: %v", err)
	}
	if err := d.RemoveAll("full"); err != nil {
		t.Fatal(err)
	}
	if err := d.RemoveAll("full"); err != nil {
		t.Errorf("RemoveAll(missing) = %v", err)
	}
	if got := listNames(t, base); len(got) != 0 {
		t.Errorf("left %q", got)
	}
}

func TestOpenBasis(t *testing.T) {
	d, _ := newDir(t)
	put(t, d, "f", "basis", Meta{Mode: 0o000}) // readable by root only, still a basis
	if f, err := d.Open("f"); os.Geteuid() != 0 {
		if !errors.Is(err, fs.ErrPermission) {
			t.Errorf("Open(mode 0000) unprivileged = %v, want a permission error", err)
		}
	} else {
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 10)
		n, _ := f.Read(b)
		f.Close()
		if string(b[:n]) != "basis" {
			t.Errorf("read %q", b[:n])
		}
	}
	if err := d.SetMeta("f", Meta{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	f, err := d.Open("f")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := d.Symlink("l", "f", Meta{}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Open("l"); !errors.Is(err, ErrNotRegular) {
		t.Errorf("Open(symlink) = %v, want ErrNotRegular", err)
	}
	if err := d.Mkdir("dir", Meta{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Open("dir"); !errors.Is(err, ErrNotRegular) {
		t.Errorf("Open(dir) = %v, want ErrNotRegular", err)
	}
	if _, err := d.Open("missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want ErrNotExist", err)
	}
}

func TestCleanStale(t *testing.T) {
	d, base := newDir(t)
	outside := t.TempDir()
	outsideTemp := filepath.Join(outside, newTempName())
	mustWrite(t, outsideTemp)

	put(t, d, "keep", "x", Meta{Mode: 0o644})
	put(t, d, "sub/\xff\n dir/keep", "x", Meta{Mode: 0o644})
	var stale []string
	for _, dir := range []string{"", "sub", "sub/\xff\n dir"} {
		p := filepath.Join(base, dir, newTempName())
		mustWrite(t, p)
		stale = append(stale, p)
	}
	// A stale temp symlink (dangling) and a stale temp FIFO.
	p := filepath.Join(base, "sub", newTempName())
	if err := os.Symlink("/nonexistent", p); err != nil {
		t.Fatal(err)
	}
	stale = append(stale, p)
	p = filepath.Join(base, newTempName())
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	stale = append(stale, p)
	// A directory with a temp-like name is not ours: kept, but searched.
	tdir := filepath.Join(base, newTempName())
	if err := os.Mkdir(tdir, 0o755); err != nil {
		t.Fatal(err)
	}
	p = filepath.Join(tdir, newTempName())
	mustWrite(t, p)
	stale = append(stale, p)
	// Symlinked directories are not followed, inside or outside the base.
	if err := os.Symlink(outside, filepath.Join(base, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub", filepath.Join(base, "in")); err != nil {
		t.Fatal(err)
	}
	// A temp in use is kept.
	live, err := d.CreateTemp("sub/live")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Abort()

	removed, err := d.CleanStale()
	if err != nil {
		t.Fatal(err)
	}
	if removed != len(stale) {
		t.Errorf("removed %d, want %d", removed, len(stale))
	}
	for _, p := range stale {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stale %q still there: %v", p, err)
		}
	}
	for _, p := range []string{outsideTemp, tdir, filepath.Join(base, live.Name()), filepath.Join(base, "keep"), filepath.Join(base, "sub/\xff\n dir/keep")} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%q removed: %v", p, err)
		}
	}
	if err := live.Commit(Meta{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if removed, err := d.CleanStale(); removed != 0 || err != nil {
		t.Errorf("second CleanStale = %d, %v", removed, err)
	}
}

func lstat(t *testing.T, base, rel string) fs.FileInfo {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(base, rel))
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func mustWrite(t *testing.T, p string) {
	t.Helper()
	if err := os.WriteFile(p, []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
}
