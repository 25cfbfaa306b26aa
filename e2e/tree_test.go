package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/makuo/makuo/replicator/stage"
)

// treeSpec says what makeTree creates.
type treeSpec struct {
	smallFiles int   // 1 KiB-ish files spread over 20 directories
	bigSize    int64 // one large file of random content (0: none)
}

// makeTree fills dir with every kind of entry makuo replicates: files of
// several sizes (empty too), directories, deep paths, symlinks (relative,
// absolute, dangling), hard links, a FIFO and a device node, odd names,
// modes with set-id bits, foreign owners and nanosecond mtimes.
func makeTree(t *testing.T, dir string, spec treeSpec) {
	t.Helper()
	rng := rand.New(rand.NewPCG(42, 7))
	write := func(rel string, size int, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	for i := range spec.smallFiles {
		write(fmt.Sprintf("small/d%02d/f%04d.txt", i%20, i), 512+rng.IntN(1024), 0o644)
	}
	if spec.bigSize > 0 {
		writeRandom(t, filepath.Join(dir, "big.bin"), spec.bigSize, 1)
	}
	write("empty", 0, 0o644)
	write("exact-block", 1408, 0o600)
	write("setuid-prog", 3000, 0o4755|os.ModeSetuid)
	write("name with spaces.txt", 10, 0o644)
	write("new\nline", 10, 0o644)
	write("latin1-\xe9t\xe9", 10, 0o644)
	write(strings.Repeat("n", 255), 10, 0o644)
	deep := ""
	for i := range 30 {
		deep = filepath.Join(deep, fmt.Sprintf("level%02d", i))
	}
	write(filepath.Join(deep, "bottom.txt"), 100, 0o644)
	write("owned", 100, 0o640)
	must(t, os.Lchown(filepath.Join(dir, "owned"), 1234, 5678))
	must(t, os.Chmod(filepath.Join(dir, "setuid-prog"), 0o4755|os.ModeSetuid))
	must(t, os.Symlink("empty", filepath.Join(dir, "link-rel")))
	must(t, os.Symlink("/etc/hostname", filepath.Join(dir, "link-abs")))
	must(t, os.Symlink("does/not/exist", filepath.Join(dir, "link-dangling")))
	must(t, os.Mkdir(filepath.Join(dir, "links"), 0o750))
	must(t, os.Link(filepath.Join(dir, "owned"), filepath.Join(dir, "links", "hard1")))
	must(t, os.Link(filepath.Join(dir, "owned"), filepath.Join(dir, "links", "hard2")))
	must(t, unix.Mkfifo(filepath.Join(dir, "fifo"), 0o620))
	must(t, unix.Mknod(filepath.Join(dir, "null-dev"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, os.Mkdir(filepath.Join(dir, "empty-dir"), 0o700))
	// Nanosecond mtimes everywhere, directories last (children change them).
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		ts := time.Unix(1_600_000_000+int64(rng.IntN(1e6)), int64(rng.IntN(1e9)))
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		tv := []unix.Timespec{unix.NsecToTimespec(ts.UnixNano()), unix.NsecToTimespec(ts.UnixNano())}
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, tv, unix.AT_SYMLINK_NOFOLLOW))
		return nil
	})
	slices.Reverse(dirs)
	for _, p := range dirs {
		ts := time.Unix(1_600_000_000+int64(rng.IntN(1e6)), int64(rng.IntN(1e9)))
		must(t, os.Chtimes(p, ts, ts))
	}
}

// writeRandom writes size pseudo-random bytes (seeded) to path, quickly.
func writeRandom(t *testing.T, path string, size int64, seed uint64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := make([]byte, 1<<20)
	for size > 0 {
		for i := 0; i < len(buf); i += 8 {
			v := rng.Uint64()
			for k := range 8 {
				buf[i+k] = byte(v >> (8 * k))
			}
		}
		n := min(int64(len(buf)), size)
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
		size -= n
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// treeNode describes one entry of a tree for comparison.
type treeNode struct {
	Mode   os.FileMode
	Uid    uint32
	Gid    uint32
	Mtime  int64
	Size   int64
	Sum    string
	Target string
	Rdev   uint64
	Link   string // first path (in walk order) sharing this inode, for hard links
}

// treeSnapshot describes every entry under dir, by relative path.
func treeSnapshot(t *testing.T, dir string) map[string]treeNode {
	t.Helper()
	out := map[string]treeNode{}
	inodes := map[uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while walking (a transfer in progress)
		}
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if stage.IsTempName(d.Name()) {
			return nil // a transfer in progress; its target is what counts
		}
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // renamed away meanwhile
		}
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		n := treeNode{Mode: fi.Mode(), Uid: st.Uid, Gid: st.Gid, Mtime: st.Mtim.Nano(), Rdev: st.Rdev}
		switch {
		case fi.Mode().IsRegular():
			n.Size = fi.Size()
			if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
				return nil // deleted meanwhile
			}
			n.Sum = fileSum(t, p)
			if st.Nlink > 1 {
				if first, ok := inodes[st.Ino]; ok {
					n.Link = first
				} else {
					inodes[st.Ino] = rel
				}
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			n.Target, _ = os.Readlink(p)
		}
		out[rel] = n
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return out
}

func fileSum(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// sameTree fails the test with the first differences between want and the
// tree at dir.
func sameTree(t *testing.T, name string, want map[string]treeNode, dir string) {
	t.Helper()
	if diffs := treeDiffs(want, treeSnapshot(t, dir)); len(diffs) > 0 {
		if len(diffs) > 10 {
			diffs = append(diffs[:10], fmt.Sprintf("... and %d more", len(diffs)-10))
		}
		t.Fatalf("%s: tree differs from the sender's:\n%s", name, strings.Join(diffs, "\n"))
	}
}

// treeDiffs lists how got differs from want, sorted.
func treeDiffs(want, got map[string]treeNode) []string {
	var diffs []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("missing %q", p))
		case g != w:
			diffs = append(diffs, fmt.Sprintf("%q differs:\n\twant %+v\n\t got %+v", p, w, g))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("extra %q", p))
		}
	}
	slices.Sort(diffs)
	return diffs
}
