package transport

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

// relayLab is segments on the loopback interface: one group each, every
// relay candidate's relay socket on an address of its own (127.0.0.N),
// all on one port.
type relayLab struct {
	t    *testing.T
	port int
	key  []byte
	// missed is RelayConfig.Missed, of hellos every 50 ms; default 10.
	missed int
}

func newRelayLab(t *testing.T, key []byte) *relayLab {
	return &relayLab{t: t, port: freePort(t), key: key}
}

func segGroup(seg int) netip.Addr { return netip.AddrFrom4([4]byte{239, 77, 1, byte(seg)}) }

// relayAddr is where candidate n's relay socket is.
func (l *relayLab) relayAddr(n byte) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, n}), uint16(l.port))
}

// stoppable is a running node whose Run can be ended before the test.
type stoppable struct {
	*node
	stop func()
}

// start runs a member of segment seg; with relays it is a candidate
// bound to 127.0.0.bind that lists the relays of other segments.
func (l *relayLab) start(id wire.NodeID, seg int, bind byte, relays ...byte) stoppable {
	t := l.t
	t.Helper()
	cfg := Config{Group: segGroup(seg), Interface: "lo", Port: l.port, Node: id, Key: l.key,
		Incarnation: uint64(time.Now().UnixNano()), Metrics: metrics.New(prometheus.NewRegistry(), "test"),
		RelayHeard: time.Duration(max(l.missed, 10)) * 50 * time.Millisecond}
	if len(relays) > 0 {
		rc := &RelayConfig{Segment: fmt.Sprintf("seg%d", seg), Bind: l.relayAddr(bind).Addr(),
			Every: 50 * time.Millisecond, Missed: max(l.missed, 10)}
		for _, r := range relays {
			rc.Peers = append(rc.Peers, l.relayAddr(r))
		}
		cfg.Relay = rc
	}
	c, err := Listen(cfg)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stoppable{node: &node{conn: c, met: cfg.Metrics}, stop: stop}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func isActive(n stoppable) bool {
	st, _ := n.conn.RelayStatus()
	return st.Active
}

// activeRemote returns the nodes n hears claim to be active relays of
// segment seg.
func activeRemote(n stoppable, seg string) []wire.NodeID {
	st, _ := n.conn.RelayStatus()
	var out []wire.NodeID
	for _, r := range st.Remote {
		if r.Segment == seg && r.Active {
			out = append(out, r.Node)
		}
	}
	slices.Sort(out)
	return out
}

func targets(n stoppable) []netip.AddrPort {
	st, _ := n.conn.RelayStatus()
	return st.Targets
}

// TestRelayElection: of three candidates of a segment the lowest node
// id is the active relay, and the next one takes over when it stops;
// the other segment's relay follows.
func TestRelayElection(t *testing.T) {
	l := newRelayLab(t, nil)
	a1 := l.start(0x11, 1, 11, 21)
	a2 := l.start(0x12, 1, 12, 21)
	a3 := l.start(0x13, 1, 13, 21)
	b := l.start(0x21, 2, 21, 11, 12, 13)
	waitFor(t, "0x11 active, 0x12 and 0x13 standing by, 0x21 active", func() bool {
		return isActive(a1) && !isActive(a2) && !isActive(a3) && isActive(b) &&
			slices.Equal(activeRemote(b, "seg1"), []wire.NodeID{0x11}) &&
			slices.Equal(targets(b), []netip.AddrPort{l.relayAddr(11)}) &&
			slices.Equal(activeRemote(a2, "seg2"), []wire.NodeID{0x21})
	})
	if got := testutil.ToFloat64(a1.met.RelayActive); got != 1 {
		t.Fatalf("relay_active of the active relay is %v", got)
	}
	a1.stop()
	waitFor(t, "0x12 takes over, and 0x21 forwards to it alone", func() bool {
		return isActive(a2) && !isActive(a3) && slices.Equal(activeRemote(b, "seg1"), []wire.NodeID{0x12}) &&
			slices.Equal(targets(b), []netip.AddrPort{l.relayAddr(12)})
	})
	if got := testutil.ToFloat64(a2.met.RelayActive); got != 1 {
		t.Fatalf("relay_active of the new active relay is %v", got)
	}
	// 0x11 comes back: it takes over again, and 0x12 hands over only
	// once it has, so the segment is never without an active relay.
	a1 = l.start(0x11, 1, 11, 21)
	deadline := time.Now().Add(10 * time.Second)
	for !isActive(a1) || isActive(a2) {
		if !isActive(a1) && !isActive(a2) {
			t.Fatal("while 0x11 came back, neither 0x11 nor 0x12 was active")
		}
		if time.Now().After(deadline) {
			t.Fatal("0x11 did not take over again within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// collect reads n's packets of node from until it has want of them.
func collect(t *testing.T, n stoppable, from wire.NodeID, want int) []*Packet {
	t.Helper()
	var got []*Packet
	deadline := time.After(10 * time.Second)
	for len(got) < want {
		select {
		case p := <-n.conn.Packets():
			if p.Header.Node == from {
				got = append(got, p)
			} else {
				p.Release()
			}
		case <-deadline:
			t.Fatalf("member %v got %d datagrams of %v, want %d", n.conn.Node(), len(got), from, want)
		}
	}
	return got
}

// quiet checks that n gets no more datagrams of from for a while.
func quiet(t *testing.T, n stoppable, from wire.NodeID) {
	t.Helper()
	deadline := time.After(200 * time.Millisecond)
	for {
		select {
		case p := <-n.conn.Packets():
			node := p.Header.Node
			p.Release()
			if node == from {
				t.Fatalf("member %v got one more datagram of %v: a duplicate or a loop", n.conn.Node(), from)
			}
		case <-deadline:
			return
		}
	}
}

func relayed(n stoppable, way string) float64 {
	return testutil.ToFloat64(n.met.Relayed.WithLabelValues(way))
}

// TestRelayOnceNoLoop: two segments with two relay candidates each and a
// plain member. Every datagram of a member reaches each member of the
// other segment once, with its origin's address, through one copy on the
// link between the active relays; nothing comes back (the replay filter
// would count it, and the relays' counters would move). Answers are
// TestRelayAnswers'.
func TestRelayOnceNoLoop(t *testing.T) {
	l := newRelayLab(t, make([]byte, 32))
	a1 := l.start(0x31, 1, 31, 41, 42)
	a2 := l.start(0x32, 1, 32, 41, 42)
	am := l.start(0x3a, 1, 0)
	b1 := l.start(0x41, 2, 41, 31, 32)
	b2 := l.start(0x42, 2, 42, 31, 32)
	bm := l.start(0x4a, 2, 0)
	waitFor(t, "0x31 and 0x41 active, each hearing the other", func() bool {
		return isActive(a1) && !isActive(a2) && isActive(b1) && !isActive(b2) &&
			slices.Equal(targets(a1), []netip.AddrPort{l.relayAddr(41)}) &&
			slices.Equal(targets(b1), []netip.AddrPort{l.relayAddr(31)})
	})
	const n = 100
	for i := range n {
		if err := am.conn.Send(&wire.Busy{Session: uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	direct := collect(t, a2, 0x3a, n)
	origin := direct[0].From
	for _, m := range []stoppable{bm, b1, b2} {
		got := collect(t, m, 0x3a, n)
		for i, p := range got {
			if p.From != origin || p.Header.Type != wire.TypeBusy {
				t.Fatalf("member %v: datagram %d is %v from %v, want busy from the origin %v", m.conn.Node(), i, p.Header.Type, p.From, origin)
			}
		}
		quiet(t, m, 0x3a)
	}
	quiet(t, a2, 0x3a)
	for name, want := range map[string]float64{"a1 out": n, "a2 out": 0, "b1 in": n, "b2 in": 0, "b1 out": 0, "b2 out": 0, "a1 in": 0, "a2 in": 0} {
		nd := map[string]stoppable{"a1": a1, "a2": a2, "b1": b1, "b2": b2}[name[:2]]
		if got := relayed(nd, name[3:]); got != want {
			t.Errorf("%s: %v relayed, want %v", name, got, want)
		}
	}
	for _, m := range []stoppable{a1, a2, am, b1, b2, bm} {
		if got := dropped(m.met, metrics.DropReplay); got != 0 {
			t.Errorf("member %v refused %v replays: a datagram came back", m.conn.Node(), got)
		}
	}
}
