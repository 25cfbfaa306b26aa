package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

// crafter frames datagrams as any node would, with any header fields.
type crafter struct {
	t   *testing.T
	key []byte
}

func (c crafter) datagram(node wire.NodeID, inc, seq uint64, m wire.Message) []byte {
	c.t.Helper()
	tx, err := newConn(Config{Group: testGroup, Port: 5000, Node: node, Incarnation: inc, Key: c.key,
		Metrics: metrics.New(prometheus.NewRegistry(), "x")})
	if err != nil {
		c.t.Fatal(err)
	}
	tx.seq.Store(seq - 1)
	return tx.frame(nil, m.Type(), m.AppendPayload)
}

// testConn is a Conn without a socket: datagrams are fed to accept.
func testConn(t *testing.T, cfg Config) (*Conn, *metrics.Metrics) {
	t.Helper()
	met := metrics.New(prometheus.NewRegistry(), "test")
	cfg.Metrics, cfg.Group, cfg.Port = met, testGroup, 5000
	c, err := newConn(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, met
}

// delivered drains the consumer queue and returns the headers in it.
func delivered(c *Conn) []wire.Header {
	var out []wire.Header
	for {
		select {
		case p := <-c.out:
			out = append(out, p.Header)
			p.Release()
		default:
			return out
		}
	}
}

func dropped(met *metrics.Metrics, reason string) float64 {
	return testutil.ToFloat64(met.DatagramsDropped.WithLabelValues(reason))
}

var (
	testGroup = netip.MustParseAddr("224.0.0.108")
	member    = netip.MustParseAddrPort("10.0.0.1:5000")
	forger    = netip.MustParseAddrPort("10.0.0.66:5000")
)

// TestAcceptForgedHighSeq: without a key, one forged datagram carrying a
// member's node id and a huge sequence number (from the forger's address
// or from the member's own) must not make the member's next datagrams
// replays.
func TestAcceptForgedHighSeq(t *testing.T) {
	for _, from := range []netip.AddrPort{forger, member} {
		t.Run(from.String(), func(t *testing.T) {
			c, met := testConn(t, Config{Node: 1, Incarnation: 1})
			cr := crafter{t: t}
			const m, inc = 7, 500
			now := t0
			c.accept(cr.datagram(m, inc, 1, &wire.Heartbeat{Hostname: "m"}), member, fromGroup, now, now)
			c.accept(cr.datagram(m, inc, 1<<62, &wire.Goodbye{}), from, fromGroup, now, now)
			for seq := uint64(2); seq < 10; seq++ {
				c.accept(cr.datagram(m, inc, seq, &wire.Heartbeat{Hostname: "m"}), member, fromGroup, now, now)
			}
			if n := dropped(met, metrics.DropReplay); n != 0 {
				t.Fatalf("%v of the member's datagrams dropped as replays", n)
			}
			if got := len(delivered(c)); got != 10 {
				t.Fatalf("%d datagrams delivered, want 10", got)
			}
		})
	}
}

// fakeRenew is a Renew hook that counts its calls.
type fakeRenew struct {
	mu    sync.Mutex
	calls int
	next  wire.NodeID
	err   error
}

func (f *fakeRenew) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeRenew) renew() (wire.NodeID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return 0, f.err
	}
	f.next++
	return f.next, nil
}

// drainRenewals does what the keeper does with pending renewals.
func drainRenewals(c *Conn) {
	for {
		select {
		case r := <-c.renewq:
			c.renew(r)
		default:
			return
		}
	}
}

