package apply

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"syscall"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/session"
	"github.com/makuo/makuo/replicator/stage"
	"github.com/makuo/makuo/replicator/tree"
	"github.com/makuo/makuo/replicator/wire"
)

// note is what deciding an entry found out beyond the protocol's flags.
type note struct {
	// basisPath is the local file to diff against (reported to the sender
	// as a basis); copyFrom a local file with exactly the offered content
	// (a rename), copied at once: copied says the copy is staged.
	basisPath string
	copyFrom  string
	copied    bool
	// conflictCopy: the local file is an edit not replicated yet that
	// loses to the offered version; it is kept under a conflict name.
	conflictCopy bool
	// replaceDir: a directory stands where the entry goes; the sender's
	// tree wins, so it is removed first.
	replaceDir bool
}

// decide compares offered entries with the local paths. They come in
// tree order, so most share their directory with the one before: c
// resolves it once for them.
func (s *Session) decide(first int, items []wire.Entry) []session.Decision {
	ds := make([]session.Decision, len(items))
	c := s.a.cfg.Dir.LstatCache()
	defer c.Close()
	for k := range items {
		ds[k] = s.decideOne(first+k, &items[k], c)
	}
	return ds
}

func fail(err error) *wire.Failure { return &wire.Failure{Code: failCode(err), Msg: err.Error()} }

func (s *Session) decideOne(i int, e *wire.Entry, c *stage.LstatCache) session.Decision {
	a := s.a
	flags := s.r.Flags()
	check := flags&wire.SessionCheck != 0
	if flags&wire.SessionDigest != 0 {
		return session.Decision{Change: s.digestDiffers(e)}
	}
	if e.Path == "." {
		if e.Kind != wire.KindDir {
			return session.Decision{Fail: &wire.Failure{Code: wire.FailPath, Msg: "the base directory itself must be a directory"}}
		}
		return session.Decision{}
	}
	if err := stage.CheckPath(e.Path); err != nil {
		// A path no honest sender offers (escaping, absolute, NUL):
		// refused and counted like a bad datagram.
		s.a.cfg.Metrics.Drop(metrics.DropPath)
		return session.Decision{Fail: fail(err)}
	}
	var fi fs.FileInfo
	exists := false
	if _, made := s.made[path.Dir(e.Path)]; !made {
		var err error
		fi, err = c.Lstat(e.Path)
		exists = err == nil
		if err != nil && !missing(err) {
			return session.Decision{Fail: fail(err)}
		}
	}
	if exists && a.cfg.OwnerMatch && e.Kind != wire.KindAbsent {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && (st.Uid != e.Uid || st.Gid != e.Gid) {
			return session.Decision{Fail: &wire.Failure{Code: wire.FailOwner, Msg: fmt.Sprintf("local owner %d:%d, offered %d:%d", st.Uid, st.Gid, e.Uid, e.Gid)}}
		}
	}
	if s.newerWins() && exists {
		if f := s.localWins(e, fi); f != nil {
			return session.Decision{Change: true, Fail: f}
		}
	}
	d := s.decideKind(i, e, fi, exists, check)
	if d.Change && d.Fail == nil && s.r.Flags()&(wire.SessionDryRun|wire.SessionCheck) != 0 {
		d.Items = s.a.items(e, fi, exists, d.Data)
	}
	if d.Change && exists && fi.IsDir() && e.Kind != wire.KindDir && e.Kind != wire.KindAbsent {
		s.noteFor(i).replaceDir = true
	}
	if n := s.notes[i]; n != nil && n.copyFrom != "" && d.Fail == nil && s.changesFiles() {
		d = s.copyBasis(i, e, fi, exists)
	}
	if d.Change && e.Kind == wire.KindDir && s.changesFiles() && (!exists || !fi.IsDir()) {
		// Directories go in place before anything is staged below them:
		// whatever stood at the path (a symbolic link above all) is never
		// written through.
		if err := s.makeDir(e, fi, exists); err != nil {
			return session.Decision{Change: true, Fail: fail(err)}
		}
	}
	return d
}

// missing reports whether a Lstat error means the path is not there (or
// cannot be, below a non-directory or a symbolic link, which the session
// replaces).
func missing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, stage.ErrSymlinkInPath)
}

