package apply

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/makuo/makuo/exclude"
	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/session"
	"github.com/makuo/makuo/replicator/stage"
	"github.com/makuo/makuo/replicator/tree"
	"github.com/makuo/makuo/replicator/wire"
)

// Config is what the receive side of a member works with. Dir, Index,
// Provenance and Metrics are shared by every Applier of the member (they
// are safe for concurrent use).
type Config struct {
	Dir        *stage.Dir
	Index      *tree.Index
	Provenance *Provenance
	// Excludes are this member's own exclude patterns: a mirror never
	// deletes what they match, whatever the sender's say.
	Excludes *exclude.Set
	// Self returns this member's node id (it can change at run time);
	// Hostname is its name (conflict copies).
	Self     func() wire.NodeID
	Hostname string
	// Watch: this member replicates its own changes (-w), so the conflict
	// rule of watcher sessions protects its unreplicated edits.
	Watch bool
	// OwnerMatch (-O) applies received files only where the owner matches.
	OwnerMatch bool
	// SetOwner applies the offered owner (when running as root).
	SetOwner bool
	// Async renames batches of files on goroutines of their own, so that
	// filesystem syncs do not hold up the receive loop (a daemon); without
	// it they run inline (a simulation, where order must be exact).
	Async bool
	// Busy is how often a local operation that takes long (hashing a
	// large file, a big commit) tells the sender this member is still at
	// it; 0 never does (a simulation, where local work takes no time).
	Busy time.Duration
	// Turns is shared by every Applier of the member: a watcher session
	// holds it from the conflict rule's last check of a path to the rename
	// or delete, so that another sender's session cannot change the path
	// in between.
	Turns *sync.Mutex
	// OnApplied is called after a session changed files: the tree root
	// moved (the daemon heartbeats at once).
	OnApplied func()
	Now       func() time.Time
	Log       *slog.Logger
	Metrics   *metrics.Metrics
}

// Applier runs the receive sessions of one sending node: it routes the
// node's messages to their sessions (session.Inbox) and carries out the
// effects they return. Answers go out through send. It is not safe for
// concurrent use: a daemon runs one per sending node, each on its own
// goroutine, so that one sender's slow disk work never holds up another's.
type Applier struct {
	cfg      Config
	inbox    *session.Inbox
	sessions map[session.Key]*Session
	send     func(wire.Message)
	wbufs    bufPool
	chunkBuf []byte
	written  []*file // files written to lately, oldest first (park)
	wg       sync.WaitGroup
	// uid and gid are the owner a file this daemon creates gets (in a
	// directory without the setgid bit). A daemon switches its identity
	// before it runs, and so before any Applier exists.
	uid, gid uint32
}

// Session is one receive session's filesystem state.
type Session struct {
	a          *Applier
	r          *session.Receiver
	files      map[int]*file
	notes      map[int]*note
	ready      []staged
	readyBytes uint64
	readySince time.Time // when the first of ready was verified
	inflight   []*batch
	digested   []string
	// made holds the directories this session created: empty when made,
	// so the entries offered below them need no lstat. The value is
	// whether the directory's mode has the setgid bit (new files in it
	// take its group rather than ours).
	made   map[string]bool
	busyAt time.Time
	queue  []session.Effect
}

// New returns an Applier for the sessions of one sending node.
func New(cfg Config, inbox session.InboxConfig, send func(wire.Message)) *Applier {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Turns == nil {
		cfg.Turns = new(sync.Mutex)
	}
	return &Applier{cfg: cfg, inbox: session.NewInbox(inbox), sessions: map[session.Key]*Session{}, send: send,
		uid: uint32(os.Geteuid()), gid: uint32(os.Getegid())}
}

// Handle steps one message of the node and runs what it asks for. A
// refused message is counted in the metrics, and Handle returns why
// (session.DropNone if it was not refused). A Data message's bytes are
// not retained.
func (a *Applier) Handle(now time.Time, m wire.Message) session.Drop {
	r, rd, drop := a.inbox.Step(now, m)
	if r == nil {
		a.countDrop(drop)
		return drop
	}
	s := a.sessions[r.Key()]
	if s == nil {
		s = &Session{a: a, r: r, files: map[int]*file{}, notes: map[int]*note{}}
		a.sessions[r.Key()] = s
	}
	dropped := rd.Dropped
	s.run(rd)
	if r.Closed() {
		delete(a.sessions, r.Key())
	}
	return dropped
}

// Expire discards the sessions whose sender went silent.
func (a *Applier) Expire(now time.Time) {
	for _, r := range a.inbox.Expire(now) {
		a.discard(r)
	}
	for k, s := range a.sessions {
		if s.r.Closed() || (s.r.Done() && len(s.inflight) == 0) {
			delete(a.sessions, k)
		}
	}
}

// Close discards every session in progress and waits for renames in
// flight.
func (a *Applier) Close() {
	for _, r := range a.inbox.Close() {
		a.discard(r)
	}
	a.wg.Wait()
	clear(a.sessions)
}

func (a *Applier) countDrop(d session.Drop) {
	switch d {
	case session.DropMalformed:
		a.cfg.Metrics.Drop(metrics.DropMalformed)
	case session.DropMemory:
		a.cfg.Metrics.Drop(metrics.DropSessionMemory)
	case session.DropLimit:
		a.cfg.Metrics.Drop(metrics.DropSessionLimit)
	}
}

// discard ends session r: what it holds is released (its memory charge
// with it) even if no filesystem state was ever made for it.
func (a *Applier) discard(r *session.Receiver) {
	rd := r.Discard()
	if s := a.sessions[r.Key()]; s != nil {
		s.run(rd)
	}
}

