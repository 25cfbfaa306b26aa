package transport

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/transport/peers"
	"github.com/makuo/makuo/replicator/wire"
)

// uniNode starts a unicast-mode Conn bound to bind:port whose listed
// peers are specs; pcfg's peer settings other than those are kept.
func uniNode(t *testing.T, id wire.NodeID, bind string, port int, pcfg peers.Config, specs ...string) *node {
	t.Helper()
	met := metrics.New(prometheus.NewRegistry(), "test")
	pcfg.Port, pcfg.Metrics = port, met
	if pcfg.Interval == 0 {
		pcfg.Interval, pcfg.MissedHeartbeats = time.Second, 3
	}
	for _, s := range specs {
		sp, err := peers.ParseSpec(s, port)
		if err != nil {
			t.Fatal(err)
		}
		pcfg.Specs = append(pcfg.Specs, sp)
	}
	set, err := peers.New(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	return runNode(t, Config{Port: port, Interface: bind, Peers: set, Node: id, GossipEvery: 50 * time.Millisecond,
		Metrics: met})
}

// freePort returns a UDP port no socket holds now. Unicast sockets bind
// without SO_REUSEADDR, so they cannot share the group tests' ports.
func freePort(t *testing.T) int {
	t.Helper()
	u, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	return u.LocalAddr().(*net.UDPAddr).Port
}

func targetsOf(n *node) []string {
	var out []string
	for _, a := range n.conn.cfg.Peers.Targets().Addrs {
		out = append(out, a.String())
	}
	return out
}

// waitTargets waits until n's targets are want (in any order).
func waitTargets(t *testing.T, n *node, want ...string) {
	t.Helper()
	want = slices.Clone(want)
	slices.SortFunc(want, func(a, b string) int {
		return netip.MustParseAddrPort(a).Compare(netip.MustParseAddrPort(b))
	})
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(targetsOf(n), want) {
		if time.Now().After(deadline) {
			t.Fatalf("member %v: targets %q, want %q", n.conn.Node(), targetsOf(n), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// beat sends a heartbeat from every node every few milliseconds until
// the test ends, as the membership service would.
func beat(t *testing.T, nodes ...*node) {
	t.Helper()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for _, n := range nodes {
				_ = n.conn.Send(&wire.Heartbeat{Interval: time.Second, Hostname: "h", Version: "v"})
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// drain releases what nodes receive until the test ends.
func drain(t *testing.T, nodes ...*node) {
	t.Helper()
	for _, n := range nodes {
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				case p, ok := <-n.conn.Packets():
					if !ok {
						return
					}
					p.Release()
				}
			}
		}()
		t.Cleanup(func() { close(stop); <-done })
	}
}

// TestUnicastGossip: four members that each list only the next one find
// every other by their heartbeats and peer lists, which are never handed
// to the consumer.
func TestUnicastGossip(t *testing.T) {
	ports := []int{freePort(t), freePort(t), freePort(t), freePort(t)}
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	var nodes []*node
	for i := range 4 {
		nodes = append(nodes, uniNode(t, wire.NodeID(0x7700+i), "127.0.0.1", ports[i], peers.Config{}, addr((i+1)%4)))
	}
	// No one has heard anyone: only the listed peer.
	for i, n := range nodes {
		if got := targetsOf(n); !slices.Equal(got, []string{addr((i + 1) % 4)}) {
			t.Fatalf("member %d starts with targets %q", i, got)
		}
	}
	// Each heartbeat's copies, before the drain, are all a member gets:
	// the peer lists stay in the transport.
	if err := nodes[0].conn.Send(&wire.Heartbeat{Interval: time.Second, Hostname: "h0", Version: "v"}); err != nil {
		t.Fatal(err)
	}
	if p := recv(t, nodes[1].conn); p.Header.Type != wire.TypeHeartbeat || p.From.String() != addr(0) {
		t.Fatalf("member 1 got %v from %v, want member 0's heartbeat from %s", p.Header.Type, p.From, addr(0))
	}
	drain(t, nodes...)
	beat(t, nodes...)
	for i, n := range nodes {
		var want []string
		for j := range 4 {
			if j != i {
				want = append(want, addr(j))
			}
		}
		waitTargets(t, n, want...)
	}
	for i, n := range nodes {
		if got := testutil.ToFloat64(n.met.DatagramsDropped.WithLabelValues(metrics.DropMalformed)); got != 0 {
			t.Errorf("member %d dropped %v datagrams as malformed", i, got)
		}
	}
}

// TestUnicastOwnAddress: a member whose list names itself (as a DNS name
// of every member does) finds out from its first datagram and sends
// itself nothing more.
func TestUnicastOwnAddress(t *testing.T) {
	pa, pb := freePort(t), freePort(t)
	self, other := fmt.Sprintf("127.0.0.1:%d", pa), fmt.Sprintf("127.0.0.1:%d", pb)
	a := uniNode(t, 0xa1, "127.0.0.1", pa, peers.Config{}, self, other)
	b := uniNode(t, 0xb1, "127.0.0.1", pb, peers.Config{}, self)
	waitTargets(t, a, self, other)
	if err := a.conn.Send(&wire.Goodbye{}); err != nil {
		t.Fatal(err)
	}
	waitTargets(t, a, other)
	if p := recv(t, b.conn); p.Header.Node != 0xa1 {
		t.Fatalf("member b got a datagram of %v", p.Header.Node)
	}
	if len(a.conn.Packets()) != 0 {
		t.Fatal("a member was handed its own datagram")
	}
}

// TestUnicastForgedFlood: heartbeats from many source addresses fill the
// table of learned peers up to its bound and are counted past it; the
// member's own peers keep getting their datagrams.
func TestUnicastForgedFlood(t *testing.T) {
	pa, pb := freePort(t), freePort(t)
	a := uniNode(t, 0xa2, "127.0.0.1", pa, peers.Config{MaxLearned: 8}, fmt.Sprintf("127.0.0.1:%d", pb))
	b := uniNode(t, 0xb2, "127.0.0.1", pb, peers.Config{})
	const forgers = 40
	for i := range forgers {
		// Every 127.0.0.0/8 address is lo's: each forger its own source.
		src := netip.AddrFrom4([4]byte{127, 0, 1, byte(i + 1)})
		u, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
		if err != nil {
			t.Fatal(err)
		}
		hb := wire.Append(nil, wire.Header{Node: wire.NodeID(0xf000 + i), Incarnation: 1, Seq: 1},
			&wire.Heartbeat{Interval: time.Minute, Hostname: "forged", Version: "v"})
		if _, err := u.WriteToUDPAddrPort(hb, netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", pa))); err != nil {
			t.Fatal(err)
		}
		u.Close()
	}
	waitCounter(t, a.met.DatagramsDropped.WithLabelValues(metrics.DropPeerLimit), forgers-8)
	if got := testutil.ToFloat64(a.met.Peers.WithLabelValues("learned")); got != 8 {
		t.Fatalf("learned peers %v, want the bound, 8", got)
	}
	if n := len(a.conn.cfg.Peers.Snapshot()); n != 1+8 {
		t.Fatalf("%d addresses held, want 9", n)
	}
	// The forged heartbeats themselves are datagrams like any other:
	// the consumer gets them (and its member table bounds members).
	if got := len(a.conn.Packets()); got != forgers {
		t.Fatalf("%d heartbeats queued, want %d", got, forgers)
	}
	if err := a.conn.Send(&wire.Goodbye{}); err != nil {
		t.Fatal(err)
	}
	if p := recv(t, b.conn); p.Header.Type != wire.TypeGoodbye {
		t.Fatalf("the listed peer got %v", p.Header.Type)
	}
}

// TestPeerListsNotQueued: a peer list never reaches the consumer, on a
// multicast Conn (which has no peers) nor on a unicast one; a malformed
// one is counted.
func TestPeerListsNotQueued(t *testing.T) {
	port := nextPort()
	m := startNode(t, 1, port, nil)
	pu := freePort(t)
	u := uniNode(t, 2, "127.0.0.1", pu, peers.Config{})
	list := wire.Append(nil, wire.Header{Node: 9, Incarnation: 1, Seq: 1},
		&wire.Peers{Peers: []wire.Peer{{Node: 10, Addr: netip.MustParseAddrPort("127.0.0.1:9")}}})
	bad := wire.Append(nil, wire.Header{Node: 9, Incarnation: 1, Seq: 2}, &wire.Goodbye{})
	bad[3] = byte(wire.TypePeers) // a peer list with no count
	g := m.conn
	// Into the group through another member's socket, which sends on lo.
	s := startNode(t, 3, port, nil)
	for _, b := range [][]byte{list, bad} {
		if _, err := s.conn.txUDP.WriteTo(b, s.conn.dst); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := net.Dial("udp4", fmt.Sprintf("127.0.0.1:%d", pu))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, b := range [][]byte{list, bad} {
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	waitCounter(t, g.cfg.Metrics.DatagramsReceived, 2)
	waitCounter(t, u.met.DatagramsReceived, 2)
	waitCounter(t, u.met.DatagramsDropped.WithLabelValues(metrics.DropMalformed), 1)
	if len(g.Packets()) != 0 || len(u.conn.Packets()) != 0 || len(s.conn.Packets()) != 0 {
		t.Fatal("a peer list was queued")
	}
	// The list's sender was learned from it, and its entry (loopback,
	// from loopback) too.
	waitTargets(t, u, "127.0.0.1:9", conn.LocalAddr().String())
}

// TestUnicastListenErrors: unicast mode refuses what it cannot serve.
func TestUnicastListenErrors(t *testing.T) {
	met := metrics.New(prometheus.NewRegistry(), "test")
	set4, err := peers.New(context.Background(), peers.Config{Port: 5000, Interval: time.Second, MissedHeartbeats: 3,
		Specs: []peers.Spec{{Host: "127.0.0.1", Port: 5001}}})
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	taken, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"bind of another family", Config{Port: 5000, Interface: "::1", Peers: set4, Node: 1, Metrics: met}},
		{"no such interface", Config{Port: 5000, Interface: "nosuch0", Peers: set4, Node: 1, Metrics: met}},
		{"port taken", Config{Port: port, Interface: "127.0.0.1", Peers: set4, Node: 1, Metrics: met}},
		{"group of another family", Config{Group: netip.MustParseAddr("ff05::108"), Port: 5000, Peers: set4, Node: 1, Metrics: met}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Listen(tt.cfg)
			if err == nil {
				c.Close()
				t.Fatal("Listen succeeded")
			}
		})
	}
}

// TestMixedMode: a member of a group with a listed peer elsewhere
// multicasts to the group and sends the peer a unicast copy, from a
// socket the peer's answers and datagrams come back to; the group's
// members never see the copies.
func TestMixedMode(t *testing.T) {
	port := freePort(t)
	met := metrics.New(prometheus.NewRegistry(), "test")
	set, err := peers.New(context.Background(), peers.Config{Port: port, Interval: time.Second, MissedHeartbeats: 3, Metrics: met,
		Specs: []peers.Spec{{Host: "127.0.0.2", Port: uint16(port)}}})
	if err != nil {
		t.Fatal(err)
	}
	a := runNode(t, Config{Group: loopback4.group, Interface: loopback4.iface, Port: port, Peers: set, Node: 0xa3, Metrics: met})
	// The peer socket is on the address the group's datagrams go out
	// from (lo's multicast takes the host's primary address).
	aAddr := netip.AddrPortFrom(a.conn.LocalAddr(), uint16(port)).String()
	local := startNode(t, 0xc3, port, nil) // on the group only
	remote := uniNode(t, 0xb3, "127.0.0.2", port, peers.Config{}, aAddr)
	if !a.conn.UnicastReplies() {
		t.Fatal("a mixed-mode member takes no unicast answers")
	}
	if err := a.conn.Send(&wire.Heartbeat{Interval: time.Second, Hostname: "a", Version: "v"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*node{local, remote} {
		if p := recv(t, r.conn); p.Header.Node != 0xa3 || p.Header.Type != wire.TypeHeartbeat {
			t.Fatalf("member %v got %v of %v", r.conn.Node(), p.Header.Type, p.Header.Node)
		}
	}
	// The remote member's datagrams reach a; its answer to a's copy's
	// source reaches a as well.
	if err := remote.conn.Send(&wire.Goodbye{}); err != nil {
		t.Fatal(err)
	}
	p := recv(t, a.conn)
	if p.Header.Node != 0xb3 || p.From.String() != fmt.Sprintf("127.0.0.2:%d", port) {
		t.Fatalf("a got %v from %v (%v)", p.Header.Type, p.Header.Node, p.From)
	}
	if err := a.conn.SendTo(&wire.Busy{Session: 5}, p.From); err != nil {
		t.Fatal(err)
	}
	if q := recv(t, remote.conn); q.Header.Type != wire.TypeBusy || q.From.String() != aAddr {
		t.Fatalf("remote got %v from %v, want the answer from a's unicast socket", q.Header.Type, q.From)
	}
	select {
	case q := <-local.conn.Packets():
		t.Fatalf("the group member got %v of %v: a unicast copy, or the remote's", q.Header.Type, q.Header.Node)
	case <-time.After(100 * time.Millisecond):
	}
}
