package transport

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

var (
	addrA = netip.MustParseAddr("10.0.0.1") // the member's own address
	addrB = netip.MustParseAddr("10.0.0.66")
	t0    = time.Unix(1_700_000_000, 0)
)

// replayStep is one datagram fed to a filter and the verdict expected.
type replayStep struct {
	node      wire.NodeID
	inc, seq  uint64
	from      netip.Addr
	after     time.Duration // since t0
	want      bool
	rationale string
}

func runReplaySteps(t *testing.T, f *replayFilter, steps []replayStep) {
	t.Helper()
	for i, s := range steps {
		h := &wire.Header{Node: s.node, Incarnation: s.inc, Seq: s.seq}
		if got := f.check(h, s.from, t0.Add(s.after)); got != s.want {
			t.Fatalf("step %d (%s) %+v from %v: got %v want %v", i, s.rationale, *h, s.from, got, s.want)
		}
	}
}

func TestReplayFilter(t *testing.T) {
	runReplaySteps(t, newReplayFilter(true, nil), []replayStep{
		{1, 10, 5, addrA, 0, true, "first"},
		{1, 10, 5, addrA, 0, false, "duplicate"},
		{1, 10, 3, addrA, 0, true, "late but within the window"},
		{1, 10, 3, addrA, 0, false, "duplicate"},
		{1, 10, 5000, addrA, 0, true, "jump"},
		{1, 10, 5000 - replayWindow, addrA, 0, false, "fell out of the window"},
		{1, 10, 5000 - replayWindow + 1, addrA, 0, true, "just within"},
		{1, 9, 6000, addrA, 0, false, "older incarnation"},
		{1, 11, 1, addrA, 0, true, "restart"},
		{1, 10, 5001, addrA, 0, false, "the old incarnation is gone for good"},
		{2, 10, 5, addrA, 0, true, "another node has its own window"},
		{1, 11, 1 + 64*40, addrA, 0, true, "slide by many words"},
		{1, 11, 1, addrA, 0, false, "fell out"},
	})
}

// TestReplayFilterUnsealedForgery: without a key, one forged datagram
// with a member's node id and a huge sequence number or incarnation must
// not make the member's real traffic look like replays.
func TestReplayFilterUnsealedForgery(t *testing.T) {
	const m = 7
	huge := uint64(1) << 62
	for _, forger := range []netip.Addr{addrB, addrA} {
		t.Run("forged from "+forger.String(), func(t *testing.T) {
			runReplaySteps(t, newReplayFilter(false, nil), []replayStep{
				{m, 10, 1, addrA, 0, true, "member"},
				{m, 10, 2, addrA, 0, true, "member"},
				{m, 10, huge, forger, 0, true, "forged high seq: delivered, like any unsealed datagram"},
				{m, 10, 3, addrA, 0, true, "the member's next datagram"},
				{m, 10, 4, addrA, 0, true, "and the one after"},
				{m, 10, huge, forger, 0, false, "the forgery repeated"},
				{m, huge, 1, forger, 0, true, "forged high incarnation"},
				{m, 10, 5, addrA, 0, true, "the member's next datagram"},
				{m, 10, 3, addrA, 0, false, "a replay of the member's own"},
				{m, 9, 100, forger, 0, false, "an older incarnation"},
				{m, 10, 6, addrA, 0, true, "the member goes on"},
			})
		})
	}
}

// TestReplayFilterUnsealedForgeryFirst: a forgery heard before anything
// of the member (after a restart of ours) does not lock it out either.
func TestReplayFilterUnsealedForgeryFirst(t *testing.T) {
	const m = 7
	huge := uint64(1) << 62
	for _, forger := range []netip.Addr{addrB, addrA} {
		t.Run("forged from "+forger.String(), func(t *testing.T) {
			runReplaySteps(t, newReplayFilter(false, nil), []replayStep{
				{m, 10, huge, forger, 0, true, "forged high seq, first"},
				{m, 10, 5, addrA, 0, true, "the member"},
				{m, 10, 6, addrA, 0, true, "in sequence: the member's window now"},
				{m, 10, 5, addrA, 0, false, "duplicate"},
				{m, 10, huge + 1, forger, 0, true, "a later forgery is only a candidate"},
				{m, 10, 7, addrA, 0, true, "the member goes on"},
				{m, 10, 3, addrB, 0, true, "late within the window"},
				{m, 10, 3, addrB, 0, false, "duplicate"},
			})
		})
	}
}

