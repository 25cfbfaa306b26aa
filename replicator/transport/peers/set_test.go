package peers

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Unix(1_700_000_000, 0)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// newSet builds a set of the literal peers specs over a fake resolver,
// with the default heartbeat of 1 s and 3 misses (3.5 s of life).
func newSet(t *testing.T, cfg Config, specs ...string) *Set {
	t.Helper()
	for _, s := range specs {
		sp, err := ParseSpec(s, 5000)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Specs = append(cfg.Specs, sp)
	}
	cfg.Port = 5000
	if cfg.Interval == 0 {
		cfg.Interval, cfg.MissedHeartbeats = time.Second, 3
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(prometheus.NewRegistry(), "test")
	}
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func targets(s *Set) []string {
	var out []string
	for _, a := range s.Targets().Addrs {
		out = append(out, a.String())
	}
	return out
}

func wantTargets(t *testing.T, s *Set, want ...string) {
	t.Helper()
	if got := targets(s); !slices.Equal(got, want) {
		t.Fatalf("targets %q, want %q", got, want)
	}
}

// TestHeardAndForgotten: a heartbeat's source is learned; silent for
// longer than its member's missed heartbeats, it is forgotten, while a
// listed address stays however silent.
func TestHeardAndForgotten(t *testing.T) {
	s := newSet(t, Config{}, "10.0.0.2")
	wantTargets(t, s, "10.0.0.2:5000")
	s.Heard(3, ap("10.0.0.3:5000"), time.Second, t0)
	wantTargets(t, s, "10.0.0.2:5000", "10.0.0.3:5000")
	select {
	case <-s.Kicked():
	default:
		t.Fatal("a learned address kicked nothing")
	}
	s.Expire(t0.Add(3 * time.Second))
	wantTargets(t, s, "10.0.0.2:5000", "10.0.0.3:5000")
	if n := s.Expire(t0.Add(4 * time.Second)); n != 1 {
		t.Fatalf("Expire forgot %d, want 1", n)
	}
	wantTargets(t, s, "10.0.0.2:5000")
	// A member announcing a longer interval lives longer: 3 × 5 s + 2.5 s.
	s.Heard(4, ap("10.0.0.4:5000"), 5*time.Second, t0)
	s.Expire(t0.Add(17 * time.Second))
	wantTargets(t, s, "10.0.0.2:5000", "10.0.0.4:5000")
	s.Expire(t0.Add(18 * time.Second))
	wantTargets(t, s, "10.0.0.2:5000")
	// But no longer than a minute's worth, whatever it announces.
	s.Heard(5, ap("10.0.0.5:5000"), 49*24*time.Hour, t0)
	s.Expire(t0.Add(3*time.Minute + 31*time.Second))
	wantTargets(t, s, "10.0.0.2:5000")
}

// TestLearnedCap: a flood of heartbeats from many addresses keeps at
// most MaxLearned of them, counts every other as a peer_limit drop, and
// leaves the listed addresses alone; once the learned ones expire, new
// ones are learned again.
func TestLearnedCap(t *testing.T) {
	met := metrics.New(prometheus.NewRegistry(), "test")
	s := newSet(t, Config{MaxLearned: 4, Metrics: met}, "10.0.0.2", "10.0.0.3")
	for i := range 1000 {
		s.Heard(wire.NodeID(100+i), netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 5000), time.Second, t0)
	}
	if n := len(s.Snapshot()); n != 2+4 {
		t.Fatalf("%d addresses held after the flood, want 6", n)
	}
	if got := testutil.ToFloat64(met.DatagramsDropped.WithLabelValues(metrics.DropPeerLimit)); got != 996 {
		t.Fatalf("%v peer_limit drops, want 996", got)
	}
	if got := testutil.ToFloat64(met.Peers.WithLabelValues("learned")); got != 4 {
		t.Fatalf("learned gauge %v, want 4", got)
	}
	if got := testutil.ToFloat64(met.Peers.WithLabelValues("listed")); got != 2 {
		t.Fatalf("listed gauge %v, want 2", got)
	}
	// A peer list cannot push past the cap either.
	s.Heard(2, ap("10.0.0.2:5000"), time.Second, t0)
	s.Gossip(ap("10.0.0.2:5000"), []wire.Peer{{Node: 9, Addr: ap("10.9.9.9:5000")}}, t0)
	if got := testutil.ToFloat64(met.DatagramsDropped.WithLabelValues(metrics.DropPeerLimit)); got != 997 {
		t.Fatalf("%v peer_limit drops after a list, want 997", got)
	}
	s.Expire(t0.Add(time.Minute))
	s.Heard(7, ap("10.0.0.7:5000"), time.Second, t0.Add(time.Minute))
	wantTargets(t, s, "10.0.0.2:5000", "10.0.0.3:5000", "10.0.0.7:5000")
}

