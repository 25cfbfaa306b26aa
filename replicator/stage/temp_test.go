package stage

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestCommitNames(t *testing.T) {
	d, base := newDir(t)
	tests := []string{
		"plain",
		"deep/er/than/before.txt",
		strings.Repeat("L", MaxNameLen),
		"dir/" + strings.Repeat("M", MaxNameLen),
		"non-utf8-\xff\xfe",
		"\xc3\x28/\xe9t\xe9",
		"new\nline",
		"sp ace/and\ttab",
		`back\slash`,
	}
	for _, rel := range tests {
		put(t, d, rel, "content of "+rel, Meta{Mode: 0o644})
		got, err := os.ReadFile(filepath.Join(base, rel))
		if err != nil {
			t.Fatalf("%q: %v", rel, err)
		}
		if string(got) != "content of "+rel {
			t.Errorf("%q: content %q", rel, got)
		}
	}
	noTemps(t, base)
}

func TestCommitMeta(t *testing.T) {
	d, base := newDir(t)
	mtime := time.Unix(1700000000, 123456789)
	atime := time.Unix(1600000000, 987654321)
	mode := fs.ModeSetuid | 0o751
	put(t, d, "f", "x", Meta{Mode: mode, Mtime: mtime, Atime: atime})

	fi, err := os.Lstat(filepath.Join(base, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != mode {
		t.Errorf("mode %v, want %v", fi.Mode(), mode)
	}
	if !fi.ModTime().Equal(mtime) {
		t.Errorf("mtime %v, want %v", fi.ModTime(), mtime)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if got := time.Unix(st.Atim.Sec, st.Atim.Nsec); !got.Equal(atime) {
		t.Errorf("atime %v, want %v", got, atime)
	}

	// Zero times leave them as the system set them (now).
	before := time.Now().Add(-time.Minute)
	put(t, d, "g", "y", Meta{Mode: 0o600})
	fi, err = os.Lstat(filepath.Join(base, "g"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o600 || fi.ModTime().Before(before) {
		t.Errorf("g: mode %v mtime %v", fi.Mode(), fi.ModTime())
	}
}

func TestCommitOwner(t *testing.T) {
	needRoot(t)
	d, base := newDir(t)
	mode := fs.ModeSetuid | fs.ModeSetgid | 0o755
	put(t, d, "f", "x", Meta{Mode: mode, Uid: 1234, Gid: 5678, SetOwner: true})
	fi, err := os.Lstat(filepath.Join(base, "f"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("owner %d:%d, want 1234:5678", st.Uid, st.Gid)
	}
	// chown runs before chmod, so the set-id bits survive.
	if fi.Mode() != mode {
		t.Errorf("mode %v, want %v", fi.Mode(), mode)
	}
	// Without SetOwner the owner is the daemon's.
	put(t, d, "g", "y", Meta{Mode: 0o644, Uid: 1234, Gid: 5678})
	fi, err = os.Lstat(filepath.Join(base, "g"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 {
		t.Errorf("owner %d without SetOwner", st.Uid)
	}
}

func TestTempIO(t *testing.T) {
	d, base := newDir(t)
	put(t, d, "f", "old content", Meta{Mode: 0o644})

	tmp, err := d.CreateTemp("f")
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Abort()
	if tmp.Target() != "f" || !IsTempName(tmp.Name()) {
		t.Errorf("Target %q Name %q", tmp.Target(), tmp.Name())
	}
	if _, err := os.Lstat(filepath.Join(base, tmp.Name())); err != nil {
		t.Errorf("temp file not beside target: %v", err)
	}
	if _, err := tmp.WriteAt([]byte("world"), 6); err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.Write([]byte("HELLO ")); err != nil {
		t.Fatal(err)
	}
	if off, err := tmp.Seek(0, io.SeekStart); err != nil || off != 0 {
		t.Fatalf("Seek = %d, %v", off, err)
	}
	if _, err := tmp.Write([]byte("hello ")); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Truncate(20); err != nil {
		t.Fatal(err)
	}
	if n, err := tmp.Size(); err != nil || n != 20 {
		t.Fatalf("Size = %d, %v", n, err)
	}
	if err := tmp.Truncate(11); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := tmp.ReadAt(buf, 6); err != nil || string(buf) != "world" {
		t.Fatalf("ReadAt = %q, %v", buf, err)
	}
	// The target is untouched until Commit.
	if got, _ := os.ReadFile(filepath.Join(base, "f")); string(got) != "old content" {
		t.Fatalf("target changed before commit: %q", got)
	}
	if err := tmp.Commit(Meta{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(base, "f")); string(got) != "hello world" {
		t.Fatalf("content %q", got)
	}
	if err := tmp.Commit(Meta{Mode: 0o644}); !errors.Is(err, ErrClosed) {
		t.Errorf("second Commit = %v, want ErrClosed", err)
	}
	if _, err := tmp.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Commit = %v, want ErrClosed", err)
	}
	if err := tmp.Abort(); err != nil {
		t.Errorf("Abort after Commit = %v", err)
	}
	noTemps(t, base)
}

func TestAbort(t *testing.T) {
	d, base := newDir(t)
	put(t, d, "f", "old", Meta{Mode: 0o644})
	tmp, err := d.CreateTemp("f")
	if err != nil {
		t.Fatal(err)
	}
	tmp.Write([]byte("new"))
	if err := tmp.Abort(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(base, "f")); string(got) != "old" {
		t.Errorf("content %q after Abort", got)
	}
	if err := tmp.Commit(Meta{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit after Abort = %v", err)
	}
	noTemps(t, base)
}

func TestCommitRefusals(t *testing.T) {
	d, base := newDir(t)
	if err := d.Mkdir("dir", Meta{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	// A directory is refused at Commit, whether it was there when the
	// temp was created ...
	over, err := d.CreateTemp("dir")
	if err != nil {
		t.Fatal(err)
	}
	if err := over.Commit(Meta{Mode: 0o644}); !errors.Is(err, ErrIsDir) {
		t.Errorf("Commit over dir = %v, want ErrIsDir", err)
	}
	if fi := lstat(t, base, "dir"); !fi.IsDir() {
		t.Errorf("dir replaced: %v", fi.Mode())
	}
	// ... or appeared in between.
	tmp, err := d.CreateTemp("later")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(base, "later"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Commit(Meta{Mode: 0o644}); !errors.Is(err, ErrIsDir) {
		t.Errorf("Commit over dir = %v, want ErrIsDir", err)
	}
	// After RemoveAll the file may take the directory's place.
	if err := d.RemoveAll("later"); err != nil {
		t.Fatal(err)
	}
	put(t, d, "later", "now a file", Meta{Mode: 0o644})

	// Type bits in Meta must describe a regular file.
	tmp, err = d.CreateTemp("f")
	if err != nil {
		t.Fatal(err)
	}
	if err := tmp.Commit(Meta{Mode: fs.ModeSymlink | 0o644}); !errors.Is(err, ErrBadMode) {
		t.Errorf("Commit with symlink mode = %v, want ErrBadMode", err)
	}
	if _, err := os.Lstat(filepath.Join(base, "f")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("failed Commit created the target: %v", err)
	}
	// A file where a parent directory should be.
	if _, err := d.CreateTemp("later/x"); !errors.Is(err, ErrNotDir) {
		t.Errorf("CreateTemp below a file = %v, want ErrNotDir", err)
	}
	noTemps(t, base)
}

// TestCommitAtomic replaces a file repeatedly while readers read it in a
// loop: every read must see one complete version, and the path must never
// be missing.
func TestCommitAtomic(t *testing.T) {
	d, base := newDir(t)
	const versions = 60
	content := func(i int) []byte {
		// Distinct byte and size per version, large enough that a partial
		// write would be visible.
		return bytes.Repeat([]byte{byte('a' + i%26)}, 64<<10+(i%26)*1021)
	}
	put(t, d, "f", string(content(0)), Meta{Mode: 0o644})

	var stop atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				b, err := os.ReadFile(filepath.Join(base, "f"))
				if err != nil {
					errc <- err
					return
				}
				reads.Add(1)
				i := int(b[0] - 'a')
				want := content(i)
				if !bytes.Equal(b, want) {
					errc <- errors.New("partial or mixed content seen")
					return
				}
			}
		})
	}
	for i := 1; i <= versions; i++ {
		tmp, err := d.CreateTemp("f")
		if err != nil {
			t.Fatal(err)
		}
		c := content(i)
		// Several writes, so a non-atomic replace would expose a prefix.
		for len(c) > 0 {
			n := min(len(c), 8<<10)
			if _, err := tmp.Write(c[:n]); err != nil {
				t.Fatal(err)
			}
			c = c[n:]
		}
		if err := tmp.Commit(Meta{Mode: 0o644, Mtime: time.Unix(int64(i), 0)}); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if reads.Load() == 0 {
		t.Error("readers never read")
	}
	t.Logf("%d reads during %d replaces", reads.Load(), versions)
	noTemps(t, base)
}

func TestCreateTempMakesParents(t *testing.T) {
	d, base := newDir(t)
	put(t, d, "a/b/c/f", "x", Meta{Mode: 0o644})
	for _, p := range []string{"a", "a/b", "a/b/c"} {
		fi, err := os.Lstat(filepath.Join(base, p))
		if err != nil || !fi.IsDir() {
			t.Fatalf("%s: %v %v", p, fi, err)
		}
	}
	// A parent that is a symlink, even to a directory inside the base,
	// is not followed: nothing lands in the real directory.
	if err := os.Symlink("a/b", filepath.Join(base, "alias")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateTemp("alias/g"); !errors.Is(err, ErrSymlinkInPath) {
		t.Fatalf("CreateTemp through a symlinked parent = %v, want ErrSymlinkInPath", err)
	}
	if got := listNames(t, filepath.Join(base, "a/b")); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("a/b holds %q", got)
	}
	if fi, _ := os.Lstat(filepath.Join(base, "alias")); fi.Mode().Type() != fs.ModeSymlink {
		t.Errorf("alias replaced: %v", fi.Mode())
	}
}
