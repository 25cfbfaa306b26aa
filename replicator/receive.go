package replicator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/makuo/makuo/exclude"
	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/chunk"
	"github.com/makuo/makuo/replicator/stage"
	"github.com/makuo/makuo/replicator/tree"
	"github.com/makuo/makuo/replicator/wire"
)

// recvIdle is how long a receive session may go without hearing from its
// sender before it is abandoned and its staged files removed.
const recvIdle = 2 * time.Minute

type sessKey struct {
	node wire.NodeID
	id   uint64
}

// recvEntry is a receiver's state for one offered entry. A receiver holds
// one per offered entry for the whole session: 100,000 files make 100,000
// of them, so what only some entries need hangs off pointers.
type recvEntry struct {
	e      *wire.Entry
	fail   *wire.Failure
	tmp    *stage.Temp
	first  uint64
	blocks uint64
	w      *recvWrite // from the first block written until the file is done
	// basisPath is the local file to diff against (basis reported to the
	// sender); copyFrom a local file with exactly the offered content (a
	// rename).
	basisPath string
	copyFrom  string
	ck        *recvChunks // set by the first chunk-list part: a delta
	change    bool
	data      bool
	done      bool // content complete and applied
	applied   bool
	listed    bool // in receiver.written
	// conflictCopy: the local file is an edit not replicated yet that
	// loses to the offered version; it is kept under a conflict name.
	conflictCopy bool
}

// recvWrite is the state of a file whose content is being received.
// Blocks mostly arrive in order: they are gathered in wbuf (starting at
// file offset woff) and written in large pieces, and the whole-file hash
// advances over the received prefix as it grows, so verifying a complete
// file costs no second read.
type recvWrite struct {
	got    []uint64 // bitset of received blocks
	have   uint64
	contig uint64 // blocks [0, contig) all received
	wbuf   []byte
	woff   int64
	digest *xxhash.Digest
	hashed int64
}

func newRecvWrite(blocks uint64) *recvWrite {
	return &recvWrite{got: make([]uint64, (blocks+63)/64), digest: xxhash.New()}
}

// has reports whether block b (entry-relative) was received.
func (re *recvEntry) has(b uint64) bool {
	return re.w != nil && re.w.got[b/64]&(1<<(b%64)) != 0
}

// recvChunks is the delta state of an entry: refs collects the chunk
// list, plan is set once it is complete, parts remembers the Chunks
// messages to answer, fallback is set after a delta failed its hash check
// and the whole file is being fetched.
type recvChunks struct {
	refs      []wire.ChunkRef
	nrefs     int
	parts     map[uint32]int // first → count
	plan      *chunkPlan
	chunkNeed []bool
	fallback  bool
	busy      func() // keeps the sender informed during long local reads
}

// chunkPlan returns the entry's chunk layout, nil while it is received
// whole.
func (re *recvEntry) chunkPlan() *chunkPlan {
	if re.ck == nil {
		return nil
	}
	return re.ck.plan
}

// writeBufSize bounds the write-combining buffer of one file being
// received.
const writeBufSize = 256 << 10

// recvSession is a session this node receives.
type recvSession struct {
	key       sessKey
	flags     wire.SessionFlags
	lastData  time.Time // when the latest data datagram was handled (debug timing)
	blockSize int
	entries   []*recvEntry
	offered   int
	needs     map[uint32]*wire.Need
	excludes  []string
	ignored   bool // not a target
	layout    bool // blocks assigned
	order     []int
	pollFrom  int      // s.order before this index is done, failed or empty
	polledTo  uint64   // watermark of the latest poll answered
	digested  []string // subtrees brought up to date for a digest session
	deleted   []string // paths the mirror deleted at commit
	busyAt    time.Time
	// ready holds complete, verified files waiting to be renamed into
	// place together (two filesystem syncs per batch, not two per file).
	ready      []*recvEntry
	readyBytes uint64
	applying   []*applyBatch
	last       time.Time
	result     *wire.Result
}

// receiver owns every receive session; it runs on one goroutine.
type receiver struct {
	n        *Node
	dir      *stage.Dir
	sessions map[sessKey]*recvSession
	isRoot   bool
	// applying tracks batches being renamed into place by their own
	// goroutine: filesystem syncs take long enough to overflow the packet
	// queue if the receive loop waited for them.
	applying sync.WaitGroup
	// written lists the entries written to lately, oldest first: past
	// maxOpenTemps the oldest still incomplete one is parked (see park).
	written []*recvEntry
	// chunkBuf holds one chunk copied from a basis file; one for the
	// receiver rather than one per delta file (256 KiB of garbage each).
	chunkBuf []byte
	wbufs    bufPool // write-combining buffers of files being received
}

// maxOpenTemps bounds the temp files a receiver holds open with their
// write buffers. Under loss most files of a big tree wait for a repair;
// open, they would cost a descriptor and a buffer each.
const maxOpenTemps = 128

// applyBatch is a batch of verified files being renamed into place.
type applyBatch struct {
	entries []*recvEntry
	errs    []error
	done    chan struct{}
}

type recvItem struct {
	h   wire.Header
	msg wire.Message
	pkt interface{ Release() }
	// data, if set, is msg's reusable Data, returned with the packet.
	data *pooledData
	size int64 // data payload bytes counted in Node.queuedData
}

// release returns what the item holds for reuse.
func (it *recvItem) release() {
	if it.pkt != nil {
		it.pkt.Release()
	}
	if it.data != nil {
		it.data.release()
	}
}

func (r *receiver) run(ctx context.Context, in <-chan recvItem) {
	gc := time.NewTicker(10 * time.Second)
	defer gc.Stop()
	defer func() {
		for _, s := range r.sessions {
			r.discard(s)
		}
		r.applying.Wait()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case it := <-in:
			r.n.queuedData.Add(-it.size)
			r.handle(it)
			it.release()
		case now := <-gc.C:
			for k, s := range r.sessions {
				if now.Sub(s.last) > recvIdle {
					r.discard(s)
					delete(r.sessions, k)
				}
			}
		}
	}
}

