package mounttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Types are the filesystem types Mount makes: the two with shared extents
// first, then two without.
var Types = []string{"xfs", "btrfs", "ext4", "tmpfs"}

// imageSize is the size of the sparse image file behind a loop mount:
// XFS refuses less than 300 MB.
const imageSize = 512 << 20

// mkfs is the command that makes each loop-mounted type, reflinks on.
var mkfs = map[string][]string{
	"xfs":   {"mkfs.xfs", "-q", "-f", "-m", "reflink=1"},
	"btrfs": {"mkfs.btrfs", "-q", "-f"},
	"ext4":  {"mkfs.ext4", "-q", "-F"},
}

// Mount makes a filesystem of type fstype (one of Types) in t's temp dir,
// mounts it and returns the mount point; t's cleanup unmounts it. Without
// root or the type's mkfs, t is skipped, or failed in CI.
func Mount(t testing.TB, fstype string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		cannotRun(t, "mounting a %s needs root", fstype)
	}
	top := t.TempDir()
	dir := filepath.Join(top, "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if fstype == "tmpfs" {
		run(t, "mount", "-t", "tmpfs", "-o", "size=512m", "mounttest", dir)
	} else {
		cmd, ok := mkfs[fstype]
		if !ok {
			t.Fatalf("mounttest: unknown filesystem type %q", fstype)
		}
		if _, err := exec.LookPath(cmd[0]); err != nil {
			cannotRun(t, "%s is not installed (make deps DEPS=test)", cmd[0])
		}
		img := filepath.Join(top, fstype+".img")
		if err := os.WriteFile(img, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, imageSize); err != nil {
			t.Fatal(err)
		}
		run(t, cmd[0], append(cmd[1:], img)...)
		run(t, "mount", "-o", "loop", img, dir)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// cannotRun skips t for the reason given, except in CI, where every test
// must run and it fails t instead.
func cannotRun(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("cannot run in CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// Extents sums up a file's extent map.
type Extents struct {
	Mapped int64 // bytes in extents (holes and the unwritten rest excluded)
	Shared int64 // of them, bytes in extents flagged shared with another file
}

// The kernel's FIEMAP interface (linux/fiemap.h).
const (
	fsIocFiemap       = 0xC020660B // _IOWR('f', 11, struct fiemap)
	fiemapFlagSync    = 0x1
	fiemapExtentLast  = 0x1
	fiemapExtentShare = 0x2000
)

type fiemapExtent struct {
	Logical, Physical, Length uint64
	_                         [2]uint64
	Flags                     uint32
	_                         [3]uint32
}

type fiemap struct {
	Start, Length           uint64
	Flags, Mapped, Count, _ uint32
	Extents                 [64]fiemapExtent
}

// ExtentsOf reads the extent map of the file at path (FS_IOC_FIEMAP,
// after syncing the file), clipped to the file's size.
func ExtentsOf(path string) (Extents, error) {
	var x Extents
	f, err := os.Open(path)
	if err != nil {
		return x, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return x, err
	}
	size := uint64(fi.Size())
	var m fiemap
	for start := uint64(0); start < size; {
		m = fiemap{Start: start, Length: size - start, Flags: fiemapFlagSync, Count: uint32(len(m.Extents))}
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&m))); errno != 0 {
			return x, fmt.Errorf("fiemap %s: %w", path, errno)
		}
		if m.Mapped == 0 {
			break
		}
		last := false
		for _, e := range m.Extents[:m.Mapped] {
			n := min(e.Logical+e.Length, size) - min(e.Logical, size)
			x.Mapped += int64(n)
			if e.Flags&fiemapExtentShare != 0 {
				x.Shared += int64(n)
			}
			start = e.Logical + e.Length
			last = last || e.Flags&fiemapExtentLast != 0
		}
		if last {
			break
		}
	}
	return x, nil
}
