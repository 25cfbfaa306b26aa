package transport

import "github.com/makuo/makuo/replicator/wire"

// replayWindow is how far behind the highest sequence number seen from a
// sender a datagram may arrive and still be accepted once. Batched sends
// reorder little; 1024 covers a full send batch many times over.
const replayWindow = 1024

// maxTrackedSenders bounds the replay state; past it the least recently
// active sender is forgotten (it then re-enters with a fresh window).
const maxTrackedSenders = 4096

type senderWindow struct {
	incarnation uint64
	top         uint64 // highest seq accepted
	bits        [replayWindow / 64]uint64
	lastUse     uint64
}

// replayFilter accepts each (node, incarnation, seq) at most once, and
// rejects incarnations older than the newest one seen from a node. It is
// used by the read loop only and is not safe for concurrent use.
type replayFilter struct {
	senders map[wire.NodeID]*senderWindow
	clock   uint64
}

func newReplayFilter() *replayFilter {
	return &replayFilter{senders: make(map[wire.NodeID]*senderWindow)}
}

// check reports whether h is new, and records it if so.
func (f *replayFilter) check(h *wire.Header) bool {
	f.clock++
	w := f.senders[h.Node]
	if w == nil {
		if len(f.senders) >= maxTrackedSenders {
			f.evict()
		}
		w = &senderWindow{incarnation: h.Incarnation, top: h.Seq}
		w.bits[(h.Seq/64)%uint64(len(w.bits))] |= 1 << (h.Seq % 64)
		w.lastUse = f.clock
		f.senders[h.Node] = w
		return true
	}
	w.lastUse = f.clock
	switch {
	case h.Incarnation < w.incarnation:
		return false
	case h.Incarnation > w.incarnation:
		*w = senderWindow{incarnation: h.Incarnation, top: h.Seq, lastUse: f.clock}
		w.bits[(h.Seq/64)%uint64(len(w.bits))] |= 1 << (h.Seq % 64)
		return true
	}
	seq := h.Seq
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
	return true
}

func (f *replayFilter) evict() {
	var oldest wire.NodeID
	first := true
	var min uint64
	for id, w := range f.senders {
		if first || w.lastUse < min {
			oldest, min, first = id, w.lastUse, false
		}
	}
	delete(f.senders, oldest)
}
