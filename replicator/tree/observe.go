package tree

import (
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/makuo/makuo/replicator/chunk"
)

// readOpts says how much of a file an update reads.
type readOpts struct {
	chunks bool          // compute the chunk list too
	known  *Content      // content vouched for by the caller
	like   []chunk.Chunk // follow it where the entry has no list (ChunksLike)
}

// openBase returns a new descriptor of the base directory.
func (x *Index) openBase() (int, error) {
	f, err := x.fsys.Open(".")
	if err != nil {
		return -1, fmt.Errorf("tree: open base: %w", err)
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("tree: open base: %w", err)
	}
	fd := -1
	cerr := rc.Control(func(rfd uintptr) { fd, err = openDirAt(int(rfd), ".") })
	if cerr != nil {
		return -1, fmt.Errorf("tree: open base: %w", cerr)
	}
	if err != nil {
		return -1, fmt.Errorf("tree: open base: %w", err)
	}
	return fd, nil
}

// updateOne observes the single path rel as one unit of work and reports
// whether it is a directory.
func (x *Index) updateOne(basefd int, rel string, ro readOpts, st *Stats) (bool, error) {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	return x.updateLocked(basefd, rel, ro, st)
}

// updateLocked is updateOne with wmu held.
func (x *Index) updateLocked(basefd int, rel string, ro readOpts, st *Stats) (bool, error) {
	if rel == "." {
		fd, ok, err := x.openDir(basefd, ".", st)
		if ok {
			unix.Close(fd)
		}
		return ok, err
	}
	dir, name := splitRel(rel)
	fd, ok, err := x.openDir(basefd, dir, st)
	if !ok {
		return false, err
	}
	defer unix.Close(fd)
	return x.observeName(fd, rel, name, ro, st)
}

// openDir opens the directory rel one element at a time from the base,
// never following a symbolic link, and records what it finds on the way:
// the metadata of every directory it opens (adding missing ones), the
// removal of a missing or excluded element, the new type of an element
// that is no longer a directory. It returns the descriptor of rel, or
// false if rel is not a directory on disk (the index then reflects that).
// The caller holds wmu.
func (x *Index) openDir(basefd int, rel string, st *Stats) (int, bool, error) {
	fd, err := openDirAt(basefd, ".")
	if err != nil {
		return -1, false, fmt.Errorf("tree: open base: %w", err)
	}
	if err := x.applyDirFd(fd, ".", st); err != nil {
		unix.Close(fd)
		return -1, false, err
	}
	if rel == "." {
		return fd, true, nil
	}
	for i := 0; ; {
		j := strings.IndexByte(rel[i:], '/')
		last := j < 0
		if last {
			j = len(rel)
		} else {
			j += i
		}
		p, name := rel[:j], rel[i:j]
		i = j + 1
		if x.skipName(name) {
			unix.Close(fd)
			x.removeLocked(p, st)
			return -1, false, nil
		}
		nfd, err := openDirAt(fd, name)
		if err != nil {
			defer unix.Close(fd)
			switch err {
			case unix.ENOENT:
				x.removeLocked(p, st)
				return -1, false, nil
			case unix.ENOTDIR, unix.ELOOP:
				_, err := x.observeName(fd, p, name, readOpts{}, st)
				return -1, false, err
			}
			return -1, false, fmt.Errorf("tree: %s: %w", p, err)
		}
		unix.Close(fd)
		fd = nfd
		if x.excluded(p, true) {
			unix.Close(fd)
			x.removeLocked(p, st)
			return -1, false, nil
		}
		if err := x.applyDirFd(fd, p, st); err != nil {
			unix.Close(fd)
			return -1, false, err
		}
		if last {
			return fd, true, nil
		}
	}
}

// applyDirFd records the metadata of the open directory fd as rel. A
// base directory that was removed (link count 0) lists as empty: it fails
// with ErrBaseGone rather than have every entry recorded as deleted.
func (x *Index) applyDirFd(fd int, rel string, st *Stats) error {
	var s unix.Stat_t
	if err := fstat(fd, &s); err != nil {
		return fmt.Errorf("tree: %s: %w", rel, err)
	}
	if rel == "." && s.Nlink == 0 {
		return ErrBaseGone
	}
	o, _ := statObs(&s)
	x.apply(rel, &o, st)
	return nil
}

// observeName observes the entry name of the open directory dirfd, whose
// path is rel, and records it. It reports whether it is a directory. The
// caller holds wmu.
func (x *Index) observeName(dirfd int, rel, name string, ro readOpts, st *Stats) (bool, error) {
	for attempt := 0; ; attempt++ {
		var s unix.Stat_t
		if err := fstatat(dirfd, name, &s); err != nil {
			if err == unix.ENOENT {
				x.removeLocked(rel, st)
				return false, nil
			}
			return false, fmt.Errorf("tree: %s: %w", rel, err)
		}
		o, ok := statObs(&s)
		if !ok || x.skipName(name) || x.excluded(rel, o.kind == KindDir) {
			x.removeLocked(rel, st)
			return false, nil
		}
		var err error
		switch o.kind {
		case KindSymlink:
			o.target, err = readlinkAt(dirfd, name)
			if err == unix.ENOENT || err == unix.EINVAL {
				err = errSwapped
			}
		case KindFile:
			old := x.nodeAt(rel)
			if old.reusable(&o) && (!ro.chunks || o.size <= chunk.MinSize || old.chunks() != nil) {
				o.hash, o.chunks = old.hash, old.chunks()
				break
			}
			if k := ro.known; k != nil && !ro.chunks && o.size == k.Size && o.mtime == k.Mtime {
				// The caller just wrote this content and checked its hash:
				// no need to read it back. It knew the content up to the
				// moment of this stat, so the racy rule applies as to a read.
				o.hash = k.Hash
				if tiles(k.Chunks, o.size) {
					o.chunks = k.Chunks
				}
				if x.racy(&o, time.Now()) {
					o.flags |= flagRacy
				}
				break
			}
			var prev []chunk.Chunk
			if old != nil && old.kind == KindFile {
				prev = old.chunks()
			}
			withChunks := ro.chunks || prev != nil
			if prev == nil && ro.chunks {
				prev = ro.like
			}
			err = x.hashAt(dirfd, name, withChunks, prev, &o, st)
		}
		if err == errSwapped && attempt == 0 {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("tree: %s: %w", rel, err)
		}
		x.apply(rel, &o, st)
		if o.flags&flagUnstable != 0 {
			st.Unstable = append(st.Unstable, rel)
		}
		return o.kind == KindDir, nil
	}
}

func (x *Index) skipName(name string) bool {
	return x.opt.SkipName != nil && x.opt.SkipName(name)
}

func (x *Index) excluded(rel string, isDir bool) bool {
	return x.opt.Exclude != nil && x.opt.Exclude(rel, isDir)
}
