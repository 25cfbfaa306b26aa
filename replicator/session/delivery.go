package session

import (
	"math"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// Delivery reports. A receiver times the data of a session as it arrives
// (the now it is stepped with: in a daemon, when the socket read it) and
// reports, in the answer to a poll, the bytes of the run of arrivals since
// its last report and how long they took (wire.NackDelivery). Polls travel
// behind the data they follow, through the same queues, so a run covers
// whole poll windows: the sender weighs it against what it sent in the
// same windows, over the same span, whatever the queues in between did to
// the timing.
const (
	// deliverySpan is the shortest run worth a report: a millisecond of
	// scheduling delay or jitter at either end is then a few percent.
	deliverySpan = 20 * time.Millisecond
	// deliveryMin is the fewest datagrams after a run's first worth a
	// report: one more or less is then a few percent.
	deliveryMin = 32
)

// arrivals is a run of data arrivals: n datagrams of bytes in all came
// after the one at first, the last at last.
type arrivals struct {
	first, last time.Time
	bytes       uint64
	n           uint32
}

// add records a data datagram of size bytes arriving at now.
func (a *arrivals) add(now time.Time, size int) {
	if a.first.IsZero() || now.Before(a.last) {
		*a = arrivals{first: now, last: now}
		return
	}
	a.bytes += uint64(size)
	a.n++
	a.last = now
}

// report puts the run into nack once it is long enough to tell, and
// starts a new one; a shorter run goes on into the next poll's answer.
func (a *arrivals) report(nack *wire.Nack) {
	nack.Flags |= wire.NackDelivery
	span := a.last.Sub(a.first)
	if a.n < deliveryMin || span < deliverySpan {
		return
	}
	nack.Delivered = uint32(min(a.bytes, math.MaxUint32))
	nack.Span = uint32(min(span.Microseconds(), math.MaxUint32))
	*a = arrivals{}
}

// datagramLen is the size of the unsealed datagram that carries a block
// of n content bytes: what a sender's pacing counts.
func datagramLen(n int) int { return wire.HeaderLen + wire.DataHeaderLen + n }

// window is what a sender sent between two polls: bytes of data
// datagrams, the first handed out at first, the last at end, at rates up
// to hi.
type window struct {
	first, end time.Time
	bytes      uint64
	hi         float64
}

// windowLog is a sender's record of its poll windows.
type windowLog struct {
	byRound map[uint32]window
	cur     window
}

// maxReportRounds bounds the windows one delivery report is weighed
// against: a run longer than that many polls is weighed against its
// latest windows.
const maxReportRounds = 64

// block records a data block of n content bytes handed out at now, at
// rate.
func (w *windowLog) block(now time.Time, n int, rate float64) {
	if w.cur.bytes == 0 {
		w.cur.first = now
	}
	w.cur.bytes += uint64(datagramLen(n))
	w.cur.hi = max(w.cur.hi, rate)
}

// poll closes the window of poll round, handed out at now.
func (w *windowLog) poll(now time.Time, round uint32) {
	w.cur.end = now
	w.byRound[round] = w.cur
	w.cur = window{}
}

// rates returns the rate the windows of the polls after round from up to
// round to were sent at, first block to last, and the highest rate any of
// their blocks went out at (0, 0 when they sent too little to tell).
func (w *windowLog) rates(from, to uint32) (sent, hi float64) {
	start := from + 1
	if to >= maxReportRounds && start < to-maxReportRounds+1 {
		start = to - maxReportRounds + 1
	}
	var first, end time.Time
	var bytes uint64
	for r := start; r <= to && r >= start; r++ {
		win := w.byRound[r]
		if win.bytes == 0 {
			continue
		}
		if first.IsZero() {
			first = win.first
		}
		end, bytes, hi = win.end, bytes+win.bytes, max(hi, win.hi)
	}
	span := end.Sub(first)
	if span <= 0 {
		return 0, 0
	}
	return float64(bytes*8) / span.Seconds(), hi
}