func (r *receiver) handle(it recvItem) {
	var id uint64
	switch m := it.msg.(type) {
	case *wire.Offer:
		id = m.Session
	case *wire.Data:
		id = m.Session
	case *wire.Poll:
		id = m.Session
	case *wire.Commit:
		id = m.Session
	case *wire.Abort:
		id = m.Session
	case *wire.Chunks:
		id = m.Session
	default:
		return
	}
	key := sessKey{it.h.Node, id}
	s := r.sessions[key]
	if s == nil {
		o, ok := it.msg.(*wire.Offer)
		if !ok {
			return // data for a session we never joined: nothing to do with it
		}
		s = r.newSession(key, o)
		r.sessions[key] = s
	}
	s.last = time.Now()
	if s.ignored {
		return
	}
	if s.result != nil {
		// Committed: only a repeated commit (the result was lost) needs
		// an answer; anything else is a straggler of a finished session.
		switch it.msg.(type) {
		case *wire.Commit:
			r.n.conn.Send(s.result)
		case *wire.Abort:
			delete(r.sessions, key)
		}
		return
	}
	switch m := it.msg.(type) {
	case *wire.Offer:
		r.offer(s, m)
	case *wire.Data:
		s.lastData = s.last
		r.data(s, m)
	case *wire.Poll:
		r.poll(s, m)
	case *wire.Commit:
		r.commit(s)
	case *wire.Chunks:
		r.chunks(s, m)
	case *wire.Abort:
		r.discard(s)
		delete(r.sessions, key)
	}
}

func (r *receiver) newSession(key sessKey, o *wire.Offer) *recvSession {
	s := &recvSession{key: key, flags: o.Flags, blockSize: int(o.BlockSize),
		entries: make([]*recvEntry, o.Entries), needs: map[uint32]*wire.Need{}}
	if len(o.Targets) > 0 && !slices.Contains(o.Targets, r.n.ID()) {
		s.ignored = true
	}
	return s
}

// offer decides, for each entry of o, whether this member changes it and
// needs its content, and answers with a Need (the same one again for a
// repeated offer).
func (r *receiver) offer(s *recvSession, o *wire.Offer) {
	if need := s.needs[o.Index]; need != nil {
		r.n.conn.Send(need)
		return
	}
	if o.Entries != uint32(len(s.entries)) || o.BlockSize != uint32(s.blockSize) {
		r.n.met.Drop(metrics.DropMalformed)
		return
	}
	if o.Index == 0 {
		s.excludes = o.Excludes
	}
	need := wire.NewNeed(s.key.id, o.Index, len(o.Items))
	for i := range o.Items {
		e := &o.Items[i]
		idx := int(o.First) + i
		if s.entries[idx] != nil {
			continue
		}
		re := &recvEntry{e: e}
		s.entries[idx] = re
		s.offered++
		r.decide(s, re)
		if re.change {
			wire.Set(need.Change, i)
		}
		if re.data {
			wire.Set(need.Data, i)
		}
		if re.data && re.basisPath != "" {
			wire.Set(need.Basis, i)
		}
	}
	s.needs[o.Index] = need
	r.n.conn.Send(need)
}

// decide compares an offered entry with the local path.
func (r *receiver) decide(s *recvSession, re *recvEntry) {
	e := re.e
	check := s.flags&wire.SessionCheck != 0
	if s.flags&wire.SessionDigest != 0 {
		r.decideDigest(s, re)
		return
	}
	if e.Path == "." {
		if e.Kind != wire.KindDir {
			re.fail = &wire.Failure{Code: wire.FailPath, Msg: "the base directory itself must be a directory"}
			re.change = true
		}
		return
	}
	if err := stage.CheckPath(e.Path); err != nil {
		r.n.met.Drop(metrics.DropPath)
		re.fail = &wire.Failure{Code: wire.FailPath, Msg: err.Error()}
		re.change = true
		return
	}
	fi, err := r.dir.Lstat(e.Path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		re.fail = &wire.Failure{Code: failCode(err), Msg: err.Error()}
		re.change = true
		return
	}
	if exists && r.n.cfg.OwnerMatch && e.Kind != wire.KindAbsent {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && (st.Uid != e.Uid || st.Gid != e.Gid) {
			re.fail = &wire.Failure{Code: wire.FailOwner, Msg: fmt.Sprintf("local owner %d:%d, offered %d:%d", st.Uid, st.Gid, e.Uid, e.Gid)}
			re.change = true
			return
		}
	}
	if s.flags&wire.SessionNewerWins != 0 && r.n.cfg.Watch && exists && !fi.IsDir() && r.localWins(s, re, fi) {
		return
	}
	switch e.Kind {
	case wire.KindAbsent:
		re.change = exists
	case wire.KindFile:
		if !check && e.Flags&wire.EntryBasis != 0 && (!exists || !fi.Mode().IsRegular() || fi.Size() != int64(e.Size)) {
			if r.useBasis(s, re) {
				return
			}
		}
		if !exists || !fi.Mode().IsRegular() || fi.Size() != int64(e.Size) {
			re.change, re.data = true, true
			if exists && fi.Mode().IsRegular() && fi.Size() >= chunk.MinSize && re.basisPath == "" {
				re.basisPath = e.Path
			}
			return
		}
		// Same size: compare content (cached by inode, size, mtime and
		// ctime), so a touched file costs a metadata update, not a copy.
		if h, err := r.localHash(s, e.Path, fi); err != nil || h != e.Hash {
			re.change, re.data = true, true
			if fi.Size() >= chunk.MinSize {
				re.basisPath = e.Path
			}
			return
		}
		re.change = !check && r.metaDiffers(e, fi)
	case wire.KindDir:
		re.change = !exists || !fi.IsDir() || r.metaDiffers(e, fi)
	case wire.KindSymlink:
		if !exists || fi.Mode()&fs.ModeSymlink == 0 {
			re.change = true
			return
		}
		t, err := r.dir.Readlink(e.Path)
		re.change = err != nil || t != e.Target || (r.isRoot && r.ownerDiffers(e, fi))
	case wire.KindHardlink:
		// Already a name of the first file's inode, and that file is not
		// being replaced (which would give it a new inode): nothing to do.
		re.change = true
		if int(e.LinkTo) < len(s.entries) {
			if f := s.entries[e.LinkTo]; f != nil && !f.data && sameFile(r.dir, e.Path, f.e.Path) {
				re.change = false
			}
		}
	case wire.KindFifo, wire.KindCharDev, wire.KindBlockDev:
		re.change = !exists || fileKind(fi) != e.Kind || r.metaDiffers(e, fi) || rdevOf(fi) != e.Rdev
	}
	if check && e.Kind != wire.KindFile && e.Kind != wire.KindAbsent {
		// A check compares content and type, not metadata.
		re.change = !exists || fileKind(fi) != e.Kind
		if !re.change && e.Kind == wire.KindSymlink {
			t, err := r.dir.Readlink(e.Path)
			re.change = err != nil || t != e.Target
		}
	}
}

