package stage

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"
)

// gatedFlushes makes d's background flushes wait for a value on release
// (the error they return) after saying on started that they began. The
// descriptor a flush got must be open and the temp file's; it is not
// synced, which would only make the test slow.
func gatedFlushes(d *Dir) (started chan struct{}, release chan error) {
	started, release = make(chan struct{}, 8), make(chan error)
	d.flush = func(fd int) error {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return errors.New("flushed descriptor is not a regular file")
		}
		started <- struct{}{}
		return <-release
	}
	return started, release
}

// writeInOrder appends n bytes of b to tmp, a MiB at a time, and adds
// them to sum.
func writeInOrder(t *testing.T, tmp *Temp, n int64, b byte, sum *xxhash.Digest) {
	t.Helper()
	p := bytes.Repeat([]byte{b}, 1<<20)
	for n > 0 {
		q := p[:min(int64(len(p)), n)]
		if _, err := tmp.Write(q); err != nil {
			t.Fatal(err)
		}
		_, _ = sum.Write(q)
		n -= int64(len(q))
	}
}

// TestFlushBehind: a temp file written in order starts a background flush
// once flushEvery bytes were handed to writeback, never a second while one
// runs, and when it ends another at once if flushEvery more were handed
// over meanwhile; Ready waits for the flush in flight; the file then
// commits with what was written.
func TestFlushBehind(t *testing.T) {
	d, base := newDir(t)
	started, release := gatedFlushes(d)
	tmp, err := d.CreateTemp("big")
	must(t, err)
	defer tmp.Abort()

	want := xxhash.New()
	writeInOrder(t, tmp, flushEvery-writebackEvery, 1, want)
	select {
	case <-started:
		t.Fatal("a flush started before flushEvery bytes were handed over")
	default:
	}
	writeInOrder(t, tmp, writebackEvery, 2, want)
	<-started // the first flush runs, and is held
	writeInOrder(t, tmp, flushEvery, 3, want)
	select {
	case <-started:
		t.Fatal("a second flush started while the first ran")
	default:
	}
	release <- nil
	select {
	case <-started: // the bytes handed over meanwhile
	case <-time.After(10 * time.Second):
		t.Fatal("no flush followed the first one")
	}

	waitsForFlush(t, "Ready", func() error { return tmp.Ready(Meta{Mode: 0o644}) }, release)
	errs := d.CommitAll([]*Temp{tmp})
	must(t, errs[0])
	got, err := os.ReadFile(filepath.Join(base, "big"))
	must(t, err)
	if xxhash.Sum64(got) != want.Sum64() {
		t.Error("the committed file is not what was written")
	}
}

// TestFlushBehindError: a background flush that fails fails the file at
// Ready (its data may not be on disk) and leaves the target as it was.
func TestFlushBehindError(t *testing.T) {
	d, base := newDir(t)
	started, release := gatedFlushes(d)
	must(t, os.WriteFile(filepath.Join(base, "big"), []byte("old"), 0o644))
	tmp, err := d.CreateTemp("big")
	must(t, err)
	defer tmp.Abort()
	writeInOrder(t, tmp, flushEvery, 1, xxhash.New())
	<-started
	go func() { release <- unix.EIO }()
	err = tmp.Ready(Meta{Mode: 0o644})
	if !errors.Is(err, unix.EIO) {
		t.Fatalf("Ready after a failed flush: %v, want EIO", err)
	}
	got, err := os.ReadFile(filepath.Join(base, "big"))
	must(t, err)
	if string(got) != "old" {
		t.Errorf("target now holds %d bytes, want the old content", len(got))
	}
	if names := tempNames(t, base); len(names) != 0 {
		t.Errorf("temp files left: %v", names)
	}
}

// TestFlushBehindAbortAndCopy: a copy hands its bytes over as written
// ones do; Abort waits for the flush in flight; an unsynced Dir flushes
// nothing.
func TestFlushBehindAbortAndCopy(t *testing.T) {
	d, base := newDir(t)
	started, release := gatedFlushes(d)
	src, tmp := basisAndTemp(t, d, base, flushEvery)
	cs, err := tmp.CopyFrom(src, 0, 0, flushEvery)
	must(t, err)
	if cs.Cloned == 0 {
		<-started
		waitsForFlush(t, "Abort", tmp.Abort, release)
	} else {
		must(t, tmp.Abort()) // shared blocks: nothing handed over
	}

	u, err := OpenUnsynced(t.TempDir())
	must(t, err)
	defer u.Close()
	if u.flush != nil {
		t.Error("an unsynced Dir flushes in the background")
	}
}

// waitsForFlush checks that call (Ready or Abort of a temp whose gated
// flush runs) does not return before the flush is released, and then
// succeeds.
func waitsForFlush(t *testing.T, what string, call func() error, release chan<- error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	select {
	case err := <-done:
		t.Fatalf("%s returned (%v) while a flush ran", what, err)
	case <-time.After(50 * time.Millisecond):
	}
	release <- nil
	must(t, <-done)
}

// basisAndTemp writes n random bytes as the file "basis" under base and
// returns it open, with a new temp file "new" to copy it into; both are
// closed when the test ends.
func basisAndTemp(t *testing.T, d *Dir, base string, n int) (*os.File, *Temp) {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(base, "basis"), randomBytes(n, uint64(n)), 0o644))
	src, err := d.Open("basis")
	must(t, err)
	t.Cleanup(func() { src.Close() })
	tmp, err := d.CreateTemp("new")
	must(t, err)
	t.Cleanup(func() { tmp.Abort() })
	return src, tmp
}

// tempNames lists the temp files left in dir.
func tempNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	var names []string
	for _, e := range ents {
		if IsTempName(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names
}
