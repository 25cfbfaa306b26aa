package stage

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Dir is a base directory opened for staging. Its methods are safe for
// concurrent use.
type Dir struct {
	name string          // as given to Open
	base *os.File        // the base directory, every resolution starts here
	rc   syscall.RawConn // base's, to use its descriptor safely against Close

	noOpenat2 atomic.Bool // openat2 is missing: resolve element by element
	// syncfs flushes the filesystem holding the open file fd, fsync one
	// file or directory; a test records the calls, OpenUnsynced skips them.
	syncfs func(fd int) error
	fsync  func(fd int) error
	// writeback starts writing a range of a file to disk without waiting
	// (Temp.WriteAt); nil in OpenUnsynced.
	writeback func(fd int, off, n int64) error
	// flush makes a file's data durable (fdatasync), in the background
	// while it is written (Temp.flush); nil in OpenUnsynced.
	flush func(fd int) error

	mu   sync.Mutex
	live map[string]struct{} // temp names in use by this Dir

	copyCaps copyCaps // what Temp.CopyFrom found unsupported, per filesystem pair
}

// Open opens the base directory, which must exist and be a directory. The
// name given may lead through symbolic links: only paths below the base
// are resolved without following them.
func Open(base string) (*Dir, error) {
	fi, err := os.Stat(base)
	if err != nil {
		return nil, fmt.Errorf("stage: open %q: %w", base, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("stage: open %q: %w", base, ErrNotDir)
	}
	f, err := os.OpenFile(base, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("stage: open %q: %w", base, err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stage: open %q: %w", base, err)
	}
	return &Dir{name: base, base: f, rc: rc, syncfs: unix.Syncfs, fsync: unix.Fsync, writeback: startWriteback, flush: unix.Fdatasync, live: make(map[string]struct{})}, nil
}

// OpenUnsynced is Open for simulations and tests that replay thousands of
// sessions: nothing is flushed to disk (no fsync, no syncfs), so nothing
// survives a crash of the machine. Never for a daemon.
func OpenUnsynced(base string) (*Dir, error) {
	d, err := Open(base)
	if err != nil {
		return nil, err
	}
	nop := func(int) error { return nil }
	d.syncfs, d.fsync, d.writeback, d.flush = nop, nop, nil, nil
	return d, nil
}

// Close releases the base directory. Temps still open keep their files but
// can no longer be committed.
func (d *Dir) Close() error {
	if err := d.base.Close(); err != nil {
		return fmt.Errorf("stage: close: %w", err)
	}
	return nil
}

// Base returns the base directory name given to Open.
func (d *Dir) Base() string { return d.name }

// Mkdir makes rel a directory with meta, creating missing parents. If rel
// already is a directory only its metadata is updated; if it exists as
// anything else Mkdir fails with ErrNotDir. Creating entries inside a
// directory changes its mtime, so a caller replicating directory times sets
// them (with SetMeta) after filling the directory.
func (d *Dir) Mkdir(rel string, meta Meta) error {
	if err := CheckPath(rel); err != nil {
		return err
	}
	err := meta.checkType("mkdir", fs.ModeDir)
	if err == nil {
		err = d.inParent(rel, dirCreate, func(dirfd int, name string) error {
			created := true
			if err := unix.Mkdirat(dirfd, name, 0o700); err != nil {
				if !errors.Is(err, unix.EEXIST) {
					return err
				}
				created = false
				var st unix.Stat_t
				if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					return err
				}
				if st.Mode&unix.S_IFMT != unix.S_IFDIR {
					return ErrNotDir
				}
			}
			if err := applyMetaAt(dirfd, name, meta); err != nil {
				return err
			}
			if created {
				return d.fsync(dirfd)
			}
			return nil
		})
	}
	return opErr("mkdir", rel, err)
}

// Symlink atomically makes rel a symbolic link to target, with meta's
// owner and times (a link's mode is ignored). target is stored exactly as
// given; it may be relative, absolute or dangling, and it is never followed
// here. It must be non-empty, at most MaxPathLen bytes and free of NUL
// bytes, else ErrBadTarget.
func (d *Dir) Symlink(rel, target string, meta Meta) error {
	if err := CheckPath(rel); err != nil {
		return err
	}
	if target == "" || len(target) > MaxPathLen || strings.IndexByte(target, 0) >= 0 {
		return fmt.Errorf("stage: symlink %q: %w", rel, ErrBadTarget)
	}
	err := meta.checkType("symlink", fs.ModeSymlink)
	if err == nil {
		err = d.inParent(rel, dirCreate, func(dirfd int, name string) error {
			return d.install(dirfd, name, &meta, func(tmp string) error {
				return unix.Symlinkat(target, dirfd, tmp)
			})
		})
	}
	return opErr("symlink", rel, err)
}

// Link atomically makes rel a hard link to the existing entry existing
// (both relative to the base). If existing is a symbolic link the link
// itself is linked, not its target. Linking a directory fails. If rel
// already is a link to the same inode nothing changes.
func (d *Dir) Link(rel, existing string) error {
	if err := CheckPath(rel); err != nil {
		return err
	}
	if err := CheckPath(existing); err != nil {
		return err
	}
	err := d.inParent(existing, dirPath, func(olddirfd int, oldname string) error {
		return d.inParent(rel, dirCreate, func(dirfd int, name string) error {
			return d.install(dirfd, name, nil, func(tmp string) error {
				return unix.Linkat(olddirfd, oldname, dirfd, tmp, 0)
			})
		})
	})
	return opErr("link", rel, err)
}

// Mknod atomically makes rel a FIFO, socket, or character or block device,
// as selected by meta.Mode's type bits (fs.ModeNamedPipe, fs.ModeSocket,
// fs.ModeDevice|fs.ModeCharDevice, fs.ModeDevice), with meta applied. dev
// is the Linux device number (unix.Mkdev, Stat_t.Rdev), ignored for FIFOs
// and sockets. Device nodes need root (CAP_MKNOD).
func (d *Dir) Mknod(rel string, meta Meta, dev uint64) error {
	if err := CheckPath(rel); err != nil {
		return err
	}
	var typ uint32
	switch meta.Mode.Type() {
	case fs.ModeNamedPipe:
		typ = unix.S_IFIFO
	case fs.ModeSocket:
		typ = unix.S_IFSOCK
	case fs.ModeDevice | fs.ModeCharDevice:
		typ = unix.S_IFCHR
	case fs.ModeDevice:
		typ = unix.S_IFBLK
	default:
		return opErr("mknod", rel, fmt.Errorf("%w: mknod with mode %v", ErrBadMode, meta.Mode))
	}
	err := d.inParent(rel, dirCreate, func(dirfd int, name string) error {
		return d.install(dirfd, name, &meta, func(tmp string) error {
			return unix.Mknodat(dirfd, tmp, typ|0o600, int(dev))
		})
	})
	return opErr("mknod", rel, err)
}

// SetMeta applies meta to the existing entry rel without following it if
// it is a symbolic link. If meta.Mode has type bits they must match the
// entry's type, else ErrBadMode.
func (d *Dir) SetMeta(rel string, meta Meta) error {
	if err := CheckPath(rel); err != nil {
		return err
	}
	err := d.inParent(rel, dirPath, func(dirfd int, name string) error {
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if err := meta.checkType("setmeta", fileType(st.Mode)); err != nil {
			return err
		}
		return applyMetaAt(dirfd, name, meta)
	})
	return opErr("setmeta", rel, err)
}

// Remove removes rel if it is a non-directory or an empty directory; a
// symbolic link is removed, not its target. A missing rel (or missing
// parent) is not an error; a symbolic link in a parent element fails with
// ErrSymlinkInPath. A non-empty directory fails with an error wrapping
// syscall.ENOTEMPTY.
func (d *Dir) Remove(rel string) error {
	if err := CheckPath(rel); err != nil {
		return err
	}
	err := d.inParent(rel, dirRead, func(dirfd int, name string) error {
		err := unix.Unlinkat(dirfd, name, 0)
		if errors.Is(err, unix.EISDIR) {
			err = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
		}
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return err
		}
		return d.fsync(dirfd)
	})
	if isMissingParent(err) {
		err = nil
	}
	return opErr("remove", rel, err)
}