// decideDigest compares an offered directory's Merkle hash with the local
// one: Change means the subtree differs. The index is brought up to date
// first, once per subtree (the offer lists a directory before what is
// below it), so that changes made behind the daemon's back count.
func (r *receiver) decideDigest(s *recvSession, re *recvEntry) {
	e := re.e
	re.change = true
	if e.Kind != wire.KindDir || e.Flags&wire.EntryDigest == 0 || (e.Path != "." && stage.CheckPath(e.Path) != nil) {
		return
	}
	fresh := false
	for _, u := range s.digested {
		fresh = fresh || u == "." || e.Path == u || strings.HasPrefix(e.Path, u+"/")
	}
	if !fresh {
		s.digested = append(s.digested, e.Path)
		if err := r.whileBusy(s, func() error {
			_, err := r.n.index.UpdateTree(context.Background(), e.Path)
			return err
		}); err != nil {
			return
		}
	}
	h, ok := r.n.index.DirHash(e.Path)
	re.change = !ok || h != e.Hash
}

// localWins applies the conflict rule of watcher-driven sessions to a
// path that exists locally: every member converges on the version with the
// newest mtime, ties going to the higher node id; a local edit not yet
// replicated that loses is saved as a conflict copy. It reports whether the
// local version stays (recorded as a conflict failure).
func (r *receiver) localWins(s *recvSession, re *recvEntry, fi fs.FileInfo) bool {
	e := re.e
	// Only regular files carry local edits worth protecting.
	replicated := !fi.Mode().IsRegular() || !r.n.synced.localEdit(e.Path, fi)
	origin, known := r.n.echo.origin(e.Path, fi, nil)
	if !replicated || !known {
		origin = r.n.ID()
	}
	if e.Kind == wire.KindFile && fi.Mode().IsRegular() && fi.Size() == int64(e.Size) {
		if h, err := r.localHash(s, e.Path, fi); err == nil && h == e.Hash {
			return false // same content: no conflict, at most metadata
		}
	}
	lm := fi.ModTime().UnixNano()
	if e.Kind == wire.KindAbsent {
		if replicated {
			return false
		}
		re.change = true
		re.fail = &wire.Failure{Code: wire.FailConflict, Msg: "kept a local edit that was deleted elsewhere"}
		return true
	}
	if lm > e.Mtime || (lm == e.Mtime && origin > s.key.node) {
		re.change = true
		re.fail = &wire.Failure{Code: wire.FailConflict, Msg: "kept the newer local version"}
		return true
	}
	re.conflictCopy = !replicated && fi.Mode().IsRegular()
	return false
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

// useBasis looks at the basis the sender named (the old name of a renamed
// file): with the same content the file is copied locally and nothing
// crosses the wire; with different content it is the basis of a delta.
// It reports whether it settled the entry.
func (r *receiver) useBasis(s *recvSession, re *recvEntry) bool {
	e := re.e
	if stage.CheckPath(e.Basis) != nil {
		return false
	}
	fi, err := r.dir.Lstat(e.Basis)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	if fi.Size() == int64(e.Size) {
		if h, err := r.localHash(s, e.Basis, fi); err == nil && h == e.Hash {
			re.change, re.copyFrom = true, e.Basis
			return true
		}
	}
	if fi.Size() >= chunk.MinSize {
		re.basisPath = e.Basis
	}
	return false
}

// localHash returns the content hash of the local file rel from the index,
// which reads the file only if it changed since it last did.
func (r *receiver) localHash(s *recvSession, rel string, fi fs.FileInfo) (uint64, error) {
	if h, ok := r.n.index.CachedHash(rel, fi); ok {
		return h, nil
	}
	var e tree.Entry
	err := r.whileBusy(s, func() error {
		if _, err := r.n.index.Update(rel); err != nil {
			return err
		}
		var ok bool
		if e, ok = r.n.index.Lookup(rel); !ok || e.Kind != tree.KindFile {
			return fmt.Errorf("%s: not a regular file", rel)
		}
		return nil
	})
	return e.Hash, err
}

// whileBusy runs f, telling the sender twice a second that this receiver
// is still at work: reading a large local file takes longer than the
// sender waits for a silent member.
func (r *receiver) whileBusy(s *recvSession, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-t.C:
			s.busyAt = time.Time{}
			r.busy(s)
		}
	}
}

// busy tells the sender, at most twice a second, that this receiver is
// still working on the session: reading a large local file blocks the
// receiver for longer than the sender waits for silent members.
func (r *receiver) busy(s *recvSession) {
	if now := time.Now(); now.Sub(s.busyAt) > 500*time.Millisecond {
		s.busyAt = now
		r.n.conn.Send(&wire.Busy{Session: s.key.id})
	}
}

// busyReader calls f every few MiB read.
type busyReader struct {
	r    io.Reader
	f    func()
	read int
}

func (b *busyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read += n
	if b.read > 8<<20 {
		b.read = 0
		b.f()
	}
	return n, err
}

func (r *receiver) metaDiffers(e *wire.Entry, fi fs.FileInfo) bool {
	if uint32(modeBits(fi.Mode())) != e.Mode {
		return true
	}
	if e.Kind != wire.KindDir && fi.ModTime().UnixNano() != e.Mtime {
		return true
	}
	return r.isRoot && r.ownerDiffers(e, fi)
}

func (r *receiver) ownerDiffers(e *wire.Entry, fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && (st.Uid != e.Uid || st.Gid != e.Gid)
}

