package transporttest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/replicator/wire"
)

// Conn is the contract of makuo's transport that TestConn checks (see
// transport.Link), met by transport.Conn and HubConn.
type Conn = transport.Link

var _ Conn = (*transport.Conn)(nil)

// NewConns makes one conn per id, all members of one fresh, clean network
// (no loss, no other traffic), not yet running; it closes them when the
// test ends. TestConn asks for at most three.
type NewConns func(t testing.TB, ids []wire.NodeID) []Conn

// TestConn checks that the conns newConns makes behave as makuo's
// transport promises: each case is a subtest on conns of its own. It runs
// against the real multicast transport and against HubConn, so that the
// fake cannot drift from the real thing.
func TestConn(t *testing.T, newConns NewConns) {
	for _, c := range suiteCases() {
		t.Run(c.name, func(t *testing.T) { c.run(t, newConns) })
	}
}

type suiteCase struct {
	name string
	run  func(testing.TB, NewConns)
}

func suiteCases() []suiteCase {
	return []suiteCase{
		{"Multicast", testMulticast},
		{"Unicast", testUnicast},
		{"MessageTypes", testMessageTypes},
		{"BatchOrder", testBatchOrder},
		{"MaxPayload", testMaxPayload},
		{"QueueBound", testQueueBound},
		{"CancelRun", testCancelRun},
		{"CloseStopsRun", testCloseStopsRun},
		{"CloseBeforeRun", testCloseBeforeRun},
		{"Deliver", testDeliver},
	}
}

// suiteWait bounds every wait of the suite: a datagram that has not come by
// then is lost, a Run that has not returned is stuck.
const suiteWait = 10 * time.Second

// peer is a running member of a suite case.
type peer struct {
	Conn
	id       wire.NodeID
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

// open makes n conns with distinct ids whose high bits are set, so that
// filters comparing node ids see all 64 bits.
func open(t testing.TB, newConns NewConns, n int) ([]Conn, []wire.NodeID) {
	t.Helper()
	ids := make([]wire.NodeID, n)
	for i := range ids {
		ids[i] = wire.NodeID(0x5ee0_0000_0000_0001 + uint64(i)<<32 + uint64(i))
	}
	conns := newConns(t, ids)
	if len(conns) != n {
		t.Fatalf("newConns made %d conns, want %d", len(conns), n)
	}
	return conns, ids
}

// start opens n conns and runs them until the test ends.
func start(t testing.TB, newConns NewConns, n int) []*peer {
	t.Helper()
	conns, ids := open(t, newConns, n)
	return run(t, conns, ids)
}

// run runs conns, whose ids are ids, until the test ends.
func run(t testing.TB, conns []Conn, ids []wire.NodeID) []*peer {
	peers := make([]*peer, len(conns))
	for i, c := range conns {
		ctx, cancel := context.WithCancel(context.Background())
		p := &peer{Conn: c, id: ids[i], cancel: cancel, done: make(chan error, 1)}
		go func() { p.done <- c.Run(ctx) }()
		peers[i] = p
	}
	t.Cleanup(func() {
		for _, p := range peers {
			p.stop(t)
		}
	})
	return peers
}

// stop cancels Run and waits for it; then Packets holds what was queued.
func (p *peer) stop(t testing.TB) {
	t.Helper()
	p.stopOnce.Do(func() {
		p.cancel()
		if err := waitRun(p.done); err != nil {
			t.Errorf("member %v: %v", p.id, err)
		}
	})
}

func waitRun(done <-chan error) error {
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("Run returned %w, want nil", err)
		}
		return nil
	case <-time.After(suiteWait):
		return fmt.Errorf("Run did not return within %v", suiteWait)
	}
}

// recv returns the next packet of c.
func recv(t testing.TB, c Conn) *transport.Packet {
	t.Helper()
	select {
	case p, ok := <-c.Packets():
		if !ok {
			t.Fatal("Packets closed while receiving")
		}
		return p
	case <-time.After(suiteWait):
		t.Fatalf("no datagram within %v", suiteWait)
		return nil
	}
}

// leftovers returns what a stopped peer's Packets still held.
func leftovers(t testing.TB, p *peer) []*transport.Packet {
	t.Helper()
	p.stop(t)
	var out []*transport.Packet
	for {
		select {
		case pk, ok := <-p.Packets():
			if !ok {
				return out
			}
			out = append(out, pk)
		default:
			t.Errorf("member %v: Packets still open after Run returned", p.id)
			return out
		}
	}
}

// waitQueued waits until n packets wait in c's queue, and fails if more do.
func waitQueued(t testing.TB, c Conn, n int) {
	t.Helper()
	deadline := time.Now().Add(suiteWait)
	for len(c.Packets()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d datagrams queued after %v, want %d", len(c.Packets()), suiteWait, n)
		}
		time.Sleep(time.Millisecond)
	}
	if got := len(c.Packets()); got != n {
		t.Fatalf("%d datagrams queued, want %d", got, n)
	}
}

// checkFrom checks that p is a datagram of type typ from sender.
func checkFrom(t testing.TB, p *transport.Packet, sender *peer, typ wire.Type) {
	t.Helper()
	if p.Header.Type != typ || p.Header.Node != sender.id {
		t.Fatalf("got %v from %v, want %v from %v", p.Header.Type, p.Header.Node, typ, sender.id)
	}
	want := sender.LocalAddr()
	if !p.From.IsValid() || !want.IsValid() || p.From.Addr() != want {
		t.Fatalf("datagram from %v, sender's LocalAddr is %v", p.From, want)
	}
}