func (s *Session) decideKind(i int, e *wire.Entry, fi fs.FileInfo, exists, check bool) session.Decision {
	a := s.a
	switch e.Kind {
	case wire.KindAbsent:
		return session.Decision{Change: exists}
	case wire.KindFile:
		return s.decideFile(i, e, fi, exists, check)
	case wire.KindDir:
		return session.Decision{Change: !exists || !fi.IsDir() || (!check && a.metaDiffers(e, fi))}
	case wire.KindSymlink:
		if !exists || fi.Mode()&fs.ModeSymlink == 0 {
			return session.Decision{Change: true}
		}
		t, err := a.cfg.Dir.Readlink(e.Path)
		// A link's mtime is part of the tree (and of its Merkle hash): a
		// link with the right target but another mtime still differs.
		return session.Decision{Change: err != nil || t != e.Target ||
			(!check && (fi.ModTime().UnixNano() != e.Mtime || (a.cfg.SetOwner && ownerDiffers(e, fi))))}
	case wire.KindHardlink:
		// Already a name of the first file's inode, and that file is not
		// being replaced (which would give it a new inode): nothing to do.
		if first, st, ok := s.r.Lookup(int(e.LinkTo)); ok && first.Kind == wire.KindFile && !st.Data && a.sameFile(e.Path, first.Path) {
			return session.Decision{}
		}
		return session.Decision{Change: true}
	case wire.KindFifo, wire.KindCharDev, wire.KindBlockDev:
		if check {
			return session.Decision{Change: !exists || fileKind(fi) != e.Kind}
		}
		return session.Decision{Change: !exists || fileKind(fi) != e.Kind || a.metaDiffers(e, fi) || rdevOf(fi) != e.Rdev}
	}
	return session.Decision{Fail: &wire.Failure{Code: wire.FailOther, Msg: "unknown entry kind " + e.Kind.String()}}
}

func (s *Session) decideFile(i int, e *wire.Entry, fi fs.FileInfo, exists, check bool) session.Decision {
	a := s.a
	regular := exists && fi.Mode().IsRegular()
	if !check && e.Flags&wire.EntryBasis != 0 && (!regular || fi.Size() != int64(e.Size)) {
		if d, settled := s.useBasis(i, e); settled {
			return d
		}
	}
	if !regular || fi.Size() != int64(e.Size) {
		return s.fetch(i, e, fi, regular)
	}
	// Same size: compare content (cached by inode, size, mtime and ctime),
	// so a touched file costs a metadata update, not a copy.
	if h, err := s.localHash(e.Path, fi); err != nil || h != e.Hash {
		d := session.Decision{Change: true, Data: true}
		if fi.Size() >= session.MinChunk {
			s.noteFor(i).basisPath = e.Path
			d.Basis = true
		}
		return d
	}
	return session.Decision{Change: !check && a.metaDiffers(e, fi)}
}

// fetch decides that entry i's content crosses the wire, with the local
// file as the basis of a delta where it is a regular file worth diffing
// (unless a renamed file's old name already is).
func (s *Session) fetch(i int, e *wire.Entry, fi fs.FileInfo, regular bool) session.Decision {
	d := session.Decision{Change: true, Data: true}
	if regular && fi.Size() >= session.MinChunk && s.noteFor(i).basisPath == "" {
		s.noteFor(i).basisPath = e.Path
	}
	d.Basis = s.notes[i] != nil && s.notes[i].basisPath != ""
	return d
}

// copyBasis stages entry i as a copy of the basis useBasis found with the
// offered content; if that fails (the basis changed or went since), the
// content is fetched instead.
func (s *Session) copyBasis(i int, e *wire.Entry, fi fs.FileInfo, exists bool) session.Decision {
	n := s.notes[i]
	from := n.copyFrom
	n.copyFrom = ""
	err := s.stageCopy(i, e, from)
	if err == nil {
		n.copied = true
		return session.Decision{Change: true}
	}
	if fe, ok := err.(failure); ok {
		return session.Decision{Change: true, Fail: fe.f} // the conflict rule kept the local version
	}
	s.a.cfg.Log.Debug("local copy failed; fetching the content", "path", e.Path, "from", from, "err", err)
	return s.fetch(i, e, fi, exists && fi.Mode().IsRegular())
}

func (s *Session) noteFor(i int) *note {
	n := s.notes[i]
	if n == nil {
		n = &note{}
		s.notes[i] = n
	}
	return n
}

