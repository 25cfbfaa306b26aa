package replicator

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestOpenFilesBounded: a session reading many files keeps at most
// maxOpenFiles of them open, reopens an evicted one on demand, and closes
// all at the end.
func TestOpenFilesBounded(t *testing.T) {
	dir := t.TempDir()
	const n = 3 * maxOpenFiles
	opened := map[int]int{}
	var all []*os.File
	o := openFiles{files: map[int]*os.File{}}
	open := func(i int) func() (*os.File, error) {
		return func() (*os.File, error) {
			opened[i]++
			f, err := os.Create(filepath.Join(dir, "f"))
			all = append(all, f)
			return f, err
		}
	}
	for i := range n {
		if _, err := o.get(i, open(i)); err != nil {
			t.Fatal(err)
		}
		if _, err := o.get(i, open(i)); err != nil { // a second block of the same file
			t.Fatal(err)
		}
	}
	if len(o.files) != maxOpenFiles {
		t.Fatalf("%d files open, want %d", len(o.files), maxOpenFiles)
	}
	if _, err := o.get(0, open(0)); err != nil { // a repair of an evicted file
		t.Fatal(err)
	}
	if opened[0] != 2 || opened[n-1] != 1 {
		t.Fatalf("opens: file 0 %d times, last file %d times", opened[0], opened[n-1])
	}
	o.closeAll()
	for _, f := range all {
		if err := f.Close(); err == nil {
			t.Fatal("a file was still open after closeAll")
		}
	}
}

// TestEchoGuardSweepsRarely: past echoSweepAt entries, the expired ones are
// swept out once per echoTTL/10, not at every note (which made a push of
// 100,000 files quadratic), and old entries do go.
func TestEchoGuardSweepsRarely(t *testing.T) {
	g := newEchoGuard()
	old := time.Now().Add(-2 * echoTTL)
	g.m["old"] = applied{at: old}
	for i := range echoSweepAt + 10 {
		g.note(fmt.Sprintf("f%d", i), nil, fs.ErrNotExist, 1)
	}
	first := g.nextExpire
	if first.IsZero() {
		t.Fatal("no sweep past echoSweepAt entries")
	}
	if _, ok := g.m["old"]; ok {
		t.Fatal("an expired entry survived the sweep")
	}
	for i := range 1000 {
		g.note(fmt.Sprintf("g%d", i), nil, fs.ErrNotExist, 1)
	}
	if g.nextExpire != first {
		t.Fatal("swept again within echoTTL/10")
	}
	if len(g.m) != echoSweepAt+10+1000 {
		t.Fatalf("%d entries, want every recent one kept", len(g.m))
	}
}
