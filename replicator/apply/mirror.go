package apply

import (
	"errors"
	"io/fs"
	"slices"

	"github.com/makuo/makuo/exclude"
	"github.com/makuo/makuo/replicator/session"
	"github.com/makuo/makuo/replicator/stage"
	"github.com/makuo/makuo/replicator/wire"
)

// mirror deletes, below every directory offered with EntryMirror, what the
// session did not offer and neither the sender's excludes nor this
// member's own protect; with apply false it only lists what it would
// delete. It never follows a symbolic link: a link is deleted as a link.
func (s *Session) mirror(apply bool) []string {
	offered := map[string]bool{}
	same := map[string]bool{}
	var roots []string
	s.r.Each(func(_ int, e *wire.Entry, st session.EntryState) bool {
		offered[e.Path] = true
		if e.Kind == wire.KindDir && e.Flags&wire.EntrySame != 0 {
			same[e.Path] = true
		}
		if e.Kind == wire.KindDir && e.Flags&wire.EntryMirror != 0 && st.Fail == nil {
			roots = append(roots, e.Path)
		}
		return true
	})
	if len(roots) == 0 {
		return nil
	}
	excl, err := exclude.New(s.r.Excludes())
	if err != nil {
		s.a.cfg.Log.Warn("bad exclude pattern from sender; not mirroring", "err", err)
		return nil
	}
	protected := func(p string, dir bool) bool {
		return excl.Match(p, dir) || s.a.cfg.Excludes.Match(p, dir)
	}
	m := &mirrorRun{s: s, apply: apply, offered: offered, same: same, protected: protected}
	for _, root := range roots {
		if !same[root] { // matched everywhere: its contents were not offered
			m.walk(root)
		}
	}
	m.removeDirs()
	slices.Sort(m.deleted)
	return m.deleted
}

type mirrorRun struct {
	s         *Session
	apply     bool
	offered   map[string]bool
	same      map[string]bool
	protected func(p string, dir bool) bool
	deleted   []string
	dirs      []string // unoffered directories, parents first
}

func (m *mirrorRun) walk(root string) {
	s := m.s
	_ = s.a.cfg.Dir.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return nil
		}
		isDir := d.IsDir()
		if stage.IsTempName(d.Name()) || m.protected(p, isDir) {
			if isDir {
				return fs.SkipDir
			}
			return nil
		}
		if m.offered[p] {
			if m.same[p] {
				return fs.SkipDir // matched everywhere: its contents were not offered
			}
			return nil
		}
		if isDir {
			// Walk in: protected paths below it are kept; the directory
			// goes afterwards if nothing protected is left.
			m.dirs = append(m.dirs, p)
			return nil
		}
		if s.newerWins() {
			if fi, err := d.Info(); err == nil && s.a.cfg.Provenance.LocalEdit(p, fi) {
				// A watcher's rescan spares this member's own edits that
				// have not reached the others yet.
				return nil
			}
		}
		m.deleted = append(m.deleted, p)
		if m.apply {
			if err := s.a.cfg.Dir.Remove(p); err != nil {
				s.a.cfg.Log.Warn("mirror delete failed", "path", p, "err", err)
			}
			s.a.noteApplied(p, s.r.Key().Node)
			s.a.logApplied("deleted", p, s.r.Key().Node)
		}
		return nil
	})
}

// removeDirs removes the unoffered directories left empty, deepest first.
func (m *mirrorRun) removeDirs() {
	s := m.s
	for i := len(m.dirs) - 1; i >= 0; i-- {
		p := m.dirs[i]
		if !m.apply {
			if !m.holdsKept(p) {
				m.deleted = append(m.deleted, p)
			}
			continue
		}
		if err := s.a.cfg.Dir.Remove(p); err == nil {
			if _, err := s.a.cfg.Dir.Lstat(p); errors.Is(err, fs.ErrNotExist) {
				m.deleted = append(m.deleted, p)
				s.a.logApplied("deleted", p, s.r.Key().Node)
			}
			s.a.noteApplied(p, s.r.Key().Node)
		}
	}
}

// holdsKept reports whether the unoffered directory dir holds something a
// mirror keeps (for dry-run reports).
func (m *mirrorRun) holdsKept(dir string) bool {
	found := false
	_ = m.s.a.cfg.Dir.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir || found {
			return nil
		}
		if m.protected(p, d.IsDir()) || stage.IsTempName(d.Name()) || m.offered[p] {
			found = true
			return fs.SkipAll
		}
		return nil
	})
	return found
}
