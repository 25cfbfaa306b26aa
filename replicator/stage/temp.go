package stage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"sync/atomic"

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
	fd    int    // the open temp file, -1 while parked or once finished
	off   int64  // Write's offset
	done  bool
	ready bool // closed by Ready, waiting for Dir.CommitAll
	// size is the file's size while exact holds: it was created empty and
	// every change since went through WriteAt or Truncate on this
	// descriptor, so a Truncate to that size has nothing to do. Atomic:
	// WriteAt may run concurrently with itself and ReadAt.
	size  atomic.Int64
	exact atomic.Bool
	// written is where the last writeback ended (startWriteback).
	written atomic.Int64
	flush   flusher // background flushes of what was handed to writeback
}

// writebackEvery is how much a temp file is written before its new pages
// are handed to the disk. Without it the sync before the rename writes a
// big file whole after its last byte arrived, and a push of it ends as
// long after the network is done as the disk takes to write it; with it,
// the disk writes while the data comes in.
const writebackEvery = 8 << 20

// startWriteback starts writing n bytes at off of fd to disk and does not
// wait for them (sync_file_range SYNC_FILE_RANGE_WRITE): durability is
// still the sync's before the rename, which finds little left to write.
func startWriteback(fd int, off, n int64) error {
	return unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// createFlags create a temp file: never an existing entry, never through a
// symbolic link at the temp name.
const createFlags = unix.O_RDWR | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC

// CreateTemp creates an empty temp file, mode 0600, in the directory of
// rel, creating missing parent directories (mode 0755 before umask). It
// fails with ErrSymlinkInPath if a parent element is a symbolic link. rel
// itself is not looked at until Commit, which fails with ErrIsDir if it is
// a directory then (RemoveAll it first).
func (d *Dir) CreateTemp(rel string) (*Temp, error) {
	if err := CheckPath(rel); err != nil {
		return nil, err
	}
	t := &Temp{d: d, rel: rel, dir: path.Dir(rel), name: path.Base(rel), fd: -1}
	err := d.withBase(func(basefd int) error {
		tmp, err := d.newTemp(func(tmp string) error {
			fd, err := d.createAt(basefd, t.dir, tmp)
			if err == nil {
				t.fd = fd
			}
			return err
		})
		t.tmp = tmp
		return err
	})
	if err != nil {
		return nil, opErr("create temp", rel, err)
	}
	t.exact.Store(true)
	return t, nil
}

// createAt creates the temp file tmp in the directory dir below basefd. The
// directory is resolved as inDir does; where openat2 is at hand, resolving
// it and creating the file are one call, and only a failure (a missing
// directory to create, a symbolic link to name) takes the long way.
func (d *Dir) createAt(basefd int, dir, tmp string) (int, error) {
	if dir == "." {
		return unix.Openat(basefd, tmp, createFlags, 0o600)
	}
	if !d.noOpenat2.Load() {
		fd, err := unix.Openat2(basefd, dir+"/"+tmp, &unix.OpenHow{
			Flags:   uint64(createFlags),
			Mode:    0o600,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err == nil || errors.Is(err, unix.EEXIST) {
			return fd, err
		}
	}
	dirfd, err := d.openDir(basefd, dir, dirCreate)
	if err != nil {
		return -1, err
	}
	defer unix.Close(dirfd)
	return unix.Openat(dirfd, tmp, createFlags, 0o600)
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
	t.off = 0
	return t.closeFd()
}

// closeFd closes the temp file's descriptor if open.
func (t *Temp) closeFd() error {
	if t.fd < 0 {
		return nil
	}
	err := unix.Close(t.fd)
	t.fd = -1
	if err != nil {
		return &fs.PathError{Op: "close", Path: t.path(), Err: err}
	}
	return nil
}

// path names the temp file in errors.
func (t *Temp) path() string { return filepath.Join(t.d.name, t.dir, t.tmp) }

// Parked reports whether the temp file's descriptor is closed by Park.
func (t *Temp) Parked() bool { return !t.done && t.fd < 0 }

// file returns the open temp file's descriptor, reopening a parked one.
func (t *Temp) file() (int, error) {
	if t.done {
		return -1, ErrClosed
	}
	return t.open()
}

// open is file without the check for a finished Temp.
func (t *Temp) open() (int, error) {
	if t.fd >= 0 {
		return t.fd, nil
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
		t.fd = fd
		// Whatever it holds now, its size is no longer known here.
		t.exact.Store(false)
		return nil
	})
	if err != nil {
		return -1, opErr("reopen", t.rel, err)
	}
	return t.fd, nil
}

// Write writes at the current offset, as os.File.Write.
func (t *Temp) Write(p []byte) (int, error) {
	n, err := t.WriteAt(p, t.off)
	t.off += int64(n)
	return n, err
}

// WriteAt writes at off, as os.File.WriteAt. Writing past the end extends
// the file; the gap reads as zeros.
func (t *Temp) WriteAt(p []byte, off int64) (int, error) {
	fd, err := t.file()
	if err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "writeat", Path: t.path(), Err: errors.New("negative offset")}
	}
	n := 0
	for len(p) > 0 {
		m, err := unix.Pwrite(fd, p, off)
		if err == unix.EINTR {
			continue
		}
		if err == nil && m == 0 {
			err = io.ErrShortWrite
		}
		if err != nil {
			t.exact.Store(false) // some of it may be written
			return n, &fs.PathError{Op: "write", Path: t.path(), Err: err}
		}
		n += m
		p = p[m:]
		off += int64(m)
	}
	for {
		size := t.size.Load()
		if off <= size || t.size.CompareAndSwap(size, off) {
			break
		}
	}
	t.writeback(fd, off)
	return n, nil
}

