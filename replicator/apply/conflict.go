package apply

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// newerWins reports whether the watcher's conflict rule applies: a
// watcher-driven session on a member that watches too (a member without
// -w has no local edits to protect; an operator's msync push always wins).
func (s *Session) newerWins() bool {
	return s.r.Flags()&wire.SessionNewerWins != 0 && s.a.cfg.Watch
}

// localWins applies the conflict rule of watcher-driven sessions to a
// path that exists locally: every member converges on the version with the
// newest mtime, ties going to the higher node id; a local edit not yet
// replicated that loses is saved as a conflict copy; a deletion elsewhere
// does not delete an unreplicated local edit (nor a directory holding
// one). It returns the failure that records a kept local version, or nil
// when the offered version is to be applied.
func (s *Session) localWins(e *wire.Entry, fi fs.FileInfo) *wire.Failure {
	prov := s.a.cfg.Provenance
	if fi.IsDir() {
		if e.Kind != wire.KindDir && s.holdsLocalEdit(e.Path) {
			what := "replaced by a " + e.Kind.String()
			if e.Kind == wire.KindAbsent {
				what = "deleted"
			}
			return &wire.Failure{Code: wire.FailKeptLocal, Msg: "kept a directory holding local edits that was " + what + " elsewhere"}
		}
		return nil
	}
	replicated := !prov.LocalEdit(e.Path, fi)
	origin, known := prov.Origin(e.Path, fi, nil)
	if !replicated || !known {
		origin = s.a.cfg.Self()
	}
	if e.Kind == wire.KindFile && fi.Mode().IsRegular() && fi.Size() == int64(e.Size) {
		if h, err := s.localHash(e.Path, fi); err == nil && h == e.Hash {
			return nil // same content: no conflict, at most metadata
		}
	}
	if e.Kind == wire.KindAbsent {
		if replicated {
			return nil
		}
		return &wire.Failure{Code: wire.FailKeptLocal, Msg: "kept a local edit that was deleted elsewhere"}
	}
	lm := fi.ModTime().UnixNano()
	if lm > e.Mtime || (lm == e.Mtime && origin > s.r.Key().Node) {
		return &wire.Failure{Code: wire.FailKeptLocal, Msg: "kept the newer local version"}
	}
	return nil
}

// wantsConflictCopy reports whether the local file at e.Path is an
// unreplicated edit that loses to the offered version.
func (s *Session) wantsConflictCopy(e *wire.Entry, fi fs.FileInfo) bool {
	return fi.Mode().IsRegular() && s.a.cfg.Provenance.LocalEdit(e.Path, fi)
}

// recheck applies the conflict rule again at apply time: the decision
// was taken when the offer came, and another session (or a local write)
// may have changed the path since. It returns the failure that keeps the
// local version, or nil, and whether a conflict copy is due.
func (s *Session) recheck(e *wire.Entry) (kept *wire.Failure, conflictCopy bool) {
	if !s.newerWins() {
		return nil, false
	}
	fi, err := s.a.cfg.Dir.Lstat(e.Path)
	if err != nil {
		return nil, false
	}
	if f := s.localWins(e, fi); f != nil {
		return f, false
	}
	return nil, !fi.IsDir() && s.wantsConflictCopy(e, fi)
}

// holdsLocalEdit reports whether the local directory dir holds a regular
// file that is an unreplicated local edit.
func (s *Session) holdsLocalEdit(dir string) bool {
	found := false
	_ = s.a.cfg.Dir.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || found {
			return nil
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil && s.a.cfg.Provenance.LocalEdit(p, fi) {
				found = true
				return fs.SkipAll
			}
		}
		return nil
	})
	return found
}

// conflictName is where a losing local edit of rel is kept:
// "name.conflict-HOST-UNIXTIME", cut to fit a 255-byte name.
func conflictName(rel, host string, at time.Time) string {
	dir, name := path.Split(rel)
	suffix := fmt.Sprintf(".conflict-%s-%d", host, at.Unix())
	if len(name)+len(suffix) > 255 {
		name = name[:max(0, 255-len(suffix))]
	}
	return dir + name + suffix
}

// keepConflictCopy links the losing local edit at rel to its conflict
// name, so that the rename replacing rel leaves it in place.
func (s *Session) keepConflictCopy(rel string) error {
	a := s.a
	cp := conflictName(rel, a.cfg.Hostname, a.cfg.Now())
	if err := a.cfg.Dir.Link(cp, rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.cfg.Log.Warn("could not keep a conflict copy; not replacing the local edit", "path", rel, "err", err)
		return err
	}
	a.cfg.Metrics.Conflicts.WithLabelValues("conflict_copy").Inc()
	a.cfg.Log.Warn("concurrent edit: kept the local version as a conflict copy", "path", rel, "copy", cp)
	return nil
}