// RemoveAll removes rel and, if it is a directory, everything below it. It
// never follows a symbolic link: one in rel's parents fails with
// ErrSymlinkInPath, one at rel or below it is removed itself. A missing
// rel (or missing parent) is not an error. Filesystems mounted below rel
// are emptied, and the mount point is then left (EBUSY).
func (d *Dir) RemoveAll(rel string) error {
	if err := CheckPath(rel); err != nil {
		return err
	}
	err := d.inParent(rel, dirRead, func(dirfd int, name string) error {
		err := removeAllAt(dirfd, name)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return err
		}
		return d.fsync(dirfd)
	})
	if isMissingParent(err) {
		err = nil
	}
	return opErr("removeall", rel, err)
}

// Open opens rel for reading, typically as the local basis of a delta
// transfer. rel itself must be a regular file, not a symbolic link, else
// ErrNotRegular; FIFOs and devices are never opened.
func (d *Dir) Open(rel string) (*os.File, error) {
	if err := CheckPath(rel); err != nil {
		return nil, err
	}
	var f *os.File
	err := d.inParent(rel, dirPath, func(dirfd int, name string) error {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ELOOP) {
			return ErrNotRegular
		}
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(fd)
			return ErrNotRegular
		}
		if err := unix.SetNonblock(fd, false); err != nil {
			unix.Close(fd)
			return err
		}
		f = os.NewFile(uintptr(fd), filepath.Join(d.name, rel))
		return nil
	})
	if err != nil {
		return nil, opErr("open", rel, err)
	}
	return f, nil
}

// Lstat returns information about rel without following it if it is a
// symbolic link. A missing rel fails with fs.ErrNotExist; a symbolic link
// in a parent element with ErrSymlinkInPath (the entry the caller means
// is not there: the link stands where a directory should), a non-directory
// there with ErrNotDir and syscall.ENOTDIR. The FileInfo's Sys is a
// *syscall.Stat_t; compare files with SameFile (os.SameFile takes only
// the os package's own).
func (d *Dir) Lstat(rel string) (fs.FileInfo, error) {
	if err := CheckPath(rel); err != nil {
		return nil, err
	}
	return d.lstat(rel)
}