// assignBlocks computes the block layout once every offer is in.
func (r *receiver) assignBlocks(s *recvSession) {
	var next, need uint64
	free := r.dir.Free()
	for i, re := range s.entries {
		if re.e.Kind != wire.KindFile {
			continue
		}
		re.first = next
		re.blocks = blocksOf(re.e.Size, s.blockSize)
		next += blockBudget(re.e.Size, s.blockSize)
		if re.data && re.fail == nil {
			// Room first: a file that cannot fit fails now with a clear
			// reason, and an offer cannot make this member reserve state
			// for more content than its disk could take.
			if need += re.e.Size; need > free {
				re.fail = &wire.Failure{Code: wire.FailNoSpace, Msg: fmt.Sprintf("%d bytes needed, %d free", need, free)}
				continue
			}
			s.order = append(s.order, i)
		}
	}
	s.layout = true
}

func (r *receiver) complete(s *recvSession) bool {
	if s.offered < len(s.entries) {
		return false
	}
	if !s.layout {
		r.assignBlocks(s)
	}
	return true
}

// entryFor finds the needed entry that owns block b.
func (s *recvSession) entryFor(b uint64) *recvEntry {
	k, found := slices.BinarySearchFunc(s.order, b, func(i int, b uint64) int {
		re := s.entries[i]
		switch {
		case b < re.first:
			return 1
		case b >= re.first+re.blocks:
			return -1
		}
		return 0
	})
	if !found {
		return nil
	}
	return s.entries[s.order[k]]
}

func (r *receiver) data(s *recvSession, m *wire.Data) {
	if !r.complete(s) {
		return // offers still missing: the block will be repaired later
	}
	re := s.entryFor(m.Block)
	if re == nil || re.done || re.fail != nil {
		return
	}
	bi := m.Block - re.first
	if re.has(bi) {
		return
	}
	off, want := re.locate(bi, s.blockSize)
	if len(m.Bytes) != want {
		r.n.met.Drop(metrics.DropMalformed)
		return
	}
	if s.flags&(wire.SessionDryRun|wire.SessionCheck) != 0 {
		return
	}
	if re.tmp == nil {
		t, err := r.dir.CreateTemp(re.e.Path)
		if err != nil {
			re.fail = &wire.Failure{Code: failCode(err), Msg: err.Error()}
			return
		}
		re.tmp = t
	}
	if re.w == nil {
		re.w = newRecvWrite(re.blocks)
	}
	if !re.listed {
		r.noteWritten(re)
	}
	if err := re.write(m.Bytes, off, &r.wbufs); err != nil {
		re.fail = &wire.Failure{Code: failCode(err), Msg: err.Error()}
		r.dropTemp(re)
		return
	}
	re.w.got[bi/64] |= 1 << (bi % 64)
	re.w.have++
	for re.w.contig < re.blocks && re.w.got[re.w.contig/64]&(1<<(re.w.contig%64)) != 0 {
		re.w.contig++
	}
	if err := re.hashPrefix(s.blockSize); err != nil {
		re.fail = &wire.Failure{Code: failCode(err), Msg: err.Error()}
		r.dropTemp(re)
		return
	}
	if re.w.have == re.blocks {
		r.finishFile(s, re)
	}
}

// locate maps an entry-relative block to the file offset and length it
// carries, whole or as part of a chunk.
func (re *recvEntry) locate(local uint64, bs int) (int64, int) {
	if p := re.chunkPlan(); p != nil {
		_, off, n := p.locate(local, bs)
		return off, n
	}
	return wholeLocate(local, bs, re.e.Size)
}

// write stages b at file offset off, combining contiguous blocks in a
// buffer from pool.
func (re *recvEntry) write(b []byte, off int64, pool *bufPool) error {
	if len(re.w.wbuf) > 0 && off == re.w.woff+int64(len(re.w.wbuf)) && len(re.w.wbuf)+len(b) <= cap(re.w.wbuf) {
		re.w.wbuf = append(re.w.wbuf, b...)
		return nil
	}
	if err := re.flush(); err != nil {
		return err
	}
	if re.w.wbuf == nil {
		re.w.wbuf = pool.get(min(writeBufSize, max(int(re.e.Size), len(b))))
	}
	if len(b) > cap(re.w.wbuf) {
		_, err := re.tmp.WriteAt(b, off)
		return err
	}
	re.w.woff = off
	re.w.wbuf = append(re.w.wbuf[:0], b...)
	return nil
}

// flush writes the combined blocks out.
func (re *recvEntry) flush() error {
	if len(re.w.wbuf) == 0 {
		return nil
	}
	_, err := re.tmp.WriteAt(re.w.wbuf, re.w.woff)
	re.w.wbuf = re.w.wbuf[:0]
	return err
}

// hashPrefix feeds the digest up to the end of the received prefix, from
// the write buffer when it holds those bytes, else from the temp file.
func (re *recvEntry) hashPrefix(blockSize int) error {
	var end int64
	if re.w.contig > 0 {
		off, n := re.locate(re.w.contig-1, blockSize)
		end = off + int64(n)
	}
	if end <= re.w.hashed {
		return nil
	}
	if re.w.hashed >= re.w.woff && end <= re.w.woff+int64(len(re.w.wbuf)) {
		re.w.digest.Write(re.w.wbuf[re.w.hashed-re.w.woff : end-re.w.woff])
		re.w.hashed = end
		return nil
	}
	if err := re.flush(); err != nil {
		return err
	}
	var src io.Reader = io.NewSectionReader(re.tmp, re.w.hashed, end-re.w.hashed)
	if re.ck != nil && re.ck.busy != nil {
		src = &busyReader{r: src, f: re.ck.busy}
	}
	if _, err := io.Copy(re.w.digest, src); err != nil {
		return err
	}
	re.w.hashed = end
	return nil
}