// TestAcceptDuplicateID: heartbeats that carry our node id with a newer
// incarnation (a clone) make us take exactly one fresh id, and nothing of
// the clone's reaches the consumer while it shares our id; our own
// looped-back datagrams, before and after the renewal, change nothing.
func TestAcceptDuplicateID(t *testing.T) {
	for _, key := range [][]byte{nil, make([]byte, 32)} {
		t.Run(map[bool]string{true: "sealed", false: "plain"}[key != nil], func(t *testing.T) {
			const self, inc = 0x42, 1000
			rn := &fakeRenew{next: 0x100}
			c, met := testConn(t, Config{Node: self, Incarnation: inc, Key: key, Renew: rn.renew})
			cr := crafter{t: t, key: key}
			hb := &wire.Heartbeat{Hostname: "clone", Interval: time.Second}

			// Our own datagrams, looped back: ignored, uncounted.
			c.accept(cr.datagram(self, inc, 1, hb), member, fromGroup, t0, t0)
			c.accept(cr.datagram(self, inc, 2, &wire.Goodbye{}), member, fromGroup, t0, t0)
			drainRenewals(c)
			if rn.count() != 0 || c.ownSeen.Load() != 2 || dropped(met, metrics.DropDuplicateID) != 0 {
				t.Fatalf("own datagrams: %d renewals, %d seen as own, %v counted", rn.count(), c.ownSeen.Load(), dropped(met, metrics.DropDuplicateID))
			}

			// The clone's: its data is dropped without a renewal, its
			// heartbeats cause one, however many arrive before it is done:
			// one queued while the keeper holds another, ten more queued
			// behind.
			c.accept(cr.datagram(self, inc+1, 1, &wire.Goodbye{}), forger, fromGroup, t0, t0)
			drainRenewals(c)
			if rn.count() != 0 {
				t.Fatal("a non-heartbeat datagram caused a renewal")
			}
			c.accept(cr.datagram(self, inc+1, 2, hb), forger, fromGroup, t0, t0)
			first := <-c.renewq
			for seq := uint64(3); seq < 13; seq++ {
				c.accept(cr.datagram(self, inc+1, seq, hb), forger, fromGroup, t0, t0)
			}
			c.renew(first)
			drainRenewals(c)
			if rn.count() != 1 || c.Node() != 0x101 {
				t.Fatalf("%d renewals, node id now %v; want one, to 0101", rn.count(), c.Node())
			}
			if got := delivered(c); len(got) != 0 {
				t.Fatalf("delivered %v while the clone shared our id", got)
			}
			if n := dropped(met, metrics.DropDuplicateID); n != 12 {
				t.Fatalf("%v duplicate_id drops, want 12", n)
			}
			// From now on the clone is a peer like any other.
			c.accept(cr.datagram(self, inc+1, 13, hb), forger, fromGroup, t0, t0)
			if got := delivered(c); len(got) != 1 || got[0].Node != self {
				t.Fatalf("delivered %v, want the clone's heartbeat", got)
			}
			if n := testutil.ToFloat64(met.DuplicateIDs); n != 1 {
				t.Fatalf("duplicate ids counter %v, want 1", n)
			}
			// Datagrams stamped with the new id, and the old one's still
			// in flight, are ours.
			own := c.ownSeen.Load()
			c.accept(cr.datagram(self, inc, 3, hb), member, fromGroup, t0, t0)
			c.accept(cr.datagram(0x101, inc, 4, hb), member, fromGroup, t0, t0)
			if c.ownSeen.Load() != own+2 || len(delivered(c)) != 0 {
				t.Fatal("own datagrams after the renewal were not recognised")
			}
			if b := c.frame(nil, wire.TypeGoodbye, (&wire.Goodbye{}).AppendPayload); !bytes.Equal(b[8:16], []byte{0, 0, 0, 0, 0, 0, 1, 1}) {
				t.Fatalf("datagrams still stamped %x", b[8:16])
			}
		})
	}
}

