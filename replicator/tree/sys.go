package tree

import (
	"errors"
	"io"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"

	"github.com/makuo/makuo/replicator/chunk"
)

// Flags of the descriptors this package opens. Nothing is ever opened
// through a symbolic link (O_NOFOLLOW on single path elements), and a
// regular file swapped for a FIFO between stat and open does not block
// (O_NONBLOCK; the fstat after open then sees the swap).
const (
	dirFlags  = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fileFlags = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC
)

// Buffer sizes for reading content and directory listings.
const (
	readBufSize = 256 << 10
	dentBufSize = 32 << 10
)

// errSwapped: the entry changed type between stat and open; observe again.
var errSwapped = errors.New("entry changed type while observed")

// ioState holds the buffers mutators reuse. It is guarded by Index.wmu.
type ioState struct {
	buf       []byte
	dents     []byte
	digest    *xxhash.Digest
	chunker   *chunk.Chunker
	noNoatime bool // O_NOATIME was refused (not the owner, no CAP_FOWNER)
}

// key is the cache key of a file version.
type key struct {
	dev, ino           uint64
	size, mtime, ctime int64
}

func keyOf(st *unix.Stat_t) key {
	return key{uint64(st.Dev), st.Ino, st.Size, st.Mtim.Nano(), st.Ctim.Nano()}
}

// statObs converts a stat result. It returns false for types that are not
// indexed (sockets).
func statObs(st *unix.Stat_t) (obs, bool) {
	var k Kind
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		k = KindFile
	case unix.S_IFDIR:
		k = KindDir
	case unix.S_IFLNK:
		k = KindSymlink
	case unix.S_IFIFO:
		k = KindFifo
	case unix.S_IFCHR:
		k = KindCharDev
	case unix.S_IFBLK:
		k = KindBlockDev
	default:
		return obs{}, false
	}
	o := obs{
		kind: k, mode: uint16(st.Mode & 0o7777), uid: st.Uid, gid: st.Gid, nlink: uint32(st.Nlink),
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(), dev: uint64(st.Dev), ino: st.Ino,
	}
	switch k {
	case KindFile:
		o.size = st.Size
	case KindCharDev, KindBlockDev:
		o.rdev = uint64(st.Rdev)
	}
	return o, true
}

// openDirAt opens the directory name (one path element) in dirfd.
func openDirAt(dirfd int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, dirFlags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// fstatat stats name in dirfd without following a symbolic link.
func fstatat(dirfd int, name string, st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}

// fstat stats the open descriptor fd.
func fstat(fd int, st *unix.Stat_t) error {
	for {
		err := unix.Fstat(fd, st)
		if err != unix.EINTR {
			return err
		}
	}
}

// readNames returns the names in the open directory fd, unsorted, without
// "." and "..".
func (s *ioState) readNames(fd int) ([]string, error) {
	if s.dents == nil {
		s.dents = make([]byte, dentBufSize)
	}
	var names []string
	for {
		n, err := unix.ReadDirent(fd, s.dents)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(s.dents[:n], -1, names)
	}
}

// readlinkAt returns the target of the symbolic link name in dirfd.
func readlinkAt(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 4 {
		b := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, b)
		if err == unix.EINTR {
			size /= 4
			continue
		}
		if err != nil {
			return "", err
		}
		if n < size || size >= 1<<16 {
			return string(b[:n]), nil
		}
	}
}

// openFile opens the regular file name in dirfd for reading, with
// O_NOATIME where allowed.
func (s *ioState) openFile(dirfd int, name string) (int, error) {
	for {
		flags := fileFlags
		if !s.noNoatime {
			flags |= unix.O_NOATIME
		}
		fd, err := unix.Openat(dirfd, name, flags, 0)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EPERM && !s.noNoatime:
			s.noNoatime = true
			continue
		}
		return fd, err
	}
}

