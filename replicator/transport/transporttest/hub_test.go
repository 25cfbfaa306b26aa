package transporttest

import (
	"context"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/replicator/wire"
)

// hubConn opens a conn on h and, unless run is false, runs it until the
// test ends.
func hubConn(t *testing.T, h *Hub, id wire.NodeID, maxDatagram int, run bool) *HubConn {
	t.Helper()
	c, err := h.Conn(id, maxDatagram)
	if err != nil {
		t.Fatal(err)
	}
	if !run {
		t.Cleanup(func() { c.Close() })
		return c
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return c
}

func next(t *testing.T, c *HubConn) *transport.Packet {
	t.Helper()
	select {
	case p := <-c.Packets():
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no datagram within 10s")
		return nil
	}
}

// waitStats polls c's counts until cond holds.
func waitStats(t *testing.T, c *HubConn, cond func(ConnStats) bool) ConnStats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := c.Stats()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", s)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestHubConnSizes(t *testing.T) {
	h := NewHub(1, Faults{})
	for _, bad := range []int{-1, 511, wire.MaxDatagram + 1} {
		if _, err := h.Conn(1, bad); err == nil {
			t.Errorf("datagram size %d accepted", bad)
		}
	}
	c := hubConn(t, h, 1, 0, false)
	if c.MaxPayload() != DefaultMaxDatagram-wire.HeaderLen {
		t.Fatalf("MaxPayload %d", c.MaxPayload())
	}
}