// TestAcceptDuplicateIDOlder: a heartbeat with our node id and an older
// incarnation (the other daemon gives way, or a replay of our earlier
// run) is dropped and causes no renewal; neither does a forged unsealed
// one at a sealed node.
func TestAcceptDuplicateIDOlder(t *testing.T) {
	const self, inc = 0x42, 1000
	rn := &fakeRenew{}
	c, met := testConn(t, Config{Node: self, Incarnation: inc, Renew: rn.renew})
	c.accept(crafter{t: t}.datagram(self, inc-1, 1, &wire.Heartbeat{Hostname: "old"}), forger, fromGroup, t0, t0)
	drainRenewals(c)
	if rn.count() != 0 || len(delivered(c)) != 0 || dropped(met, metrics.DropDuplicateID) != 1 {
		t.Fatalf("older incarnation: %d renewals, %v drops", rn.count(), dropped(met, metrics.DropDuplicateID))
	}

	sealed, met := testConn(t, Config{Node: self, Incarnation: inc, Key: make([]byte, 32), Renew: rn.renew})
	sealed.accept(crafter{t: t}.datagram(self, inc+1, 1, &wire.Heartbeat{Hostname: "forged"}), forger, fromGroup, t0, t0)
	drainRenewals(sealed)
	if rn.count() != 0 || dropped(met, metrics.DropAuth) != 1 {
		t.Fatalf("forged unsealed heartbeat at a sealed node: %d renewals", rn.count())
	}
}

// TestAcceptRenewFails: a failed renewal keeps the id and is retried at
// the next heartbeat of the clone.
func TestAcceptRenewFails(t *testing.T) {
	const self, inc = 0x42, 1000
	rn := &fakeRenew{err: errors.New("disk full")}
	c, met := testConn(t, Config{Node: self, Incarnation: inc, Renew: rn.renew})
	cr := crafter{t: t}
	for seq := uint64(1); seq <= 2; seq++ {
		c.accept(cr.datagram(self, inc+1, seq, &wire.Heartbeat{Hostname: "clone"}), forger, fromGroup, t0, t0)
		drainRenewals(c)
	}
	if rn.count() != 2 || c.Node() != self || testutil.ToFloat64(met.DuplicateIDs) != 0 {
		t.Fatalf("%d renewal attempts, node %v", rn.count(), c.Node())
	}
}

// memSeen is a SeenStore in memory.
type memSeen struct {
	mu    sync.Mutex
	seen  []Seen
	saves int
}

func (m *memSeen) Load() ([]Seen, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.seen), nil
}

func (m *memSeen) Save(seen []Seen) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seen, m.saves = slices.Clone(seen), m.saves+1
	return nil
}

// TestAcceptRestartRefusesReplays: a sealed receiver restarted with the
// saved replay state refuses recorded datagrams of a sender's older
// incarnations (and of its current one up to what it accepted), which a
// receiver without that state accepts.
func TestAcceptRestartRefusesReplays(t *testing.T) {
	key := make([]byte, 32)
	cr := crafter{t: t, key: key}
	const peer = 9
	var recorded [][]byte
	for seq := uint64(1); seq <= 3; seq++ {
		recorded = append(recorded, cr.datagram(peer, 100, seq, &wire.Commit{Session: seq}))
	}
	store := &memSeen{}
	before, _ := testConn(t, Config{Node: 1, Incarnation: 1, Key: key, Seen: store})
	for _, b := range recorded {
		before.accept(bytes.Clone(b), member, fromGroup, t0, t0) // accept opens in place
	}
	// The sender restarted; the receiver heard its new incarnation.
	before.accept(cr.datagram(peer, 200, 1, &wire.Heartbeat{Hostname: "p"}), member, fromGroup, t0, t0)
	before.snapshotSeen(t0)
	before.saveSeen(<-before.saveq)
	if len(delivered(before)) != 4 {
		t.Fatal("the live datagrams were not all delivered")
	}

	after, met := testConn(t, Config{Node: 1, Incarnation: 2, Key: key, Seen: store})
	for _, b := range recorded {
		after.accept(bytes.Clone(b), forger, fromGroup, t0, t0)
	}
	after.accept(cr.datagram(peer, 200, 1, &wire.Heartbeat{Hostname: "p"}), forger, fromGroup, t0, t0)
	if got := delivered(after); len(got) != 0 || dropped(met, metrics.DropReplay) != 4 {
		t.Fatalf("after the restart %d replays delivered, %v counted", len(got), dropped(met, metrics.DropReplay))
	}
	after.accept(cr.datagram(peer, 200, 2, &wire.Heartbeat{Hostname: "p"}), member, fromGroup, t0, t0)
	if len(delivered(after)) != 1 {
		t.Fatal("the sender's live traffic was refused after the restart")
	}
}

