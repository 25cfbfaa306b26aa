package apply

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/makuo/makuo/replicator/chunk"
	"github.com/makuo/makuo/replicator/session"
	"github.com/makuo/makuo/replicator/stage"
	"github.com/makuo/makuo/replicator/tree"
	"github.com/makuo/makuo/replicator/wire"
)

// Batching of renames: up to this many files or bytes, or the files
// verified over this long, wait for one pair of filesystem syncs. Large
// files go at once so readers see them promptly; the age bound lets the
// renames of a push that the link paces run while the rest is still on the
// wire, instead of all of them after its last datagram (and readers see
// the first files sooner).
const (
	readyBatch = 8192
	readyBytes = 64 << 20
	readyAge   = 250 * time.Millisecond
)

// staged is a verified file waiting in a batch to be renamed into place.
type staged struct {
	entry  int
	e      *wire.Entry
	tmp    *stage.Temp
	chunks []chunk.Chunk // verified chunk by chunk: the index keeps them
}

// batch is a set of verified files being renamed into place.
type batch struct {
	files []staged
	errs  []error
	done  chan struct{}
}

// finish verifies a fully received file and stages it for the rename.
func (s *Session) finish(f *file) (session.Verdict, *wire.Failure) {
	e := f.e
	err := f.flush()
	if err == nil {
		err = f.tmp.Truncate(int64(e.Size))
	}
	if err == nil {
		err = f.hashTo(int64(e.Size))
	}
	if err != nil {
		return session.Failed, fail(err)
	}
	if f.check != nil && !f.check.verified() || f.check == nil && f.digest.Sum64() != e.Hash {
		if n := s.notes[f.entry]; n != nil && n.basisPath != "" {
			s.a.cfg.Log.Warn("delta did not reproduce the file; fetching it whole", "path", e.Path, "basis", n.basisPath)
			s.a.cfg.Metrics.DeltaFallbacks.Inc()
		}
		return session.Mismatch, nil
	}
	var chunks []chunk.Chunk
	if f.check != nil {
		chunks = f.check.chunks()
	}
	if fl := s.stageFile(staged{entry: f.entry, e: e, tmp: f.tmp, chunks: chunks}); fl != nil {
		return session.Failed, fl
	}
	f.tmp = nil
	s.a.wbufs.put(f.wbuf)
	f.wbuf = nil
	delete(s.files, f.entry)
	return session.Staged, nil
}

// stageFile readies a verified temp file (conflict rule, metadata) and
// queues it for the rename into place. On failure the caller still owns
// the temp file.
func (s *Session) stageFile(st staged) *wire.Failure {
	e := st.e
	if s.newerWins() {
		// Check and rename must not be separated by another sender's
		// session renaming the same path (each sender has a receive loop
		// of its own): watcher sessions are small, they take turns.
		s.a.cfg.Turns.Lock()
		defer s.a.cfg.Turns.Unlock()
	}
	if kept, cp := s.recheck(e); kept != nil {
		return kept
	} else if cp {
		if err := s.keepConflictCopy(e.Path); err != nil {
			return &wire.Failure{Code: wire.FailConflict, Msg: "local edit could not be saved: " + err.Error()}
		}
	}
	meta := s.a.meta(e)
	if meta.SetOwner && s.ownedAsCreated(e) {
		meta.SetOwner = false
	}
	if err := st.tmp.Ready(meta); err != nil {
		return fail(err)
	}
	now := s.a.cfg.Now()
	if len(s.ready) == 0 {
		s.readySince = now
	}
	s.ready = append(s.ready, st)
	s.readyBytes += e.Size
	switch {
	case s.newerWins():
		// Renamed before the turn ends (see above).
		s.commitReady()
		s.settle(true)
	case len(s.ready) >= readyBatch || s.readyBytes >= readyBytes || now.Sub(s.readySince) >= readyAge:
		s.commitReady()
	}
	return nil
}

