package source

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"

	"github.com/makuo/makuo/exclude"
	"github.com/makuo/makuo/replicator/stage"
	"github.com/makuo/makuo/replicator/tree"
	"github.com/makuo/makuo/replicator/wire"
)

// ErrOutsideBase reports a push path that is not under the base directory.
var ErrOutsideBase = errors.New("path is outside the base directory")

// Options say what a push covers.
type Options struct {
	Recursive bool
	Mirror    bool // flag directory roots with EntryMirror (--delete)
	Sync      bool // a missing root becomes a KindAbsent entry (--sync)
	Excludes  *exclude.Set
	// OwnerOnly offers only the paths whose owner is the uid Owner, and
	// still walks below the directories it leaves out: makuosan -O, the
	// original's "skip: owner unmatch". A mirrored root keeps EntryMirror
	// only if nothing below it was left out: receivers would delete what
	// the offer lacks (see Scan.MirrorDropped).
	OwnerOnly bool
	Owner     uint32
}

// Scan is the sender's view of what it offers: the entries, in an order
// receivers can apply, and for each file entry the identity (device,
// inode) of the file the scan saw, which the Reader checks.
type Scan struct {
	Entries []wire.Entry
	Bytes   uint64 // content bytes of the file entries
	// OwnerSkipped counts the paths Options.OwnerOnly left out;
	// MirrorDropped lists the roots offered without EntryMirror because of
	// them (the push does not delete below those).
	OwnerSkipped  int
	MirrorDropped []string
	ids           []fileID // parallel to Entries; zero for other kinds
}

type fileID struct{ dev, ino uint64 }

// Ino returns the inode entry i was scanned at, for a regular file (not
// the second name of a hard link): with the entry's size and mtime, the
// version the push offered.
func (sc *Scan) Ino(i int) (uint64, bool) {
	if i < 0 || i >= len(sc.ids) || sc.ids[i] == (fileID{}) {
		return 0, false
	}
	return sc.ids[i].ino, true
}

// RelPath turns a path given to msync into a clean path relative to base
// ("." for base itself), refusing anything outside it.
func RelPath(base, p string) (string, error) {
	if p == "" {
		return ".", nil
	}
	if filepath.IsAbs(p) {
		r, err := filepath.Rel(base, filepath.Clean(p))
		if err != nil || r == ".." || strings.HasPrefix(r, "../") {
			return "", fmt.Errorf("%s: %w %s", p, ErrOutsideBase, base)
		}
		return filepath.ToSlash(r), nil
	}
	c := path.Clean(filepath.ToSlash(p))
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%s: %w %s", p, ErrOutsideBase, base)
	}
	return c, nil
}

// content identifies a file's content for rename detection.
type content struct {
	size int64
	hash uint64
}

// Build brings the index up to date for roots and builds the entries to
// offer, in an order receivers can apply: parents before children, a hard
// link's first name before the others. A file that appeared with the exact
// content of one that disappeared under the roots (a rename) names the old
// path as its basis, so members copy it locally instead of receiving it.
func Build(ctx context.Context, ix *tree.Index, roots []string, opt Options) (*Scan, error) {
	known := 0 // entries under the roots before: the likely size of the offer
	for _, r := range roots {
		known += ix.Count(r)
	}
	// The files the updates removed, by content, and the paths they
	// added or changed: a new path with a removed file's content names
	// it as its basis. (A file removed by another update meanwhile, the
	// watcher's, names none: its new name is sent whole.)
	gone := map[content]string{}
	var changed []string
	for _, r := range roots {
		var st tree.Stats
		var err error
		if opt.Recursive {
			st, err = ix.UpdateTree(ctx, r)
		} else {
			st, err = ix.Update(r)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("scan %s: %w", r, err)
		}
		for _, g := range st.Gone {
			// A file replaced by another kind (a directory now) is gone
			// as a file, but no basis: the path is taken.
			if _, taken := ix.Lookup(g.Path); !taken {
				gone[content{g.Size, g.Hash}] = g.Path
			}
		}
		changed = append(changed, st.Changed...)
	}
	var fresh map[string]bool
	if len(gone) > 0 {
		fresh = make(map[string]bool, len(changed))
		for _, p := range changed {
			fresh[p] = true
		}
	}
	// Sized from the start: entries are 120 bytes each, and growing a
	// list of 100,000 by doubling leaves megabytes of garbage at the peak.
	res := &Scan{Entries: make([]wire.Entry, 0, known+len(roots)), ids: make([]fileID, 0, known+len(roots))}
	s := &scanState{opt: opt, links: map[[2]uint64]uint32{}, res: res, fresh: fresh, gone: gone}
	if len(roots) > 1 {
		// Only roots can overlap ("a" and "a/b"); one root's walk lists
		// every path once, and a set of 100,000 paths costs megabytes.
		s.seen = map[string]bool{}
	}
	for _, r := range roots {
		if err := s.root(ix, r); err != nil {
			return nil, err
		}
	}
	return s.res, nil
}

