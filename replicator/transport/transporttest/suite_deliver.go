package transporttest

import (
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/replicator/wire"
)

// testDeliver: with Deliver set before Run, every accepted datagram goes to
// the function, in the order one sender sent them and with header and
// payload intact; Packets stays empty, is closed when Run returns, and the
// function is not called after that.
func testDeliver(t testing.TB, newConns NewConns) {
	conns, ids := open(t, newConns, 2)
	var mu sync.Mutex
	var got []*transport.Packet
	conns[1].Deliver(func(p *transport.Packet) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, p)
	})
	peers := run(t, conns, ids)
	s, r := peers[0], peers[1]
	const count = 40
	msgs := []wire.Message{&wire.Goodbye{}}
	for i := range count {
		msgs = append(msgs, &wire.Data{Session: 3, Block: uint64(i), Bytes: pattern(100+i, i)})
	}
	if _, err := s.SendBatch(msgs); err != nil {
		t.Fatalf("SendBatch: %v", err)
	}
	taken := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	deadline := time.Now().Add(suiteWait)
	for taken() < len(msgs) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := len(r.Packets()); n != 0 {
		t.Errorf("%d datagrams queued on Packets with Deliver set, want none", n)
	}
	r.stop(t)
	requireClosed(t, r)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(msgs) {
		t.Fatalf("Deliver's function got %d datagrams, want %d", len(got), len(msgs))
	}
	for i, p := range got {
		checkFrom(t, p, s, msgs[i].Type())
		m, err := wire.ParsePayload(p.Header.Type, p.Payload)
		if err != nil || !reflect.DeepEqual(m, msgs[i]) {
			t.Fatalf("datagram %d is not %s whole (%v)", i, describe(msgs[i]), err)
		}
		p.Release()
	}
}
