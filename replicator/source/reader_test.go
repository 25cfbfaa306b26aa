package source

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/tree"
)

func scanOf(t *testing.T, base string) (*os.Root, *Scan) {
	t.Helper()
	root, ix := indexOf(t, base)
	sc, err := Build(context.Background(), ix, []string{"."}, Options{Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	return root, sc
}

// indexOf opens base and returns its root and an index of it, not
// scanned yet; the root is closed when the test ends.
func indexOf(t *testing.T, base string) (*os.Root, *tree.Index) {
	t.Helper()
	root, err := os.OpenRoot(base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	ix, err := tree.New(root, tree.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return root, ix
}

func entryIndex(t *testing.T, sc *Scan, path string) int {
	t.Helper()
	for i, e := range sc.Entries {
		if e.Path == path {
			return i
		}
	}
	t.Fatalf("%s not scanned", path)
	return -1
}

// TestReaderRefusesSwaps: a file swapped after the scan for a FIFO, a
// symbolic link or another file is not read: its blocks go out as zeros
// (so the receivers' hash check fails that file alone), and a FIFO never
// blocks the session (issue 12, defect 6).
func TestReaderRefusesSwaps(t *testing.T) {
	base := t.TempDir()
	for _, n := range []string{"fifo", "link", "other", "ok"} {
		if err := os.WriteFile(filepath.Join(base, n), []byte("scanned content"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(base, "secret"), []byte("not offered"), 0o600); err != nil {
		t.Fatal(err)
	}
	root, sc := scanOf(t, base)
	for _, n := range []string{"fifo", "link", "other"} {
		// Renamed away, not removed: the new file must not reuse the inode.
		if err := os.Rename(filepath.Join(base, n), filepath.Join(base, n+".old")); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(base, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("secret", filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "other"), []byte("a new file, new inode"), 0o644); err != nil {
		t.Fatal(err)
	}
	rd := NewReader(root, sc)
	defer rd.Close()
	for _, n := range []string{"fifo", "link", "other"} {
		buf := []byte("xxxxxxxx")
		done := make(chan error, 1)
		go func() { done <- rd.ReadAt(entryIndex(t, sc, n), buf, 0) }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s: read after the swap", n)
			}
			if n != "fifo" && !errors.Is(err, ErrChanged) && !errors.Is(err, syscall.ELOOP) {
				t.Errorf("%s: %v", n, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: reading blocked", n)
		}
		if string(buf) != "\x00\x00\x00\x00\x00\x00\x00\x00" {
			t.Errorf("%s: sent %q, want zeros", n, buf)
		}
		// Reported once; later blocks are zeros without a new error.
		if err := rd.ReadAt(entryIndex(t, sc, n), buf, 0); err != nil {
			t.Errorf("%s: error reported twice: %v", n, err)
		}
	}
	buf := make([]byte, 8)
	if err := rd.ReadAt(entryIndex(t, sc, "ok"), buf, 0); err != nil || string(buf) != "scanned " {
		t.Fatalf("unchanged file: %q %v", buf, err)
	}
}

// TestReaderOpenBounded: a session reading many files keeps at most
// maxOpenFiles of them open, and reopens an evicted one for a repair.
func TestReaderOpenBounded(t *testing.T) {
	base := t.TempDir()
	const n = 3 * maxOpenFiles
	for i := range n {
		if err := os.WriteFile(filepath.Join(base, "f"+string(rune('A'+i%26))+string(rune('a'+i/26))), []byte{byte(i)}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, sc := scanOf(t, base)
	rd := NewReader(root, sc)
	buf := make([]byte, 1)
	for i, e := range sc.Entries {
		if e.Path == "." {
			continue
		}
		if err := rd.ReadAt(i, buf, 0); err != nil {
			t.Fatal(err)
		}
		if rd.Open() > maxOpenFiles {
			t.Fatalf("%d files open", rd.Open())
		}
	}
	if err := rd.ReadAt(1, buf, 0); err != nil { // evicted long ago: reopened
		t.Fatal(err)
	}
	rd.Close()
	if rd.Open() != 0 {
		t.Fatalf("%d files open after Close", rd.Open())
	}
}
