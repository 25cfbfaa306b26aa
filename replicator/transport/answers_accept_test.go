package transport

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

var (
	farOrigin = netip.MustParseAddrPort("10.0.2.7:40000")
	candidate = netip.MustParseAddrPort("10.0.0.2:41000")
)

// answerRelay is relayTestConn as its segment's active relay, having
// heard member on its group, farOrigin through the listed relay of
// segment "b" (its active relay), and candidate say hello on its group.
func answerRelay(t *testing.T, key []byte, queue int) (*Conn, *metrics.Metrics) {
	t.Helper()
	c, met := relayTestConn(t, key, queue)
	now := time.Now()
	c.rel.active.Store(true)
	c.rel.bySeg.Store(&map[string]netip.AddrPort{"b": listedRelay})
	c.routes.heardLocal(member, now)
	c.routes.heardRemote(farOrigin, "b", now)
	c.routes.heardHello(0x55, candidate, false, now)
	return c, met
}

// TestAcceptAnswersCrafted feeds a relay crafted answer batches in turn:
// a member's answers are queued toward the origin's segment, another
// segment's toward a member heard on the group, a candidate's delivered
// as from their members; anything else is dropped and counted by reason,
// nothing goes where no relay or member was heard, and none panics.
func TestAcceptAnswersCrafted(t *testing.T) {
	key := make([]byte, 32)
	cr, other := crafter{t, key}, crafter{t, append(make([]byte, 31), 1)}
	c, met := answerRelay(t, key, 16)
	answer := func(seq uint64) []byte { return cr.datagram(0x77, 5, seq, &wire.Nack{Session: seq}) }
	batchSeq := uint64(0)
	batch := func(node wire.NodeID, as ...wire.Answer) []byte {
		batchSeq++
		return cr.datagram(node, 9, batchSeq, &wire.RelayAnswers{Answers: as})
	}
	mine := func(to netip.AddrPort, seq uint64) wire.Answer { return wire.Answer{To: to, Inner: answer(seq)} }
	named := func(from, to netip.AddrPort, inner []byte) wire.Answer {
		return wire.Answer{From: from, To: to, Inner: inner}
	}
	replayed := batch(0x99, named(farOrigin, member, answer(20)))
	steps := []struct {
		name      string
		b         []byte
		from      netip.AddrPort
		src       source
		drop      string
		delivered int
		queued    int
	}{
		{"a member's answers", batch(0x77, mine(farOrigin, 1), mine(farOrigin, 2)), member, fromReply, "", 0, 2},
		{"answers of an address not heard on the group", batch(0x78, mine(farOrigin, 3)), forger, fromReply, metrics.DropRelayRefused, 0, 2},
		{"a member's answers on the relay socket", batch(0x99, mine(farOrigin, 4)), listedRelay, fromRelay, metrics.DropRelayRefused, 0, 2},
		{"named and unnamed answers mixed", batch(0x99, named(farOrigin, member, answer(5)), mine(member, 6)), listedRelay, fromRelay, metrics.DropRelayRefused, 0, 2},
		{"another segment's answer for a member", batch(0x99, named(farOrigin, member, answer(7))), listedRelay, fromRelay, "", 0, 3},
		{"another segment's answer for no member heard", batch(0x99, named(farOrigin, forger, answer(8))), listedRelay, fromRelay, metrics.DropRelayNoRoute, 0, 3},
		{"a batch from a relay not listed", batch(0x98, named(farOrigin, member, answer(9))), forger, fromRelay, metrics.DropRelayRefused, 0, 3},
		{"named answers from no candidate", batch(0x56, named(farOrigin, member, answer(10))), forger, fromReply, metrics.DropRelayRefused, 0, 3},
		{"named answers from a candidate", batch(0x55, named(farOrigin, member, answer(11)), named(farOrigin, member, answer(12))), candidate, fromReply, "", 2, 3},
		{"the same answer again, in a new batch", batch(0x55, named(farOrigin, member, answer(11))), candidate, fromReply, metrics.DropReplay, 0, 3},
		{"an answer sealed with another key", batch(0x55, named(farOrigin, member, other.datagram(0x77, 5, 13, &wire.Nack{Session: 13}))), candidate, fromReply, metrics.DropAuth, 0, 3},
		{"an answer that is an envelope", batch(0x55, named(farOrigin, member, cr.datagram(0x77, 5, 14, &wire.Relay{Origin: farOrigin, Inner: answer(15)}))), candidate, fromReply, metrics.DropRelayRefused, 0, 3},
		{"answers on the group", batch(0x77, mine(farOrigin, 16)), member, fromGroup, metrics.DropRelayRefused, 0, 3},
		{"another segment's answer", replayed, listedRelay, fromRelay, "", 0, 4},
		{"the same batch again", replayed, listedRelay, fromRelay, metrics.DropReplay, 0, 4},
	}
	for _, s := range steps {
		// Opening decrypts in place: a copy, so a step may repeat bytes.
		got := acceptStep(t, c, met, s.name, append([]byte(nil), s.b...), s.from, s.src, s.drop)
		if len(got) != s.delivered {
			t.Errorf("%s: %d delivered, want %d", s.name, len(got), s.delivered)
		}
		for _, p := range got {
			if p.From != farOrigin || p.Header.Node != 0x77 || p.Header.Type != wire.TypeNack {
				t.Errorf("%s: delivered %v of %v from %v, want the member's nack from its address", s.name, p.Header.Type, p.Header.Node, p.From)
			}
			p.Release()
		}
		if len(c.rel.q) != s.queued {
			t.Errorf("%s: %d queued, want %d", s.name, len(c.rel.q), s.queued)
		}
	}
	// The member's answers are queued raw, as it sealed them, from its
	// address to the origin; another segment's for the member named.
	for i, want := range []relayItem{
		{origin: member, to: farOrigin, answer: true},
		{origin: member, to: farOrigin, answer: true},
		{origin: farOrigin, to: member, answer: true, in: true},
	} {
		it := <-c.rel.q
		if it.origin != want.origin || it.to != want.to || it.answer != want.answer || it.in != want.in {
			t.Errorf("queued %d: %+v, want %+v", i, it, want)
		}
		if i == 0 && string(*it.raw) != string(answer(1)) {
			t.Errorf("queued %d: not the member's datagram untouched", i)
		}
	}
}