// finishFile verifies a fully received file and renames it into place.
func (r *receiver) finishFile(s *recvSession, re *recvEntry) {
	t := re.tmp
	if t == nil { // empty file
		var err error
		if t, err = r.dir.CreateTemp(re.e.Path); err != nil {
			re.fail = &wire.Failure{Code: failCode(err), Msg: err.Error()}
			return
		}
		re.tmp = t
	}
	if re.w == nil { // nothing written: an empty file
		re.w = newRecvWrite(re.blocks)
	}
	err := re.flush()
	if err == nil {
		err = t.Truncate(int64(re.e.Size))
	}
	if err == nil {
		err = re.hashPrefix(s.blockSize)
	}
	r.wbufs.put(re.w.wbuf)
	re.w.wbuf = nil
	if err != nil {
		re.fail = &wire.Failure{Code: failCode(err), Msg: err.Error()}
		r.dropTemp(re)
		return
	}
	if re.w.digest.Sum64() != re.e.Hash {
		if re.chunkPlan() != nil && !re.ck.fallback {
			// The basis lied (changed or corrupted behind our back): fetch
			// every chunk; the next Nack asks for them.
			r.n.log.Warn("delta did not reproduce the file; fetching it whole", "path", re.e.Path, "basis", re.basisPath)
			r.n.met.DeltaFallbacks.Inc()
			re.ck.fallback = true
			re.w = newRecvWrite(re.blocks)
			return
		}
		re.fail = &wire.Failure{Code: wire.FailHash, Msg: "received content does not match the offered hash (file changed on the sender while sending?)"}
		r.dropTemp(re)
		return
	}
	// No check for a directory at the target here (it cost a path walk per
	// file): CreateTemp refused one, and one made since fails the rename
	// with ErrIsDir, reported like any failed file.
	if s.flags&wire.SessionNewerWins != 0 && r.n.cfg.Watch {
		// Decided at offer time; another session may have applied a newer
		// version since: the conflict rule is checked again at apply time.
		re.conflictCopy = false
		if fi, err := r.dir.Lstat(re.e.Path); err == nil && !fi.IsDir() && r.localWins(s, re, fi) {
			r.dropTemp(re)
			return
		}
	}
	if re.conflictCopy {
		// A second name for the losing inode: the rename below replaces
		// the path, the copy keeps the local edit.
		cp := conflictName(re.e.Path, r.n.cfg.Hostname, time.Now())
		if err := r.dir.Link(cp, re.e.Path); err != nil {
			r.n.log.Warn("could not keep a conflict copy; not replacing the local edit", "path", re.e.Path, "err", err)
			re.fail = &wire.Failure{Code: wire.FailConflict, Msg: "local edit could not be saved: " + err.Error()}
			r.dropTemp(re)
			return
		}
		r.n.log.Warn("concurrent edit: kept the local version as a conflict copy", "path", re.e.Path, "copy", cp)
	}
	if err := t.Ready(r.meta(re.e)); err != nil {
		re.fail = &wire.Failure{Code: failCode(err), Msg: err.Error()}
		r.dropTemp(re)
		return
	}
	re.done, re.applied, re.w = true, true, nil
	s.ready = append(s.ready, re)
	s.readyBytes += re.e.Size
	switch {
	case s.flags&wire.SessionNewerWins != 0:
		// Check and rename must not be separated by another session's
		// rename: watcher sessions are small, commit at once.
		r.commitReady(s)
		r.settle(s, true)
	case len(s.ready) >= readyBatch || s.readyBytes >= readyBytes:
		r.commitReady(s)
	}
}

// Batching of renames: up to this many files or bytes wait for one pair of
// filesystem syncs. Large files go at once so readers see them promptly.
const (
	readyBatch = 8192
	readyBytes = 64 << 20
)

// commitReady starts renaming the batch of ready files into place, on a
// goroutine of its own; settle collects the outcome.
func (r *receiver) commitReady(s *recvSession) {
	if len(s.ready) == 0 {
		return
	}
	b := &applyBatch{entries: s.ready, done: make(chan struct{})}
	s.ready, s.readyBytes = nil, 0
	s.applying = append(s.applying, b)
	temps := make([]*stage.Temp, len(b.entries))
	for i, re := range b.entries {
		temps[i] = re.tmp
	}
	origin := s.key.node
	r.applying.Add(1)
	go func() {
		defer r.applying.Done()
		b.errs = r.dir.CommitAll(temps)
		// Recording the files (index, echo guard) takes a stat each:
		// tens of milliseconds a batch that the receive loop, meanwhile
		// taking datagrams off the queue, cannot spare. The entries' offered
		// fields do not change any more; the loop reads b.errs only once
		// done is closed.
		written := make([]tree.Written, 0, len(b.entries))
		for i, err := range b.errs {
			if err != nil {
				continue
			}
			e := b.entries[i].e
			written = append(written, tree.Written{Path: e.Path,
				Content: tree.Content{Size: int64(e.Size), Mtime: e.Mtime, Hash: e.Hash}})
			r.n.met.FilesApplied.Inc()
			r.n.met.BytesApplied.Add(float64(e.Size))
		}
		r.n.noteAppliedFiles(written, origin)
		close(b.done)
	}()
}

// settle waits for the session's batches in flight (all of them, or with
// wait false only those already finished) and records their outcome.
func (r *receiver) settle(s *recvSession, wait bool) {
	kept := s.applying[:0]
	for _, b := range s.applying {
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
			re := b.entries[i]
			re.tmp = nil
			if err != nil {
				re.applied = false
				re.fail = &wire.Failure{Code: failCode(err), Msg: err.Error()}
			}
		}
	}
	s.applying = kept
}

// replaceDir removes a directory standing where a non-directory must go:
// the sender's tree wins.
func (r *receiver) replaceDir(rel string) error {
	fi, err := r.dir.Lstat(rel)
	if err == nil && fi.IsDir() {
		return r.dir.RemoveAll(rel)
	}
	return nil
}

// noteWritten lists re as written to and parks the oldest listed entry
// still waiting for blocks once more than maxOpenTemps are listed.
func (r *receiver) noteWritten(re *recvEntry) {
	re.listed = true
	r.written = append(r.written, re)
	for len(r.written) > maxOpenTemps {
		old := r.written[0]
		r.written[0] = nil
		r.written = r.written[1:]
		old.listed = false
		if old.tmp != nil && !old.done && old.fail == nil {
			r.park(old)
		}
	}
}

// park writes out re's buffered blocks, frees the buffer and closes the
// temp file until its next block arrives.
func (r *receiver) park(re *recvEntry) {
	err := re.flush()
	if err == nil {
		err = re.tmp.Park()
	}
	r.wbufs.put(re.w.wbuf)
	re.w.wbuf = nil
	if err != nil {
		re.fail = &wire.Failure{Code: failCode(err), Msg: err.Error()}
		r.dropTemp(re)
	}
}

