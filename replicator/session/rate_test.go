package session

import (
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// rateSender is a sender of one 1 GiB file to members 1 and 2, both of
// which need it, at most ceiling bits/s, in its data phase.
func rateSender(t *testing.T, ceiling float64) *Sender {
	t.Helper()
	s, err := NewSender(SenderConfig{Session: 9, Entries: []wire.Entry{fileEntry("big", 1<<30)}, Members: []wire.NodeID{1, 2},
		MaxPayload: testPayload, Timeout: time.Minute, MaxRate: ceiling})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := s.Next(t0, nil, 32)
	for _, o := range out {
		off := o.Msg.(*wire.Offer)
		for m := range wire.NodeID(2) {
			n := wire.NewNeed(9, off.Index, len(off.Items))
			wire.Set(n.Change, 0)
			wire.Set(n.Data, 0)
			s.Step(t0, m+1, n)
		}
	}
	return s
}

// path is what the network between the sender and its members does to a
// poll window sent at rate sent (bits/s): the share of its bytes that
// arrive, how fast they arrive, and the window's loss for the Nack.
type path func(sent float64) (delivered float64, lost uint32)

// drive runs windows poll windows of s, paced at its rate on a virtual
// clock as a driver paces them, and answers every poll at once from both
// members with what p makes of the window; the members report whether
// they measure delivery (new) or not (old). It returns the time the
// windows took.
func drive(t *testing.T, s *Sender, windows int, p path, report bool) time.Duration {
	t.Helper()
	now := t0
	var bytes uint64
	var since time.Time // the window's start: the poll before, or the first block
	for w, idle := 0, 0; w < windows; {
		out, _ := s.Next(now, nil, 32)
		if len(out) == 0 {
			if idle++; idle > 10 {
				t.Fatalf("the sender stopped sending in %v", s.Phase())
			}
			continue
		}
		batch := uint64(0)
		for _, o := range out {
			if o.Msg == nil {
				_, _, n, err := s.Locate(o.Block)
				if err != nil {
					t.Fatal(err)
				}
				if since.IsZero() {
					since = now
				}
				batch += uint64(datagramLen(n))
				continue
			}
			poll, ok := o.Msg.(*wire.Poll)
			if !ok || poll.Final {
				continue
			}
			bytes += batch
			span := now.Sub(since)
			delivered, lost := p(float64(bytes*8) / span.Seconds())
			for m := range wire.NodeID(2) {
				n := &wire.Nack{Session: 9, Round: poll.Round, WindowLost: lost, WindowSize: pollEvery}
				if report {
					n.Flags = wire.NackDelivery
					n.Delivered = uint32(delivered / 8 * span.Seconds())
					n.Span = uint32(span.Microseconds())
				}
				s.Step(now, m+1, n)
			}
			since, bytes, batch = now, 0, 0
			w++
		}
		bytes += batch
		now = now.Add(time.Duration(float64(batch*8) / s.Rate() * float64(time.Second)))
	}
	return now.Sub(t0)
}

// TestRateByDelivery: the sender finds a bottleneck from what its members
// get, and random loss costs it no speed.
func TestRateByDelivery(t *testing.T) {
	const link = 500e6
	bottleneck := func(sent float64) (float64, uint32) {
		if sent <= link {
			return sent, 0
		}
		return link, uint32(pollEvery * (1 - link/sent))
	}
	random := func(loss float64) path {
		return func(sent float64) (float64, uint32) { return sent * (1 - loss), uint32(loss * pollEvery) }
	}
	tests := []struct {
		name     string
		ceiling  float64
		path     path
		report   bool
		min, max float64 // where the rate must end
		caps     bool    // whether it must be capped, or must not
	}{
		{"bottleneck", 10e9, bottleneck, true, 0.8 * link, 1.05 * link, true},
		{"bottleneck, old members", 10e9, bottleneck, false, 0, 10e9, false},
		{"clean", 2e9, random(0), true, 2e9, 2e9, false},
		{"1% random loss", 2e9, random(0.01), true, 2e9, 2e9, false},
		{"5% random loss", 2e9, random(0.05), true, 2e9, 2e9, false},
		// Heavy random loss may cost a cap, once: no spiral down.
		{"20% random loss", 2e9, random(0.2), true, StartRate, 2e9, true},
		{"old members", 2e9, random(0), false, 2e9, 2e9, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := rateSender(t, tt.ceiling)
			took := drive(t, s, 200, tt.path, tt.report)
			st := s.Stats()
			t.Logf("rate %.0f Mbit/s after %v, %d caps, %d back-offs", st.Rate/1e6, took, st.Caps, st.BackOffs)
			if st.Rate < tt.min || st.Rate > tt.max {
				t.Errorf("rate %.0f Mbit/s, want %.0f to %.0f", st.Rate/1e6, tt.min/1e6, tt.max/1e6)
			}
			if (st.Caps > 0) != tt.caps {
				t.Errorf("%d caps", st.Caps)
			}
			if tt.name == "20% random loss" && st.Caps > 2 {
				t.Errorf("%d caps for loss that capping does not cure", st.Caps)
			}
		})
	}
}

