package transport

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

var (
	listedRelay = netip.MustParseAddrPort("10.0.1.1:5000")
	origin      = netip.MustParseAddrPort("10.0.2.7:40000")
)

// relayTestConn is a relay candidate of segment "a" without sockets,
// listing one relay of another segment.
func relayTestConn(t *testing.T, key []byte, queue int) (*Conn, *metrics.Metrics) {
	t.Helper()
	return testConn(t, Config{Node: 1, Incarnation: 1, Key: key,
		Relay: &RelayConfig{Segment: "a", Peers: []netip.AddrPort{listedRelay}, QueueLen: queue}})
}

// TestAcceptRelayCrafted feeds a relay crafted envelopes and hellos in
// turn: each is delivered (with its origin's address) and queued for the
// group, or dropped and counted by reason; none panics, and the
// forwarding queue never grows past its cap.
func TestAcceptRelayCrafted(t *testing.T) {
	key := make([]byte, 32)
	cr, other := crafter{t, key}, crafter{t, append(make([]byte, 31), 1)}
	c, met := relayTestConn(t, key, 2)
	inner := func(seq uint64) []byte { return cr.datagram(0x77, 5, seq, &wire.Busy{Session: seq}) }
	envSeq := uint64(0)
	env := func(o netip.AddrPort, in []byte) []byte {
		envSeq++
		return cr.datagram(0x99, 9, envSeq, &wire.Relay{Origin: o, Inner: in})
	}
	hello := cr.datagram(0x99, 9, 1000, &wire.RelayHello{Segment: "a", Hears: true})
	steps := []struct {
		name      string
		b         []byte
		from      netip.AddrPort
		src       source
		drop      string // "" for none
		delivered int
		queued    int
	}{
		{"envelope from a listed relay", env(origin, inner(1)), listedRelay, fromRelay, "", 1, 1},
		{"the same datagram in a new envelope", env(origin, inner(1)), listedRelay, fromRelay, metrics.DropReplay, 0, 1},
		{"envelope from an address not listed", env(origin, inner(2)), forger, fromRelay, metrics.DropRelayRefused, 0, 1},
		{"truncated inner datagram", env(origin, inner(3)[:wire.HeaderLen-1]), listedRelay, fromRelay, metrics.DropMalformed, 0, 1},
		{"unknown origin", env(netip.AddrPort{}, inner(4)), listedRelay, fromRelay, metrics.DropRelayRefused, 0, 1},
		{"multicast origin", env(netip.MustParseAddrPort("239.1.1.1:5000"), inner(5)), listedRelay, fromRelay, metrics.DropRelayRefused, 0, 1},
		{"nested envelope", env(origin, env(origin, inner(6))), listedRelay, fromRelay, metrics.DropRelayRefused, 0, 1},
		{"engine message to the relay socket", inner(7), listedRelay, fromRelay, metrics.DropRelayRefused, 0, 1},
		{"envelope on the reply socket", env(origin, inner(8)), member, fromReply, metrics.DropRelayRefused, 0, 1},
		{"inner sealed with another key", env(origin, other.datagram(0x77, 5, 9, &wire.Busy{Session: 9})), listedRelay, fromRelay, metrics.DropAuth, 0, 1},
		{"envelope on the group", env(origin, inner(10)), member, fromGroup, "", 1, 1},
		{"envelope filling the queue", env(origin, inner(11)), listedRelay, fromRelay, "", 1, 2},
		{"envelope past the queue's cap", env(origin, inner(12)), listedRelay, fromRelay, metrics.DropRelayQueue, 1, 2},
		{"hello of our own segment from another", hello, listedRelay, fromRelay, metrics.DropRelayRefused, 0, 2},
		// A relay's hello is numbered ahead of its own datagrams still
		// waiting in relay queues; they must not become replays.
		{"the origin's hello, far ahead", cr.datagram(0x77, 5, 5000, &wire.RelayHello{Segment: "b", Hears: true}), listedRelay, fromRelay, "", 0, 2},
		{"the origin's datagram, behind its hello", env(origin, inner(13)), member, fromGroup, "", 1, 2},
	}
	for _, s := range steps {
		got := acceptStep(t, c, met, s.name, s.b, s.from, s.src, s.drop)
		if len(got) != s.delivered {
			t.Errorf("%s: %d delivered, want %d", s.name, len(got), s.delivered)
		}
		for _, p := range got {
			if p.From != origin || p.Header.Node != 0x77 {
				t.Errorf("%s: delivered %v of %v from %v, want the origin's", s.name, p.Header.Type, p.Header.Node, p.From)
			}
			p.Release()
		}
		if len(c.rel.q) != s.queued {
			t.Errorf("%s: %d queued for the group, want %d", s.name, len(c.rel.q), s.queued)
		}
	}
	// What the queue holds goes on the group raw: the origin's sealed
	// bytes, untouched.
	if it := <-c.rel.q; !it.in || it.origin != origin || string(*it.raw) != string(inner(1)) {
		t.Errorf("queued %v from %v, want the first datagram raw from the origin", it.in, it.origin)
	}
}

