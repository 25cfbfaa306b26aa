package replicator

import (
	"errors"
	"io/fs"
	"sync"
	"syscall"
	"time"

	"github.com/makuo/makuo/replicator/tree"
	"github.com/makuo/makuo/replicator/wire"
)

// echoTTL bounds how long an applied change is remembered: far longer
// than any watcher delay, short enough to keep the map small.
const echoTTL = 5 * time.Minute

// applied is the signature of what the receiver left at a path.
type applied struct {
	gone  bool // the receiver deleted the path
	mode  fs.FileMode
	size  int64
	mtime int64
	ino   uint64
	at    int64 // when noted, unix ns: a time.Time is 16 bytes more per record
	// origin is the member whose version this is (the sender of the
	// session that wrote it), for the conflict rule's tie-break.
	origin wire.NodeID
}

// echoGuard remembers what this node wrote because another member sent it,
// so that its own watcher does not send it back. A path is an echo only if
// it still looks exactly as the receiver left it: a local edit right after
// a received change (different mtime, size or inode) is still replicated.
// It is safe for concurrent use.
type echoGuard struct {
	mu sync.Mutex
	m  map[string]applied
	// nextExpire spaces out the sweeps of m: a tree of more than
	// echoSweepAt files applied within echoTTL would otherwise sweep the
	// whole map at every note (quadratic: a 100,000-file push stalled
	// its receivers for minutes).
	nextExpire time.Time
}

// echoSweepAt is the map size from which note sweeps out expired entries,
// at most every echoTTL/10.
const echoSweepAt = 100_000

func newEchoGuard() *echoGuard { return &echoGuard{m: map[string]applied{}} }

// note records the state of rel after the receiver changed it; lstat err
// fs.ErrNotExist records a deletion.
func (g *echoGuard) note(rel string, fi fs.FileInfo, err error, origin wire.NodeID) {
	now := time.Now()
	a := applied{at: now.UnixNano(), origin: origin}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		a.gone = true
	case err != nil:
		return
	default:
		a.mode, a.size, a.mtime = fi.Mode(), fi.Size(), fi.ModTime().UnixNano()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			a.ino = st.Ino
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.m) > echoSweepAt && !now.Before(g.nextExpire) {
		g.expire(now)
		g.nextExpire = now.Add(echoTTL / 10)
	}
	g.m[rel] = a
}

// isEcho reports whether rel, as lstat now finds it, is what the receiver
// left there.
func (g *echoGuard) isEcho(rel string, fi fs.FileInfo, err error) bool {
	_, ok := g.origin(rel, fi, err)
	return ok
}

// origin returns the member whose version rel holds, if the receiver wrote
// it and it is unchanged since (ok false: a local edit, or unknown).
func (g *echoGuard) origin(rel string, fi fs.FileInfo, err error) (wire.NodeID, bool) {
	g.mu.Lock()
	a, ok := g.m[rel]
	g.mu.Unlock()
	if !ok || time.Since(time.Unix(0, a.at)) > echoTTL || !a.matches(fi, err) {
		return 0, false
	}
	return a.origin, true
}

func (a applied) matches(fi fs.FileInfo, err error) bool {
	if errors.Is(err, fs.ErrNotExist) {
		return a.gone
	}
	if err != nil || a.gone {
		return false
	}
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	if fi.IsDir() {
		// Creating entries in a directory changes its mtime; its own
		// attributes are what the receiver set.
		return a.mode == fi.Mode() && a.ino == ino
	}
	return a.mode == fi.Mode() && a.size == fi.Size() && a.mtime == fi.ModTime().UnixNano() && a.ino == ino
}

func (g *echoGuard) expire(now time.Time) {
	for k, a := range g.m {
		if now.Sub(time.Unix(0, a.at)) > echoTTL {
			delete(g.m, k)
		}
	}
}

// IsEcho reports whether the change the watcher saw at rel is this node's
// own application of a change received from another member. It is meant
// for watcher.Config.Ignore.
func (n *Node) IsEcho(rel string) bool {
	fi, err := n.root.Lstat(rel)
	return n.echo.isEcho(rel, fi, err)
}

// noteApplied records rel as written by the receiver, with the version of
// member origin, and brings its index entry up to date.
func (n *Node) noteApplied(rel string, origin wire.NodeID) {
	n.noteSeen(rel, origin)
	if _, err := n.index.Update(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
		n.log.Debug("index update failed", "path", rel, "err", err)
	}
}

// noteAppliedFiles is noteApplied for files whose received content (size,
// mtime, verified hash) is known: the index takes their hashes instead of
// reading them back, which for big files would hold up the session's
// result by a full read, and walks to each directory once.
func (n *Node) noteAppliedFiles(files []tree.Written, origin wire.NodeID) {
	for _, f := range files {
		n.noteSeen(f.Path, origin)
	}
	if _, err := n.index.UpdateWritten(files); err != nil && !errors.Is(err, fs.ErrNotExist) {
		n.log.Debug("index update failed", "files", len(files), "err", err)
	}
}

// noteSeen records rel as it is now as applied from origin: for the echo
// guard and as a version every member holds.
func (n *Node) noteSeen(rel string, origin wire.NodeID) {
	fi, err := n.root.Lstat(rel)
	if n.cfg.Watch {
		// Only the watcher (IsEcho) and the conflict rule of its sessions
		// read the guard: without -w its records, a hundred bytes per
		// received file for echoTTL, would serve nothing.
		n.echo.note(rel, fi, err, origin)
	}
	if err == nil {
		n.synced.set(rel, fi)
	} else {
		n.synced.set(rel, nil)
	}
}

// markSynced records the current version of rel as held by every member
// (after a push every member applied).
func (n *Node) markSynced(rel string) {
	if fi, err := n.root.Lstat(rel); err == nil {
		n.synced.set(rel, fi)
	} else {
		n.synced.set(rel, nil)
	}
}

// isLocalEdit reports whether rel holds a version no other member is known
// to have (see syncedSet).
func (n *Node) isLocalEdit(rel string) bool {
	fi, err := n.root.Lstat(rel)
	return err == nil && fi.Mode().IsRegular() && n.synced.localEdit(rel, fi)
}
