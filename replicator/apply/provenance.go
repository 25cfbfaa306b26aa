package apply

import (
	"errors"
	"io/fs"
	"sync"
	"syscall"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// echoTTL bounds how long an applied change is remembered for echo
// suppression: far longer than any watcher delay, short enough to keep the
// map small.
const echoTTL = 5 * time.Minute

// echoSweepAt is the map size from which a note sweeps out expired
// records, at most every echoTTL/10: a tree of more files than that
// applied within echoTTL would otherwise sweep the whole map at every note
// (quadratic: a 100,000-file push stalled its receivers for minutes).
const echoSweepAt = 100_000

// Provenance is the one place that knows where the version of a path came
// from. Per path it keeps:
//
//   - the signature (size, mtime, inode) of the version this member knows
//     every other member has: one it received and applied, one it pushed
//     to every member, or one unchanged since the index was saved at the
//     last stop. A local file that does not match it is an edit not
//     replicated yet, which the conflict rule protects: a receiver keeps
//     it against an older version, saves it as a conflict copy against a
//     newer one, and a rescan's mirror never deletes it;
//   - with the watcher on (-w), what the receiver left at the path and
//     which member's version it was, for echo suppression (the watcher
//     does not send back what it sees the receiver write) and for the
//     conflict rule's tie-break.
//
// Deciding from the file itself, not from what the watcher has reported so
// far, also covers an edit made moments before a conflicting version
// arrives. It is safe for concurrent use.
type Provenance struct {
	watch bool
	now   func() time.Time

	mu         sync.Mutex
	synced     map[string]fileSig
	echo       map[string]appliedSig
	nextExpire time.Time
}

// NewProvenance returns an empty record; watch keeps the echo records the
// watcher and the conflict rule need (without -w they would serve
// nothing). now is the clock (time.Now in a daemon).
func NewProvenance(watch bool, now func() time.Time) *Provenance {
	return &Provenance{watch: watch, now: now, synced: map[string]fileSig{}, echo: map[string]appliedSig{}}
}

type fileSig struct {
	size, mtime int64
	ino         uint64
}

func sigOf(fi fs.FileInfo) fileSig {
	s := fileSig{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	return s
}

// appliedSig is the signature of what the receiver left at a path.
type appliedSig struct {
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

// Applied records rel, as lstat shows it now (fi, err; fs.ErrNotExist for
// a deletion), as the version of member origin that this receiver applied:
// every member has it, and the watcher must not send it back.
func (p *Provenance) Applied(rel string, fi fs.FileInfo, err error, origin wire.NodeID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setSynced(rel, fi, err)
	if !p.watch {
		return
	}
	now := p.now()
	a := appliedSig{at: now.UnixNano(), origin: origin}
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
	if len(p.echo) > echoSweepAt && !now.Before(p.nextExpire) {
		for k, a := range p.echo {
			if now.Sub(time.Unix(0, a.at)) > echoTTL {
				delete(p.echo, k)
			}
		}
		p.nextExpire = now.Add(echoTTL / 10)
	}
	p.echo[rel] = a
}

// AppliedFile is Applied for a regular file the receiver wrote, by what
// the index observed of it (mode bits, size, mtime, inode): no stat of its
// own.
func (p *Provenance) AppliedFile(rel string, mode fs.FileMode, size, mtime int64, ino uint64, origin wire.NodeID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.synced[rel] = fileSig{size, mtime, ino}
	if !p.watch {
		return
	}
	p.echo[rel] = appliedSig{mode: mode, size: size, mtime: mtime, ino: ino, at: p.now().UnixNano(), origin: origin}
}

// Replicated records the current version of rel (fi nil: rel is gone) as
// held by every member: a push every member applied.
func (p *Provenance) Replicated(rel string, fi fs.FileInfo) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if fi == nil {
		delete(p.synced, rel)
		return
	}
	p.synced[rel] = sigOf(fi)
}

// Known records a file version every member is known to have, by its
// size, mtime (unix ns) and inode: from the index saved at the last stop,
// for files unchanged since.
func (p *Provenance) Known(rel string, size, mtime int64, ino uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.synced[rel] = fileSig{size, mtime, ino}
}

func (p *Provenance) setSynced(rel string, fi fs.FileInfo, err error) {
	if err != nil || fi == nil {
		delete(p.synced, rel)
		return
	}
	p.synced[rel] = sigOf(fi)
}

// LocalEdit reports whether the regular file rel, as fi shows it now, is a
// version no other member is known to have.
func (p *Provenance) LocalEdit(rel string, fi fs.FileInfo) bool {
	if !fi.Mode().IsRegular() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	sig, ok := p.synced[rel]
	return !ok || sig != sigOf(fi)
}

// Origin returns the member whose version rel holds, if the receiver wrote
// it and it is unchanged since (ok false: a local edit, or unknown).
func (p *Provenance) Origin(rel string, fi fs.FileInfo, err error) (wire.NodeID, bool) {
	p.mu.Lock()
	a, ok := p.echo[rel]
	p.mu.Unlock()
	if !ok || p.now().Sub(time.Unix(0, a.at)) > echoTTL || !a.matches(fi, err) {
		return 0, false
	}
	return a.origin, true
}

// IsEcho reports whether rel, as lstat now finds it (fi, err), is what the
// receiver left there: the watcher's event for it is this node's own
// application of another member's change.
func (p *Provenance) IsEcho(rel string, fi fs.FileInfo, err error) bool {
	_, ok := p.Origin(rel, fi, err)
	return ok
}

func (a appliedSig) matches(fi fs.FileInfo, err error) bool {
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