// TestAnswerBatches: answers for one destination share a datagram up to
// the datagram size, each whole; one for an origin no relay route leads
// to is dropped and counted.
func TestAnswerBatches(t *testing.T) {
	c, met := answerRelay(t, nil, 16)
	listen := func() *net.UDPConn {
		u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { u.Close() })
		return u
	}
	c.rel.sock, c.txUDP = listen(), listen()
	far := listen()
	c.rel.bySeg.Store(&map[string]netip.AddrPort{"b": far.LocalAddr().(*net.UDPAddr).AddrPort()})
	fw := newForwarder()
	item := func(size int) relayItem {
		raw := wire.Append(nil, wire.Header{Node: 0x77, Seq: uint64(size)}, &wire.Nack{Session: 1})
		raw = append(raw, make([]byte, size-len(raw))...)
		return relayItem{raw: &raw, origin: member, to: farOrigin, answer: true}
	}
	// Three of 600 bytes: two fit a datagram of 1472, the third starts
	// the next; the small ones join it.
	for _, size := range []int{600, 600, 600, 100, 100} {
		c.forward(fw, item(size))
	}
	unrouted := item(100)
	unrouted.to = forger
	c.forward(fw, unrouted)
	c.flushAnswers(fw)
	if fw.pending != 0 {
		t.Errorf("%d answers still pending after the flush", fw.pending)
	}
	var sizes [][]int
	buf := make([]byte, 1<<16)
	for range 2 {
		if err := far.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := far.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if n > c.cfg.MaxDatagram {
			t.Errorf("a batch of %d bytes, past the datagram size %d", n, c.cfg.MaxDatagram)
		}
		_, m, err := wire.Parse(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		var s []int
		for _, a := range m.(*wire.RelayAnswers).Answers {
			if a.From != member || a.To != farOrigin {
				t.Errorf("answer from %v to %v, want from %v to %v", a.From, a.To, member, farOrigin)
			}
			s = append(s, len(a.Inner))
		}
		sizes = append(sizes, s)
	}
	if len(sizes[0]) != 2 || len(sizes[1]) != 3 {
		t.Errorf("batches of %v bytes, want two answers then three", sizes)
	}
	if got := relayed(stoppable{node: &node{conn: c, met: met}}, "answers_out"); got != 5 {
		t.Errorf("%v answers counted out, want 5", got)
	}
	if got := dropped(met, metrics.DropRelayNoRoute); got != 1 {
		t.Errorf("%v answers without a route dropped, want 1", got)
	}
}

// FuzzAcceptAnswers: whatever an answer batch's payload holds, from a
// listed relay, a member or a candidate, accept neither panics, queues
// past the cap, nor hands a relays' message to the consumer.
func FuzzAcceptAnswers(f *testing.F) {
	inner := wire.Append(nil, wire.Header{Node: 0x77, Seq: 1}, &wire.Nack{Session: 1})
	f.Add((&wire.RelayAnswers{Answers: []wire.Answer{{To: farOrigin, Inner: inner}}}).AppendPayload(nil))
	f.Add((&wire.RelayAnswers{Answers: []wire.Answer{{From: farOrigin, To: member, Inner: inner}}}).AppendPayload(nil))
	f.Add([]byte{0, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		c, _ := answerRelay(t, nil, 2)
		for i, s := range []struct {
			from netip.AddrPort
			src  source
		}{{listedRelay, fromRelay}, {member, fromReply}, {candidate, fromReply}} {
			tx, _ := testConn(t, Config{Node: 0x99, Incarnation: 9})
			tx.seq.Store(uint64(i))
			b := tx.frame(nil, wire.TypeRelayAnswers, func(b []byte) []byte { return append(b, p...) })
			c.accept(b, s.from, s.src, time.Now(), time.Now())
		}
		if len(c.rel.q) > cap(c.rel.q) {
			t.Fatal("queue past its cap")
		}
		for _, h := range delivered(c) {
			if relayOwnType(h.Type) {
				t.Fatalf("a %v reached the consumer", h.Type)
			}
		}
	})
}
