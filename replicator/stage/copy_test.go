package stage

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/makuo/makuo/internal/mounttest"
)

// reflinks tells which of mounttest.Types share extents.
var reflinks = map[string]bool{"xfs": true, "btrfs": true}

// mountedDir opens a base directory on a fresh filesystem of type fstype.
func mountedDir(t *testing.T, fstype string) (*Dir, string) {
	t.Helper()
	base := filepath.Join(mounttest.Mount(t, fstype), "base")
	if err := os.Mkdir(base, 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := Open(base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, base
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed)})
	r.Read(b)
	return b
}

// TestCopyFrom builds files from a basis with CopyFrom on each filesystem
// type: the content is byte-identical everywhere, the aligned middles of
// ranges are clones where the filesystem shares extents (and the extent
// map says so), and elsewhere the kernel copies.
func TestCopyFrom(t *testing.T) {
	const size = 8 << 20
	basis := randomBytes(size, 1)
	fresh := randomBytes(64<<10, 2)
	type piece struct {
		srcOff, n int64 // from the basis; n 0: the fresh bytes
	}
	tests := []struct {
		name   string
		pieces []piece
		clone  int64 // bytes cloned where the filesystem can
	}{
		{"whole file", []piece{{0, size}}, size},
		{"same phase, unaligned ends", []piece{{0, 1000}, {1000, 3<<20 + 123}}, 3<<20 - 4096},
		{"other phase", []piece{{100, 1 << 20}}, 0},
		// The fresh bytes end 777 bytes into a block and 64 KiB later: the
		// middles of both basis ranges are clones.
		{"overwrite in the middle", []piece{{0, 4<<20 + 777}, {0, 0}, {4<<20 + 777 + 64<<10, 4<<20 - 777 - 64<<10}}, 8<<20 - 68<<10},
		{"less than a block", []piece{{4096, 100}}, 0},
	}
	for _, fstype := range mounttest.Types {
		t.Run(fstype, func(t *testing.T) {
			d, base := mountedDir(t, fstype)
			if err := os.WriteFile(filepath.Join(base, "basis"), basis, 0o644); err != nil {
				t.Fatal(err)
			}
			src, err := d.Open("basis")
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			for _, tt := range tests {
				tmp, err := d.CreateTemp("out")
				if err != nil {
					t.Fatal(err)
				}
				var want []byte
				var cs CopyStats
				for _, p := range tt.pieces {
					off := int64(len(want))
					if p.n == 0 {
						if _, err := tmp.WriteAt(fresh, off); err != nil {
							t.Fatal(err)
						}
						want = append(want, fresh...)
						continue
					}
					got, err := tmp.CopyFrom(src, p.srcOff, off, p.n)
					if err != nil {
						t.Fatalf("%s: %v", tt.name, err)
					}
					if got.Cloned+got.InKernel+got.Written != p.n {
						t.Errorf("%s: stats %+v do not add up to %d", tt.name, got, p.n)
					}
					cs.Add(got)
					want = append(want, basis[p.srcOff:p.srcOff+p.n]...)
				}
				if err := tmp.Commit(Meta{Mode: 0o644}); err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(base, "out")
				if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%s: content differs (%v)", tt.name, err)
				}
				x, err := mounttest.ExtentsOf(out)
				if err != nil && !(fstype == "tmpfs" && errors.Is(err, syscall.EOPNOTSUPP)) {
					t.Fatal(err) // tmpfs has no extents to map
				}
				switch {
				case reflinks[fstype] && cs.Cloned != tt.clone:
					t.Errorf("%s: %d bytes cloned, want %d (%+v)", tt.name, cs.Cloned, tt.clone, cs)
				case reflinks[fstype] && x.Shared < cs.Cloned:
					t.Errorf("%s: extent map shows %d shared bytes, %d were cloned", tt.name, x.Shared, cs.Cloned)
				case !reflinks[fstype] && (cs.Cloned != 0 || x.Shared != 0):
					t.Errorf("%s: %d bytes cloned, %d shared on %s", tt.name, cs.Cloned, x.Shared, fstype)
				case cs.Written != 0:
					t.Errorf("%s: %d bytes read and written back, copy_file_range works on %s", tt.name, cs.Written, fstype)
				}
			}
			w := capsOf(t, d, base)
			if w.noClone == reflinks[fstype] || w.noRange {
				t.Errorf("remembered %+v on %s", w, fstype)
			}
		})
	}
}

// capsOf returns what d remembers of copies within the filesystem of base.
func capsOf(t *testing.T, d *Dir, base string) copyWays {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(base, &st); err != nil {
		t.Fatal(err)
	}
	w, _ := d.copyCaps.get(devPair{st.Dev, st.Dev})
	return w
}

// TestCopyFromFallback: where neither call works, CopyFrom reads and
// writes, and a source shorter than the range is an error.
func TestCopyFromFallback(t *testing.T) {
	d, base := newDir(t)
	basis := randomBytes(1<<20+5, 3)
	if err := os.WriteFile(filepath.Join(base, "basis"), basis, 0o644); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(base, &st); err != nil {
		t.Fatal(err)
	}
	d.copyCaps.update(devPair{st.Dev, st.Dev}, func(w *copyWays) { w.bsize, w.noClone, w.noRange = 4096, true, true })
	src, err := d.Open("basis")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	tmp, err := d.CreateTemp("out")
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Abort()
	cs, err := tmp.CopyFrom(src, 0, 0, int64(len(basis)))
	if err != nil || cs != (CopyStats{Written: int64(len(basis))}) {
		t.Fatalf("CopyFrom = %+v, %v; want every byte written", cs, err)
	}
	got := make([]byte, len(basis)+1)
	if n, _ := tmp.ReadAt(got, 0); !bytes.Equal(got[:n], basis) {
		t.Error("content differs")
	}
	if _, err := tmp.CopyFrom(src, 10, 0, int64(len(basis))); !errors.Is(err, ErrShortSource) {
		t.Errorf("CopyFrom past the source's end = %v, want ErrShortSource", err)
	}
}

// TestCopyFromAnotherFilesystem: from a file on another filesystem (a
// mount below the base), nothing can be cloned; the kernel copies if it
// can across the two, else the bytes are read and written, and what
// failed is remembered for that pair.
func TestCopyFromAnotherFilesystem(t *testing.T) {
	d, _ := mountedDir(t, "tmpfs")
	other := mounttest.Mount(t, "xfs")
	basis := randomBytes(2<<20+99, 4)
	p := filepath.Join(other, "basis")
	if err := os.WriteFile(p, basis, 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for range 2 {
		tmp, err := d.CreateTemp("out")
		if err != nil {
			t.Fatal(err)
		}
		cs, err := tmp.CopyFrom(src, 0, 0, int64(len(basis)))
		if err != nil || cs.Cloned != 0 || cs.InKernel+cs.Written != int64(len(basis)) {
			t.Fatalf("CopyFrom = %+v, %v", cs, err)
		}
		got := make([]byte, len(basis)+1)
		if n, _ := tmp.ReadAt(got, 0); !bytes.Equal(got[:n], basis) {
			t.Error("content differs")
		}
		tmp.Abort()
	}
	var sst, dst syscall.Stat_t
	if err := syscall.Stat(p, &sst); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(d.Base(), &dst); err != nil {
		t.Fatal(err)
	}
	if w, ok := d.copyCaps.get(devPair{sst.Dev, dst.Dev}); !ok || !w.noClone {
		t.Errorf("remembered %+v (%v): want clones marked unsupported between xfs and tmpfs", w, ok)
	}
}
