package tree

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/makuo/makuo/replicator/chunk"
)

// maxErrors bounds the per-path errors one Scan returns; past it only a
// count is kept.
const maxErrors = 20

// Scan walks the whole base directory and brings the index up to date: it
// adds new paths, refreshes changed ones and removes the entries of paths
// that are gone. A file whose cache key (Dev, Ino, Size, Mtime, Ctime) is
// unchanged is not read (unless it was flagged unstable or racy).
//
// A path that cannot be read (permission denied, I/O error) keeps its
// previous entry, or none; Scan goes on with the others and returns their
// errors joined, with the Stats of everything it did. A cancelled ctx
// stops the walk between two units of work; what was done stays applied.
func (x *Index) Scan(ctx context.Context) (Stats, error) {
	return x.UpdateTree(ctx, ".")
}

// UpdateTree brings the entry rel and, if it is a directory, its whole
// subtree up to date, as Scan does for the base.
func (x *Index) UpdateTree(ctx context.Context, rel string) (Stats, error) {
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

	var errs errList
	isDir := true
	if rel != "." {
		isDir, err = x.updateOne(basefd, rel, readOpts{}, &st)
		errs.add(err)
	}
	stack := []string{}
	if isDir {
		stack = append(stack, rel)
	}
	for len(stack) > 0 {
		if err := ctx.Err(); err != nil {
			st.Entries = x.Len()
			return st, fmt.Errorf("tree: scan %s: %w", rel, err)
		}
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		dirs, recheck, err := x.scanDir(basefd, d, &st)
		if errors.Is(err, ErrBaseGone) {
			st.Entries = x.Len()
			return st, err
		}
		errs.add(err)
		for _, p := range recheck {
			if err := ctx.Err(); err != nil {
				st.Entries = x.Len()
				return st, fmt.Errorf("tree: scan %s: %w", rel, err)
			}
			isDir, err := x.updateOne(basefd, p, readOpts{}, &st)
			if errors.Is(err, ErrBaseGone) {
				st.Entries = x.Len()
				return st, err
			}
			errs.add(err)
			if isDir {
				dirs = append(dirs, p)
			}
		}
		slices.SortFunc(dirs, func(a, b string) int { return -strings.Compare(a, b) })
		stack = append(stack, dirs...)
	}
	st.Entries = x.Len()
	return st, errs.err()
}

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
}

// Written is a file the caller has just written and verified.
type Written struct {
	Path string
	Content
}

// UpdateWritten is Update for files whose content the caller has just
// written and verified: a path that is a regular file of its Content's
// size and mtime takes Content.Hash without being read; one that changed
// since is read as Update would. Consecutive files of one directory share
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

