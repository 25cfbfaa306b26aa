package stage

import (
	"io/fs"
	"path"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fileInfo is the fs.FileInfo of Lstat, built from fstatat(2) as os.Lstat
// builds its own: Sys returns the *syscall.Stat_t.
type fileInfo struct {
	name string
	mode fs.FileMode
	sys  syscall.Stat_t
}

func (fi *fileInfo) Name() string       { return fi.name }
func (fi *fileInfo) Size() int64        { return fi.sys.Size }
func (fi *fileInfo) Mode() fs.FileMode  { return fi.mode }
func (fi *fileInfo) ModTime() time.Time { return time.Unix(fi.sys.Mtim.Unix()) }
func (fi *fileInfo) IsDir() bool        { return fi.mode.IsDir() }
func (fi *fileInfo) Sys() any           { return &fi.sys }

// SameFile reports whether a and b, from Lstat or a listing's Info, are
// the same file (device and inode), as os.SameFile does for os.FileInfo,
// which it cannot tell from these.
func SameFile(a, b fs.FileInfo) bool {
	x, ok1 := a.Sys().(*syscall.Stat_t)
	y, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && x.Dev == y.Dev && x.Ino == y.Ino
}

// The unix and syscall packages describe the same kernel struct stat.
var (
	_ [unsafe.Sizeof(unix.Stat_t{}) - unsafe.Sizeof(syscall.Stat_t{})]byte
	_ [unsafe.Sizeof(syscall.Stat_t{}) - unsafe.Sizeof(unix.Stat_t{})]byte
)

// lstatAt stats the entry name in dirfd without following it.
func lstatAt(dirfd int, name string) (*fileInfo, error) {
	fi := &fileInfo{name: name}
	if err := unix.Fstatat(dirfd, name, (*unix.Stat_t)(unsafe.Pointer(&fi.sys)), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, err
	}
	fi.mode = fs.FileMode(fi.sys.Mode&0o777) | fileType(fi.sys.Mode)
	if fi.sys.Mode&unix.S_ISUID != 0 {
		fi.mode |= fs.ModeSetuid
	}
	if fi.sys.Mode&unix.S_ISGID != 0 {
		fi.mode |= fs.ModeSetgid
	}
	if fi.sys.Mode&unix.S_ISVTX != 0 {
		fi.mode |= fs.ModeSticky
	}
	return fi, nil
}

// lstat is Lstat for a path known to be well formed, which may also be
// "." (the base) or hold a temp name.
func (d *Dir) lstat(rel string) (fs.FileInfo, error) {
	var fi fs.FileInfo
	err := d.inParent(rel, dirPath, func(dirfd int, name string) error {
		st, err := lstatAt(dirfd, name)
		if err == nil {
			fi = st
		}
		return err
	})
	if err != nil {
		return nil, opErr("lstat", rel, err)
	}
	return fi, nil
}

// LstatCache answers Lstat for many paths in a row, as for the entries of
// an offer, most of which share their directory with the one before:
// the directory is resolved as Lstat resolves it (never through a
// symbolic link) when a path in it is asked for after one elsewhere, and
// kept open for the paths that follow in it, so that each costs one
// fstatat(2). Meanwhile it is that directory that answers, even if it is
// moved away or replaced (by a symbolic link too, not followed) after it
// was resolved: a LstatCache only reads, for decisions that every write
// checks again by resolving its path anew. It is owned by one goroutine;
// Close releases it.
type LstatCache struct {
	d   *Dir
	dir string // the directory fd holds
	fd  int    // -1: none
}

// LstatCache returns an empty LstatCache on d.
func (d *Dir) LstatCache() *LstatCache { return &LstatCache{d: d, fd: -1} }

// Lstat is Dir.Lstat, from the directory kept if rel is in it.
func (c *LstatCache) Lstat(rel string) (fs.FileInfo, error) {
	if err := CheckPath(rel); err != nil {
		return nil, err
	}
	dir := path.Dir(rel)
	if c.fd < 0 || c.dir != dir {
		c.Close()
		err := c.d.withBase(func(basefd int) error {
			fd, err := c.d.openDir(basefd, dir, dirPath)
			if err == nil {
				c.fd, c.dir = fd, dir
			}
			return err
		})
		if err != nil {
			return nil, opErr("lstat", rel, err)
		}
	}
	fi, err := lstatAt(c.fd, path.Base(rel))
	if err != nil {
		return nil, opErr("lstat", rel, err)
	}
	return fi, nil
}

// Close releases the directory kept; the LstatCache may be used again.
func (c *LstatCache) Close() {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd, c.dir = -1, ""
	}
}