func (r *receiver) dropTemp(re *recvEntry) {
	if re.tmp != nil {
		re.tmp.Abort()
		re.tmp = nil
	}
	if re.w != nil {
		r.wbufs.put(re.w.wbuf)
		re.w = nil
	}
}

func (r *receiver) poll(s *recvSession, m *wire.Poll) {
	r.settle(s, false)
	if !r.complete(s) {
		return // the sender re-offers; answering now would claim too much
	}
	nack := &wire.Nack{Session: s.key.id, Round: m.Round}
	room := (r.n.conn.MaxPayload() - wire.NackHeaderLen) / wire.NackRangeLen
	lo, hi := s.polledTo, m.Watermark
	if hi > lo {
		s.polledTo = hi
	} else {
		lo = hi // a repeated or reordered poll: no loss window
	}
	// s.order is sorted by first block: start at the first entry still
	// missing blocks or inside the loss window, stop at the watermark.
	for s.pollFrom < len(s.order) {
		if re := s.entries[s.order[s.pollFrom]]; !re.done && re.fail == nil && re.blocks > 0 {
			break
		}
		s.pollFrom++
	}
	from, _ := slices.BinarySearchFunc(s.order, lo, func(i int, b uint64) int {
		if re := s.entries[i]; re.first+re.blocks <= b {
			return -1
		}
		return 1
	})
	for _, i := range s.order[min(from, s.pollFrom):] {
		re := s.entries[i]
		if re.first >= m.Watermark {
			break
		}
		end := min(re.blocks, m.Watermark-re.first)
		if ws, we := max(lo, re.first), min(hi, re.first+end); we > ws {
			nack.WindowSize += uint32(we - ws)
		}
		if re.done || re.fail != nil {
			continue
		}
		var from uint64
		if re.w != nil {
			from = re.w.contig
		}
		for b := from; b < end; b++ {
			if re.has(b) {
				continue
			}
			abs := re.first + b
			if n := len(nack.Ranges); n > 0 && nack.Ranges[n-1].Start+uint64(nack.Ranges[n-1].Count) == abs {
				nack.Ranges[n-1].Count++
			} else if n < room {
				nack.Ranges = append(nack.Ranges, wire.Range{Start: abs, Count: 1})
			} else {
				// Full: Missing is then a lower bound, which is all the
				// sender needs (zero or not), and the work per poll stays
				// bounded whatever the offered sizes.
				nack.Flags |= wire.NackTruncated
				break
			}
			nack.Missing++
			if abs >= lo && abs < hi {
				nack.WindowLost++
			}
		}
	}
	r.n.conn.Send(nack)
	r.n.met.NacksSent.Inc()
}

// commit applies what has no content (or only metadata) and answers with
// the session's result.
func (r *receiver) commit(s *recvSession) {
	if !r.complete(s) {
		return
	}
	res := &wire.Result{Session: s.key.id}
	apply := s.flags&(wire.SessionDryRun|wire.SessionCheck) == 0
	start := time.Now()
	// Renaming, the index and the rest of a big tree take seconds: the
	// sender must hear from us meanwhile.
	_ = r.whileBusy(s, func() error {
		if apply {
			r.commitReady(s)
			r.applyRest(s)
		}
		r.settle(s, true)
		return nil
	})
	r.n.log.Debug("session committed", "session", s.key.id, "since_last_data", start.Sub(s.lastData), "seconds", time.Since(start).Seconds())
	for i, re := range s.entries {
		switch {
		case re.fail != nil:
			res.Failed++
			r.n.met.ApplyErrors.WithLabelValues(applyReason(re.fail.Code)).Inc()
			f := *re.fail
			f.Entry = uint32(i)
			res.Failures = append(res.Failures, f)
		case re.applied:
			res.Applied++
		case apply && re.data && !re.done:
			res.Failed++
			res.Failures = append(res.Failures, wire.Failure{Entry: uint32(i), Code: wire.FailIO, Msg: "content incomplete"})
		}
	}
	deleted := s.deleted
	if !apply {
		deleted = r.mirror(s, false)
	}
	res.DeleteCount = uint32(len(deleted))
	res.Deleted = deleted
	fitResult(res, r.n.conn.MaxPayload())
	s.result = res
	r.n.conn.Send(res)
	// The session stays until recvIdle to answer a repeated commit; the
	// result is all it needs for that. Its entries (hundreds of bytes per
	// file: 50 MB for 100,000 files) go now, not two minutes later.
	s.entries, s.needs, s.order, s.ready, s.excludes, s.digested, s.deleted = nil, nil, nil, nil, nil, nil, nil
	if apply {
		r.n.members.Kick() // the root moved: let the others see it now
	}
}

// fitResult trims the lists of res so that it fits one datagram.
func fitResult(res *wire.Result, room int) {
	for len(res.AppendPayload(nil)) > room {
		res.Flags |= wire.ResultTruncated
		switch {
		case len(res.Deleted) > 0:
			res.Deleted = res.Deleted[:len(res.Deleted)/2]
		case len(res.Failures) > 0:
			res.Failures = res.Failures[:len(res.Failures)/2]
		default:
			return
		}
	}
}

