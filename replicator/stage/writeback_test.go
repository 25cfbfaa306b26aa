package stage

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestWriteback: a temp file written in order hands each writebackEvery
// bytes to the disk once, from where the last handover ended; writes
// behind it (a repair) hand over nothing; the file's content is what was
// written; an unsynced Dir hands over nothing.
func TestWriteback(t *testing.T) {
	d, base := newDir(t)
	calls := recordWritebacks(d)
	tmp, err := d.CreateTemp("big")
	must(t, err)
	const piece = 1 << 20
	var want []byte
	for i := range 2*writebackEvery/piece + 3 {
		p := bytes.Repeat([]byte{byte(i)}, piece)
		want = append(want, p...)
		if _, err := tmp.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	// A repair behind the last handover.
	fix := bytes.Repeat([]byte{0xee}, 100)
	copy(want[5:], fix)
	if _, err := tmp.WriteAt(fix, 5); err != nil {
		t.Fatal(err)
	}
	wantCalls := []call{{0, writebackEvery}, {writebackEvery, writebackEvery}}
	if !slices.Equal(*calls, wantCalls) {
		t.Errorf("writebacks %v, want %v", *calls, wantCalls)
	}
	must(t, tmp.Commit(Meta{Mode: 0o644}))
	got, err := os.ReadFile(filepath.Join(base, "big"))
	must(t, err)
	if !bytes.Equal(got, want) {
		t.Error("the committed file is not what was written")
	}

	u, err := OpenUnsynced(t.TempDir())
	must(t, err)
	defer u.Close()
	if u.writeback != nil {
		t.Error("an unsynced Dir starts writebacks")
	}
	ut, err := u.CreateTemp("big")
	must(t, err)
	defer ut.Abort()
	if _, err := ut.Write(make([]byte, writebackEvery+1)); err != nil {
		t.Fatal(err)
	}
}

// TestCopyWriteback: a copy into a temp file of at least writebackEvery
// bytes that the kernel or this process copied (not cloned) starts a
// background flush at once instead of an inline writeback; a smaller one
// waits for the sync.
func TestCopyWriteback(t *testing.T) {
	d, base := newDir(t)
	calls := recordWritebacks(d)
	started, release := gatedFlushes(d)
	src, tmp := basisAndTemp(t, d, base, writebackEvery+4096)
	_, err := tmp.CopyFrom(src, 0, 0, 4096)
	must(t, err)
	select {
	case <-started:
		t.Fatal("a copy of 4 KiB started a flush")
	case <-time.After(20 * time.Millisecond):
	}
	cs, err := tmp.CopyFrom(src, 4096, 4096, writebackEvery)
	must(t, err)
	if len(*calls) != 0 {
		t.Errorf("copies started inline writebacks %v", *calls)
	}
	if cs.Cloned > 0 {
		return // shared blocks: nothing to write
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatalf("no flush after copying %+v", cs)
	}
	release <- nil
	must(t, tmp.Abort())
}

// call is one writeback a test saw.
type call struct{ off, n int64 }

// recordWritebacks makes d's writebacks be recorded, and still made: the
// real call must work on a temp file.
func recordWritebacks(d *Dir) *[]call {
	var calls []call
	real := d.writeback
	d.writeback = func(fd int, off, n int64) error {
		calls = append(calls, call{off, n})
		return real(fd, off, n)
	}
	return &calls
}
