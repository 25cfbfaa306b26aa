package stage

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// dirMode says how the directory handed to an operation is opened.
type dirMode int

const (
	// dirPath opens it O_PATH: enough for *at calls on its entries, which
	// then need no read permission on it (as lstat(2) needs none).
	dirPath dirMode = iota
	// dirRead opens it for reading: for fsync, syncfs and listings.
	dirRead
	// dirCreate is dirRead, creating missing directories on the way.
	dirCreate
)

// Flags of the opens that resolve a path. O_NOFOLLOW with O_DIRECTORY
// makes a symbolic link in that position fail instead of being followed.
const (
	walkFlags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	readFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
)

// withBase calls fn with the base directory's descriptor, which stays
// valid while fn runs even if Close is called meanwhile.
func (d *Dir) withBase(fn func(basefd int) error) error {
	var err error
	if cerr := d.rc.Control(func(fd uintptr) { err = fn(int(fd)) }); cerr != nil {
		return cerr
	}
	return err
}

// inParent resolves the directory holding rel (see inDir) and calls fn
// with its descriptor and rel's last element, which fn must not follow.
func (d *Dir) inParent(rel string, mode dirMode, fn func(dirfd int, name string) error) error {
	return d.inDir(path.Dir(rel), mode, func(dirfd int) error {
		return fn(dirfd, path.Base(rel))
	})
}

// inDir opens the directory dir ("." for the base), relative to the base,
// without following a symbolic link in any of its elements, and calls fn
// with its descriptor.
func (d *Dir) inDir(dir string, mode dirMode, fn func(dirfd int) error) error {
	return d.withBase(func(basefd int) error {
		if dir == "." && mode == dirPath {
			// The base's own descriptor serves *at calls; a listing,
			// which moves its offset, opens one of its own.
			return fn(basefd)
		}
		fd, err := d.openDir(basefd, dir, mode)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return fn(fd)
	})
}

// openDir is inDir's resolution. openat2 with RESOLVE_NO_SYMLINKS does it
// in one call where the kernel has it; a failure is redone element by
// element, which also names the element at fault, and so does a missing
// element to create.
func (d *Dir) openDir(basefd int, dir string, mode dirMode) (int, error) {
	last := readFlags
	if mode == dirPath {
		last = walkFlags
	}
	if dir == "." {
		return unix.Openat(basefd, ".", last, 0)
	}
	if !d.noOpenat2.Load() {
		fd, err := unix.Openat2(basefd, dir, &unix.OpenHow{
			Flags:   uint64(last),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		switch {
		case err == nil:
			return fd, nil
		case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.E2BIG), errors.Is(err, unix.EPERM):
			// No openat2 (before Linux 5.6, or filtered by seccomp).
			d.noOpenat2.Store(true)
		case errors.Is(err, unix.ENOENT) && mode != dirCreate, errors.Is(err, unix.EACCES):
			return -1, err
		}
	}
	return walkDir(basefd, dir, last, mode == dirCreate)
}

// walkDir opens dir below basefd one element at a time, each with
// O_NOFOLLOW|O_DIRECTORY on the descriptor of the element above, the last
// one with flags. With create it makes each missing element with mkdirat
// on that descriptor, mode 0755 before umask, and fsyncs the directory it
// was made in so that a later commit below it is durable.
func walkDir(basefd int, dir string, flags int, create bool) (int, error) {
	fd := basefd
	release := func() {
		if fd != basefd {
			unix.Close(fd)
		}
	}
	elems := strings.Split(dir, "/")
	for i, elem := range elems {
		f := walkFlags
		if i == len(elems)-1 {
			f = flags
		}
		nfd, err := unix.Openat(fd, elem, f, 0)
		if create && errors.Is(err, unix.ENOENT) {
			if err = mkdirSync(fd, elem); err == nil || errors.Is(err, unix.EEXIST) {
				nfd, err = unix.Openat(fd, elem, f, 0)
			}
		}
		if err != nil {
			err = elemErr(fd, elem, strings.Join(elems[:i+1], "/"), err)
			release()
			return -1, err
		}
		release()
		fd = nfd
	}
	return fd, nil
}

// mkdirSync makes the directory name in dirfd (possibly an O_PATH
// descriptor) and fsyncs dirfd.
func mkdirSync(dirfd int, name string) error {
	if err := unix.Mkdirat(dirfd, name, 0o755); err != nil {
		return err
	}
	fd, err := unix.Openat(dirfd, ".", readFlags, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fsync(fd)
}

// elemErr explains why the path element elem in dirfd (the path prefix
// p) could not be opened as a directory.
func elemErr(dirfd int, elem, p string, err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		var st unix.Stat_t
		if unix.Fstatat(dirfd, elem, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFLNK:
				return fmt.Errorf("%w: path element %q is a symbolic link", ErrSymlinkInPath, p)
			case unix.S_IFDIR:
				// Replaced by a directory since: report the error as is.
			default:
				return fmt.Errorf("%w: path element %q: %w", ErrNotDir, p, unix.ENOTDIR)
			}
		}
	}
	return fmt.Errorf("path element %q: %w", p, err)
}

// isMissingParent reports whether err says a path element does not exist
// or is not a directory, so the entry below cannot exist either. A
// symbolic link in the path is not "missing": it is reported.
func isMissingParent(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR)
}

// removeAllAt removes name in dirfd and, if it is a directory, everything
// below it, each directory opened with O_NOFOLLOW on the descriptor of the
// one above: a symbolic link is unlinked, never entered. An error below
// name names the entry, relative to name.
func removeAllAt(dirfd int, name string) error {
	return removeAt(dirfd, name, "")
}

// removeAt is removeAllAt for the entry rel below the removed one ("" for
// that one itself).
func removeAt(dirfd int, name, rel string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if errors.Is(err, unix.EISDIR) {
		err = removeDirAt(dirfd, name, rel)
	}
	if err != nil && rel != "" && !errors.Is(err, errBelow) {
		err = fmt.Errorf("%w %q: %w", errBelow, rel, err)
	}
	return err
}

// errBelow marks an error already named by removeAt.
var errBelow = errors.New("below:")

// removeDirAt empties the directory name in dirfd and removes it. The
// listing is read again until it comes back empty, in case entries are
// added meanwhile.
func removeDirAt(dirfd int, name, rel string) error {
	fd, err := unix.Openat(dirfd, name, readFlags, 0)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		// Replaced by a non-directory since the unlink: unlink that.
		return unix.Unlinkat(dirfd, name, 0)
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for range 8 {
		ents, err := readDirFd(fd)
		if err != nil {
			return err
		}
		if len(ents) == 0 {
			return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
		}
		for _, e := range ents {
			if err := removeAt(fd, e.name, path.Join(rel, e.name)); err != nil && !errors.Is(err, unix.ENOENT) {
				return err
			}
		}
		if _, err := unix.Seek(fd, 0, 0); err != nil {
			return err
		}
	}
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}