// TestReplayFilterUnsealedStreams: the rules beyond a single forgery.
func TestReplayFilterUnsealedStreams(t *testing.T) {
	const m = 7
	huge := uint64(1) << 40
	runReplaySteps(t, newReplayFilter(false, nil), []replayStep{
		{m, 10, 1, addrA, 0, true, "member"},
		{m, 10, 2, addrA, 0, true, "member, in sequence: confirmed"},
		// A forger at another address sending in sequence never takes
		// the window over while the member is live.
		{m, 11, 1, addrB, 0, true, "forged stream"},
		{m, 11, 2, addrB, 0, true, "forged stream, in sequence"},
		{m, 11, 3, addrB, 0, true, "forged stream, in sequence"},
		{m, 11, 2, addrB, 0, false, "forged stream, duplicate"},
		{m, 10, 2, addrA, 0, false, "the member's duplicate"},
		{m, 10, 3, addrA, 0, true, "the member is still accepted"},
		{m, 10, 3 + replayWindow/2, addrB, 0, true, "ahead within the window, from elsewhere: a candidate"},
		{m, 10, 4, addrA, 0, true, "the member's top did not move"},
		// A restart from the member's address takes over after one
		// confirming datagram.
		{m, 12, 1, addrA, time.Second, true, "restart"},
		{m, 10, 5, addrA, time.Second, true, "the old incarnation still, until confirmed"},
		{m, 12, 2, addrA, time.Second, true, "confirmed"},
		{m, 10, 6, addrA, time.Second, false, "the old incarnation is refused now"},
		// A forger spoofing the member's address and sending in sequence
		// does take the window over, but only until it has been silent
		// for staleAfter.
		{m, 12, huge, addrA, 2 * time.Second, true, "spoofed"},
		{m, 12, huge + 1, addrA, 2 * time.Second, true, "spoofed, in sequence"},
		{m, 12, 3, addrA, 2 * time.Second, false, "locked out"},
		{m, 12, 4, addrA, 2*time.Second + staleAfter, true, "the window went stale"},
		{m, 12, 5, addrA, 2*time.Second + staleAfter, true, "confirmed"},
		{m, 12, huge + 2, addrA, 2*time.Second + staleAfter, true, "a late forgery is only a candidate"},
		{m, 12, 6, addrA, 2*time.Second + staleAfter, true, "the member goes on"},
		// A member whose address changed without a restart keeps being
		// accepted through its candidate window, and takes the window
		// over once the old address went stale.
		{m, 12, 7, addrB, 3 * staleAfter, true, "moved to B"},
		{m, 12, 8, addrB, 3 * staleAfter, true, "confirmed: A is stale, B takes over"},
		{m, 12, 7, addrB, 3 * staleAfter, false, "duplicate"},
		{m, 12, 9, addrB, 3 * staleAfter, true, "the member goes on"},
		{m, 12, 6, addrA, 3 * staleAfter, false, "a replay of the old address's traffic"},
	})
}

