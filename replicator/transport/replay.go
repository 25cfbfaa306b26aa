package transport

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// replayWindow is how far behind the highest sequence number seen from a
// sender a datagram may arrive and still be accepted once. Batched sends
// reorder little; 1024 covers a full send batch many times over.
const replayWindow = 1024

// maxTrackedSenders bounds the replay state; past it the least recently
// active sender is forgotten (it then re-enters with a fresh window).
const maxTrackedSenders = 4096

// confirmAfter is how many datagrams of an unsealed candidate stream (one
// that jumped ahead of the sender's window) must be accepted before it
// replaces the window: a single forged datagram must never move it.
const confirmAfter = 2

// staleAfter is how long an unsealed window must have accepted nothing
// before a candidate from another address, or one behind it, may replace
// it. It is twice the longest heartbeat interval membership honours (one
// minute, membership.MaxInterval), so a live member's window never goes
// stale; it is how a member recovers from a forger that did take its
// window over (by spoofing its address and sending in sequence).
const staleAfter = 2 * time.Minute

// Seen is what the replay filter keeps about one sender across restarts:
// its newest incarnation and the highest sequence number accepted of it.
type Seen struct {
	Node        wire.NodeID
	Incarnation uint64
	Seq         uint64
}

// replayFilter accepts each (node, incarnation, seq) at most once, and
// rejects incarnations older than the newest one accepted from a node. It
// is owned by the read loop and is not safe for concurrent use.
//
// Sealed traffic (strict) is authentic, so the newest incarnation and the
// highest sequence number win at once. Unsealed traffic may be forged by
// anyone, so no single datagram may move a sender's window in a way that
// locks its real traffic out:
//   - the window's top moves only for datagrams from the address that
//     opened the window (late datagrams within it are accepted from
//     anywhere);
//   - anything else ahead of the window (a newer incarnation, a jump past
//     the window, another address) opens a candidate window, accepted
//     datagram by datagram, which replaces the sender's window once
//     confirmAfter of its datagrams came in sequence from the window's
//     address, or from anywhere once the window went stale (staleAfter)
//     or if the window itself holds a single datagram;
//   - datagrams behind the window are refused while it is live and holds
//     more than one datagram (else they open a candidate).
//
// So a forged datagram costs the sender nothing, even when it is the
// first heard with the sender's node id; a forger at another address can
// never take a confirmed window over, and one spoofing the sender's
// address needs a stream in sequence and loses the window staleAfter
// after it stops.
type replayFilter struct {
	strict  bool
	senders map[wire.NodeID]*sender
	clock   uint64
	// changed says a sender or an incarnation appeared since the last
	// snapshot, moved that a window's top did (strict filters only).
	changed, moved bool
}

type sender struct {
	cur     window
	cand    *window // unsealed only: a stream ahead of cur, not confirmed yet
	lastUse uint64
}

type window struct {
	incarnation uint64
	top         uint64 // highest seq accepted
	bits        [replayWindow / 64]uint64
	from        netip.Addr // source of the datagram that opened the window
	accepted    int        // datagrams accepted, counted up to confirmAfter
	lastAccept  time.Time
}

// newReplayFilter returns an empty filter, strict for sealed traffic,
// seeded with the state of an earlier run (least recently heard first).
func newReplayFilter(strict bool, seed []Seen) *replayFilter {
	f := &replayFilter{strict: strict, senders: make(map[wire.NodeID]*sender)}
	for _, s := range seed {
		if _, ok := f.senders[s.Node]; !ok && len(f.senders) >= maxTrackedSenders {
			f.evict()
		}
		f.clock++
		w := window{incarnation: s.Incarnation, top: s.Seq, accepted: confirmAfter}
		// Whatever of that incarnation up to its top was accepted before
		// the restart or is too old now: refuse all of it.
		for i := range w.bits {
			w.bits[i] = ^uint64(0)
		}
		w.bits[(w.top/64)%uint64(len(w.bits))] = 1<<(w.top%64+1) - 1
		f.senders[s.Node] = &sender{cur: w, lastUse: f.clock}
	}
	return f
}

// check reports whether h, received from `from` at now, is new, and
// records it if so.
func (f *replayFilter) check(h *wire.Header, from netip.Addr, now time.Time) bool {
	f.clock++
	s := f.senders[h.Node]
	if s == nil {
		if len(f.senders) >= maxTrackedSenders {
			f.evict()
		}
		s = &sender{}
		s.cur.open(h, from, now)
		s.lastUse = f.clock
		f.senders[h.Node] = s
		f.changed = true
		return true
	}
	s.lastUse = f.clock
	if !f.strict {
		return s.checkUnsealed(h, from, now)
	}
	w := &s.cur
	switch {
	case h.Incarnation < w.incarnation:
		return false
	case h.Incarnation > w.incarnation:
		w.open(h, from, now)
		f.changed = true
		return true
	}
	top := w.top
	if !w.accept(h.Seq, now) {
		return false
	}
	f.moved = f.moved || w.top != top
	return true
}