// commitReady renames the batch of ready files into place: on a goroutine
// of its own in a daemon (filesystem syncs take long enough to overflow
// the packet queue if the receive loop waited for them), inline in a
// simulation; settle collects the outcome.
func (s *Session) commitReady() {
	if len(s.ready) == 0 {
		return
	}
	// Batches already renamed give back their files' state now, not at
	// the session's end: a tree of 100,000 files would otherwise hold all
	// of it until the commit.
	s.settle(false)
	b := &batch{files: s.ready, done: make(chan struct{})}
	s.ready, s.readyBytes = nil, 0
	s.inflight = append(s.inflight, b)
	origin := s.r.Key().Node
	run := func() {
		temps := make([]*stage.Temp, len(b.files))
		for i, f := range b.files {
			temps[i] = f.tmp
		}
		b.errs = s.a.cfg.Dir.CommitAll(temps)
		// Recording the files (index, provenance) takes a stat each. The
		// entries do not change any more; the loop reads b.errs only once
		// done is closed.
		written := make([]tree.Written, 0, len(b.files))
		for i, err := range b.errs {
			if err != nil {
				continue
			}
			e := b.files[i].e
			written = append(written, tree.Written{Path: e.Path, Content: tree.Content{Size: int64(e.Size), Mtime: e.Mtime, Hash: e.Hash, Chunks: b.files[i].chunks}})
			s.a.cfg.Metrics.FilesApplied.Inc()
			s.a.cfg.Metrics.BytesApplied.Add(float64(e.Size))
			s.a.logApplied("applied", e.Path, origin)
		}
		s.a.noteAppliedFiles(written, origin)
		close(b.done)
	}
	if !s.a.cfg.Async {
		run()
		return
	}
	s.a.wg.Go(run)
}

// settle waits for the session's batches in flight (all of them, or with
// wait false only those already finished) and records their outcome.
func (s *Session) settle(wait bool) {
	kept := s.inflight[:0]
	for _, b := range s.inflight {
		if !wait {
			select {
			case <-b.done:
			default:
				kept = append(kept, b)
				continue
			}
		}
		<-b.done
		for i, err := range b.errs {
			if err != nil {
				s.r.Fail(b.files[i].entry, fail(err))
			}
		}
	}
	clear(s.inflight[len(kept):]) // the settled batches' files go with them
	s.inflight = kept
}

// commit applies what has no content (or only metadata), renames what
// waits, and answers with the session's result.
func (s *Session) commit() *session.Ready {
	apply := s.changesFiles()
	var deleted []string
	// Renaming, the index and the rest of a big tree take seconds: the
	// sender must hear from us meanwhile.
	_ = s.whileBusy(func() error {
		if apply {
			s.commitReady()
			s.applyRest()
			// Mirror deletes change directories' mtimes too: before the
			// last pass.
			deleted = s.mirror(true)
			s.dirMeta()
		}
		s.settle(true)
		if !apply {
			deleted = s.mirror(false)
		}
		return nil
	})
	s.countFailures()
	// Files still incomplete (this member was dropped from the session,
	// or restarted into it) are reported failed: their temp files go.
	for i := range s.files {
		s.dropFile(i)
	}
	rd := s.r.Committed(deleted)
	if apply && s.a.cfg.OnApplied != nil {
		s.a.cfg.OnApplied() // the root moved: let the others see it now
	}
	return rd
}

// entryRef is an entry of the session with its index.
type entryRef struct {
	i  int
	e  *wire.Entry
	st session.EntryState
}

// entries returns the session's entries, copied out of the session.
func (s *Session) entries() []entryRef {
	var out []entryRef
	s.r.Each(func(i int, e *wire.Entry, st session.EntryState) bool {
		c := *e
		out = append(out, entryRef{i, &c, st})
		return true
	})
	return out
}