// readOpts says how much of a file an update reads.
type readOpts struct {
	chunks bool     // compute the chunk list too
	known  *Content // content vouched for by the caller
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
func (x *Index) Chunks(rel string) (Entry, error) {
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
	if _, err := x.updateLocked(basefd, rel, readOpts{chunks: true}, &st); err != nil {
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
				if x.racy(&o, time.Now()) {
					o.flags |= flagRacy
				}
				break
			}
			hadChunks := old != nil && old.kind == KindFile && old.chunks() != nil
			err = x.hashAt(dirfd, name, ro.chunks || hadChunks, &o, st)
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

// listed is one name of a directory listing in scanDir.
type listed struct {
	name  string
	o     obs
	state uint8
}

// States of a listed name.
const (
	stateApply   uint8 = iota // o is complete: record it
	stateRecheck              // needs its own unit (content to read, a race)
	stateKeep                 // could not be observed: leave the entry as it is
)

// scanDir is one unit of a tree scan: it lists the directory rel, stats
// every name in it and records everything that needs no content read,
// including removals. It returns the subdirectories to scan next and the
// paths that need a unit of their own (files to read).
func (x *Index) scanDir(basefd int, rel string, st *Stats) (dirs, recheck []string, err error) {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	fd, ok, err := x.openDir(basefd, rel, st)
	if !ok {
		return nil, nil, err
	}
	defer unix.Close(fd)
	names, err := x.io.readNames(fd)
	if err != nil {
		return nil, nil, fmt.Errorf("tree: list %s: %w", rel, err)
	}
	slices.Sort(names)
	d := x.nodeAt(rel)
	if d == nil || d.dir == nil {
		return nil, nil, nil // cannot happen: openDir recorded rel as a directory
	}

	var errs errList
	list := make([]listed, 0, len(names))
	for _, name := range names {
		if x.skipName(name) {
			continue
		}
		l := listed{name: name}
		var s unix.Stat_t
		if err := fstatat(fd, name, &s); err != nil {
			if err == unix.ENOENT {
				continue
			}
			errs.add(fmt.Errorf("tree: %s: %w", joinRel(rel, name), err))
			l.state = stateKeep
			list = append(list, l)
			continue
		}
		o, ok := statObs(&s)
		if !ok || (x.opt.Exclude != nil && x.opt.Exclude(joinRel(rel, name), o.kind == KindDir)) {
			continue
		}
		l.o = o
		switch o.kind {
		case KindSymlink:
			t, err := readlinkAt(fd, name)
			if err != nil {
				l.state = stateRecheck
			}
			l.o.target = t
		case KindFile:
			if old := d.kid(name); old.reusable(&l.o) {
				l.o.hash, l.o.chunks = old.hash, old.chunks()
			} else {
				l.state = stateRecheck
			}
		}
		list = append(list, l)
	}

	x.mu.Lock()
	defer x.mu.Unlock()
	kids := d.dir.kids
	out := make([]*node, 0, len(list))
	changed := false
	for i, j := 0, 0; i < len(kids) || j < len(list); {
		var k *node
		var l *listed
		switch {
		case j == len(list) || (i < len(kids) && kids[i].name < list[j].name):
			k = kids[i]
			i++
		case i == len(kids) || kids[i].name > list[j].name:
			l = &list[j]
			j++
		default:
			k, l = kids[i], &list[j]
			i++
			j++
		}
		switch {
		case l == nil: // gone from disk
			c := subtreeLen(k)
			x.count -= c
			st.Removed += c
			st.Changed = append(st.Changed, joinRel(rel, k.name))
			changed = true
			continue
		case l.state == stateKeep:
		case l.state == stateRecheck:
			recheck = append(recheck, joinRel(rel, l.name))
		case k == nil: // new on disk
			k = newNode(l.name, &l.o)
			k.parent = d
			x.count++
			st.added(joinRel(rel, l.name))
			changed = true
		case k.kind == l.o.kind:
			if k.set(&l.o) {
				st.modified(joinRel(rel, k.name))
				changed = true
			}
		default: // another kind now
			c := subtreeLen(k) - 1
			x.count -= c
			st.Removed += c
			k = newNode(l.name, &l.o)
			k.parent = d
			st.modified(joinRel(rel, l.name))
			changed = true
		}
		if k != nil {
			out = append(out, k)
			if k.kind == KindDir && l != nil && l.state == stateApply {
				dirs = append(dirs, joinRel(rel, k.name))
			}
		}
	}
	d.dir.kids = out
	if changed {
		markDirty(d)
	}
	return dirs, recheck, errs.err()
}

// apply records the observation o of rel, whose parent directory is
// already recorded. The caller holds wmu.
func (x *Index) apply(rel string, o *obs, st *Stats) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if rel == "." {
		if x.top == nil {
			x.top = newNode("", o)
			x.count = 1
			st.added(rel)
		} else if x.top.set(o) {
			st.modified(rel) // the base has no record of its own to rehash
		}
		return
	}
	dir, name := splitRel(rel)
	p := x.nodeAt(dir)
	if p == nil || p.dir == nil {
		return // cannot happen: the caller recorded the parent in this unit
	}
	i, found := p.find(name)
	switch {
	case !found:
		n := newNode(name, o)
		n.parent = p
		p.dir.kids = slices.Insert(p.dir.kids, i, n)
		x.count++
		st.added(rel)
	case p.dir.kids[i].kind == o.kind:
		if !p.dir.kids[i].set(o) {
			return
		}
		st.modified(rel)
	default:
		c := subtreeLen(p.dir.kids[i]) - 1
		x.count -= c
		st.Removed += c
		n := newNode(name, o)
		n.parent = p
		p.dir.kids[i] = n
		st.modified(rel)
	}
	markDirty(p)
}

// removeLocked drops rel and its subtree. The caller holds wmu.
func (x *Index) removeLocked(rel string, st *Stats) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := x.nodeAt(rel)
	if n == nil {
		return
	}
	c := subtreeLen(n)
	x.count -= c
	st.Removed += c
	st.Changed = append(st.Changed, rel)
	if n.parent == nil {
		x.top = nil
		return
	}
	p := n.parent
	i, _ := p.find(n.name)
	p.dir.kids = slices.Delete(p.dir.kids, i, i+1)
	markDirty(p)
}

func (x *Index) skipName(name string) bool {
	return x.opt.SkipName != nil && x.opt.SkipName(name)
}

func (x *Index) excluded(rel string, isDir bool) bool {
	return x.opt.Exclude != nil && x.opt.Exclude(rel, isDir)
}

func (st *Stats) added(rel string) {
	st.Added++
	st.Changed = append(st.Changed, rel)
}

func (st *Stats) modified(rel string) {
	st.Modified++
	st.Changed = append(st.Changed, rel)
}

// errList collects per-path errors, keeping the first maxErrors.
type errList struct {
	errs []error
	more int
}

func (l *errList) add(err error) {
	if err == nil {
		return
	}
	// A joined error from a nested unit counts each of its parts.
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			l.add(e)
		}
		return
	}
	if len(l.errs) < maxErrors {
		l.errs = append(l.errs, err)
	} else {
		l.more++
	}
}

func (l *errList) err() error {
	if l.more > 0 {
		l.errs = append(l.errs, fmt.Errorf("tree: and %d more errors", l.more))
	}
	return errors.Join(l.errs...)
}