type scanState struct {
	opt   Options
	seen  map[string]bool      // paths added, when several roots may overlap
	links map[[2]uint64]uint32 // (dev, ino) → entry index of the first name
	res   *Scan
	fresh map[string]bool // paths the updates added or changed, when gone is not empty
	gone  map[content]string
}

func (s *scanState) root(ix *tree.Index, rel string) error {
	e, ok := ix.Lookup(rel)
	if !ok {
		if !s.opt.Sync {
			return fmt.Errorf("%s: no such file or directory (use --sync to delete it on the members)", rel)
		}
		if rel == "." {
			return errors.New("the base directory itself cannot be deleted")
		}
		s.add(wire.Entry{Kind: wire.KindAbsent, Path: rel}, fileID{})
		return nil
	}
	if rel != "." {
		if err := stage.CheckPath(rel); err != nil {
			return err
		}
	}
	if e.Kind != tree.KindDir || !s.opt.Recursive {
		s.entry(e, s.opt.Mirror && s.opt.Recursive && e.Kind == tree.KindDir)
		return nil
	}
	first, skipped := len(s.res.Entries), s.res.OwnerSkipped
	err := ix.Walk(rel, func(e tree.Entry) error {
		isRoot := e.Path == rel
		if !isRoot && s.opt.Excludes.Match(e.Path, e.Kind == tree.KindDir) {
			if e.Kind == tree.KindDir {
				return fs.SkipDir
			}
			return nil
		}
		s.entry(e, isRoot && s.opt.Mirror)
		return nil
	})
	if err == nil && s.opt.Mirror && s.res.OwnerSkipped > skipped {
		if first < len(s.res.Entries) && s.res.Entries[first].Path == rel {
			s.res.Entries[first].Flags &^= wire.EntryMirror
		}
		s.res.MirrorDropped = append(s.res.MirrorDropped, rel)
	}
	return err
}

// entry appends the offer entry for an index entry.
func (s *scanState) entry(e tree.Entry, mirror bool) {
	if s.seen[e.Path] {
		return
	}
	if s.opt.OwnerOnly && e.Uid != s.opt.Owner {
		s.res.OwnerSkipped++
		return
	}
	w := wire.Entry{Path: e.Path, Mode: e.Mode, Uid: e.Uid, Gid: e.Gid, Mtime: e.Mtime}
	var id fileID
	if mirror {
		w.Flags |= wire.EntryMirror
	}
	switch e.Kind {
	case tree.KindDir:
		w.Kind = wire.KindDir
	case tree.KindFile:
		if e.Nlink > 1 {
			key := [2]uint64{e.Dev, e.Ino}
			if first, ok := s.links[key]; ok {
				w.Kind, w.LinkTo = wire.KindHardlink, first
				s.add(w, fileID{})
				return
			}
			s.links[key] = uint32(len(s.res.Entries))
		}
		w.Kind, w.Size, w.Hash = wire.KindFile, uint64(e.Size), e.Hash
		id = fileID{e.Dev, e.Ino}
		if s.fresh[e.Path] {
			if old, ok := s.gone[content{e.Size, e.Hash}]; ok {
				w.Flags |= wire.EntryBasis
				w.Basis = old
			}
		}
		s.res.Bytes += w.Size
	case tree.KindSymlink:
		w.Kind, w.Target = wire.KindSymlink, e.Target
	case tree.KindFifo:
		w.Kind = wire.KindFifo
	case tree.KindCharDev:
		w.Kind, w.Rdev = wire.KindCharDev, e.Rdev
	case tree.KindBlockDev:
		w.Kind, w.Rdev = wire.KindBlockDev, e.Rdev
	default:
		return
	}
	s.add(w, id)
}

func (s *scanState) add(e wire.Entry, id fileID) {
	if s.seen != nil {
		s.seen[e.Path] = true
	}
	s.res.Entries = append(s.res.Entries, e)
	s.res.ids = append(s.res.ids, id)
}