// Sessions returns the number of sessions held.
func (a *Applier) Sessions() int { return a.inbox.Len() }

// InProgress appends the ids of the sessions the applier works on (not
// yet done or closed) to buf, in no particular order.
func (a *Applier) InProgress(buf []uint64) []uint64 {
	for k, s := range a.sessions {
		if !s.r.Done() && !s.r.Closed() {
			buf = append(buf, k.Session)
		}
	}
	return buf
}

// run sends rd's messages and carries out its effects, and those the
// answers to them produce, in order. The Ready is the Receiver's reused
// buffer: its effects are copied out (into a buffer the session reuses, so
// the per-datagram path does not allocate) before the answers overwrite it.
func (s *Session) run(rd *session.Ready) {
	s.queue = s.take(s.queue[:0], rd)
	for k := 0; k < len(s.queue); k++ {
		if next := s.effect(s.queue[k]); next != nil {
			s.queue = s.take(s.queue, next)
		}
	}
	clear(s.queue)
}

// take sends rd's messages, counts its drop and appends its effects to q.
func (s *Session) take(q []session.Effect, rd *session.Ready) []session.Effect {
	s.a.countDrop(rd.Dropped)
	for _, m := range rd.Msgs {
		s.a.send(m)
	}
	return append(q, rd.Effects...)
}

func (s *Session) effect(ef session.Effect) *session.Ready {
	switch ef.Kind {
	case session.EffectDecide:
		var ds []session.Decision
		_ = s.whileBusy(func() error { ds = s.decide(ef.Entry, ef.Items); return nil })
		return s.r.Decided(ef.Entry, ds, s.a.cfg.Dir.Free())
	case session.EffectWrite:
		return s.write(ef)
	case session.EffectPlan:
		have, f := s.plan(ef.Entry, ef.Refs)
		return s.r.Planned(ef.Entry, have, f)
	case session.EffectCommit:
		return s.commit()
	case session.EffectDiscard:
		s.discard()
	}
	return nil
}

func (s *Session) changesFiles() bool {
	return s.r.Flags()&(wire.SessionDryRun|wire.SessionCheck|wire.SessionDigest) == 0
}

// discard drops every temp file of the session.
func (s *Session) discard() {
	s.settle(true)
	for _, st := range s.ready {
		st.tmp.AbortReady()
	}
	s.ready = nil
	for i := range s.files {
		s.dropFile(i)
	}
}

// whileBusy runs f, telling the sender every Config.Busy that this
// receiver is still at work: reading a large local file takes longer than
// the sender waits for a silent member.
func (s *Session) whileBusy(f func() error) error {
	if s.a.cfg.Busy <= 0 {
		return f()
	}
	done := make(chan error, 1)
	go func() { done <- f() }()
	t := time.NewTicker(s.a.cfg.Busy)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-t.C:
			s.busyAt = time.Time{}
			s.busy()
		}
	}
}

// busy tells the sender, at most once per Config.Busy, that this receiver
// is still working on the session.
func (s *Session) busy() {
	if now := s.a.cfg.Now(); now.Sub(s.busyAt) > s.a.cfg.Busy {
		s.busyAt = now
		s.a.send(&wire.Busy{Session: s.r.Key().Session})
	}
}

// noteApplied records rel as written by the receiver with the version of
// member origin, and brings its index entry up to date.
func (a *Applier) noteApplied(rel string, origin wire.NodeID) {
	fi, err := a.cfg.Dir.Lstat(rel)
	a.cfg.Provenance.Applied(rel, fi, err, origin)
	if _, err := a.cfg.Index.Update(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.cfg.Log.Debug("index update failed", "path", rel, "err", err)
	}
}

// noteAppliedFiles is noteApplied for files whose received content (size,
// mtime, verified hash) is known: the index takes their hashes instead of
// reading them back, which for big files would hold up the session's
// result by a full read.
//
// The index's observation of each file (a stat per file, the walk to each
// directory shared) is what the provenance records: no second stat.
func (a *Applier) noteAppliedFiles(files []tree.Written, origin wire.NodeID) {
	if _, err := a.cfg.Index.UpdateWritten(files); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.cfg.Log.Debug("index update failed", "files", len(files), "err", err)
	}
	for _, f := range files {
		e, ok := a.cfg.Index.Lookup(f.Path)
		if !ok || e.Kind != tree.KindFile {
			fi, err := a.cfg.Dir.Lstat(f.Path)
			a.cfg.Provenance.Applied(f.Path, fi, err, origin)
			continue
		}
		mode := fileMode(&wire.Entry{Kind: wire.KindFile, Mode: e.Mode})
		a.cfg.Provenance.AppliedFile(f.Path, mode, e.Size, e.Mtime, e.Ino, origin)
	}
}

// logApplied logs one change this member applied, at info level: an
// operator can answer "what changed on web3 at 14:02" from the log.
func (a *Applier) logApplied(what, rel string, origin wire.NodeID) {
	a.cfg.Log.Info(what, "path", rel, "from", origin.String())
}

// countFailures counts the session's failed entries by reason; a version
// the conflict rule kept is a settled conflict, not an error.
func (s *Session) countFailures() {
	m := s.a.cfg.Metrics
	s.r.Each(func(_ int, _ *wire.Entry, st session.EntryState) bool {
		switch {
		case st.Fail == nil:
		case st.Fail.Code == wire.FailKeptLocal:
			m.Conflicts.WithLabelValues("kept_local").Inc()
		default:
			m.ApplyErrors.WithLabelValues(applyReason(st.Fail.Code)).Inc()
		}
		return true
	})
}
