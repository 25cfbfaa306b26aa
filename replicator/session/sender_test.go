package session

import (
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/chunk"
	"github.com/makuo/makuo/replicator/wire"
)

// testSender builds a sender over entries for members 1 and 2 and answers
// its offers: need[i] lists the entries member i+1 needs the content of.
func testSender(t *testing.T, entries []wire.Entry, need [2][]int) *Sender {
	t.Helper()
	s, err := NewSender(SenderConfig{Session: 9, Entries: entries, Members: []wire.NodeID{1, 2}, MaxPayload: testPayload, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := s.Next(t0, nil, 32)
	for _, o := range out {
		off := o.Msg.(*wire.Offer)
		for m := range 2 {
			n := wire.NewNeed(9, off.Index, len(off.Items))
			for _, i := range need[m] {
				if k := i - int(off.First); k >= 0 && k < len(off.Items) {
					wire.Set(n.Change, k)
					wire.Set(n.Data, k)
				}
			}
			s.Step(t0, wire.NodeID(m+1), n)
		}
	}
	return s
}

// sendAll runs Next until the data are sent once and returns the blocks
// sent and the last poll's round.
func sendAll(t *testing.T, s *Sender, now time.Time) (blocks []uint64, round uint32) {
	t.Helper()
	for range 1000 {
		out, _ := s.Next(now, nil, 32)
		for _, o := range out {
			if o.Msg == nil {
				if _, _, _, err := s.Locate(o.Block); err != nil {
					t.Fatalf("asked to send block %d: %v", o.Block, err)
				}
				blocks = append(blocks, o.Block)
			} else if p, ok := o.Msg.(*wire.Poll); ok {
				round = p.Round
				if p.Final {
					return blocks, round
				}
			}
		}
	}
	t.Fatal("no final poll")
	return nil, 0
}

// TestNackOutsideNeeds: a Nack for blocks in the gaps between files, for
// another member's files or past the layout queues nothing and fails
// nobody (issue 12, defect 5: one Nack aborted the whole push).
func TestNackOutsideNeeds(t *testing.T) {
	entries := []wire.Entry{
		fileEntry("a", 2*MinChunk), // sent whole: its budget has room for chunks it does not use
		fileEntry("b", 3000),
		{Kind: wire.KindDir, Path: "d", Mode: 0o755},
	}
	s := testSender(t, entries, [2][]int{{0}, {1}})
	sent, round := sendAll(t, s, t0)
	if len(sent) == 0 {
		t.Fatal("nothing sent")
	}
	aBlocks := blocksOf(entries[0].Size, s.blockSize)
	bFirst := s.first[1]
	gap := wire.Range{Start: aBlocks, Count: uint32(bFirst - aBlocks)} // a's unused budget
	s.Step(t0, 1, &wire.Nack{Session: 9, Round: round, Missing: 10, Ranges: []wire.Range{
		gap,
		{Start: bFirst, Count: 2},            // member 2's file
		{Start: s.total, Count: 1 << 31},     // past the layout
		{Start: 1<<63 - 1, Count: 1<<32 - 1}, // far past it
	}})
	out, _ := s.Next(t0.Add(time.Second), nil, 32)
	for _, o := range out {
		if o.Msg == nil {
			t.Fatalf("repaired block %d for a Nack outside what member 1 needs", o.Block)
		}
	}
	// A Nack for a block member 1 does need is repaired.
	s.Step(t0, 1, &wire.Nack{Session: 9, Round: round, Missing: 1, Ranges: []wire.Range{{Start: 1, Count: 1}}})
	repaired := false
	for range 10 {
		out, _ = s.Next(t0.Add(2*time.Second), nil, 32)
		for _, o := range out {
			repaired = repaired || (o.Msg == nil && o.Block == 1 && o.Repair)
		}
	}
	if !repaired {
		t.Fatal("a needed block was not repaired")
	}
}

// TestNackWorkBounded: a Nack whose ranges span a huge file queues at
// most maxNackBlocks, however often it is repeated.
func TestNackWorkBounded(t *testing.T) {
	s := testSender(t, []wire.Entry{fileEntry("big", 1<<36)}, [2][]int{{0}, {0}})
	s.enterData(t0, nil)
	d := &s.data
	d.round = 1
	d.pollAt[1] = s.total
	for range 100 {
		s.Step(t0, 1, &wire.Nack{Session: 9, Round: 1, Missing: s.total, Ranges: []wire.Range{{Start: 0, Count: 1<<32 - 1}}})
	}
	if len(d.repairQ) > maxNackBlocks {
		t.Fatalf("%d blocks queued by repeated Nacks, at most %d", len(d.repairQ), maxNackBlocks)
	}
}

// TestBacklogCountsPolls: the sender slows down for a member that leaves
// more than maxBacklog polls unanswered while it keeps talking, and not
// for one whose answers lag by block numbers a delta skipped.
func TestBacklogCountsPolls(t *testing.T) {
	s := testSender(t, []wire.Entry{fileEntry("a", 100<<20)}, [2][]int{{0}, {0}})
	s.enterData(t0, nil)
	rate := s.Rate()
	d := &s.data
	for r := uint32(1); r <= maxBacklog+2; r++ {
		d.round = r
		d.pollAt[r] = uint64(r) * pollEvery
	}
	// Member 1 answered round 1 only, just now; member 2 is current.
	s.Step(t0, 1, &wire.Nack{Session: 9, Round: 1})
	s.Step(t0, 2, &wire.Nack{Session: 9, Round: d.round})
	s.checkBacklog(t0.Add(10 * time.Millisecond))
	if s.Rate() >= rate {
		t.Fatalf("rate %v after a backlog of %d polls, was %v", s.Rate(), d.round-1, rate)
	}
	// A member silent for longer may be dead: no slowing down for it.
	s2 := testSender(t, []wire.Entry{fileEntry("a", 100<<20)}, [2][]int{{0}, {0}})
	s2.enterData(t0, nil)
	for r := uint32(1); r <= maxBacklog+2; r++ {
		s2.data.round = r
		s2.data.pollAt[r] = uint64(r) * pollEvery
	}
	s2.Step(t0, 1, &wire.Nack{Session: 9, Round: 1})
	s2.Step(t0, 2, &wire.Nack{Session: 9, Round: s2.data.round})
	rate2 := s2.Rate()
	s2.checkBacklog(t0.Add(time.Second))
	if s2.Rate() != rate2 {
		t.Fatal("slowed down for a member that went silent")
	}
}

// TestPruneRepaired: the record of repairs in flight is swept once every
// member has answered a poll after them.
func TestPruneRepaired(t *testing.T) {
	s := testSender(t, []wire.Entry{fileEntry("a", 100<<20)}, [2][]int{{0}, {0}})
	s.enterData(t0, nil)
	d := &s.data
	for b := range uint64(repairedPruneAt) {
		d.repaired[b] = 1
	}
	d.round = 3
	s.peers[0].answeredRound, s.peers[1].answeredRound = 2, 1
	s.pruneRepaired()
	if len(d.repaired) != repairedPruneAt {
		t.Fatal("pruned repairs a member may still report")
	}
	s.peers[1].answeredRound = 2
	s.pruneRepaired()
	if len(d.repaired) != 0 {
		t.Fatalf("%d repairs kept after every member answered later polls", len(d.repaired))
	}
}

// TestMinChunkMatchesChunker pins MinChunk to the chunker's minimum (the
// session package itself imports wire only).
func TestMinChunkMatchesChunker(t *testing.T) {
	if MinChunk != chunk.MinSize {
		t.Fatalf("MinChunk %d, chunk.MinSize %d", MinChunk, chunk.MinSize)
	}
}
