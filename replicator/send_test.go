package replicator

import (
	"os"
	"path/filepath"
	"testing"

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