// applyRest applies entries without content: directories first, then
// links, device nodes, empty and metadata-only files, hard links and
// deletions.
func (s *Session) applyRest() {
	all := s.entries()
	for _, r := range all {
		if r.st.Fail == nil && r.st.Change && r.e.Kind == wire.KindDir && r.e.Path != "." {
			s.try(r, func() error { return s.ensureDir(r.e) })
		}
	}
	for _, r := range all {
		if r.st.Fail != nil || !r.st.Change || r.st.Applied {
			continue
		}
		s.applyOne(r)
	}
	// Hard links need their first name in place.
	s.commitReady()
	s.settle(true)
	for _, r := range all {
		if r.e.Kind == wire.KindHardlink {
			s.applyLink(r)
		}
	}
	for _, r := range all {
		if r.e.Kind == wire.KindAbsent && r.st.Fail == nil && r.st.Change {
			s.applyDelete(r)
		}
	}
}

// ensureDir makes e a directory (decide made most of them already).
func (s *Session) ensureDir(e *wire.Entry) error {
	d := s.a.cfg.Dir
	if fi, err := d.Lstat(e.Path); err == nil && !fi.IsDir() {
		if err := d.Remove(e.Path); err != nil {
			return err
		}
	}
	return d.Mkdir(e.Path, s.a.meta(e))
}

func (s *Session) applyOne(r entryRef) {
	e := r.e
	d := s.a.cfg.Dir
	switch e.Kind {
	case wire.KindFile:
		switch n := s.notes[r.i]; {
		case e.Size == 0 && r.st.Data:
			s.try(r, func() error { return s.writeEmpty(r) })
		case n != nil && n.copied:
			// Staged at decide time; renamed with its batch, which
			// reports a failure of its own.
			s.r.SetApplied(r.i)
		case !r.st.Data:
			s.try(r, func() error { return d.SetMeta(e.Path, s.a.meta(e)) })
		}
	case wire.KindSymlink:
		s.try(r, func() error {
			if err := s.replaceDir(r.i, e); err != nil {
				return err
			}
			return d.Symlink(e.Path, e.Target, s.a.meta(e))
		})
	case wire.KindFifo, wire.KindCharDev, wire.KindBlockDev:
		s.try(r, func() error {
			if err := s.replaceDir(r.i, e); err != nil {
				return err
			}
			return d.Mknod(e.Path, s.a.meta(e), e.Rdev)
		})
	}
}

// writeEmpty creates an empty file through the normal write path.
func (s *Session) writeEmpty(r entryRef) error {
	f, err := s.openFile(r.i)
	if err != nil {
		return err
	}
	v, fl := s.finish(f)
	switch {
	case v == session.Staged:
		return nil
	case fl != nil:
		s.dropFile(r.i)
		return failure{fl}
	}
	s.dropFile(r.i)
	return fmt.Errorf("empty file does not match the offered hash")
}

// failure carries a prepared wire.Failure through an error return.
type failure struct{ f *wire.Failure }

func (f failure) Error() string { return f.f.Msg }

func (s *Session) applyLink(r entryRef) {
	e := r.e
	_, st, _ := s.r.Lookup(r.i)
	if st.Fail != nil {
		return
	}
	first, fst, ok := s.r.Lookup(int(e.LinkTo))
	if !ok || first.Kind != wire.KindFile {
		s.r.Fail(r.i, &wire.Failure{Code: wire.FailPath, Msg: "hard link to an entry that is not a file"})
		return
	}
	if fst.Fail != nil {
		s.r.Fail(r.i, &wire.Failure{Code: wire.FailIO, Msg: "hard link target " + first.Path + " failed"})
		return
	}
	if !r.st.Change || s.a.sameFile(e.Path, first.Path) {
		return
	}
	s.try(r, func() error {
		if err := s.replaceDir(r.i, e); err != nil {
			return err
		}
		return s.a.cfg.Dir.Link(e.Path, first.Path)
	})
}