// applyRest applies entries without content: directories first, then
// links, device nodes, empty and metadata-only files, deletions, and last
// the directories' metadata, deepest first (creating entries in a directory
// changes its mtime).
func (r *receiver) applyRest(s *recvSession) {
	for _, re := range s.entries {
		if re.fail == nil && re.change && re.e.Kind == wire.KindDir && re.e.Path != "." {
			r.try(s, re, func() error {
				if fi, err := r.dir.Lstat(re.e.Path); err == nil && !fi.IsDir() {
					if err := r.dir.Remove(re.e.Path); err != nil {
						return err
					}
				}
				return r.dir.Mkdir(re.e.Path, r.meta(re.e))
			})
		}
	}
	for _, re := range s.entries {
		e := re.e
		if re.fail != nil || !re.change || re.applied {
			continue
		}
		switch e.Kind {
		case wire.KindFile:
			if e.Size == 0 && re.data {
				r.finishFile(s, re)
			} else if re.copyFrom != "" {
				r.try(s, re, func() error { return r.copyLocal(re) })
			} else if !re.data {
				r.try(s, re, func() error { return r.dir.SetMeta(e.Path, r.meta(e)) })
			}
		case wire.KindSymlink:
			r.try(s, re, func() error {
				if err := r.replaceDir(e.Path); err != nil {
					return err
				}
				return r.dir.Symlink(e.Path, e.Target, r.meta(e))
			})
		case wire.KindFifo, wire.KindCharDev, wire.KindBlockDev:
			r.try(s, re, func() error {
				if err := r.replaceDir(e.Path); err != nil {
					return err
				}
				return r.dir.Mknod(e.Path, r.meta(e), e.Rdev)
			})
		}
	}
	// Hard links need their first name in place.
	r.commitReady(s)
	r.settle(s, true)
	for _, re := range s.entries {
		e := re.e
		if re.fail != nil || e.Kind != wire.KindHardlink {
			continue
		}
		if int(e.LinkTo) >= len(s.entries) || s.entries[e.LinkTo].e.Kind != wire.KindFile {
			re.fail = &wire.Failure{Code: wire.FailPath, Msg: "hard link to an entry that is not a file"}
			continue
		}
		first := s.entries[e.LinkTo]
		if first.fail != nil {
			re.fail = &wire.Failure{Code: wire.FailIO, Msg: "hard link target " + first.e.Path + " failed"}
			continue
		}
		if sameFile(r.dir, e.Path, first.e.Path) {
			re.change = false
			continue
		}
		r.try(s, re, func() error {
			if err := r.replaceDir(e.Path); err != nil {
				return err
			}
			return r.dir.Link(e.Path, first.e.Path)
		})
	}
	for _, re := range s.entries {
		if re.fail == nil && re.change && re.e.Kind == wire.KindAbsent {
			r.try(s, re, func() error { return r.dir.RemoveAll(re.e.Path) })
		}
	}
	// Mirror deletes change directories' mtimes too: before the last pass.
	s.deleted = r.mirror(s, true)
	for i := len(s.entries) - 1; i >= 0; i-- {
		re := s.entries[i]
		if re.fail == nil && re.e.Kind == wire.KindDir && re.e.Path != "." {
			if err := r.dir.SetMeta(re.e.Path, r.meta(re.e)); err != nil && re.fail == nil {
				re.fail = &wire.Failure{Code: failCode(err), Msg: err.Error()}
			}
			r.n.noteApplied(re.e.Path, s.key.node)
		}
	}
}

// copyLocal builds a file from a local copy with the same content (the
// basis of a rename): the kernel copies, nothing crosses the wire.
func (r *receiver) copyLocal(re *recvEntry) error {
	src, err := r.dir.Open(re.copyFrom)
	if err != nil {
		return err
	}
	defer src.Close()
	t, err := r.dir.CreateTemp(re.e.Path)
	if err != nil {
		return err
	}
	defer t.Abort()
	d := xxhash.New()
	if _, err := io.Copy(io.MultiWriter(t, d), src); err != nil {
		return err
	}
	if d.Sum64() != re.e.Hash {
		return fmt.Errorf("local copy of %s changed while copying", re.copyFrom)
	}
	if err := r.replaceDir(re.e.Path); err != nil {
		return err
	}
	return t.Commit(r.meta(re.e))
}

func (r *receiver) try(s *recvSession, re *recvEntry, f func() error) {
	err := f()
	r.n.noteApplied(re.e.Path, s.key.node)
	if err != nil {
		re.fail = &wire.Failure{Code: failCode(err), Msg: err.Error()}
		return
	}
	re.applied = true
}

// mirror deletes, below every directory offered with EntryMirror, what the
// session did not offer and the excludes do not protect; with apply false
// it only lists what it would delete.
func (r *receiver) mirror(s *recvSession, apply bool) []string {
	offered := make(map[string]bool, len(s.entries))
	same := map[string]bool{}
	var roots []string
	for _, re := range s.entries {
		offered[re.e.Path] = true
		if re.e.Kind == wire.KindDir && re.e.Flags&wire.EntrySame != 0 {
			same[re.e.Path] = true
		}
		if re.e.Kind == wire.KindDir && re.e.Flags&wire.EntryMirror != 0 && re.fail == nil {
			roots = append(roots, re.e.Path)
		}
	}
	if len(roots) == 0 {
		return nil
	}
	excl, err := exclude.New(s.excludes)
	if err != nil {
		r.n.log.Warn("bad exclude pattern from sender; not mirroring", "err", err)
		return nil
	}
	var deleted, dirs []string
	for _, root := range roots {
		if same[root] {
			continue // matched everywhere: its contents were not offered
		}
		_ = fs.WalkDir(r.n.root.FS(), root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == root {
				return nil
			}
			if stage.IsTempName(d.Name()) || excl.Match(p, d.IsDir()) {
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if offered[p] {
				if same[p] {
					return fs.SkipDir // matched everywhere: its contents were not offered
				}
				return nil
			}
			if d.IsDir() {
				// Walk in: excluded paths below it are protected; the
				// directory goes afterwards if nothing protected is left.
				dirs = append(dirs, p)
				return nil
			}
			if s.flags&wire.SessionNewerWins != 0 && r.n.isLocalEdit(p) {
				// A watcher's rescan spares this member's own edits that
				// have not reached the others yet.
				return nil
			}
			deleted = append(deleted, p)
			if apply {
				if err := r.dir.Remove(p); err != nil {
					r.n.log.Warn("mirror delete failed", "path", p, "err", err)
				}
				r.n.noteApplied(p, s.key.node)
			}
			return nil
		})
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		p := dirs[i]
		if !apply {
			if !r.holdsProtected(p, excl, offered) {
				deleted = append(deleted, p)
			}
			continue
		}
		if err := r.dir.Remove(p); err == nil {
			if _, err := r.dir.Lstat(p); errors.Is(err, fs.ErrNotExist) {
				deleted = append(deleted, p)
			}
			r.n.noteApplied(p, s.key.node)
		}
	}
	slices.Sort(deleted)
	return deleted
}

// holdsProtected reports whether the unoffered directory dir holds an
// excluded path, which a mirror keeps (for dry-run reports).
func (r *receiver) holdsProtected(dir string, excl *exclude.Set, offered map[string]bool) bool {
	found := false
	_ = fs.WalkDir(r.n.root.FS(), dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir || found {
			return nil
		}
		if excl.Match(p, d.IsDir()) || stage.IsTempName(d.Name()) || offered[p] {
			found = true
			return fs.SkipAll
		}
		return nil
	})
	return found
}

