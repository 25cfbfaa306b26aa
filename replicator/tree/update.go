package tree

import (
	"errors"
	"fmt"
	"io/fs"

	"golang.org/x/sys/unix"

	"github.com/makuo/makuo/replicator/chunk"
)

// Update brings the entry of the single path rel up to date: it stats rel
// (and reads it if it is a file whose key changed), adds, replaces or
// removes its entry, and refreshes the directories on the way to it. A
// directory's contents are left as they are; use UpdateTree for those.
func (x *Index) Update(rel string) (Stats, error) {
	var st Stats
	rel, err := cleanRel(rel)
	if err != nil {
		return st, err
	}
	basefd, err := x.openBase()
	if err != nil {
		return st, err
	}
	defer unix.Close(basefd)
	_, err = x.updateOne(basefd, rel, readOpts{}, &st)
	st.Entries = x.Len()
	return st, err
}

// Content describes a regular file's content as its writer knows it.
type Content struct {
	Size  int64
	Mtime int64 // nanoseconds since the epoch
	Hash  uint64
	// Chunks, if set, is the content's chunk list as the writer verified
	// it, every chunk's hash checked against its bytes: the index keeps
	// it as if it had chunked the file itself. A list that does not tile
	// Size is ignored.
	Chunks []chunk.Chunk
}

// Written is a file the caller has just written and verified.
type Written struct {
	Path string
	Content
}

// UpdateWritten is Update for files whose content the caller has just
// written and verified: a path that is a regular file of its Content's
// size and mtime takes Content.Hash (and Content.Chunks) without being
// read; one that changed since is read as Update would. Consecutive files of one directory share
// the walk to it, so give them in path order. Errors of single files are
// joined; the others are still recorded.
func (x *Index) UpdateWritten(files []Written) (Stats, error) {
	var st Stats
	basefd, err := x.openBase()
	if err != nil {
		return st, err
	}
	defer unix.Close(basefd)
	x.wmu.Lock()
	defer x.wmu.Unlock()
	var errs []error
	dirfd, cur := -1, ""
	closeDir := func() {
		if dirfd >= 0 {
			unix.Close(dirfd)
		}
		dirfd, cur = -1, ""
	}
	defer closeDir()
	for i := range files {
		rel, err := cleanRel(files[i].Path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ro := readOpts{known: &files[i].Content}
		if rel == "." {
			_, err = x.updateLocked(basefd, rel, ro, &st)
			errs = append(errs, err)
			continue
		}
		dir, name := splitRel(rel)
		if dirfd < 0 || dir != cur {
			closeDir()
			fd, ok, err := x.openDir(basefd, dir, &st)
			if !ok {
				errs = append(errs, err)
				continue
			}
			dirfd, cur = fd, dir
		}
		_, err = x.observeName(dirfd, rel, name, ro, &st)
		errs = append(errs, err)
	}
	st.Entries = x.Len()
	return st, errors.Join(errs...)
}

// Remove drops rel and everything below it from the index, without
// touching the disk. Removing "." empties the index.
func (x *Index) Remove(rel string) (Stats, error) {
	var st Stats
	rel, err := cleanRel(rel)
	if err != nil {
		return st, err
	}
	x.wmu.Lock()
	defer x.wmu.Unlock()
	x.removeLocked(rel, &st)
	st.Entries = x.Len()
	return st, nil
}

// Chunks returns the up-to-date entry of the regular file rel with its
// chunk list in Entry.Chunks. The list is computed on the first call (one
// read of the file, which also refreshes Hash) and cached with the entry
// until the file's key changes, and saved by Save. A file of at most
// chunk.MinSize bytes has no chunk list (nil): it travels whole.
//
// If rel is not a regular file the index is updated to what it is and
// Chunks fails with ErrNotFile, or an fs.ErrNotExist error if it is gone.
func (x *Index) Chunks(rel string) (Entry, error) { return x.ChunksLike(rel, nil) }

// ChunksLike is Chunks for a file whose content is likely close to the
// content like is the chunk list of (a receiver's older copy of a file,
// given the new version's list): where the file must be chunked and its
// entry holds no list to follow, the chunks like names are hashed instead
// of rolled over (chunk.Chunker.Follow), with the same result.
func (x *Index) ChunksLike(rel string, like []chunk.Chunk) (Entry, error) {
	var st Stats
	rel, err := cleanRel(rel)
	if err != nil {
		return Entry{}, err
	}
	if rel == "." {
		return Entry{}, fmt.Errorf("%w: the base directory", ErrNotFile)
	}
	basefd, err := x.openBase()
	if err != nil {
		return Entry{}, err
	}
	defer unix.Close(basefd)
	x.wmu.Lock()
	defer x.wmu.Unlock()
	if _, err := x.updateLocked(basefd, rel, readOpts{chunks: true, like: like}, &st); err != nil {
		return Entry{}, err
	}
	n := x.nodeAt(rel)
	switch {
	case n == nil:
		return Entry{}, fmt.Errorf("tree: %s: %w", rel, fs.ErrNotExist)
	case n.kind != KindFile:
		return Entry{}, fmt.Errorf("%w: %s is a %s", ErrNotFile, rel, n.kind)
	}
	return n.entry(rel), nil
}

// tiles reports whether chunks cover [0, size) in order and could have
// come from the chunker (the decoder of a saved index checks the same):
// sizes within limits, only the last below MinSize, for a file large
// enough to have a chunk list.
func tiles(chunks []chunk.Chunk, size int64) bool {
	if size <= chunk.MinSize || len(chunks) == 0 {
		return false
	}
	var off int64
	for i, c := range chunks {
		if c.Offset != off || c.Size == 0 || c.Size > chunk.MaxSize || i < len(chunks)-1 && c.Size < chunk.MinSize {
			return false
		}
		off = c.End()
	}
	return off == size
}
