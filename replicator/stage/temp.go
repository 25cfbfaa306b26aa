package stage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Temp is a regular file being staged for a target path. Write it (Write,
// WriteAt, Truncate), optionally read it back (ReadAt) to verify it, then
// Commit it into place or Abort it. A common pattern is
//
//	t, err := d.CreateTemp(rel)
//	if err != nil { ... }
//	defer t.Abort() // no-op after Commit
//	... write ...
//	return t.Commit(meta)
type Temp struct {
	d     *Dir
	rel   string // target, relative to the base
	dir   string // path.Dir(rel)
	name  string // path.Base(rel)
	tmp   string // temp file name in dir
	f     *os.File
	done  bool
	ready bool // closed by Ready, waiting for Dir.CommitAll
}

// CreateTemp creates an empty temp file, mode 0600, in the directory of
// rel, creating missing parent directories (mode 0755 before umask). It
// fails with ErrIsDir if rel is a directory (RemoveAll it first), and with
// ErrSymlinkInPath if a parent element is a symbolic link. rel itself is
// not touched until Commit.
func (d *Dir) CreateTemp(rel string) (*Temp, error) {
	if err := CheckPath(rel); err != nil {
		return nil, err
	}
	t := &Temp{d: d, rel: rel, dir: path.Dir(rel), name: path.Base(rel)}
	err := d.inParent(rel, dirCreate, func(dirfd int, name string) error {
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return ErrIsDir
		}
		var fd int
		tmp, err := d.newTemp(func(tmp string) (err error) {
			fd, err = unix.Openat(dirfd, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
			return err
		})
		if err != nil {
			return err
		}
		t.tmp = tmp
		t.f = os.NewFile(uintptr(fd), filepath.Join(d.name, t.dir, tmp))
		return nil
	})
	if err != nil {
		return nil, opErr("create temp", rel, err)
	}
	return t, nil
}

// Target returns the path, relative to the base, that Commit replaces.
func (t *Temp) Target() string { return t.rel }

// Name returns the temp file's path relative to the base.
func (t *Temp) Name() string { return path.Join(t.dir, t.tmp) }

// Park closes the temp file's descriptor and keeps what is staged: the
// next operation reopens it, resolving its directory again from the base,
// and fails, as Commit would, if the directory was moved or replaced
// meanwhile (ErrSymlinkInPath if by a symbolic link). A receiver parks the
// files that wait for repairs, so that thousands of them do not hold
// thousands of descriptors. Write's offset starts again at 0 after a Park.
func (t *Temp) Park() error {
	if t.done {
		return ErrClosed
	}
	if t.f == nil {
		return nil
	}
	err := t.f.Close()
	t.f = nil
	return err
}

// Parked reports whether the temp file's descriptor is closed by Park.
func (t *Temp) Parked() bool { return !t.done && t.f == nil }

// file returns the open temp file, reopening a parked one.
func (t *Temp) file() (*os.File, error) {
	if t.done {
		return nil, ErrClosed
	}
	return t.open()
}

// open is file without the check for a finished Temp.
func (t *Temp) open() (*os.File, error) {
	if t.f != nil {
		return t.f, nil
	}
	err := t.d.inDir(t.dir, dirPath, func(dirfd int) error {
		// O_NONBLOCK: whatever was swapped in under the temp name, opening
		// it must not wait; it is refused below unless a regular file.
		fd, err := unix.Openat(dirfd, t.tmp, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(fd)
			return fmt.Errorf("temp file %s was replaced", t.tmp)
		}
		t.f = os.NewFile(uintptr(fd), filepath.Join(t.d.name, t.dir, t.tmp))
		return nil
	})
	if err != nil {
		return nil, opErr("reopen", t.rel, err)
	}
	return t.f, nil
}

// Write writes at the current offset, as os.File.Write.
func (t *Temp) Write(p []byte) (int, error) {
	f, err := t.file()
	if err != nil {
		return 0, err
	}
	return f.Write(p)
}

// WriteAt writes at off, as os.File.WriteAt. Writing past the end extends
// the file; the gap reads as zeros.
func (t *Temp) WriteAt(p []byte, off int64) (int, error) {
	f, err := t.file()
	if err != nil {
		return 0, err
	}
	return f.WriteAt(p, off)
}

// ReadAt reads the staged content at off, as os.File.ReadAt.
func (t *Temp) ReadAt(p []byte, off int64) (int, error) {
	f, err := t.file()
	if err != nil {
		return 0, err
	}
	return f.ReadAt(p, off)
}

// Seek sets the offset for the next Write, as os.File.Seek.
func (t *Temp) Seek(offset int64, whence int) (int64, error) {
	f, err := t.file()
	if err != nil {
		return 0, err
	}
	return f.Seek(offset, whence)
}

// Truncate sets the size of the staged file, cutting or zero-extending it.
func (t *Temp) Truncate(size int64) error {
	f, err := t.file()
	if err != nil {
		return err
	}
	return f.Truncate(size)
}

// Size returns the current size of the staged file.
func (t *Temp) Size() (int64, error) {
	f, err := t.file()
	if err != nil {
		return 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// Commit puts the staged file in place of the target: it sets owner (if
// meta.SetOwner), mode and times from meta, fsyncs the file, renames it
// over the target and fsyncs the directory. When Commit returns nil the new
// file is durable; readers of the target saw the old or the new file,
// never a partial one. meta.Mode must have no type bits (a regular file).
// The target may be any non-directory, including a symbolic link, which is
// replaced itself; a directory target fails with ErrIsDir. On failure the
// temp file is removed and the target is left as it was. The directory is
// resolved again from the base at Commit: if it was moved or replaced (say
// by a symbolic link, ErrSymlinkInPath) since CreateTemp, Commit fails and
// a temp file it can no longer reach is left for CleanStale. After Commit,
// successful or not, the Temp is finished.
func (t *Temp) Commit(meta Meta) error {
	if t.done {
		return opErr("commit", t.rel, ErrClosed)
	}
	t.done = true
	defer t.d.release(t.tmp)
	if err := t.commit(meta); err != nil {
		if t.f != nil {
			_ = t.f.Close()
		}
		_ = t.d.inDir(t.dir, dirPath, func(dirfd int) error {
			return unix.Unlinkat(dirfd, t.tmp, 0)
		})
		return opErr("commit", t.rel, err)
	}
	return nil
}

func (t *Temp) commit(meta Meta) error {
	if err := meta.checkType("commit", 0); err != nil {
		return err
	}
	if _, err := t.open(); err != nil {
		return err
	}
	if err := applyMetaFd(int(t.f.Fd()), meta); err != nil {
		return err
	}
	if err := t.d.fsync(int(t.f.Fd())); err != nil {
		return err
	}
	if err := t.f.Close(); err != nil {
		return err
	}
	// The directory is resolved again: if a symbolic link replaced it or
	// one of its parents since CreateTemp, this fails.
	return t.d.inDir(t.dir, dirRead, func(dirfd int) error {
		return t.d.rename(dirfd, t.tmp, t.name, nil)
	})
}

// Abort discards the staged file. It returns nil if the Temp was already
// committed or aborted, so it can be deferred.
func (t *Temp) Abort() error {
	if t.ready {
		t.abortReady()
		return nil
	}
	if t.done {
		return nil
	}
	t.done = true
	defer t.d.release(t.tmp)
	var cerr error
	if t.f != nil {
		cerr = t.f.Close()
	}
	uerr := t.d.inDir(t.dir, dirPath, func(dirfd int) error {
		if err := unix.Unlinkat(dirfd, t.tmp, 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
	if err := errors.Join(cerr, uerr); err != nil {
		return opErr("abort", t.rel, fmt.Errorf("temp %q: %w", t.tmp, err))
	}
	return nil
}

// abortParked gives up a temp file that could not be reopened: it is
// removed if still reachable, and its name released.
func (t *Temp) abortParked() {
	_ = t.d.inDir(t.dir, dirPath, func(dirfd int) error { return unix.Unlinkat(dirfd, t.tmp, 0) })
	t.d.release(t.tmp)
}
