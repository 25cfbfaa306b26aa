package watcher

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// dirTree is the set of watched directories (relative, slash-separated
// paths) with each directory's children, so that a deleted or moved-away
// subtree can be dropped without scanning every watch.
type dirTree struct {
	watched map[string]struct{}
	kids    map[string]map[string]struct{} // parent → child directories known
}

func newDirTree() dirTree {
	return dirTree{
		watched: make(map[string]struct{}),
		kids:    make(map[string]map[string]struct{}),
	}
}

func (t *dirTree) has(rel string) bool { _, ok := t.watched[rel]; return ok }

func (t *dirTree) len() int { return len(t.watched) }

func (t *dirTree) add(rel string) {
	t.watched[rel] = struct{}{}
	if rel == "." {
		return
	}
	p := path.Dir(rel)
	k := t.kids[p]
	if k == nil {
		k = make(map[string]struct{})
		t.kids[p] = k
	}
	k[rel] = struct{}{}
}

// removeSubtree forgets rel and every directory below it and returns the
// ones that were watched.
func (t *dirTree) removeSubtree(rel string) []string {
	var gone []string
	var walk func(string)
	walk = func(d string) {
		if _, ok := t.watched[d]; ok {
			gone = append(gone, d)
			delete(t.watched, d)
		}
		for k := range t.kids[d] {
			walk(k)
		}
		delete(t.kids, d)
	}
	walk(rel)
	if rel != "." {
		if k := t.kids[path.Dir(rel)]; k != nil {
			delete(k, rel)
		}
	}
	return gone
}

// all returns the watched directories, sorted.
func (t *dirTree) all() []string {
	out := make([]string, 0, len(t.watched))
	for d := range t.watched {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// addTree adds a watch on the directory rel and on every non-excluded
// directory below it (re-adding an existing watch is harmless). Each watch
// is added before
// its directory is listed, so an entry created concurrently is either listed
// or produces an event. When report is true every entry found, rel included,
// is queued as changed: that covers files created in a new directory before
// its watch existed ("mkdir -p a/b/c && touch a/b/c/f").
//
// It returns an error only when ctx ends or when rel is the base directory
// and cannot be read; other problems are logged and counted.
func (s *state) addTree(ctx context.Context, rel string, report bool, now time.Time) error {
	root := s.abs(rel)
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r, ok := s.rel(p)
		if !ok {
			return filepath.SkipDir
		}
		if err != nil {
			switch {
			case d == nil && rel == ".":
				return err // the base directory itself is unreadable
			case errors.Is(err, fs.ErrNotExist), errors.Is(err, unix.ENOTDIR):
				// Removed while we walked: its Remove event reports it.
			default:
				s.w.watchErrors.Add(1)
				s.log.Warn("cannot read directory; changes below it are missed until it is readable and changes again",
					"path", r, "err", err)
			}
			if d != nil && d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		isDir := d.IsDir()
		if r != rel && s.excluded(r, isDir) {
			if isDir {
				return filepath.SkipDir
			}
			return nil
		}
		if report && r != "." && !s.ignored(r) {
			s.deb.addPath(r, now)
		}
		if isDir && !s.watch(r, now) {
			return filepath.SkipDir
		}
		return nil
	})
}

// watch adds an inotify watch on the directory rel and reports whether it is
// in place.
func (s *state) watch(rel string, now time.Time) bool {
	err := s.n.Add(s.abs(rel))
	switch {
	case err == nil:
		s.tree.add(rel)
		s.w.watches.Store(int64(s.tree.len()))
		return true
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, unix.ENOTDIR):
		// Gone or replaced by a file already: the parent's events report it.
		return false
	case errors.Is(err, unix.ENOSPC):
		s.watchLimit(rel, now)
		return false
	default:
		s.w.watchErrors.Add(1)
		s.log.Warn("cannot watch directory; changes below it are missed until it is created again",
			"path", rel, "err", err)
		return false
	}
}

// forget drops the watches on rel and everything below it, after rel was
// deleted or moved away. inotify removes the watch of a deleted directory by
// itself, but the watches below a moved directory stay alive under their old
// names and would report wrong paths, and would make the kernel hand back the
// old watch when the directory is watched again under its new name.
func (s *state) forget(rel string) {
	for _, d := range s.tree.removeSubtree(rel) {
		// Errors mean the watch is already gone, which is what we want.
		_ = s.n.Remove(s.abs(d))
	}
	s.w.watches.Store(int64(s.tree.len()))
	for u := range s.unwatched {
		if within(u, rel) {
			delete(s.unwatched, u)
		}
	}
	for x := range s.skipped {
		if within(x, rel) {
			delete(s.skipped, x)
		}
	}
}

// resync makes the watches match the tree again after events were lost:
// watches of directories that no longer exist are dropped first (so that a
// directory moved elsewhere in the tree is not re-added under its old
// watch), then every directory is walked and watched.
func (s *state) resync(ctx context.Context, now time.Time) error {
	for _, d := range s.tree.all() {
		if d == "." || !s.tree.has(d) {
			continue
		}
		fi, err := os.Lstat(s.abs(d))
		if err != nil || !fi.IsDir() {
			s.forget(d)
		}
	}
	return s.addTree(ctx, ".", false, now)
}