// TestReplayFilterRestart: the strict filter's state survives a restart
// of the receiver (snapshot, then a filter seeded from it), so the
// recorded datagrams of incarnations and sequence numbers accepted before
// are still refused.
func TestReplayFilterRestart(t *testing.T) {
	f := newReplayFilter(true, nil)
	runReplaySteps(t, f, []replayStep{
		{1, 10, 1, addrA, 0, true, "old incarnation"},
		{1, 11, 1, addrA, 0, true, "restart of the sender"},
		{1, 11, 50, addrA, 0, true, "sender"},
		{2, 3, 7, addrB, 0, true, "another sender"},
	})
	restarted := newReplayFilter(true, f.snapshot())
	runReplaySteps(t, restarted, []replayStep{
		{1, 10, 1, addrA, 0, false, "recorded datagram of the older incarnation"},
		{1, 10, 2, addrA, 0, false, "any datagram of the older incarnation"},
		{1, 11, 50, addrA, 0, false, "recorded datagram of the current incarnation"},
		{1, 11, 49, addrA, 0, false, "below the saved top"},
		{1, 11, 51, addrA, 0, true, "the sender's live traffic"},
		{2, 3, 7, addrB, 0, false, "recorded datagram of the other sender"},
		{2, 3, 8, addrB, 0, true, "its live traffic"},
		{2, 4, 1, addrB, 0, true, "its next incarnation"},
		{3, 1, 1, addrB, 0, true, "a sender not seen before"},
	})
}

func TestReplayFilterSeedTop(t *testing.T) {
	// Tops at every position in a word: the next sequence number is
	// accepted, the top itself refused.
	for _, top := range []uint64{0, 1, 62, 63, 64, 65, 127, 5000} {
		f := newReplayFilter(true, []Seen{{Node: 1, Incarnation: 2, Seq: top}})
		if f.check(&wire.Header{Node: 1, Incarnation: 2, Seq: top}, addrA, t0) {
			t.Errorf("top %d: the saved top was accepted", top)
		}
		if !f.check(&wire.Header{Node: 1, Incarnation: 2, Seq: top + 1}, addrA, t0) {
			t.Errorf("top %d: the next sequence number was refused", top)
		}
	}
}

func TestReplayFilterSnapshot(t *testing.T) {
	f := newReplayFilter(true, nil)
	if f.changed || f.moved {
		t.Fatal("a new filter has changes")
	}
	check := func(node wire.NodeID, inc, seq uint64) {
		t.Helper()
		if !f.check(&wire.Header{Node: node, Incarnation: inc, Seq: seq}, addrA, t0) {
			t.Fatalf("%d/%d/%d refused", node, inc, seq)
		}
	}
	check(1, 5, 1)
	check(2, 5, 1)
	check(1, 5, 2)
	if !f.changed {
		t.Fatal("new senders did not mark the filter changed")
	}
	got := f.snapshot()
	want := []Seen{{2, 5, 1}, {1, 5, 2}} // least recently heard first
	if !slices.Equal(got, want) {
		t.Fatalf("snapshot %v, want %v", got, want)
	}
	if f.changed || f.moved {
		t.Fatal("snapshot did not clear the change flags")
	}
	check(2, 5, 3)
	if f.changed || !f.moved {
		t.Fatalf("a moved top: changed %v moved %v", f.changed, f.moved)
	}
	f.snapshot()
	check(2, 6, 1)
	if !f.changed {
		t.Fatal("a new incarnation did not mark the filter changed")
	}
}

func TestReplayFilterEvicts(t *testing.T) {
	f := newReplayFilter(true, nil)
	for i := range maxTrackedSenders + 10 {
		f.check(&wire.Header{Node: wire.NodeID(i), Seq: 1}, addrA, t0)
	}
	if len(f.senders) > maxTrackedSenders {
		t.Fatalf("%d senders tracked", len(f.senders))
	}
	snap := f.snapshot()
	if len(snap) != maxTrackedSenders || snap[0].Node != 10 || snap[len(snap)-1].Node != maxTrackedSenders+9 {
		t.Fatalf("snapshot of %d from %v to %v, want the %d most recent", len(snap), snap[0], snap[len(snap)-1], maxTrackedSenders)
	}
	// A seed longer than the bound keeps its most recent entries.
	seeded := newReplayFilter(true, append([]Seen{{Node: 99999, Incarnation: 1}}, snap...))
	if len(seeded.senders) != maxTrackedSenders || seeded.senders[99999] != nil {
		t.Fatalf("seeded %d senders, oldest kept: %v", len(seeded.senders), seeded.senders[99999] != nil)
	}
}
