package stage

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Meta is the metadata applied to an entry when it is created or updated.
type Meta struct {
	// Mode holds the permission bits plus fs.ModeSetuid, fs.ModeSetgid and
	// fs.ModeSticky; they are always applied (a zero Mode means 0000),
	// except to symbolic links, whose permissions Linux ignores. Type bits
	// may be zero or must name the kind the operation creates (ModeDir for
	// Mkdir, ModeSymlink for Symlink, ...); Mknod requires them. Otherwise
	// the operation fails with ErrBadMode.
	Mode fs.FileMode
	// Uid and Gid are applied only when SetOwner is true. Changing the
	// owner usually needs root; a failure is returned, not ignored.
	Uid, Gid uint32
	SetOwner bool
	// Mtime and Atime are applied with nanosecond precision. A zero value
	// leaves that time as the system set it.
	Mtime time.Time
	Atime time.Time
}

// checkType returns ErrBadMode unless m's type bits are zero or want.
func (m Meta) checkType(op string, want fs.FileMode) error {
	if t := m.Mode.Type(); t != 0 && t != want {
		return fmt.Errorf("%w: %s with mode %v", ErrBadMode, op, m.Mode)
	}
	return nil
}

// unixPerm converts the permission and special bits of m to a unix mode.
func unixPerm(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		p |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		p |= unix.S_ISVTX
	}
	return p
}

// timespecs returns the utimensat argument for m and whether any time is set.
func (m Meta) timespecs() ([2]unix.Timespec, bool) {
	conv := func(t time.Time) unix.Timespec {
		if t.IsZero() {
			return unix.Timespec{Nsec: unix.UTIME_OMIT}
		}
		return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
	}
	return [2]unix.Timespec{conv(m.Atime), conv(m.Mtime)}, !m.Atime.IsZero() || !m.Mtime.IsZero()
}

// applyMetaFd applies m to the open file fd. Owner first: chown clears the
// setuid and setgid bits, which chmod then sets.
func applyMetaFd(fd int, m Meta) error {
	if m.SetOwner {
		if err := unix.Fchown(fd, int(m.Uid), int(m.Gid)); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if err := unix.Fchmod(fd, unixPerm(m.Mode)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if ts, ok := m.timespecs(); ok {
		// futimens(fd, ts) is utimensat(fd, NULL, ts, 0); x/sys/unix only
		// offers the path form, which cannot pass NULL.
		_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0,
			uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
		if errno != 0 {
			return fmt.Errorf("utimens: %w", errno)
		}
	}
	return nil
}

// applyMetaAt applies m to the entry name in directory dirfd without ever
// following a symbolic link at name.
func applyMetaAt(dirfd int, name string, m Meta) error {
	if m.SetOwner {
		if err := unix.Fchownat(dirfd, name, int(m.Uid), int(m.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if err := chmodNoFollow(dirfd, name, unixPerm(m.Mode)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if ts, ok := m.timespecs(); ok {
		if err := unix.UtimesNanoAt(dirfd, name, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("utimens: %w", err)
		}
	}
	return nil
}

// chmodNoFollow changes the mode of name in dirfd, or does nothing if name
// is a symbolic link. Plain fchmodat follows links, so the entry is pinned
// with an O_PATH descriptor (which opens no device and blocks on no FIFO)
// and changed through it: with fchmodat2(AT_EMPTY_PATH) where the kernel
// has it (6.6+), else through /proc/self/fd as glibc does.
func chmodNoFollow(dirfd int, name string, mode uint32) error {
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return nil
	}
	err = unix.Fchmodat(fd, "", mode, unix.AT_EMPTY_PATH)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) {
		err = chmodProcFd(fd, mode)
	}
	return err
}

// chmodProcFd changes the mode of the inode behind the O_PATH descriptor
// fd through its /proc/self/fd magic link, for kernels without fchmodat2.
func chmodProcFd(fd int, mode uint32) error {
	return unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), mode)
}
