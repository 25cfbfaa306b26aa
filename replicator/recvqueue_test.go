package replicator

import (
	"strings"
	"testing"

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