// TestGossip: a live peer's list adds the addresses that are a member's,
// and those only; a list from an address that is not a live peer is not
// followed; a gossiped address nobody hears from is forgotten.
func TestGossip(t *testing.T) {
	s := newSet(t, Config{}, "10.0.0.2")
	from := ap("10.0.0.2:5000")
	list := []wire.Peer{
		{Node: 3, Addr: ap("10.0.0.3:5000")},
		{Node: 4, Addr: ap("10.0.0.4:6000")},
		{Node: 5, Addr: ap("224.0.0.108:5000")},
		{Node: 6, Addr: ap("10.0.0.6:0")},
		{Node: 7, Addr: ap("[fd00::7]:5000")},
		{Node: 8, Addr: ap("127.0.0.1:5000")},
		{Node: 9, Addr: ap("0.0.0.0:5000")},
		{Node: 10, Addr: ap("255.255.255.255:5000")},
		{Node: 11, Addr: from}, // the sender itself
	}
	s.Gossip(from, list, t0) // not heard yet: not a live peer
	wantTargets(t, s, "10.0.0.2:5000")
	s.Gossip(ap("10.0.0.66:5000"), list, t0) // not a peer at all
	wantTargets(t, s, "10.0.0.2:5000")
	s.Heard(2, from, time.Second, t0)
	s.Gossip(from, list, t0)
	wantTargets(t, s, "10.0.0.2:5000", "10.0.0.3:5000", "10.0.0.4:6000")
	if got := s.Live(t0); len(got) != 1 || got[0] != (wire.Peer{Node: 2, Addr: from}) {
		t.Fatalf("Live %+v: only what was heard from goes out", got)
	}
	// Heard from 10.0.0.3 in the meantime; 10.0.0.4 never.
	s.Heard(3, ap("10.0.0.3:5000"), time.Second, t0.Add(3*time.Second))
	s.Heard(2, from, time.Second, t0.Add(3*time.Second))
	s.Expire(t0.Add(4 * time.Second))
	wantTargets(t, s, "10.0.0.2:5000", "10.0.0.3:5000")
	// A list from a peer that fell silent is not followed.
	s.Expire(t0.Add(10 * time.Second))
	s.Gossip(ap("10.0.0.3:5000"), []wire.Peer{{Node: 12, Addr: ap("10.0.0.12:5000")}}, t0.Add(10*time.Second))
	wantTargets(t, s, "10.0.0.2:5000")
}

// TestGossipLoopbackAndZones: loopback addresses are followed from a
// loopback peer only, and a link-local IPv6 address takes the zone of the
// peer that named it.
func TestGossipLoopbackAndZones(t *testing.T) {
	s := newSet(t, Config{}, "127.0.0.1:7001")
	s.Heard(1, ap("127.0.0.1:7001"), time.Second, t0)
	s.Gossip(ap("127.0.0.1:7001"), []wire.Peer{{Node: 2, Addr: ap("127.0.0.1:7002")}}, t0)
	wantTargets(t, s, "127.0.0.1:7001", "127.0.0.1:7002")

	s6 := newSet(t, Config{}, "fe80::1%eth0")
	from := netip.AddrPortFrom(netip.MustParseAddr("fe80::1%eth0"), 5000)
	s6.Heard(1, from, time.Second, t0)
	s6.Gossip(from, []wire.Peer{{Node: 2, Addr: ap("[fe80::2]:5000")}, {Node: 3, Addr: ap("10.0.0.3:5000")}}, t0)
	wantTargets(t, s6, "[fe80::1%eth0]:5000", "[fe80::2%eth0]:5000")
	if !s6.Is6() {
		t.Fatal("a set of IPv6 peers is not IPv6")
	}
}

// TestOwnAddress: an address our own datagrams came back from gets
// nothing more, and a heartbeat of another member from it undoes that.
func TestOwnAddress(t *testing.T) {
	s := newSet(t, Config{}, "10.0.0.1", "10.0.0.2")
	s.Own(ap("10.0.0.1:5000"))
	wantTargets(t, s, "10.0.0.2:5000")
	s.Own(ap("10.0.0.9:5000")) // not held: nothing to do
	wantTargets(t, s, "10.0.0.2:5000")
	s.Heard(5, ap("10.0.0.1:5000"), time.Second, t0)
	wantTargets(t, s, "10.0.0.1:5000", "10.0.0.2:5000")
}