// TestSnapshotSeenCadence: the replay state goes to the keeper when a
// sender appears (at most every saveEvery), when only tops moved at most
// every refreshEvery, and never without a key.
func TestSnapshotSeenCadence(t *testing.T) {
	key := make([]byte, 32)
	cr := crafter{t: t, key: key}
	c, _ := testConn(t, Config{Node: 1, Incarnation: 1, Key: key, Seen: &memSeen{}})
	pending := func() bool {
		select {
		case <-c.saveq:
			return true
		default:
			return false
		}
	}
	now := t0
	c.snapshotSeen(now)
	if pending() {
		t.Fatal("snapshot of an unchanged state")
	}
	c.accept(cr.datagram(9, 1, 1, &wire.Goodbye{}), member, fromGroup, now, now)
	c.snapshotSeen(now)
	if !pending() {
		t.Fatal("no snapshot after a new sender")
	}
	c.accept(cr.datagram(8, 1, 1, &wire.Goodbye{}), member, fromGroup, now, now)
	c.snapshotSeen(now.Add(saveEvery - time.Millisecond))
	if pending() {
		t.Fatal("snapshot sooner than saveEvery")
	}
	c.snapshotSeen(now.Add(saveEvery))
	if !pending() {
		t.Fatal("no snapshot saveEvery after a new sender")
	}
	now = now.Add(saveEvery)
	c.accept(cr.datagram(8, 1, 2, &wire.Goodbye{}), member, fromGroup, now, now)
	c.snapshotSeen(now.Add(saveEvery))
	if pending() {
		t.Fatal("a moved top saved sooner than refreshEvery")
	}
	c.snapshotSeen(now.Add(refreshEvery))
	if !pending() {
		t.Fatal("a moved top not saved after refreshEvery")
	}

	plain, _ := testConn(t, Config{Node: 1, Incarnation: 1, Seen: &memSeen{}})
	plain.accept(crafter{t: t}.datagram(9, 1, 1, &wire.Goodbye{}), member, fromGroup, t0, t0)
	plain.snapshotSeen(t0.Add(time.Hour))
	if len(plain.saveq) != 0 {
		t.Fatal("unsealed replay state handed over for saving")
	}
}

// TestRunSavesSeenOnExit: Run saves the replay state when it returns.
func TestRunSavesSeenOnExit(t *testing.T) {
	key := make([]byte, 32)
	port := nextPort()
	store := &memSeen{seen: []Seen{{Node: 77, Incarnation: 5, Seq: 9}}}
	c, err := Listen(Config{Group: netip.MustParseAddr("224.0.0.108"), Port: port, Interface: "lo",
		Node: 1, Incarnation: 1, Key: key, Seen: store, Metrics: metrics.New(prometheus.NewRegistry(), "test")})
	if err != nil {
		t.Fatal(err)
	}
	b := startNode(t, 2, port, key)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	if err := b.conn.Send(&wire.Goodbye{}); err != nil {
		t.Fatal(err)
	}
	recv(t, c).Release()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	want := []Seen{{Node: 77, Incarnation: 5, Seq: 9}, {Node: 2, Incarnation: b.conn.cfg.Incarnation, Seq: 1}}
	if !slices.Equal(store.seen, want) {
		t.Fatalf("saved %v, want %v", store.seen, want)
	}
}

