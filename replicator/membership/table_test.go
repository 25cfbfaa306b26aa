package membership

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

// TestMemberLimit: a flood of heartbeats with random node ids leaves at
// most MaxMembers members, and every refused one is counted.
func TestMemberLimit(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Hostname = "self"
	cfg.Metrics = metrics.New(prometheus.NewRegistry(), "test")
	svc, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const flood = 10000
	for i := range flood {
		h := wire.Header{Type: wire.TypeHeartbeat, Node: wire.NodeID(rng.Uint64() | 1), Incarnation: 1, Seq: uint64(i)}
		svc.Handle(h, &wire.Heartbeat{Hostname: "spoofed", Interval: time.Second}, netip.MustParseAddr("10.9.9.9"))
	}
	if n := svc.Table().Len(); n != cfg.MaxMembers {
		t.Fatalf("%d members after the flood, want the limit %d", n, cfg.MaxMembers)
	}
	got := testutil.ToFloat64(cfg.Metrics.DatagramsDropped.WithLabelValues(metrics.DropMemberLimit))
	if got != flood-float64(cfg.MaxMembers) {
		t.Fatalf("%v member_limit drops, want %d", got, flood-cfg.MaxMembers)
	}
	// A known member is still refreshed when the table is full.
	first := svc.Table().Snapshot()[0]
	svc.Handle(wire.Header{Node: first.ID, Incarnation: 1}, &wire.Heartbeat{Hostname: "renamed", Interval: time.Second}, first.Addr)
	if m, ok := svc.Table().Get(first.ID); !ok || m.Hostname != "renamed" {
		t.Fatalf("known member not refreshed at the limit: %+v", m)
	}
}

// TestExpiryClampsInterval: a member announcing the longest interval the
// wire carries (49 days) is expired within MissedHeartbeats × MaxInterval.
func TestExpiryClampsInterval(t *testing.T) {
	tab := NewTable(3, 3500*time.Millisecond, 16)
	now := time.Unix(1000, 0)
	hb := &wire.Heartbeat{Hostname: "slow", Interval: time.Duration(1<<32-1) * time.Millisecond}
	tab.Heard(wire.Header{Node: 5, Incarnation: 1}, hb, netip.MustParseAddr("10.0.0.5"), now)
	if gone := tab.Expire(now.Add(3 * MaxInterval)); len(gone) != 0 {
		t.Fatal("expired before MissedHeartbeats × MaxInterval")
	}
	if gone := tab.Expire(now.Add(3*MaxInterval + time.Millisecond)); len(gone) != 1 || tab.Len() != 0 {
		t.Fatalf("a 49-day interval kept the member beyond 3 × %v", MaxInterval)
	}
}

// TestRelayedMembersOutliveTakeOver: a member of another segment (heard
// through the relays) is expired after twice the missed heartbeats, so
// that a relay's take-over does not expire its segment; members of this
// segment, or of none, after the missed heartbeats, as without segments.
func TestRelayedMembersOutliveTakeOver(t *testing.T) {
	now := time.Unix(1000, 0)
	life := 3500 * time.Millisecond
	for _, c := range []struct {
		own, theirs string
		relayed     bool
	}{
		{"seg1", "seg2", true},
		{"seg1", "seg1", false},
		{"seg1", "", false},
		{"", "seg2", false},
	} {
		tab := NewTable(3, life, 16)
		tab.segment = c.own
		hb := &wire.Heartbeat{Hostname: "m", Interval: time.Second, Segment: c.theirs}
		tab.Heard(wire.Header{Node: 7, Incarnation: 1}, hb, netip.MustParseAddr("10.0.0.7"), now)
		want := life
		if c.relayed {
			want = 2 * life
		}
		if gone := tab.Expire(now.Add(want)); len(gone) != 0 {
			t.Errorf("own segment %q, member's %q: expired before %v", c.own, c.theirs, want)
		}
		if gone := tab.Expire(now.Add(want + time.Millisecond)); len(gone) != 1 {
			t.Errorf("own segment %q, member's %q: not expired after %v", c.own, c.theirs, want)
		}
	}
}