// writeback starts the disk writing what was written up to end, once that
// is writebackEvery past the last writeback. Writes behind it (repairs)
// are left to the sync; an error is too, which reports what matters.
func (t *Temp) writeback(fd int, end int64) {
	from := t.written.Load()
	if t.d.writeback == nil || end-from < writebackEvery || !t.written.CompareAndSwap(from, end) {
		return
	}
	_ = t.d.writeback(fd, from, end-from)
	t.flush.handedOver(fd, end-from, t.d.flush)
}

// ReadAt reads the staged content at off, as os.File.ReadAt: fewer bytes
// than asked for come with io.EOF.
func (t *Temp) ReadAt(p []byte, off int64) (int, error) {
	fd, err := t.file()
	if err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "readat", Path: t.path(), Err: errors.New("negative offset")}
	}
	n := 0
	for len(p) > 0 {
		m, err := unix.Pread(fd, p, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, &fs.PathError{Op: "read", Path: t.path(), Err: err}
		}
		if m == 0 {
			return n, io.EOF
		}
		n += m
		p = p[m:]
		off += int64(m)
	}
	return n, nil
}

// Seek sets the offset for the next Write, as os.File.Seek.
func (t *Temp) Seek(offset int64, whence int) (int64, error) {
	fd, err := t.file()
	if err != nil {
		return 0, err
	}
	switch whence {
	case io.SeekCurrent:
		offset += t.off
		whence = io.SeekStart
	case io.SeekStart, io.SeekEnd:
	default:
		return 0, &fs.PathError{Op: "seek", Path: t.path(), Err: unix.EINVAL}
	}
	off, err := unix.Seek(fd, offset, whence)
	if err != nil {
		return 0, &fs.PathError{Op: "seek", Path: t.path(), Err: err}
	}
	t.off = off
	return off, nil
}

// Truncate sets the size of the staged file, cutting or zero-extending it.
func (t *Temp) Truncate(size int64) error {
	fd, err := t.file()
	if err != nil {
		return err
	}
	if t.exact.Load() && t.size.Load() == size {
		return nil
	}
	err = unix.Ftruncate(fd, size)
	for err == unix.EINTR {
		err = unix.Ftruncate(fd, size)
	}
	if err != nil {
		return &fs.PathError{Op: "truncate", Path: t.path(), Err: err}
	}
	t.size.Store(size)
	return nil
}

// Size returns the current size of the staged file.
func (t *Temp) Size() (int64, error) {
	fd, err := t.file()
	if err != nil {
		return 0, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, &fs.PathError{Op: "stat", Path: t.path(), Err: err}
	}
	return st.Size, nil
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
		_ = t.closeFd()
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
	fd, err := t.open()
	if err != nil {
		return err
	}
	if err := applyMetaFd(fd, meta); err != nil {
		return err
	}
	if err := t.waitFlush(); err != nil {
		return err
	}
	if err := t.d.fsync(fd); err != nil {
		return err
	}
	if err := t.closeFd(); err != nil {
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
	_ = t.waitFlush() // the file goes: its flush's outcome does not matter
	cerr := t.closeFd()
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