// TestPauseNotALink: a pause of the sender between two polls (for the
// answers to a final poll) counts on both sides of a delivery report, so
// it slows nothing down; a member that got half of what was sent in the
// same time does.
func TestPauseNotALink(t *testing.T) {
	for _, tt := range []struct {
		name  string
		share float64
		cap   bool
	}{{"kept up", 1, false}, {"got half", 0.5, true}} {
		t.Run(tt.name, func(t *testing.T) {
			s := testSender(t, []wire.Entry{fileEntry("a", 1<<20)}, [2][]int{{0}, {0}})
			_, final := sendAll(t, s, t0)
			// Member 1 misses 100 blocks; the repairs go out a second
			// after the final poll, followed by the next final poll. Its
			// answer reports the data phase (which took no time here), so
			// its next report covers the repairs alone.
			s.Step(t0, 1, &wire.Nack{Session: 9, Round: final, Flags: wire.NackDelivery, Missing: 100,
				Ranges: []wire.Range{{Start: 0, Count: 100}}, Delivered: 1 << 20, Span: 1})
			s.Step(t0, 2, &wire.Nack{Session: 9, Round: final})
			var repair *wire.Poll
			repaired := 0
			later := t0.Add(time.Second)
			for i := 0; i < 10 && repair == nil; i++ {
				out, _ := s.Next(later, nil, 32)
				for _, o := range out {
					if o.Msg == nil && o.Repair {
						repaired++
					} else if p, ok := o.Msg.(*wire.Poll); ok && p.Final {
						repair = p
					}
				}
			}
			if repair == nil || repaired != 100 {
				t.Fatalf("%d repairs, final poll %v", repaired, repair)
			}
			rate := s.Rate()
			bytes := float64(repaired * datagramLen(s.blockSize))
			// (A member that has everything says so and is done: this one
			// still misses a block.)
			s.Step(later, 1, &wire.Nack{Session: 9, Round: repair.Round, Flags: wire.NackDelivery, Missing: 1, Ranges: []wire.Range{{Start: 0, Count: 1}},
				Delivered: uint32(tt.share * bytes), Span: uint32(later.Sub(t0).Microseconds())})
			if capped := s.Stats().Caps > 0; capped != tt.cap || capped == (s.Rate() == rate) {
				t.Fatalf("rate %v after the report, was %v; %d caps", s.Rate(), rate, s.Stats().Caps)
			}
		})
	}
}

// TestDeliveryReport: a receiver reports the data that came between two
// polls, and how long after the first poll the second came, once that is
// long enough to tell; before, its answers say it measures but has nothing
// to report yet, and the run goes on.
func TestDeliveryReport(t *testing.T) {
	in := testInbox(1 << 20)
	r, rd, _ := in.Step(t0, offer(1, fileEntry("big", 1<<30)))
	decideAll(r, rd, ^uint64(0))
	bs := testPayload - wire.DataHeaderLen
	now, block, round := t0, uint64(0), uint32(0)
	data := func(n int, gap time.Duration) {
		for range n {
			r.Step(now, &wire.Data{Session: 1, Block: block, Bytes: make([]byte, bs)})
			block++
			now = now.Add(gap)
		}
	}
	poll := func() *wire.Nack {
		round++
		rd := r.Step(now, &wire.Poll{Session: 1, Round: round, Watermark: block})
		if len(rd.Msgs) != 1 {
			t.Fatalf("poll %d answered with %v", round, rd.Msgs)
		}
		return rd.Msgs[0].(*wire.Nack)
	}
	size := uint32(datagramLen(bs))
	data(100, 100*time.Microsecond) // the run opens at the first datagram: 10 ms to the poll
	if n := poll(); n.Flags&wire.NackDelivery == 0 || n.Span != 0 {
		t.Fatalf("a short run reported: %+v", n)
	}
	data(200, 100*time.Microsecond) // it goes on past that poll, to 30 ms
	if n := poll(); n.Span != 30000 || n.Delivered != 299*size {
		t.Fatalf("reported %d bytes in %d µs, want %d in %d", n.Delivered, n.Span, 299*size, 30000)
	}
	// The next run starts at that poll: a pause before the data counts.
	now = now.Add(10 * time.Millisecond)
	data(100, 100*time.Microsecond)
	if n := poll(); n.Span != 20000 || n.Delivered != 100*size {
		t.Fatalf("reported %d bytes in %d µs, want %d in %d", n.Delivered, n.Span, 100*size, 20000)
	}
}

// TestSettled: a sender that has not slowed down is still probing, one
// that backed off has settled, and one started from a settled rate is
// settled from the start.
func TestSettled(t *testing.T) {
	s := rateSender(t, 0)
	if s.Settled() {
		t.Fatal("a new sender is settled")
	}
	drive(t, s, 4, func(sent float64) (float64, uint32) { return sent, 0 }, true)
	if s.Settled() {
		t.Fatal("a sender that never slowed down is settled")
	}
	drive(t, s, 4, func(sent float64) (float64, uint32) { return sent * 0.3, pollEvery / 2 }, true)
	if !s.Settled() {
		t.Fatal("a sender overrunning its members did not settle")
	}
	settled, err := NewSender(SenderConfig{Session: 9, Entries: []wire.Entry{fileEntry("big", 1<<30)}, Members: []wire.NodeID{1},
		MaxPayload: testPayload, Timeout: time.Minute, StartRate: 1e9, Settled: true})
	if err != nil {
		t.Fatal(err)
	}
	if !settled.Settled() {
		t.Fatal("a sender started from a settled rate is not settled")
	}
}