func (r *receiver) discard(s *recvSession) {
	r.settle(s, true)
	s.ready = nil
	for _, re := range s.entries {
		if re != nil {
			r.dropTemp(re)
		}
	}
}

func (r *receiver) meta(e *wire.Entry) stage.Meta {
	return stage.Meta{
		Mode:     fileMode(e),
		Uid:      e.Uid,
		Gid:      e.Gid,
		SetOwner: r.isRoot,
		Mtime:    time.Unix(0, e.Mtime),
	}
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

func sameFile(d *stage.Dir, a, b string) bool {
	fa, err1 := d.Lstat(a)
	fb, err2 := d.Lstat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// failCode classifies an apply error for the sender's report.
func failCode(err error) wire.FailCode {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return wire.FailNoSpace
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return wire.FailPerm
	case errors.Is(err, stage.ErrBadPath), strings.Contains(err.Error(), "path escapes"):
		return wire.FailPath
	case errors.Is(err, stage.ErrIsDir), errors.Is(err, stage.ErrNotDir):
		return wire.FailConflict
	}
	return wire.FailIO
}

// chunks collects a file's chunk list; once complete, it copies the chunks
// the basis already has into the temp file and answers every part with
// the chunks still lacking.
func (r *receiver) chunks(s *recvSession, m *wire.Chunks) {
	if !r.complete(s) || int(m.Entry) >= len(s.entries) {
		return
	}
	re := s.entries[m.Entry]
	if re.e.Kind != wire.KindFile || !re.data || re.fail != nil || re.done || s.flags&(wire.SessionDryRun|wire.SessionCheck) != 0 {
		return
	}
	if re.chunkPlan() == nil {
		if re.ck == nil {
			if uint64(m.Total) > re.e.Size/chunk.MinSize+1 || m.Total == 0 {
				r.n.met.Drop(metrics.DropMalformed)
				return
			}
			re.ck = &recvChunks{refs: make([]wire.ChunkRef, m.Total), parts: map[uint32]int{}}
		}
		ck := re.ck
		if int(m.Total) != len(ck.refs) {
			r.n.met.Drop(metrics.DropMalformed)
			return
		}
		if _, dup := ck.parts[m.First]; !dup {
			copy(ck.refs[m.First:], m.Refs)
			ck.parts[m.First] = len(m.Refs)
			ck.nrefs += len(m.Refs)
		}
		if ck.nrefs < len(ck.refs) {
			return
		}
		if err := r.plan(s, re); err != nil {
			re.fail = &wire.Failure{Code: failCode(err), Msg: err.Error()}
			r.dropTemp(re)
			return
		}
		for first, n := range ck.parts {
			r.answerChunks(s, re, m.Entry, first, n)
		}
		if re.w.have == re.blocks {
			r.finishFile(s, re)
		}
		return
	}
	r.answerChunks(s, re, m.Entry, m.First, len(m.Refs))
}

func (r *receiver) answerChunks(s *recvSession, re *recvEntry, entry, first uint32, n int) {
	cn := &wire.ChunkNeed{Session: s.key.id, Entry: entry, First: first, N: uint16(n), Need: make([]byte, (n+7)/8)}
	for j := range n {
		if need := re.ck.chunkNeed; int(first)+j < len(need) && need[int(first)+j] {
			wire.Set(cn.Need, j)
		}
	}
	r.n.conn.Send(cn)
}

// plan switches an entry to the chunk layout and fills in, from the basis,
// every chunk it already has.
func (r *receiver) plan(s *recvSession, re *recvEntry) error {
	ck := re.ck
	var total uint64
	for _, c := range ck.refs {
		total += uint64(c.Size)
	}
	if total != re.e.Size {
		return fmt.Errorf("chunk list covers %d bytes, file has %d", total, re.e.Size)
	}
	ck.plan = newChunkPlan(ck.refs, s.blockSize)
	ck.busy = func() { r.busy(s) }
	re.blocks = ck.plan.blocks()
	if re.w == nil {
		re.w = newRecvWrite(re.blocks)
	} else { // blocks counted in the whole-file layout do not count here
		re.w.got = make([]uint64, (re.blocks+63)/64)
		re.w.have, re.w.contig, re.w.hashed = 0, 0, 0
	}
	ck.chunkNeed = make([]bool, len(ck.refs))
	for i := range ck.chunkNeed {
		ck.chunkNeed[i] = true
	}
	if re.tmp == nil {
		t, err := r.dir.CreateTemp(re.e.Path)
		if err != nil {
			return err
		}
		re.tmp = t
	}
	if re.basisPath == "" {
		return nil
	}
	var be tree.Entry
	if err := r.whileBusy(s, func() (err error) { be, err = r.n.index.Chunks(re.basisPath); return err }); err != nil {
		return nil // gone or unreadable since the offer: fetch everything
	}
	basis, err := r.dir.Open(re.basisPath)
	if err != nil {
		return nil
	}
	defer basis.Close()
	have := map[uint64]chunk.Chunk{}
	for _, ch := range be.Chunks {
		have[ch.Hash] = ch
	}
	if r.chunkBuf == nil {
		r.chunkBuf = make([]byte, chunk.MaxSize)
	}
	buf := r.chunkBuf
	for i, ref := range ck.refs {
		ch, ok := have[ref.Hash]
		if !ok || ch.Size != ref.Size {
			continue
		}
		b := buf[:ref.Size]
		if _, err := basis.ReadAt(b, ch.Offset); err != nil {
			continue
		}
		if i%64 == 0 {
			r.busy(s)
		}
		if _, err := re.tmp.WriteAt(b, ck.plan.off[i]); err != nil {
			return err
		}
		ck.chunkNeed[i] = false
		r.n.met.ChunksReused.Inc()
		for blk := ck.plan.blk[i]; blk < ck.plan.blk[i+1]; blk++ {
			re.w.got[blk/64] |= 1 << (blk % 64)
			re.w.have++
		}
	}
	for re.w.contig < re.blocks && re.w.got[re.w.contig/64]&(1<<(re.w.contig%64)) != 0 {
		re.w.contig++
	}
	return re.hashPrefix(s.blockSize)
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