// TestForgedHeartbeatsDoNotMoveMember: heartbeats with a member's node id
// from another address, with its incarnation or a newer one, change
// nothing while the member is live; a goodbye from there does not remove
// it; the member's own heartbeats keep refreshing it.
func TestForgedHeartbeatsDoNotMoveMember(t *testing.T) {
	tab := NewTable(3, 3500*time.Millisecond, 16)
	now := time.Unix(1000, 0)
	real, forger := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.66")
	hb := &wire.Heartbeat{Hostname: "web1", Interval: time.Second}
	forged := &wire.Heartbeat{Hostname: "evil", Interval: 1 << 31 * time.Millisecond}
	steps := []struct {
		inc  uint64
		from netip.Addr
		hb   *wire.Heartbeat
		want Change
	}{
		{5, real, hb, Joined},
		{5, forger, forged, Contested},
		{5, real, hb, Refreshed},
		{5, forger, forged, Held},
		{5, forger, forged, Held},
		{5, real, hb, Refreshed},
		{1 << 62, forger, forged, Held},
		{5, real, hb, Refreshed},
		{6, forger, forged, Held},
		{5, real, hb, Refreshed},
	}
	for i, s := range steps {
		now = now.Add(500 * time.Millisecond) // both beat every second
		if got := tab.Heard(wire.Header{Node: 1, Incarnation: s.inc}, s.hb, s.from, now); got != s.want {
			t.Fatalf("step %d: %v, want %v", i, got, s.want)
		}
	}
	if _, ok := tab.Leave(1, 1<<62, forger); ok {
		t.Fatal("a goodbye from another address removed the member")
	}
	m, ok := tab.Get(1)
	if !ok || m.Addr != real || m.Incarnation != 5 || m.Hostname != "web1" || m.Interval != time.Second || !m.LastHeard.Equal(now) {
		t.Fatalf("member after the forgeries: %+v", m)
	}
}

// TestMemberMoves: a member whose address changed is moved once its old
// address fell silent and the new one was heard twice; a restart at a
// new address likewise.
func TestMemberMoves(t *testing.T) {
	tab := NewTable(3, 3500*time.Millisecond, 16)
	now := time.Unix(1000, 0)
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	hb := &wire.Heartbeat{Hostname: "web1", Interval: time.Second}
	steps := []struct {
		after time.Duration
		inc   uint64
		from  netip.Addr
		want  Change
	}{
		{0, 5, a, Joined},
		{time.Second, 5, b, Contested},     // a heard 1 s ago: live
		{2 * time.Second, 5, b, Held},      // a heard 2 s ago: still live
		{3 * time.Second, 5, b, Moved},     // a silent for 3 s, b heard 3 times
		{4 * time.Second, 5, a, Contested}, // now a is the other address
		{10 * time.Second, 6, c, Held},     // restarted at c: b silent, c heard once
		{11 * time.Second, 6, c, Restarted},
	}
	start := now
	for i, s := range steps {
		now = start.Add(s.after)
		if got := tab.Heard(wire.Header{Node: 1, Incarnation: s.inc}, hb, s.from, now); got != s.want {
			t.Fatalf("step %d: %v, want %v", i, got, s.want)
		}
	}
	if m, _ := tab.Get(1); m.Addr != c || m.Incarnation != 6 {
		t.Fatalf("member after moving: %+v", m)
	}
}

// TestSnapshotOrder: Snapshot stays sorted by hostname, then id, through
// joins, renames and departures.
func TestSnapshotOrder(t *testing.T) {
	tab := NewTable(3, 3500*time.Millisecond, 16)
	now := time.Unix(1000, 0)
	heard := func(id wire.NodeID, host string) {
		addr := netip.AddrFrom4([4]byte{10, 0, 0, byte(id)})
		tab.Heard(wire.Header{Node: id, Incarnation: 1}, &wire.Heartbeat{Hostname: host, Interval: time.Second}, addr, now)
	}
	names := func() []string {
		var out []string
		for _, m := range tab.Snapshot() {
			out = append(out, m.Hostname+"/"+m.ID.String()[14:])
		}
		return out
	}
	heard(3, "b")
	heard(1, "c")
	heard(2, "a")
	heard(4, "b")
	if got, want := names(), []string{"a/02", "b/03", "b/04", "c/01"}; !slices.Equal(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
	heard(1, "a")
	tab.Leave(3, 1, netip.AddrFrom4([4]byte{10, 0, 0, 3}))
	if got, want := names(), []string{"a/01", "a/02", "b/04"}; !slices.Equal(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
	now = now.Add(time.Second)
	heard(2, "a")
	if s := tab.Snapshot(); !s[1].LastHeard.Equal(now) {
		t.Fatal("a snapshot after a heartbeat does not show it")
	}
}
