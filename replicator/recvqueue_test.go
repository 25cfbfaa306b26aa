package replicator

import (
	"strings"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// TestQueuedOffersBounded: parsed offers waiting for a busy receive loop
// count their memory against the queues' byte bound, as data does: a
// member flooding offers of jumbo datagrams (each parsed to several times
// its size) fills the bound long before the queue's count, and the polls
// and commits that keep sessions going still get in.
func TestQueuedOffersBounded(t *testing.T) {
	r := &receivers{}
	l := &recvLoop{r: r, signal: make(chan struct{}, 1)}
	const jumbo = 8972
	big := &wire.Offer{Session: 1, Items: make([]wire.Entry, 400)}
	for i := range big.Items {
		big.Items[i] = wire.Entry{Kind: wire.KindFile, Path: strings.Repeat("p", 16)}
	}
	size := queuedSize(big, jumbo)
	if size < 4*jumbo {
		t.Fatalf("a parsed offer of %d entries counts %d bytes, want several times its %d-byte datagram", len(big.Items), size, jumbo)
	}
	n := 0
	for n < recvQueueLen && l.push(recvItem{msg: big, size: size}) {
		n++
	}
	if n == recvQueueLen {
		t.Fatalf("%d offers queued (%d MiB parsed): only the count bounds them", n, int64(n)*size>>20)
	}
	if held := r.queued.Load(); held > recvQueueBytes || held != int64(n)*size {
		t.Fatalf("queues hold %d bytes for %d offers of %d, bound %d", held, n, size, recvQueueBytes)
	}
	for _, m := range []wire.Message{&wire.Poll{Session: 1}, &wire.Commit{Session: 1}, &wire.Abort{Session: 1}} {
		if !l.push(recvItem{msg: m, size: queuedSize(m, 40)}) {
			t.Errorf("%T refused by a queue full of offers", m)
		}
	}
	for _, it := range l.take(nil) {
		r.queued.Add(-it.size)
	}
	if held := r.queued.Load(); held != 0 {
		t.Fatalf("%d bytes still counted after the queue drained", held)
	}
}

// TestStalledLoopAnswersBusy: a receive loop stuck on one batch for longer
// than the busy interval answers a poll of a session it has in progress
// with a Busy, once per interval for each session, so the sender keeps
// hearing a member that is slow, not dead; a loop between batches, a
// session it does not have, and messages other than polls get none.
func TestStalledLoopAnswersBusy(t *testing.T) {
	const busy = 500 * time.Millisecond
	l := &recvLoop{r: &receivers{}, signal: make(chan struct{}, 1)}
	t0 := time.Unix(1000, 0)
	active := []uint64{7, 9}
	l.active.Store(&active)
	poll := func(s uint64) wire.Message { return &wire.Poll{Session: s} }
	want := func(at time.Duration, m wire.Message, session uint64) {
		t.Helper()
		b := l.stalled(m, t0.Add(at), busy)
		switch {
		case session == 0 && b != nil:
			t.Errorf("at %v, %T: Busy for %d, want none", at, m, b.Session)
		case session != 0 && (b == nil || b.Session != session):
			t.Errorf("at %v, %T: %+v, want a Busy for %d", at, m, b, session)
		}
	}
	want(time.Second, poll(7), 0) // between batches
	l.handling.Store(t0.UnixNano())
	want(busy/2, poll(7), 0) // not stuck long enough yet
	want(busy, poll(7), 7)
	want(busy+busy/2, poll(7), 0) // once per interval
	want(busy+busy/2, poll(9), 9) // for each session
	want(busy+busy/2, poll(8), 0) // not in progress here
	want(busy+busy/2, &wire.Data{Session: 9}, 0)
	want(2*busy, poll(7), 7)
	for s := range uint64(100) {
		active = append(active, 100+s)
		l.active.Store(&active)
		l.stalled(poll(100+s), t0.Add(3*busy), busy)
	}
	if n := len(l.busySent); n > maxSessionsPerNode {
		t.Fatalf("%d sessions remembered, want at most %d", n, maxSessionsPerNode)
	}
	l.handling.Store(0)
	want(10*busy, poll(7), 0)
}
