package transport

import (
	"net/netip"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// awaitSession returns the first datagram n takes of node from that is
// a busy or nack of session (the others are passed over).
func awaitSession(t *testing.T, n stoppable, from wire.NodeID, session uint64) *Packet {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case p := <-n.conn.Packets():
			if p.Header.Node == from {
				switch m, _ := wire.ParsePayload(p.Header.Type, p.Payload); m := m.(type) {
				case *wire.Busy:
					if m.Session == session {
						return p
					}
				case *wire.Nack:
					if m.Session == session {
						return p
					}
				}
			}
			p.Release()
		case <-deadline:
			t.Fatalf("member %v got no session %d of %v", n.conn.Node(), session, from)
		}
	}
}

var heardSession uint64 = 1 << 32

// heardFrom makes from multicast once and returns its address as n hears
// it (through the relays, for another segment).
func heardFrom(t *testing.T, from, n stoppable) netip.AddrPort {
	t.Helper()
	heardSession++
	if err := from.conn.Send(&wire.Busy{Session: heardSession}); err != nil {
		t.Fatal(err)
	}
	p := awaitSession(t, n, from.conn.Node(), heardSession)
	defer p.Release()
	return p.From
}

// answered checks that an answer (a nack) of from sent to the origin at
// to (as from hears it) reaches n, as from from's address where n hears
// it.
func answered(t *testing.T, from, n stoppable, to netip.AddrPort, session uint64) {
	t.Helper()
	// Both heard lately, as their heartbeats would have them: the
	// relays' routes last RelayHeard.
	heardFrom(t, n, from)
	want := heardFrom(t, from, n)
	if err := from.conn.SendTo(&wire.Nack{Session: session}, to); err != nil {
		t.Fatal(err)
	}
	p := awaitSession(t, n, from.conn.Node(), session)
	defer p.Release()
	if p.Header.Type != wire.TypeNack || p.From != want {
		t.Fatalf("%v got %v from %v, want nack %d from %v", n.conn.Node(), p.Header.Type, p.From, session, want)
	}
}

// TestRelayAnswers: two segments of two relay candidates and a member,
// sealed. Answers to an origin of the other segment, from a member, a
// standby candidate and the active relay itself, reach the origin (a
// member, or the other segment's active relay) through the two active
// relays, as from their members' addresses; answers go the other way
// too. When the active relay stops, the standby carries them; with no
// relay left, a member answers the origin directly.
func TestRelayAnswers(t *testing.T) {
	l := newRelayLab(t, make([]byte, 32))
	// An answer lost here is not asked again, as a session would: the
	// routes must outlast a loaded machine's pauses.
	l.missed = 40
	a1 := l.start(0x31, 1, 31, 41, 42)
	a2 := l.start(0x32, 1, 32, 41, 42)
	am := l.start(0x3a, 1, 0)
	b1 := l.start(0x41, 2, 41, 31, 32)
	b2 := l.start(0x42, 2, 42, 31, 32)
	bm := l.start(0x4a, 2, 0)
	waitFor(t, "0x31 and 0x41 active, and every member knowing its segment's", func() bool {
		now := time.Now()
		for _, m := range []stoppable{a2, am, b2, bm} {
			if _, ok := m.conn.routes.activeRelay(uint16(l.port), now); !ok {
				return false
			}
		}
		return isActive(a1) && isActive(b1) && len(targets(a1)) == 1 && len(targets(b1)) == 1
	})
	// Each member is heard on its group, so its relay takes its answers.
	for _, pair := range [][2]stoppable{{a1, a2}, {a2, a1}, {am, a2}, {b1, b2}, {b2, b1}, {bm, b2}} {
		heardFrom(t, pair[0], pair[1])
	}
	origin := heardFrom(t, am, bm)
	session := uint64(100)
	for _, from := range []stoppable{bm, b2, b1} {
		session++
		answered(t, from, am, origin, session)
	}
	answered(t, bm, a1, heardFrom(t, a1, bm), 200)
	answered(t, am, bm, heardFrom(t, bm, am), 300)
	for name, want := range map[string]float64{"a1 answers_in": 4, "b1 answers_out": 4, "a1 answers_out": 1, "b1 answers_in": 1,
		"a2 answers_out": 0, "b2 answers_out": 0, "a2 answers_in": 0, "b2 answers_in": 0} {
		nd := map[string]stoppable{"a1": a1, "a2": a2, "b1": b1, "b2": b2}[name[:2]]
		// A relay counts what it sent once the send returned, which may
		// be after the answer arrived.
		waitFor(t, name, func() bool { return relayed(nd, name[3:]) == want })
	}

	standby := heardFrom(t, b2, bm)
	b1.stop()
	waitFor(t, "0x42 taking over, and 0x4a sending it answers", func() bool {
		at, ok := bm.conn.routes.activeRelay(uint16(l.port), time.Now())
		return isActive(b2) && ok && at == standby && len(targets(a1)) == 1 && targets(a1)[0] == l.relayAddr(42)
	})
	answered(t, bm, am, heardFrom(t, am, bm), 400)
	waitFor(t, "the new relay carrying one answer", func() bool { return relayed(b2, "answers_out") == 1 })

	b2.stop()
	waitFor(t, "0x4a knowing no relay", func() bool {
		_, ok := bm.conn.routes.activeRelay(uint16(l.port), time.Now())
		return !ok
	})
	before := relayed(a1, "answers_in")
	if err := bm.conn.SendTo(&wire.Nack{Session: 500}, origin); err != nil {
		t.Fatal(err)
	}
	awaitSession(t, am, 0x4a, 500).Release()
	if got := relayed(a1, "answers_in"); got != before {
		t.Errorf("with no relay in its segment the member's answer still went through one: answers_in %v, was %v", got, before)
	}
}