// TestHubLoss: a lossy link loses at send time and says so; the others
// carry on.
func TestHubLoss(t *testing.T) {
	h := NewHub(1, Faults{})
	a := hubConn(t, h, 1, 0, true)
	b := hubConn(t, h, 2, 0, true)
	c := hubConn(t, h, 3, 0, true)
	h.SetLink(1, 2, Faults{Loss: 1})
	for i := range 10 {
		if err := a.Send(&wire.Poll{Round: uint32(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if s := h.Stats()[Link{1, 2}]; s.Sent != 10 || s.Lost != 10 {
		t.Fatalf("lossy link: %+v", s)
	}
	h.SetLink(1, 2, Faults{})
	if err := a.Send(&wire.Goodbye{}); err != nil {
		t.Fatal(err)
	}
	if p := next(t, b); p.Header.Type != wire.TypeGoodbye {
		t.Fatalf("lossy link delivered %v", p.Header.Type)
	}
	for range 11 {
		next(t, c)
	}
	if s := h.Stats()[Link{1, 3}]; s.Sent != 11 || s.Delivered != 11 {
		t.Fatalf("clean link: %+v", s)
	}
}

// TestHubDuplicatesFiltered: duplicates made by the hub are dropped by the
// receiver's replay filter, as the real Conn drops the network's.
func TestHubDuplicatesFiltered(t *testing.T) {
	h := NewHub(1, Faults{Duplicate: 1})
	a := hubConn(t, h, 1, 0, true)
	b := hubConn(t, h, 2, 0, true)
	for i := range 10 {
		if err := a.Send(&wire.Poll{Round: uint32(i)}); err != nil {
			t.Fatal(err)
		}
	}
	h.SetLink(1, 2, Faults{})
	if err := a.Send(&wire.Goodbye{}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		p := next(t, b)
		if m, err := wire.ParsePayload(p.Header.Type, p.Payload); err != nil || m.(*wire.Poll).Round != uint32(i) {
			t.Fatalf("datagram %d: %v %v", i, m, err)
		}
	}
	if p := next(t, b); p.Header.Type != wire.TypeGoodbye {
		t.Fatalf("a duplicate got through: %v", p.Header.Type)
	}
	if s := b.Stats(); s.Replayed != 10 || s.Received != 21 || s.Queued != 11 {
		t.Fatalf("receiver stats %+v", s)
	}
	if s := h.Stats()[Link{1, 2}]; s.Duplicated != 10 || s.Delivered != 21 {
		t.Fatalf("link stats %+v", s)
	}
}

// TestHubDelay: no datagram arrives before its delay has passed.
func TestHubDelay(t *testing.T) {
	const delay = 30 * time.Millisecond
	h := NewHub(1, Faults{Delay: delay, Jitter: 10 * time.Millisecond})
	a := hubConn(t, h, 1, 0, true)
	b := hubConn(t, h, 2, 0, true)
	for range 5 {
		sent := time.Now()
		if err := a.Send(&wire.Goodbye{}); err != nil {
			t.Fatal(err)
		}
		next(t, b)
		if took := time.Since(sent); took < delay {
			t.Fatalf("arrived after %v, before the delay of %v", took, delay)
		}
	}
}

// TestHubQueueFull: a receiver that does not read drops data at seven
// eighths of its queue and control messages when it is full, and counts
// both.
func TestHubQueueFull(t *testing.T) {
	h := NewHub(1, Faults{})
	a := hubConn(t, h, 1, 0, true)
	b := hubConn(t, h, 2, 0, true)
	const data, control = QueueLen, QueueLen / 4
	for i := range data {
		if err := a.Send(&wire.Data{Block: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for range control {
		if err := a.Send(&wire.Goodbye{}); err != nil {
			t.Fatal(err)
		}
	}
	// Received is counted before the datagram is queued or dropped: wait
	// until every one is accounted for.
	s := waitStats(t, b, func(s ConnStats) bool { return s.Queued+s.QueueFull == data+control })
	keep := QueueLen - QueueLen/8
	if s.Queued != QueueLen || s.QueueFull != data+control-QueueLen || len(b.Packets()) != QueueLen {
		t.Fatalf("stats %+v with %d queued", s, len(b.Packets()))
	}
	for i := range QueueLen {
		p := <-b.Packets()
		if want := i < keep; (p.Header.Type == wire.TypeData) != want {
			t.Fatalf("queued datagram %d is %v", i, p.Header.Type)
		}
	}
}

// TestHubInboxBound: a receiver that never runs holds InboxBytes of
// datagrams; the rest overflow, and what it held is lost when it closes.
func TestHubInboxBound(t *testing.T) {
	h := NewHub(1, Faults{})
	a := hubConn(t, h, 1, wire.MaxDatagram, true)
	b, err := h.Conn(2, 0)
	if err != nil {
		t.Fatal(err)
	}
	big := &wire.Data{Bytes: make([]byte, a.MaxPayload()-wire.DataHeaderLen)}
	const sends = InboxBytes/wire.MaxDatagram + 10
	for range sends {
		if _, err := a.SendBatch([]wire.Message{big}); err != nil {
			t.Fatal(err)
		}
	}
	held := uint64(InboxBytes / wire.MaxDatagram)
	if s := h.Stats()[Link{1, 2}]; s.Overflow != sends-held {
		t.Fatalf("stats %+v, want %d overflowed", s, sends-held)
	}
	b.Close()
	if s := h.Stats()[Link{1, 2}]; s.Lost != held || s.Sent != sends {
		t.Fatalf("after close: %+v, want %d lost", s, held)
	}
	// A closed conn is sent nothing.
	if err := a.Send(&wire.Goodbye{}); err != nil {
		t.Fatal(err)
	}
	if s := h.Stats()[Link{1, 2}]; s.Sent != sends {
		t.Fatalf("a closed conn was sent to: %+v", s)
	}
}

// TestHubRestart: a new conn of an id keeps its address and gets a higher
// incarnation, so that its restarted sequence numbers are not replays.
func TestHubRestart(t *testing.T) {
	h := NewHub(1, Faults{})
	b := hubConn(t, h, 2, 0, true)
	first := hubConn(t, h, 1, 0, false)
	if err := first.Send(&wire.Goodbye{}); err != nil {
		t.Fatal(err)
	}
	p1 := next(t, b)
	first.Close()
	second := hubConn(t, h, 1, 0, false)
	if second.LocalAddr() != first.LocalAddr() {
		t.Fatalf("restart moved %v to %v", first.LocalAddr(), second.LocalAddr())
	}
	if err := second.Send(&wire.Goodbye{}); err != nil {
		t.Fatal(err)
	}
	p2 := next(t, b)
	if p2.Header.Seq != p1.Header.Seq || p2.Header.Incarnation <= p1.Header.Incarnation {
		t.Fatalf("restart: %+v after %+v", p2.Header, p1.Header)
	}
}

// TestHubPartition: nothing crosses a partition, until it heals.
func TestHubPartition(t *testing.T) {
	h := NewHub(1, Faults{})
	a := hubConn(t, h, 1, 0, true)
	b := hubConn(t, h, 2, 0, true)
	h.Partition([]wire.NodeID{1}, []wire.NodeID{2})
	if err := a.Send(&wire.Poll{}); err != nil {
		t.Fatal(err)
	}
	if s := h.Stats()[Link{1, 2}]; s.Lost != 1 {
		t.Fatalf("partitioned link: %+v", s)
	}
	h.Heal()
	if err := a.Send(&wire.Goodbye{}); err != nil {
		t.Fatal(err)
	}
	if p := next(t, b); p.Header.Type != wire.TypeGoodbye {
		t.Fatalf("got %v across the partition", p.Header.Type)
	}
}

func TestHubRunTwice(t *testing.T) {
	c := hubConn(t, NewHub(1, Faults{}), 1, 0, false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := c.Run(context.Background()); err == nil {
		t.Fatal("second Run accepted")
	}
}