// TestRelayForwardOversize: a datagram too large for an envelope is
// counted, not sent.
func TestRelayForwardOversize(t *testing.T) {
	c, met := relayTestConn(t, nil, 4)
	big := make([]byte, c.maxRelayed()+1)
	c.forward(newForwarder(), relayItem{raw: &big, origin: origin})
	if got := dropped(met, metrics.DropOversize); got != 1 {
		t.Fatalf("%v oversize drops, want 1", got)
	}
}

// FuzzRelayEnvelope: whatever an envelope's payload holds, from a listed
// relay or on the group, accept neither panics nor queues past the cap.
func FuzzRelayEnvelope(f *testing.F) {
	f.Add((&wire.Relay{Origin: origin, Inner: make([]byte, wire.HeaderLen)}).AppendPayload(nil))
	f.Add([]byte{6})
	f.Add([]byte{4, 10, 0, 0, 1, 0, 80})
	f.Fuzz(func(t *testing.T, p []byte) {
		c, _ := relayTestConn(t, nil, 2)
		for i, src := range []source{fromRelay, fromGroup} {
			tx, _ := testConn(t, Config{Node: 0x99, Incarnation: 9})
			tx.seq.Store(uint64(i))
			b := tx.frame(nil, wire.TypeRelay, func(b []byte) []byte { return append(b, p...) })
			c.accept(b, listedRelay, src, time.Now(), time.Now())
		}
		if len(c.rel.q) > cap(c.rel.q) {
			t.Fatal("queue past its cap")
		}
		for _, h := range delivered(c) {
			if h.Type == wire.TypeRelay || h.Type == wire.TypeRelayHello {
				t.Fatalf("a %v reached the consumer", h.Type)
			}
		}
	})
}

// TestRelayDatagramSizeWarning: a relay at the default datagram size is
// told its relayed datagrams will be fragmented; one with room is not.
func TestRelayDatagramSizeWarning(t *testing.T) {
	for _, tt := range []struct {
		size int
		warn bool
	}{{0, true}, {1400, false}} {
		var log bytes.Buffer
		_, err := newConn(Config{Group: testGroup, Port: 5000, Node: 1, MaxDatagram: tt.size,
			Metrics: metrics.New(prometheus.NewRegistry(), "x"), Logger: slog.New(slog.NewTextHandler(&log, nil)),
			Relay: &RelayConfig{Segment: "a", Peers: []netip.AddrPort{listedRelay}}})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(log.String(), "fragmented"); got != tt.warn {
			t.Errorf("datagram size %d: warned %v, want %v: %s", tt.size, got, tt.warn, log.String())
		}
	}
}

// acceptStep feeds b to c's accept as read from from on src, checks that
// it cost exactly one drop of reason drop ("" for none), and returns what
// was queued for the consumer.
func acceptStep(t *testing.T, c *Conn, met *metrics.Metrics, name string, b []byte, from netip.AddrPort, src source, drop string) []*Packet {
	t.Helper()
	reasons := metrics.DropReasons()
	before := map[string]float64{}
	for _, r := range reasons {
		before[r] = dropped(met, r)
	}
	c.accept(b, from, src, time.Now(), time.Now())
	for _, r := range reasons {
		want := before[r]
		if r == drop {
			want++
		}
		if got := dropped(met, r); got != want {
			t.Errorf("%s: %v drops of %s, want %v", name, got, r, want)
		}
	}
	var got []*Packet
	for len(c.out) > 0 {
		got = append(got, <-c.out)
	}
	return got
}
