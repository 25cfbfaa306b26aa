package session

import (
	"math"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// Delivery reports. A receiver times the data of a session as it arrives
// (the now it is stepped with: in a daemon, the kernel's receive time) and
// reports, in the answer to a poll, how many bytes of data came since the
// poll its last report answered and how long ago that poll came
// (wire.NackDelivery). Polls travel behind the data they follow, through
// the same queues, so the run between two polls holds exactly what the
// sender sent between them: the sender weighs the report against that,
// over the time between its own two polls. Bursts, pauses of the sender
// (for answers, for its disk) and a queue that fills or drains on the way
// then count the same on both sides, and only a bottleneck that passes
// less than it is given makes the two rates differ.
const (
	// deliverySpan is the shortest run worth a report: a millisecond of
	// scheduling delay or jitter at either end is then a few percent.
	deliverySpan = 20 * time.Millisecond
	// deliveryMin is the fewest datagrams worth a report: one more or
	// less is then a few percent.
	deliveryMin = 32
)

// arrivals is a run of data arrivals: bytes in n datagrams since from,
// when a poll (or, before the first poll, the first datagram) came.
type arrivals struct {
	from  time.Time
	bytes uint64
	n     uint32
}

// add records a data datagram of size bytes arriving at now.
func (a *arrivals) add(now time.Time, size int) {
	if a.from.IsZero() {
		a.from = now // the session's first datagram opens the first run
		return
	}
	a.bytes += uint64(size)
	a.n++
}

// report puts the run up to a poll arriving at now into nack once it is
// long enough to tell, and starts the next run at that poll; a shorter
// run goes on to the next poll.
func (a *arrivals) report(nack *wire.Nack, now time.Time) {
	nack.Flags |= wire.NackDelivery
	if a.from.IsZero() || now.Before(a.from) {
		*a = arrivals{from: now}
		return
	}
	span := now.Sub(a.from)
	if a.n < deliveryMin || span < deliverySpan {
		return
	}
	nack.Delivered = uint32(min(a.bytes, math.MaxUint32))
	nack.Span = uint32(min(span.Microseconds(), math.MaxUint32))
	*a = arrivals{from: now}
}

// datagramLen is the size of the unsealed datagram that carries a block
// of n content bytes: what a sender's pacing counts.
func datagramLen(n int) int { return wire.HeaderLen + wire.DataHeaderLen + n }

// window is what a sender sent between two polls: bytes of data
// datagrams, at rates up to hi, the poll closing it sent at end.
type window struct {
	end   time.Time
	bytes uint64
	hi    float64
}

// windowLog is a sender's record of its poll windows.
//
// A sender learns when a datagram it asked for went out only from the
// next call: a driver reads, paces and sends what Next returned before it
// calls again (or steps an answer, which comes later still). So a poll is
// stamped with the time of the next call; the time a driver took over the
// reading and pacing of a batch then counts in the window it belongs to,
// as it does for the members, who see the batch arrive only once it went
// out. The first window starts when the first block was asked for, which
// is early by up to a batch: the sender then underrates what it sent, and
// a report of that window errs towards no cap.
type windowLog struct {
	byRound map[uint32]window
	cur     window
	start   time.Time // when the first data block was asked for
	pending uint32    // the round of the poll awaiting its time; 0: none
}

// maxReportRounds bounds the windows one delivery report is weighed
// against: a run longer than that many polls is weighed against its
// latest windows.
const maxReportRounds = 64

// stamp gives the poll that went out since the last call the time now.
func (w *windowLog) stamp(now time.Time) {
	if w.pending != 0 {
		win := w.byRound[w.pending]
		win.end = now
		w.byRound[w.pending] = win
		w.pending = 0
	}
}

// block records a data block of n content bytes asked for at now, at
// rate.
func (w *windowLog) block(now time.Time, n int, rate float64) {
	if w.start.IsZero() {
		w.start = now
	}
	w.cur.bytes += uint64(datagramLen(n))
	w.cur.hi = max(w.cur.hi, rate)
}

// poll closes the window of poll round, handed out at now.
func (w *windowLog) poll(now time.Time, round uint32) {
	w.stamp(now) // a poll before it in the same call went out by now
	w.byRound[round] = w.cur
	w.cur = window{}
	w.pending = round
}

// rates returns the rate the windows of the polls after round from up to
// round to were sent at, from poll to poll, and the highest rate any of
// their blocks went out at (0, 0 when that cannot tell).
func (w *windowLog) rates(from, to uint32) (sent, hi float64) {
	if to >= maxReportRounds && from < to-maxReportRounds {
		from = to - maxReportRounds
	}
	begin := w.start
	if from > 0 {
		begin = w.byRound[from].end
	}
	var bytes uint64
	for r := from + 1; r <= to && r > from; r++ {
		win := w.byRound[r]
		bytes, hi = bytes+win.bytes, max(hi, win.hi)
	}
	end := w.byRound[to].end
	span := end.Sub(begin)
	if begin.IsZero() || end.IsZero() || span <= 0 || bytes == 0 {
		return 0, 0
	}
	return float64(bytes*8) / span.Seconds(), hi
}
