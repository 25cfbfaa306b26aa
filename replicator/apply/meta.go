package apply

import (
	"errors"
	"io/fs"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/makuo/makuo/replicator/stage"
	"github.com/makuo/makuo/replicator/wire"
)

func (a *Applier) meta(e *wire.Entry) stage.Meta {
	return stage.Meta{
		Mode:     fileMode(e),
		Uid:      e.Uid,
		Gid:      e.Gid,
		SetOwner: a.cfg.SetOwner,
		Mtime:    time.Unix(0, e.Mtime),
	}
}

// ownedAsCreated reports whether a file created for e already has the
// offered owner, so that no chown is needed: its directory is one this
// session made (it applied its mode, so it knows whether new files take
// the directory's group), and the offered owner is the daemon's effective
// uid and the group a new file gets there.
func (s *Session) ownedAsCreated(e *wire.Entry) bool {
	setgid, made := s.made[path.Dir(e.Path)]
	return made && !setgid && e.Uid == s.a.uid && e.Gid == s.a.gid
}

func (a *Applier) metaDiffers(e *wire.Entry, fi fs.FileInfo) bool {
	if modeBits(fi.Mode()) != e.Mode {
		return true
	}
	if e.Kind != wire.KindDir && fi.ModTime().UnixNano() != e.Mtime {
		return true
	}
	return a.cfg.SetOwner && ownerDiffers(e, fi)
}

func ownerDiffers(e *wire.Entry, fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && (st.Uid != e.Uid || st.Gid != e.Gid)
}

func (a *Applier) sameFile(x, y string) bool {
	fx, err1 := a.cfg.Dir.Lstat(x)
	fy, err2 := a.cfg.Dir.Lstat(y)
	return err1 == nil && err2 == nil && stage.SameFile(fx, fy)
}

// fileMode turns an entry's unix mode bits and kind into an fs.FileMode.
func fileMode(e *wire.Entry) fs.FileMode {
	m := fs.FileMode(e.Mode & 0o777)
	if e.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if e.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if e.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch e.Kind {
	case wire.KindDir:
		m |= fs.ModeDir
	case wire.KindSymlink:
		m |= fs.ModeSymlink
	case wire.KindFifo:
		m |= fs.ModeNamedPipe
	case wire.KindCharDev:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case wire.KindBlockDev:
		m |= fs.ModeDevice
	}
	return m
}

// modeBits is the inverse of fileMode's permission part.
func modeBits(m fs.FileMode) uint32 {
	b := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

func fileKind(fi fs.FileInfo) wire.EntryKind {
	switch m := fi.Mode(); {
	case m.IsRegular():
		return wire.KindFile
	case m.IsDir():
		return wire.KindDir
	case m&fs.ModeSymlink != 0:
		return wire.KindSymlink
	case m&fs.ModeNamedPipe != 0:
		return wire.KindFifo
	case m&fs.ModeCharDevice != 0:
		return wire.KindCharDev
	case m&fs.ModeDevice != 0:
		return wire.KindBlockDev
	}
	return wire.KindAbsent
}

func rdevOf(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Rdev
	}
	return 0
}

// failCode classifies an apply error for the sender's report.
func failCode(err error) wire.FailCode {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return wire.FailNoSpace
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return wire.FailPerm
	case errors.Is(err, stage.ErrBadPath), errors.Is(err, stage.ErrSymlinkInPath), strings.Contains(err.Error(), "path escapes"):
		return wire.FailPath
	case errors.Is(err, stage.ErrIsDir), errors.Is(err, stage.ErrNotDir):
		return wire.FailConflict
	}
	return wire.FailIO
}

// applyReason names a failure code for the apply_errors metric.
func applyReason(c wire.FailCode) string {
	switch c {
	case wire.FailIO:
		return "io"
	case wire.FailNoSpace:
		return "no_space"
	case wire.FailPerm:
		return "permission"
	case wire.FailPath:
		return "path_refused"
	case wire.FailHash:
		return "content_mismatch"
	case wire.FailConflict:
		return "type_conflict"
	case wire.FailOwner:
		return "owner_differs"
	}
	return "other"
}