// Readlink returns the target of the symbolic link rel.
func (d *Dir) Readlink(rel string) (string, error) {
	if err := CheckPath(rel); err != nil {
		return "", err
	}
	var target string
	err := d.inParent(rel, dirPath, func(dirfd int, name string) error {
		for size := MaxPathLen + 1; ; size *= 2 {
			buf := make([]byte, size)
			n, err := unix.Readlinkat(dirfd, name, buf)
			if err != nil {
				return err
			}
			if n < size {
				target = string(buf[:n])
				return nil
			}
		}
	})
	if err != nil {
		return "", opErr("readlink", rel, err)
	}
	return target, nil
}

// Free returns the bytes available to this process on the filesystem of
// the base directory (math.MaxUint64 if it cannot tell).
func (d *Dir) Free() uint64 {
	var st unix.Statfs_t
	if err := d.withBase(func(basefd int) error { return unix.Fstatfs(basefd, &st) }); err != nil {
		return math.MaxUint64
	}
	return st.Bavail * uint64(st.Bsize)
}

// CleanStale walks the whole base tree, without following symbolic links,
// and removes the non-directory entries whose names match the temp-file
// pattern: leftovers of a crash. Temps of operations in progress on this
// Dir are kept. It continues past errors and returns them joined, with the
// number of entries removed.
func (d *Dir) CleanStale() (removed int, err error) {
	var errs []error
	queue := []string{"."}
	for len(queue) > 0 {
		dir := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		err := d.inDir(dir, dirRead, func(dirfd int) error {
			ents, err := readDirFd(dirfd)
			for _, e := range ents {
				switch {
				case e.typ == fs.ModeDir:
					queue = append(queue, path.Join(dir, e.name))
				case IsTempName(e.name) && !d.isLive(e.name):
					err := unix.Unlinkat(dirfd, e.name, 0)
					switch {
					case err == nil:
						removed++
					case !errors.Is(err, unix.ENOENT):
						errs = append(errs, opErr("cleanstale", path.Join(dir, e.name), err))
					}
				}
			}
			return err
		})
		// A directory listed above may be gone, or replaced by a symbolic
		// link, which is not followed, when its turn comes.
		if err != nil && !(dir != "." && (isMissingParent(err) || errors.Is(err, ErrSymlinkInPath))) {
			errs = append(errs, opErr("cleanstale", dir, err))
		}
	}
	return removed, errors.Join(errs...)
}

// install creates an entry under a fresh temp name in dirfd with mk,
// applies meta if not nil, renames it over name and fsyncs the directory.
// On failure the temp entry is removed.
func (d *Dir) install(dirfd int, name string, meta *Meta, mk func(tmp string) error) error {
	tmp, err := d.newTemp(mk)
	if err != nil {
		return err
	}
	defer d.release(tmp)
	err = d.rename(dirfd, tmp, name, meta)
	// Also after a successful rename: when tmp and name are hard links to
	// the same inode, rename(2) succeeds without removing tmp.
	if uerr := unix.Unlinkat(dirfd, tmp, 0); err == nil && uerr != nil && !errors.Is(uerr, unix.ENOENT) {
		err = uerr
	}
	return err
}

// rename applies meta (if not nil) to tmp, renames it over name and fsyncs
// the directory.
func (d *Dir) rename(dirfd int, tmp, name string, meta *Meta) error {
	if meta != nil {
		if err := applyMetaAt(dirfd, tmp, *meta); err != nil {
			return err
		}
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
		if errors.Is(err, unix.EISDIR) {
			return ErrIsDir
		}
		return err
	}
	return d.fsync(dirfd)
}

// newTemp picks a fresh temp name, marks it live and creates the entry
// with mk, retrying on a name collision. The caller releases the name.
func (d *Dir) newTemp(mk func(tmp string) error) (string, error) {
	for range 8 {
		tmp := newTempName()
		d.mu.Lock()
		_, taken := d.live[tmp]
		d.live[tmp] = struct{}{}
		d.mu.Unlock()
		if taken {
			continue
		}
		err := mk(tmp)
		if err == nil {
			return tmp, nil
		}
		d.release(tmp)
		if !errors.Is(err, unix.EEXIST) {
			return "", err
		}
	}
	return "", fmt.Errorf("no free temp name: %w", unix.EEXIST)
}

func (d *Dir) release(tmp string) {
	d.mu.Lock()
	delete(d.live, tmp)
	d.mu.Unlock()
}

func (d *Dir) isLive(tmp string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.live[tmp]
	return ok
}

// fileType converts the type bits of a unix st_mode to fs.FileMode.
func fileType(m uint32) fs.FileMode {
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	}
	return 0
}

// opErr adds the operation and path to err, or returns nil.
func opErr(op, rel string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("stage: %s %q: %w", op, rel, err)
}