// TestCloneRenewsOverSockets: two daemons with one node id on one host;
// the one with the older incarnation takes a fresh id when it hears the
// other's heartbeat, its datagrams carry it, and the other hears them as
// a peer's.
func TestCloneRenewsOverSockets(t *testing.T) {
	port := nextPort()
	const shared = 0x5151
	rn := &fakeRenew{next: 0x7000}
	older := startNodeRenew(t, shared, 100, port, rn.renew)
	newer := startNodeRenew(t, shared, 200, port, nil)
	if err := newer.conn.Send(&wire.Heartbeat{Hostname: "newer", Interval: time.Second}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for older.conn.Node() == shared {
		if time.Now().After(deadline) {
			t.Fatal("the older clone did not renew its node id")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := older.conn.Send(&wire.Heartbeat{Hostname: "older", Interval: time.Second}); err != nil {
		t.Fatal(err)
	}
	p := recv(t, newer.conn)
	defer p.Release()
	if p.Header.Node != 0x7001 {
		t.Fatalf("newer heard node %v, want the fresh id 0000000000007001", p.Header.Node)
	}
	if rn.count() != 1 {
		t.Fatalf("%d renewals", rn.count())
	}
	if n := older.conn.ownSeen.Load(); n != 0 {
		t.Fatalf("%d own datagrams got past the renewed socket filter", n)
	}
}

func startNodeRenew(t *testing.T, id wire.NodeID, inc uint64, port int, renew func() (wire.NodeID, error)) *node {
	t.Helper()
	met := metrics.New(prometheus.NewRegistry(), "test")
	c, err := Listen(Config{Group: netip.MustParseAddr("224.0.0.108"), Port: port, Interface: "lo",
		Node: id, Incarnation: inc, Renew: renew, Metrics: met})
	if err != nil {
		t.Fatal(err)
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
	return &node{conn: c, met: met}
}

// TestAcceptKeyRotation: a member with a Key and OldKeys accepts datagrams
// sealed with any of them, intact (a failed open with the first key must
// not spoil the datagram for the next), refuses other keys and unsealed
// datagrams, and seals with Key alone.
func TestAcceptKeyRotation(t *testing.T) {
	keyA, keyB, keyC := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	c, met := testConn(t, Config{Node: 0x42, Incarnation: 1, Key: keyA, OldKeys: [][]byte{keyB}})
	for i, tt := range []struct {
		key  []byte
		from netip.AddrPort
		ok   bool
	}{
		{keyA, member, true},
		{keyB, member, true}, // opened after keyA failed on it
		{keyC, forger, false},
		{nil, forger, false},
		{keyB, member, true},
	} {
		hostname := fmt.Sprintf("member-%d", i)
		c.accept(crafter{t: t, key: tt.key}.datagram(wire.NodeID(0x100+i), 1, 1, &wire.Heartbeat{Hostname: hostname}), tt.from, fromGroup, t0, t0)
		var got []string
		for {
			select {
			case p := <-c.out:
				m, err := wire.ParsePayload(p.Header.Type, p.Payload)
				if err != nil {
					t.Fatalf("datagram %d: delivered payload does not parse: %v", i, err)
				}
				got = append(got, m.(*wire.Heartbeat).Hostname)
				p.Release()
				continue
			default:
			}
			break
		}
		if want := map[bool][]string{true: {hostname}}[tt.ok]; !slices.Equal(got, want) {
			t.Errorf("datagram %d: delivered %v, want %v", i, got, want)
		}
	}
	if n := dropped(met, metrics.DropAuth); n != 2 {
		t.Errorf("%v auth drops, want 2", n)
	}

	// What the member sends is sealed with Key: a member holding only
	// the old key cannot open it.
	b := c.frame(nil, wire.TypeGoodbye, (&wire.Goodbye{}).AppendPayload)
	for _, tt := range []struct {
		key []byte
		ok  bool
	}{{keyA, true}, {keyB, false}} {
		rx, rmet := testConn(t, Config{Node: 0x43, Incarnation: 1, Key: tt.key})
		rx.accept(slices.Clone(b), member, fromGroup, t0, t0)
		if got := len(delivered(rx)); got != map[bool]int{true: 1}[tt.ok] || dropped(rmet, metrics.DropAuth) != map[bool]float64{false: 1}[tt.ok] {
			t.Errorf("receiver with key %x: %d delivered", tt.key[0], got)
		}
	}

	if _, err := newConn(Config{Group: testGroup, Port: 5000, Node: 1, OldKeys: [][]byte{keyB}, Metrics: met}); err == nil {
		t.Error("OldKeys without a Key accepted")
	}
	if _, err := newConn(Config{Group: testGroup, Port: 5000, Node: 1, Key: keyA, OldKeys: [][]byte{keyB[:16]}, Metrics: met}); err == nil {
		t.Error("a short old key accepted")
	}
}