func (s *sender) checkUnsealed(h *wire.Header, from netip.Addr, now time.Time) bool {
	if s.cur.near(h) && (from == s.cur.from || h.Seq <= s.cur.top) {
		return s.cur.accept(h.Seq, now)
	}
	// A window opened by a single datagram is no more trustworthy than a
	// candidate: it may be a forgery that came first.
	confirmed := s.cur.accepted >= confirmAfter
	stale := now.Sub(s.cur.lastAccept) >= staleAfter
	if c := s.cand; c != nil && c.near(h) {
		if !c.accept(h.Seq, now) {
			return false
		}
		if c.accepted >= confirmAfter && (c.from == s.cur.from || !confirmed || stale) {
			c.absorb(&s.cur)
			s.cur, s.cand = *c, nil
		}
		return true
	}
	if s.cur.behind(h) && confirmed && !stale {
		return false
	}
	if s.cand == nil {
		s.cand = new(window)
	}
	s.cand.open(h, from, now)
	return true
}

// snapshot returns the state to persist, least recently heard sender
// first, and clears the change flags.
func (f *replayFilter) snapshot() []Seen {
	type entry struct {
		seen Seen
		use  uint64
	}
	entries := make([]entry, 0, len(f.senders))
	for id, s := range f.senders {
		entries = append(entries, entry{Seen{Node: id, Incarnation: s.cur.incarnation, Seq: s.cur.top}, s.lastUse})
	}
	slices.SortFunc(entries, func(a, b entry) int { return cmp.Compare(a.use, b.use) })
	out := make([]Seen, len(entries))
	for i, e := range entries {
		out[i] = e.seen
	}
	f.changed, f.moved = false, false
	return out
}

func (f *replayFilter) evict() {
	var oldest wire.NodeID
	first := true
	var min uint64
	for id, s := range f.senders {
		if first || s.lastUse < min {
			oldest, min, first = id, s.lastUse, false
		}
	}
	delete(f.senders, oldest)
}

// open resets w to a window holding only h.
func (w *window) open(h *wire.Header, from netip.Addr, now time.Time) {
	*w = window{incarnation: h.Incarnation, top: h.Seq, from: from, accepted: 1, lastAccept: now}
	w.bits[(h.Seq/64)%uint64(len(w.bits))] |= 1 << (h.Seq % 64)
}

// near reports whether h belongs to w's stream: its incarnation, and a
// sequence number within a window's width of the top either way.
func (w *window) near(h *wire.Header) bool {
	if h.Incarnation != w.incarnation {
		return false
	}
	if h.Seq > w.top {
		return h.Seq-w.top <= replayWindow
	}
	return w.top-h.Seq < replayWindow
}

// behind reports whether h is older than anything w still accepts.
func (w *window) behind(h *wire.Header) bool {
	return h.Incarnation < w.incarnation ||
		h.Incarnation == w.incarnation && h.Seq <= w.top && w.top-h.Seq >= replayWindow
}

// absorb marks in w what old (the window w replaces) accepted of w's
// stream, so that replacing a window never re-opens it to replays.
func (w *window) absorb(old *window) {
	if old.incarnation != w.incarnation || old.top > w.top {
		return
	}
	lo := uint64(0)
	if w.top >= replayWindow {
		lo = w.top - replayWindow + 1
	}
	if old.top >= replayWindow {
		lo = max(lo, old.top-replayWindow+1)
	}
	for seq := lo; seq <= old.top; seq++ {
		word, bit := (seq/64)%uint64(len(old.bits)), uint64(1)<<(seq%64)
		w.bits[word] |= old.bits[word] & bit
	}
}

// accept records seq (of w's incarnation) at now if it is new.
func (w *window) accept(seq uint64, now time.Time) bool {
	if seq > w.top {
		// Clear the words the window slides over.
		oldWord, newWord := w.top/64, seq/64
		if newWord-oldWord >= uint64(len(w.bits)) {
			w.bits = [len(w.bits)]uint64{}
		} else {
			for i := oldWord + 1; i <= newWord; i++ {
				w.bits[i%uint64(len(w.bits))] = 0
			}
		}
		w.top = seq
	} else if w.top-seq >= replayWindow {
		return false
	}
	word, bit := (seq/64)%uint64(len(w.bits)), uint64(1)<<(seq%64)
	if w.bits[word]&bit != 0 {
		return false
	}
	w.bits[word] |= bit
	w.lastAccept = now
	w.accepted = min(w.accepted+1, confirmAfter)
	return true
}