// makeDir puts a directory at e.Path now, replacing what stood there.
func (s *Session) makeDir(e *wire.Entry, fi fs.FileInfo, exists bool) error {
	d := s.a.cfg.Dir
	if exists {
		if err := d.Remove(e.Path); err != nil {
			return err
		}
	}
	err := d.Mkdir(e.Path, s.a.meta(e))
	s.a.noteApplied(e.Path, s.r.Key().Node)
	if err == nil {
		if s.made == nil {
			s.made = map[string]bool{}
		}
		s.made[e.Path] = e.Mode&0o2000 != 0
	}
	return err
}

// digestDiffers compares an offered directory's Merkle hash with the local
// one. The index is brought up to date first, once per subtree (the offer
// lists a directory before what is below it), so that changes made behind
// the daemon's back count.
func (s *Session) digestDiffers(e *wire.Entry) bool {
	if e.Kind != wire.KindDir || e.Flags&wire.EntryDigest == 0 || (e.Path != "." && stage.CheckPath(e.Path) != nil) {
		return true
	}
	fresh := false
	for _, u := range s.digested {
		fresh = fresh || u == "." || e.Path == u || strings.HasPrefix(e.Path, u+"/")
	}
	if !fresh {
		s.digested = append(s.digested, e.Path)
		if err := s.whileBusy(func() error {
			_, err := s.a.cfg.Index.UpdateTree(context.Background(), e.Path)
			return err
		}); err != nil {
			return true
		}
	}
	h, ok := s.a.cfg.Index.DirHash(e.Path)
	return !ok || h != e.Hash
}

// useBasis looks at the basis the sender named (the old name of a renamed
// file): with the same content the file is copied locally and nothing
// crosses the wire; with different content it is the basis of a delta.
// settled reports whether it decided the entry.
func (s *Session) useBasis(i int, e *wire.Entry) (d session.Decision, settled bool) {
	if stage.CheckPath(e.Basis) != nil {
		return d, false
	}
	fi, err := s.a.cfg.Dir.Lstat(e.Basis)
	if err != nil || !fi.Mode().IsRegular() {
		return d, false
	}
	if fi.Size() == int64(e.Size) {
		if h, err := s.localHash(e.Basis, fi); err == nil && h == e.Hash {
			s.noteFor(i).copyFrom = e.Basis
			return session.Decision{Change: true}, true
		}
	}
	if fi.Size() >= session.MinChunk {
		s.noteFor(i).basisPath = e.Basis
	}
	return d, false
}

// localHash returns the content hash of the local file rel from the index,
// which reads the file only if it changed since it last did.
func (s *Session) localHash(rel string, fi fs.FileInfo) (uint64, error) {
	ix := s.a.cfg.Index
	if h, ok := ix.CachedHash(rel, fi); ok {
		return h, nil
	}
	var e tree.Entry
	err := s.whileBusy(func() error {
		if _, err := ix.Update(rel); err != nil {
			return err
		}
		var ok bool
		if e, ok = ix.Lookup(rel); !ok || e.Kind != tree.KindFile {
			return fmt.Errorf("%s: not a regular file", rel)
		}
		return nil
	})
	return e.Hash, err
}

// items says what differs between e and the local path (for msync -n -i).
func (a *Applier) items(e *wire.Entry, fi fs.FileInfo, exists, content bool) wire.ItemFlags {
	switch {
	case e.Kind == wire.KindAbsent:
		return wire.ItemDelete
	case !exists:
		return wire.ItemNew
	case e.Kind != wire.KindHardlink && fileKind(fi) != e.Kind:
		return wire.ItemType
	}
	var f wire.ItemFlags
	if content {
		f |= wire.ItemContent
	}
	if e.Kind == wire.KindSymlink {
		if t, err := a.cfg.Dir.Readlink(e.Path); err != nil || t != e.Target {
			f |= wire.ItemContent
		}
	}
	if e.Kind != wire.KindSymlink && modeBits(fi.Mode()) != e.Mode {
		f |= wire.ItemMode
	}
	if a.cfg.SetOwner && ownerDiffers(e, fi) {
		f |= wire.ItemOwner
	}
	if e.Kind != wire.KindDir && fi.ModTime().UnixNano() != e.Mtime {
		f |= wire.ItemMtime
	}
	return f
}
