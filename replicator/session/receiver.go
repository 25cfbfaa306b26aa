package session

import (
	"sort"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// Key identifies a receive session: the sending node and its session id.
type Key struct {
	Node    wire.NodeID
	Session uint64
}

// EffectKind says what a receive session asks of the filesystem.
type EffectKind uint8

// Effects, each answered (where it says so) by a call on the Receiver
// before the next message is stepped.
const (
	// EffectDecide: decide Items, the entries Entry.. of a new offer;
	// answer with Decided.
	EffectDecide EffectKind = iota + 1
	// EffectWrite: write Bytes at Offset of entry Entry; the content
	// prefix [0, Hashed) is now complete. With Last the file is complete:
	// flush, verify and stage it, and answer with Wrote. A failed write
	// is answered with Wrote too.
	EffectWrite
	// EffectPlan: entry Entry's chunk list Refs is complete: copy into its
	// temp file the chunks its local basis holds; answer with Planned.
	EffectPlan
	// EffectCommit: apply the session (or, for a dry run or a check, list
	// what a mirror would delete); report per entry with Fail and
	// SetApplied, then answer with Committed.
	EffectCommit
	// EffectDiscard: drop everything staged for the session.
	EffectDiscard
)

// Effect is one filesystem step a receive session asks for. Bytes alias
// the datagram being stepped: they are valid until the effect has run.
type Effect struct {
	Kind   EffectKind
	Entry  int
	Items  []wire.Entry
	Offset int64
	Bytes  []byte
	Hashed int64
	Last   bool
	Refs   []wire.ChunkRef
}

// Drop names why a receive session refused a message, for the metrics.
type Drop uint8

// Reasons a message is refused.
const (
	DropNone      Drop = iota
	DropMalformed      // contradicts what the session already knows
	DropLimit          // past a cap on sessions
	DropMemory         // past the session memory budget
)

// Ready is what stepping a receive session produced: messages to send to
// the sender, effects to run in order, and why a message was refused. A
// Ready is reused by the next call on the same Receiver.
type Ready struct {
	Msgs    []wire.Message
	Effects []Effect
	Dropped Drop
}

func (rd *Ready) reset() {
	clear(rd.Msgs)
	clear(rd.Effects)
	rd.Msgs, rd.Effects, rd.Dropped = rd.Msgs[:0], rd.Effects[:0], DropNone
}

// Decision is the filesystem's verdict on one offered entry.
type Decision struct {
	Change bool // the entry changes something on this member
	Data   bool // it needs the content
	Basis  bool // it holds an older copy worth diffing against
	// Fail settles the entry as failed (it is reported, nothing is done).
	Fail *wire.Failure
	// Items says what differs (msync -n -i); zero says nothing more.
	Items wire.ItemFlags
}

// Verdict is the filesystem's answer to a write.
type Verdict uint8

// Verdicts.
const (
	Staged   Verdict = iota // complete, verified and staged for the rename
	Mismatch                // complete, but the content hash differs
	Failed                  // the write or the staging failed (see Wrote's failure)
)

// Limits of what the receive side holds for peers.
const (
	// maxPollScan bounds the entries a poll answer looks at beyond the
	// loss window: the answer then lists what it found and says it is
	// truncated, which is all the sender needs (zero missing or not).
	maxPollScan = 4096
	// maxWindowScan bounds the loss window a poll answer measures: an
	// honest sender polls every PollEvery blocks.
	maxWindowScan = 1 << 16
	// entryCost is what one held entry costs beyond its strings, for the
	// memory budget: the entry (TestEntrySize) and its share of its
	// offer's part and answer; BenchmarkSessionMemory measures the sum.
	entryCost = 112
)

// Receiver is the receiving side of one session: a state machine without
// I/O. Step takes the sender's messages; effects it returns are run by the
// caller, who reports back with Decided, Wrote, Planned, Fail, SetApplied
// and Committed. It is not safe for concurrent use.
type Receiver struct {
	key       Key
	flags     wire.SessionFlags
	blockSize int
	nEntries  uint32
	nOffers   uint32
	excludes  []string
	parts     []*part // offers received, by First
	held      uint32  // entries received
	// The layout covers the decided offers from the first on (laidParts
	// of parts, entries below laidTo, blocks below total); layout says it
	// covers every offer.
	laidParts int
	laidTo    uint32
	layout    bool
	total     uint64
	free      uint64 // free space when the first offer was decided
	freeKnown bool
	reserved  uint64   // content bytes the layout reserved of free
	order     []*entry // file entries that need blocks, in block order
	pollFrom  int      // order before this index is done or failed
	polledTo  uint64   // watermark of the latest poll answered
	pending   int      // entries of order not done nor failed
	result    *wire.Result
	closed    bool
	room      int    // payload bytes an answer may take
	refused   string // why the member does not take part (memory budget)
	last      time.Time
	arrived   arrivals // the run of data arrivals a poll answer reports
	budget    *Budget
	charged   int64
	ready     Ready
}

// part is one offer: its entries and the answer sent for it.
type part struct {
	index, first uint32
	entries      []entry
	need         *wire.Need
}

// entry is the receive state of one offered entry. A session holds one
// per offered path for its whole life (a push of 100,000 files holds
// 100,000), so it keeps the offered fields most entries have inline and the
// rest, with the state of a file being received, behind one pointer.
type entry struct {
	Kind    wire.EntryKind
	Flags   wire.EntryFlags
	change  bool
	data    bool
	basis   bool
	done    bool // content complete, verified and staged
	applied bool
	index   uint32
	Mode    uint32
	Uid     uint32
	Gid     uint32
	Mtime   int64
	Size    uint64
	Hash    uint64
	Path    string
	first   uint64
	blocks  uint64
	x       *entryExtra
}

// entryExtra holds what few entries need, or only for a while.
type entryExtra struct {
	target, basisPath string
	linkTo            uint32
	rdev              uint64
	fail              *wire.Failure
	got               *blockSet // while its content is being received
	ck                *chunkState
}

func newEntry(w *wire.Entry, index int) entry {
	e := entry{Kind: w.Kind, Flags: w.Flags, index: uint32(index), Mode: w.Mode, Uid: w.Uid, Gid: w.Gid,
		Mtime: w.Mtime, Size: w.Size, Hash: w.Hash, Path: w.Path}
	if w.Target != "" || w.Basis != "" || w.LinkTo != 0 || w.Rdev != 0 {
		e.x = &entryExtra{target: w.Target, basisPath: w.Basis, linkTo: w.LinkTo, rdev: w.Rdev}
	}
	return e
}

// wire returns the entry as offered.
func (e *entry) wire() wire.Entry {
	w := wire.Entry{Kind: e.Kind, Flags: e.Flags, Path: e.Path, Mode: e.Mode, Uid: e.Uid, Gid: e.Gid,
		Mtime: e.Mtime, Size: e.Size, Hash: e.Hash}
	if x := e.x; x != nil {
		w.Target, w.Basis, w.LinkTo, w.Rdev = x.target, x.basisPath, x.linkTo, x.rdev
	}
	return w
}

func (e *entry) extra() *entryExtra {
	if e.x == nil {
		e.x = &entryExtra{}
	}
	return e.x
}

func (e *entry) failure() *wire.Failure {
	if e.x == nil {
		return nil
	}
	return e.x.fail
}

func (e *entry) gotSet() *blockSet {
	if e.x == nil {
		return nil
	}
	return e.x.got
}

func (e *entry) chunkSt() *chunkState {
	if e.x == nil {
		return nil
	}
	return e.x.ck
}

func (e *entry) setFail(f *wire.Failure) {
	if f != nil || e.x != nil {
		e.extra().fail = f
	}
}

func (e *entry) setGot(g *blockSet) {
	if g != nil || e.x != nil {
		e.extra().got = g
	}
}

func (e *entry) setChunks(ck *chunkState) { e.extra().ck = ck }

// chunkState is the delta state of an entry: the chunk list being
// collected, the plan once complete, and after a failed delta the
// fallback to the whole file.
type chunkState struct {
	total    uint32
	parts    map[uint32][]wire.ChunkRef // first → refs, as they arrived
	nrefs    uint32
	plan     *chunkPlan
	need     bitset
	fallback bool
}

func newReceiver(key Key, o *wire.Offer, budget *Budget, room int, now time.Time) *Receiver {
	return &Receiver{key: key, flags: o.Flags, blockSize: int(o.BlockSize), nEntries: o.Entries,
		nOffers: o.Count, budget: budget, room: room, last: now}
}

// Key returns the session's key.
func (r *Receiver) Key() Key { return r.key }

// Flags returns the session's flags.
func (r *Receiver) Flags() wire.SessionFlags { return r.flags }

// Excludes returns the sender's exclude patterns (from offer 0).
func (r *Receiver) Excludes() []string { return r.excludes }

// Done reports whether the session has its result.
func (r *Receiver) Done() bool { return r.result != nil }

// applying reports whether this session changes files (not a dry run, a
// check or a digest round).
func (r *Receiver) applying() bool {
	return r.flags&(wire.SessionDryRun|wire.SessionCheck|wire.SessionDigest) == 0
}

// Step takes one message of the session's sender.
func (r *Receiver) Step(now time.Time, m wire.Message) *Ready {
	r.ready.reset()
	r.last = now
	if r.closed {
		return &r.ready
	}
	if r.result != nil {
		// Committed: only a repeated commit (the result was lost) needs
		// an answer; anything else is a straggler of a finished session.
		if _, ok := m.(*wire.Commit); ok {
			r.send(r.result)
		}
		return &r.ready
	}
	switch m := m.(type) {
	case *wire.Offer:
		r.offer(m)
	case *wire.Data:
		r.arrived.add(now, datagramLen(len(m.Bytes)))
		r.data(m)
	case *wire.Poll:
		r.poll(now, m)
	case *wire.Commit:
		r.commit()
	case *wire.Chunks:
		r.chunks(m)
	case *wire.Abort:
		r.discard()
	}
	return &r.ready
}

func (r *Receiver) send(m wire.Message) { r.ready.Msgs = append(r.ready.Msgs, m) }

func (r *Receiver) effect(e Effect) { r.ready.Effects = append(r.ready.Effects, e) }

// discard releases everything the session holds and asks the
// filesystem to drop what it staged.
func (r *Receiver) discard() {
	if !r.closed {
		r.effect(Effect{Kind: EffectDiscard})
	}
	r.release()
	r.closed = true
}

// Closed reports whether the session was aborted or discarded: its
// record can go.
func (r *Receiver) Closed() bool { return r.closed }

// Discard ends the session (the sender went silent): the caller runs the
// returned effects.
func (r *Receiver) Discard() *Ready {
	r.ready.reset()
	r.discard()
	return &r.ready
}

func (r *Receiver) release() {
	r.parts, r.order, r.excludes = nil, nil, nil
	r.budget.give(r.charged)
	r.charged = 0
}

// entry returns entry i if its offer is in.
func (r *Receiver) entry(i int) *entry {
	k := sort.Search(len(r.parts), func(k int) bool { return int(r.parts[k].first) > i }) - 1
	if k < 0 || i-int(r.parts[k].first) >= len(r.parts[k].entries) {
		return nil
	}
	return &r.parts[k].entries[i-int(r.parts[k].first)]
}

// entryFor finds the needed entry that owns block b.
func (r *Receiver) entryFor(b uint64) *entry {
	k := sort.Search(len(r.order), func(k int) bool { return r.order[k].first+r.order[k].blocks > b })
	if k == len(r.order) || r.order[k].first > b {
		return nil
	}
	return r.order[k]
}

// locate maps an entry-relative block to the file offset and length it
// carries, whole or as part of a chunk.
func (e *entry) locate(local uint64, bs int) (int64, int) {
	if e.chunkSt() != nil && e.chunkSt().plan != nil {
		_, off, n := e.chunkSt().plan.locate(local, bs)
		return off, n
	}
	return wholeLocate(local, bs, e.Size)
}

// hashed is the end of the content prefix that is complete.
func (e *entry) hashed(bs int) int64 {
	if e.gotSet() == nil || e.gotSet().contig == 0 {
		return 0
	}
	off, n := e.locate(e.gotSet().contig-1, bs)
	return off + int64(n)
}

func (r *Receiver) data(m *wire.Data) {
	if !r.applying() {
		return
	}
	e := r.entryFor(m.Block) // nil past the layout: the block is repaired later
	if e == nil || e.done || e.failure() != nil {
		return
	}
	bi := m.Block - e.first
	if e.gotSet() == nil {
		e.setGot(&blockSet{})
	}
	if e.gotSet().has(bi) {
		return
	}
	off, want := e.locate(bi, r.blockSize)
	if len(m.Bytes) != want {
		r.ready.Dropped = DropMalformed
		return
	}
	e.gotSet().add(bi)
	r.effect(Effect{Kind: EffectWrite, Entry: int(e.index), Offset: off, Bytes: m.Bytes, Hashed: e.hashed(r.blockSize), Last: e.gotSet().count == e.blocks})
}

// Wrote records the outcome of a write: a failure settles the entry, a
// mismatch of a delta falls back to fetching the whole file, and staged
// means the content is complete.
func (r *Receiver) Wrote(i int, v Verdict, f *wire.Failure) *Ready {
	r.ready.reset()
	e := r.entry(i)
	if e == nil || e.done || e.failure() != nil {
		return &r.ready
	}
	switch {
	case v == Staged:
		e.done, e.applied = true, true
		e.setGot(nil)
		r.pending--
	case v == Mismatch && e.chunkSt() != nil && e.chunkSt().plan != nil && !e.chunkSt().fallback:
		// The basis lied (changed or corrupted behind our back): fetch
		// every chunk; the next Nack asks for them.
		e.chunkSt().fallback = true
		e.setGot(&blockSet{})
	default:
		if f == nil {
			f = &wire.Failure{Code: wire.FailHash, Msg: "received content does not match the offered hash (file changed on the sender while sending?)"}
		}
		r.settle(e, f)
	}
	return &r.ready
}

// settle fails entry e.
func (r *Receiver) settle(e *entry, f *wire.Failure) {
	// An entry in the layout has its blocks; only those count as pending.
	if !e.done && e.failure() == nil && e.data && e.blocks > 0 && r.applying() {
		r.pending--
	}
	e.applied = false
	e.setFail(f)
	e.setGot(nil)
}

// Fail records that entry i could not be applied (at any time before the
// commit's answer).
func (r *Receiver) Fail(i int, f *wire.Failure) {
	if e := r.entry(i); e != nil && e.failure() == nil {
		r.settle(e, f)
	}
}

// SetApplied records that entry i was applied.
func (r *Receiver) SetApplied(i int) {
	if e := r.entry(i); e != nil && e.failure() == nil {
		e.applied = true
	}
}
