package stage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestCommitAll(t *testing.T) {
	base := t.TempDir()
	d := openTestDir(t, base)
	must(t, os.WriteFile(filepath.Join(base, "old"), []byte("old"), 0o644))
	must(t, os.Mkdir(filepath.Join(base, "isdir"), 0o755))
	mtime := time.Unix(1_700_000_000, 123456789)
	var ts []*Temp
	names := []string{"a/new1", "a/new2", "old", "isdir"}
	for _, n := range names {
		tmp, err := d.CreateTemp(n)
		must(t, err)
		_, err = tmp.Write([]byte("content of " + n))
		must(t, err)
		must(t, tmp.Ready(Meta{Mode: 0o640, Mtime: mtime}))
		// Not visible before CommitAll.
		if b, _ := os.ReadFile(filepath.Join(base, n)); string(b) == "content of "+n {
			t.Fatalf("%s visible before CommitAll", n)
		}
		ts = append(ts, tmp)
	}
	// A directory target is refused, and only that one.
	for i, err := range d.CommitAll(ts) {
		if n := ts[i].Target(); n == "isdir" && !errors.Is(err, ErrIsDir) || n != "isdir" && err != nil {
			t.Fatalf("%s: %v", n, err)
		}
	}
	if fi, err := os.Lstat(filepath.Join(base, "isdir")); err != nil || !fi.IsDir() {
		t.Fatalf("isdir after CommitAll: %v, %v", fi, err)
	}
	for _, n := range names[:3] {
		p := filepath.Join(base, n)
		b, err := os.ReadFile(p)
		must(t, err)
		if string(b) != "content of "+n {
			t.Fatalf("%s = %q", n, b)
		}
		fi, err := os.Stat(p)
		must(t, err)
		if fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(mtime) {
			t.Fatalf("%s: mode %v mtime %v", n, fi.Mode(), fi.ModTime())
		}
	}
	if n, _ := d.CleanStale(); n != 0 {
		t.Fatalf("%d temp files left", n)
	}
}

func TestReadyAbort(t *testing.T) {
	base := t.TempDir()
	d, err := Open(base)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tmp, err := d.CreateTemp("x")
	if err != nil {
		t.Fatal(err)
	}
	if err := tmp.Ready(Meta{Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Abort(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(base)
	if len(entries) != 0 {
		t.Fatalf("left behind: %v", fmt.Sprint(entries))
	}
	if errs := d.CommitAll([]*Temp{tmp}); errs[0] == nil {
		t.Fatal("an aborted temp was committed")
	}
}

// TestPark: a parked temp reopens on the next write and commits what was
// written before and after; one whose directory was swapped for a symlink
// leading outside fails instead of writing there.
func TestPark(t *testing.T) {
	base, outside := t.TempDir(), t.TempDir()
	d := openTestDir(t, base)
	tmp, err := d.CreateTemp("dir/f")
	must(t, err)
	_, err = tmp.WriteAt([]byte("head"), 0)
	must(t, err)
	must(t, tmp.Park())
	if !tmp.Parked() {
		t.Fatal("not parked after Park")
	}
	_, err = tmp.WriteAt([]byte("tail"), 4)
	must(t, err)
	buf := make([]byte, 8)
	_, err = tmp.ReadAt(buf, 0)
	must(t, err)
	must(t, tmp.Park())
	must(t, tmp.Ready(Meta{Mode: 0o644}))
	for _, e := range d.CommitAll([]*Temp{tmp}) {
		must(t, e)
	}
	if got, _ := os.ReadFile(filepath.Join(base, "dir/f")); string(got) != "headtail" || string(buf) != "headtail" {
		t.Fatalf("committed %q, read back %q", got, buf)
	}

	tmp, err = d.CreateTemp("dir/g")
	must(t, err)
	must(t, tmp.Park())
	must(t, os.Rename(filepath.Join(base, "dir"), filepath.Join(base, "moved")))
	must(t, os.Symlink(outside, filepath.Join(base, "dir")))
	if _, err := tmp.WriteAt([]byte("x"), 0); err == nil {
		t.Fatal("write through a swapped directory succeeded")
	}
	if err := tmp.Ready(Meta{Mode: 0o644}); err == nil {
		t.Fatal("Ready through a swapped directory succeeded")
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("%d entries written outside the base", len(ents))
	}
}

// openTestDir opens base as a Dir closed when the test ends.
func openTestDir(t *testing.T, base string) *Dir {
	t.Helper()
	d, err := Open(base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestOpenUnsynced: a Dir for simulations stages and commits like any
// other, and its syncs are not the system's.
func TestOpenUnsynced(t *testing.T) {
	base := t.TempDir()
	d, err := OpenUnsynced(base)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for name, f := range map[string]func(int) error{"fsync": d.fsync, "syncfs": d.syncfs} {
		if reflect.ValueOf(f).Pointer() == reflect.ValueOf(unix.Fsync).Pointer() ||
			reflect.ValueOf(f).Pointer() == reflect.ValueOf(unix.Syncfs).Pointer() {
			t.Errorf("%s of an unsynced Dir is the system call", name)
		}
	}
	tmp, err := d.CreateTemp("a/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Commit(Meta{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(base, "a/f")); err != nil || string(b) != "x" {
		t.Fatalf("a/f = %q, %v", b, err)
	}
}