// TestOneAddressPerMember: a member heard at several addresses gets each
// datagram once: at a live address first, then at a listed one, then
// the lowest.
func TestOneAddressPerMember(t *testing.T) {
	s := newSet(t, Config{}, "10.0.0.2", "10.0.1.2")
	wantTargets(t, s, "10.0.0.2:5000", "10.0.1.2:5000") // members unknown yet
	s.Heard(2, ap("10.0.1.2:5000"), time.Second, t0)
	s.Heard(2, ap("10.0.0.2:5000"), time.Second, t0)
	wantTargets(t, s, "10.0.0.2:5000")
	// 10.0.0.2 falls silent, 10.0.1.2 goes on: it is the live one.
	s.Heard(2, ap("10.0.1.2:5000"), time.Second, t0.Add(3*time.Second))
	s.Expire(t0.Add(4 * time.Second))
	wantTargets(t, s, "10.0.1.2:5000")
	// A learned address loses to a listed one, both live.
	s.Heard(2, ap("10.0.2.2:5000"), time.Second, t0.Add(4*time.Second))
	s.Heard(2, ap("10.0.1.2:5000"), time.Second, t0.Add(4*time.Second))
	wantTargets(t, s, "10.0.1.2:5000")
	if live := s.Live(t0.Add(4 * time.Second)); len(live) != 1 || live[0].Addr != ap("10.0.1.2:5000") {
		t.Fatalf("Live %+v, want the member once, at its target address", live)
	}
	// A list naming a known member at an unknown address adds no second
	// copy for it.
	s.Gossip(ap("10.0.1.2:5000"), []wire.Peer{{Node: 2, Addr: ap("10.0.3.2:5000")}}, t0.Add(4*time.Second))
	wantTargets(t, s, "10.0.1.2:5000")
}

// TestHeardOnGroup: in mixed mode a member heard on the multicast group
// gets no unicast copy, and does again once silent there; nodes the set
// does not hold are recorded up to MaxLearned.
func TestHeardOnGroup(t *testing.T) {
	s := newSet(t, Config{MaxLearned: 8}, "10.0.0.2", "10.0.9.3")
	s.Heard(2, ap("10.0.0.2:5000"), time.Second, t0)
	s.Heard(3, ap("10.0.9.3:5000"), time.Second, t0)
	s.HeardOnGroup(2, t0)
	wantTargets(t, s, "10.0.9.3:5000")
	for i := range 10000 {
		s.HeardOnGroup(wire.NodeID(1000+i), t0)
	}
	if n := len(s.group); n != 8 {
		t.Fatalf("%d nodes recorded as heard on the group, want MaxLearned (8)", n)
	}
	// A held node is still recorded with the map full.
	s.HeardOnGroup(3, t0)
	wantTargets(t, s)
	s.Heard(2, ap("10.0.0.2:5000"), time.Second, t0.Add(3*time.Second))
	s.Heard(3, ap("10.0.9.3:5000"), time.Second, t0.Add(3*time.Second))
	s.Expire(t0.Add(4 * time.Second))
	wantTargets(t, s, "10.0.0.2:5000", "10.0.9.3:5000")
	if n := len(s.group); n != 0 {
		t.Fatalf("%d nodes still recorded as heard on the group after they fell silent", n)
	}
}

// TestHeardOnGroupBeforeGossip: a member of our segment heard on the group
// before a peer's list names it (the order a mixed cluster often meets
// in) gets no unicast copy once the list arrives.
func TestHeardOnGroupBeforeGossip(t *testing.T) {
	s := newSet(t, Config{}, "10.0.9.3")
	s.Heard(3, ap("10.0.9.3:5000"), time.Second, t0)
	s.HeardOnGroup(2, t0)
	s.Gossip(ap("10.0.9.3:5000"), []wire.Peer{{Node: 2, Addr: ap("10.0.0.2:5000")}}, t0)
	wantTargets(t, s, "10.0.9.3:5000")
}

// TestHeardRefusesBadSources: a heartbeat from an address no member has
// (another family, a port 0) is not learned.
func TestHeardRefusesBadSources(t *testing.T) {
	s := newSet(t, Config{}, "10.0.0.2")
	s.Heard(3, ap("[fd00::3]:5000"), time.Second, t0)
	s.Heard(4, ap("10.0.0.4:0"), time.Second, t0)
	s.Heard(5, netip.AddrPort{}, time.Second, t0)
	wantTargets(t, s, "10.0.0.2:5000")
}