// hashAt reads the regular file name in dirfd and stores in o what it
// found: the metadata of the open file after the read, the content hash,
// the chunk list if withChunks and the file is larger than chunk.MinSize,
// and flagUnstable or flagRacy. prev, if set, is the chunk list of the
// file's previous content: the chunks it still holds are hashed, not
// rolled over (chunk.Chunker.Follow). A file whose key or length changes
// during the read is read again once; if it changes again it is flagged
// unstable. It returns errSwapped if name is no longer a regular file.
func (x *Index) hashAt(dirfd int, name string, withChunks bool, prev []chunk.Chunk, o *obs, st *Stats) error {
	s := &x.io
	fd, err := s.openFile(dirfd, name)
	if err != nil {
		if err == unix.ELOOP || err == unix.ENOENT || err == unix.ENXIO || err == unix.ENODEV {
			return errSwapped
		}
		return err
	}
	defer unix.Close(fd)
	var before, after unix.Stat_t
	if err := fstat(fd, &before); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		if before.Mode&unix.S_IFMT != unix.S_IFREG {
			return errSwapped
		}
		start := time.Now()
		h, chunks, n, err := s.read(fd, withChunks && before.Size > chunk.MinSize, prev, before.Size)
		st.FilesHashed++
		st.BytesRead += n
		if err != nil {
			return err
		}
		if err := fstat(fd, &after); err != nil {
			return err
		}
		*o, _ = statObs(&after)
		o.hash, o.chunks = h, chunks
		if keyOf(&after) == keyOf(&before) && n == after.Size {
			if x.racy(o, start) {
				o.flags |= flagRacy
			}
			return nil
		}
		if attempt == 1 {
			o.flags |= flagUnstable
			return nil
		}
		before = after
	}
}

// racy reports whether the content of o, known as of the moment at, may
// still change without changing its key. A write after at lands in at's
// timestamp tick or later: it changes the ctime unless that falls in the
// same tick as the observed one, and it changes the mtime unless the
// observed mtime is in that tick too. So a file is racy only when both
// times are within RacyWindow of at. Files written with an older mtime
// (everything a receiver applies: it keeps the sender's mtime) are not,
// which is git's rule for its index; the one write it misses is one that
// also resets the mtime to its old value within the same tick, as it
// misses for git and for rsync's quick check.
func (x *Index) racy(o *obs, at time.Time) bool {
	w := x.opt.RacyWindow
	if w <= 0 {
		return false
	}
	since := at.UnixNano() - w.Nanoseconds()
	return o.ctime > since && o.mtime > since
}

// read hashes the whole content of fd from offset 0 and, if withChunks,
// chunks it, following prev, the chunk list of an earlier content, for a
// file of size bytes. It returns the hash, the chunks and the bytes read.
func (s *ioState) read(fd int, withChunks bool, prev []chunk.Chunk, size int64) (uint64, []chunk.Chunk, int64, error) {
	r := &fdReader{fd: fd}
	if withChunks {
		if s.chunker == nil {
			s.chunker = chunk.New(r)
		} else {
			s.chunker.Reset(r)
		}
		if len(prev) > 0 {
			s.chunker.Follow(prev, size-prev[len(prev)-1].End())
		}
		var chunks []chunk.Chunk
		for {
			c, _, err := s.chunker.Next()
			if err == io.EOF {
				return s.chunker.Sum(), slices.Clip(chunks), r.off, nil
			}
			if err != nil {
				return 0, nil, r.off, err
			}
			chunks = append(chunks, c)
		}
	}
	if s.buf == nil {
		s.buf = make([]byte, readBufSize)
		s.digest = xxhash.New()
	}
	s.digest.Reset()
	for {
		n, err := r.Read(s.buf)
		_, _ = s.digest.Write(s.buf[:n]) // never fails
		if err == io.EOF {
			return s.digest.Sum64(), nil, r.off, nil
		}
		if err != nil {
			return 0, nil, r.off, err
		}
	}
}

// fdReader reads a descriptor with pread from offset 0, so a second read
// of the same descriptor needs no seek.
type fdReader struct {
	fd  int
	off int64
}

func (r *fdReader) Read(p []byte) (int, error) {
	for {
		n, err := unix.Pread(r.fd, p, r.off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 && len(p) > 0 {
			return 0, io.EOF
		}
		r.off += int64(n)
		return n, nil
	}
}
