package tree

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
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
		for len(recheck) > 0 {
			if err := ctx.Err(); err != nil {
				st.Entries = x.Len()
				return st, fmt.Errorf("tree: scan %s: %w", rel, err)
			}
			n := recheckUnit(recheck)
			more, err := x.recheckNames(basefd, d, recheck[:n], &st)
			if errors.Is(err, ErrBaseGone) {
				st.Entries = x.Len()
				return st, err
			}
			errs.add(err)
			dirs = append(dirs, more...)
			recheck = recheck[n:]
		}
		slices.SortFunc(dirs, func(a, b string) int { return -strings.Compare(a, b) })
		stack = append(stack, dirs...)
	}
	st.Entries = x.Len()
	return st, errs.err()
}

// A unit of rechecked names (recheckNames) reads at most
// recheckUnitBytes of content, or recheckUnitNames small files, under
// one hold of wmu and one resolution of their directory: a directory of
// new small files costs one walk from the base, not one per file, and a
// writer waiting for wmu (a receive committing its files) still waits
// for no more than about a file's worth of reading. A larger file is a
// unit alone.
const (
	recheckUnitBytes = 1 << 20
	recheckUnitNames = 256
)

// rechecked is a name of a scanned directory that needs a unit of its own
// (stateRecheck), with the size its listing saw.
type rechecked struct {
	name string
	size int64
}

// recheckUnit returns how many of names, from the first, make one unit.
func recheckUnit(names []rechecked) int {
	n, bytes := 0, int64(0)
	for n < len(names) && n < recheckUnitNames {
		bytes += max(names[n].size, 0)
		if n > 0 && bytes > recheckUnitBytes {
			break
		}
		n++
	}
	return n
}

// recheckNames observes names of the directory dir, with their content,
// as one unit of work, and returns the ones that are directories.
func (x *Index) recheckNames(basefd int, dir string, names []rechecked, st *Stats) (dirs []string, err error) {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	fd, ok, err := x.openDir(basefd, dir, st)
	if !ok {
		return nil, err
	}
	defer unix.Close(fd)
	var errs errList
	for _, r := range names {
		rel := joinRel(dir, r.name)
		isDir, err := x.observeName(fd, rel, r.name, readOpts{}, st)
		if errors.Is(err, ErrBaseGone) {
			return dirs, err
		}
		errs.add(err)
		if isDir {
			dirs = append(dirs, rel)
		}
	}
	return dirs, errs.err()
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
// names that need a unit of their own (files to read).
func (x *Index) scanDir(basefd int, rel string, st *Stats) (dirs []string, recheck []rechecked, err error) {
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
	list := x.observeListing(fd, d, rel, names, &errs)
	dirs, recheck = x.recordListing(d, rel, list, st)
	return dirs, recheck, errs.err()
}

// observeListing stats the names (sorted) of the open directory fd, whose
// path is rel and whose node is d, without reading any content. It leaves
// out the names that are skipped, excluded, gone or of a kind not indexed,
// and adds the errors of names it could not stat to errs.
func (x *Index) observeListing(fd int, d *node, rel string, names []string, errs *errList) []listed {
	list := make([]listed, 0, len(names))
	for _, name := range names {
		l, ok, err := x.observeListed(fd, d, rel, name)
		errs.add(err)
		if ok {
			list = append(list, l)
		}
	}
	return list
}

// observeListed stats the entry name of the open directory fd for
// observeListing and reports whether it belongs in the listing. A file
// whose key is unchanged takes its hash and chunk list from its entry in
// d; one that needs reading, or a symbolic link whose target could not be
// read, is left to a unit of its own (stateRecheck). A name whose stat
// fails is listed as stateKeep, with the error.
func (x *Index) observeListed(fd int, d *node, rel, name string) (listed, bool, error) {
	l := listed{name: name}
	if x.skipName(name) {
		return l, false, nil
	}
	var s unix.Stat_t
	if err := fstatat(fd, name, &s); err != nil {
		if err == unix.ENOENT {
			return l, false, nil
		}
		l.state = stateKeep
		return l, true, fmt.Errorf("tree: %s: %w", joinRel(rel, name), err)
	}
	o, ok := statObs(&s)
	if !ok || (x.opt.ExcludeListed != nil && x.opt.ExcludeListed(rel, name, o.kind == KindDir)) {
		return l, false, nil
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
	return l, true, nil
}

// recordListing merges the listing list (sorted) into the children of the
// directory d, whose path is rel, in one pass over both: it drops the
// entries gone from disk, adds the new ones and refreshes the others. It
// returns the subdirectories observed in full (stateApply), to scan next,
// and the names in stateRecheck. The caller holds wmu.
func (x *Index) recordListing(d *node, rel string, list []listed, st *Stats) (dirs []string, recheck []rechecked) {
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
		if l != nil && l.state == stateRecheck {
			recheck = append(recheck, rechecked{name: l.name, size: l.o.size})
		}
		k, ch := x.mergeKid(d, rel, k, l, st)
		changed = changed || ch
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
	return dirs, recheck
}

// mergeKid reconciles the child k of the directory d, whose path is rel,
// with its listing l; either is nil if the name is only on one side. It
// returns the node d keeps under the name (nil for none) and whether d's
// records changed. A listing not in stateApply leaves k as it is. The
// caller holds mu.
func (x *Index) mergeKid(d *node, rel string, k *node, l *listed, st *Stats) (*node, bool) {
	switch {
	case l == nil: // gone from disk
		p := joinRel(rel, k.name)
		c := st.removed(p, k)
		x.count -= c
		st.Removed += c
		st.Changed = append(st.Changed, p)
		return nil, true
	case l.state == stateKeep, l.state == stateRecheck:
		return k, false
	case k == nil: // new on disk
		k = newNode(l.name, &l.o)
		k.parent = d
		x.count++
		st.added(joinRel(rel, l.name))
		return k, true
	case k.kind == l.o.kind:
		if k.set(&l.o) {
			st.modified(joinRel(rel, k.name))
			return k, true
		}
		return k, false
	default: // another kind now
		c := st.removed(joinRel(rel, k.name), k) - 1
		x.count -= c
		st.Removed += c
		k = newNode(l.name, &l.o)
		k.parent = d
		st.modified(joinRel(rel, l.name))
		return k, true
	}
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