// applyDelete deletes a path the sender no longer has, unless the
// conflict rule, checked again now, keeps a local edit.
func (s *Session) applyDelete(r entryRef) {
	if s.newerWins() {
		s.a.cfg.Turns.Lock()
		defer s.a.cfg.Turns.Unlock()
	}
	if kept, _ := s.recheck(r.e); kept != nil {
		s.r.Fail(r.i, kept)
		return
	}
	s.try(r, func() error { return s.a.cfg.Dir.RemoveAll(r.e.Path) })
	s.a.logApplied("deleted", r.e.Path, s.r.Key().Node)
}

// dirMeta sets the directories' metadata last, deepest first: creating
// entries in a directory changes its mtime.
func (s *Session) dirMeta() {
	all := s.entries()
	for k := len(all) - 1; k >= 0; k-- {
		r := all[k]
		if r.st.Fail == nil && r.e.Kind == wire.KindDir && r.e.Path != "." {
			if err := s.a.cfg.Dir.SetMeta(r.e.Path, s.a.meta(r.e)); err != nil {
				s.r.Fail(r.i, fail(err))
			}
			s.a.noteApplied(r.e.Path, s.r.Key().Node)
		}
	}
}

// replaceDir removes a directory standing where a non-directory must go:
// the sender's tree wins (decide noted it, and kept it if it held local
// edits under the conflict rule).
func (s *Session) replaceDir(i int, e *wire.Entry) error {
	if n := s.notes[i]; n == nil || !n.replaceDir {
		return nil
	}
	fi, err := s.a.cfg.Dir.Lstat(e.Path)
	if err == nil && fi.IsDir() {
		return s.a.cfg.Dir.RemoveAll(e.Path)
	}
	return nil
}

// stageCopy stages entry i as a copy of the local file from, which holds
// the offered content (the old name of a renamed file): nothing crosses
// the wire. It runs at decide time, so that a copy that cannot be made
// (the basis changed or went) falls back to fetching the content, and the
// copy is of the basis as it was, before this session replaces anything.
func (s *Session) stageCopy(i int, e *wire.Entry, from string) error {
	src, err := s.a.cfg.Dir.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	t, err := s.createTemp(i, e)
	if err != nil {
		return err
	}
	if err := s.copyProven(t, src, from, e); err != nil {
		t.Abort()
		return err
	}
	c := *e
	if fl := s.stageFile(staged{entry: i, e: &c, tmp: t}); fl != nil {
		t.Abort()
		return failure{fl}
	}
	return nil
}

// copyProven copies src (the local file from) into t and checks that what
// was copied has e's content. Where the index's key of src proves its hash
// before and after the copy, the kernel copies (sharing blocks where the
// filesystem can) and nothing is read; otherwise the bytes are hashed on
// the way.
func (s *Session) copyProven(t *stage.Temp, src *os.File, from string, e *wire.Entry) error {
	ix := s.a.cfg.Index
	proven := func() bool {
		fi, err := src.Stat()
		if err != nil {
			return false
		}
		h, ok := ix.CachedHash(from, fi)
		return ok && h == e.Hash
	}
	if proven() {
		if _, err := t.CopyFrom(src, 0, 0, int64(e.Size)); err != nil {
			return err
		}
		if !proven() {
			return fmt.Errorf("local copy of %s changed while copying", from)
		}
		return nil
	}
	h := xxhash.New()
	if _, err := io.Copy(io.MultiWriter(t, h), src); err != nil {
		return err
	}
	if h.Sum64() != e.Hash {
		return fmt.Errorf("local copy of %s changed while copying", from)
	}
	return nil
}

// try runs f for entry r and records the outcome.
func (s *Session) try(r entryRef, f func() error) {
	err := f()
	s.a.noteApplied(r.e.Path, s.r.Key().Node)
	if err != nil {
		if fe, ok := err.(failure); ok {
			s.r.Fail(r.i, fe.f)
			return
		}
		s.r.Fail(r.i, fail(err))
		return
	}
	s.r.SetApplied(r.i)
	if r.e.Kind != wire.KindAbsent {
		s.a.logApplied("applied", r.e.Path, s.r.Key().Node)
	}
}
