package session

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// answerOffer steps member m's answer to off: every file changes and needs
// its content; the files in basis are held in an older copy.
func answerOffer(s *Sender, off *wire.Offer, m wire.NodeID, basis map[int]bool) {
	n := wire.NewNeed(s.Session(), off.Index, len(off.Items))
	for k := range off.Items {
		wire.Set(n.Change, k)
		if off.Items[k].Kind == wire.KindFile {
			wire.Set(n.Data, k)
			if basis[int(off.First)+k] {
				wire.Set(n.Basis, k)
			}
		}
	}
	s.Step(t0, m, n)
}

// smallFiles returns n file entries of 3000 bytes.
func smallFiles(n int) []wire.Entry {
	var entries []wire.Entry
	for i := range n {
		entries = append(entries, fileEntry(fmt.Sprintf("f%03d", i), 3000))
	}
	return entries
}

// TestDataBeforeLastOffer: a file's content goes out as soon as every
// member answered the offers up to the one holding it, never before, and
// never past a file some member could diff against, whose chunk list
// waits for every answer. Every block still goes out once.
func TestDataBeforeLastOffer(t *testing.T) {
	entries := smallFiles(200)
	const big = 120
	entries[big] = fileEntry("big", 2*MinChunk)
	basis := map[int]bool{big: true}
	s, err := NewSender(SenderConfig{Session: 9, Entries: entries, Members: []wire.NodeID{1, 2}, MaxPayload: testPayload, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := s.Next(t0, nil, 32)
	var offers []*wire.Offer
	for _, o := range out {
		offers = append(offers, o.Msg.(*wire.Offer))
	}
	bigOffer := slices.IndexFunc(offers, func(o *wire.Offer) bool { return int(o.First)+len(o.Items) > big })
	if len(offers) < 4 || bigOffer < 2 || bigOffer == len(offers)-1 {
		t.Fatalf("want several offers around the delta file, got %d (it is in %d)", len(offers), bigOffer)
	}
	sent := map[uint64]int{}
	// drain runs Next until it has nothing to send now and returns the
	// highest entry a block went out for (-1: none).
	drain := func(phase Phase) int {
		t.Helper()
		hi := -1
		for range 1000 {
			out, wake := s.Next(t0, nil, 32)
			for _, o := range out {
				if p, ok := o.Msg.(*wire.Poll); ok && p.Final {
					t.Fatalf("final poll in %v", s.Phase())
				}
				if o.Msg != nil {
					continue
				}
				i, _, _, err := s.Locate(o.Block)
				if err != nil {
					t.Fatal(err)
				}
				sent[o.Block]++
				hi = max(hi, i)
			}
			if s.Phase() != phase {
				t.Fatalf("phase %v, want %v", s.Phase(), phase)
			}
			if len(out) == 0 && wake.After(t0) {
				return hi
			}
		}
		t.Fatal("the sender never stopped sending")
		return 0
	}
	end := func(k int) int { return int(offers[k].First) + len(offers[k].Items) }

	if hi := drain(PhaseOffer); hi != -1 {
		t.Fatalf("content of entry %d went out before any answer", hi)
	}
	answerOffer(s, offers[0], 1, basis)
	answerOffer(s, offers[1], 1, basis)
	if hi := drain(PhaseOffer); hi != -1 {
		t.Fatalf("content of entry %d went out before member 2 answered", hi)
	}
	answerOffer(s, offers[1], 2, basis) // out of order: offer 0 still owed
	if hi := drain(PhaseOffer); hi != -1 {
		t.Fatalf("content of entry %d went out before member 2 answered offer 0", hi)
	}
	answerOffer(s, offers[0], 2, basis)
	if hi := drain(PhaseOffer); hi != end(1)-1 {
		t.Fatalf("content up to entry %d went out, want up to %d", hi, end(1)-1)
	}
	for k := 2; k <= bigOffer; k++ {
		answerOffer(s, offers[k], 1, basis)
		answerOffer(s, offers[k], 2, basis)
	}
	if hi := drain(PhaseOffer); hi != big-1 {
		t.Fatalf("content up to entry %d went out, want up to %d (before the delta file)", hi, big-1)
	}
	for k := bigOffer + 1; k < len(offers); k++ {
		answerOffer(s, offers[k], 1, basis)
		answerOffer(s, offers[k], 2, basis)
	}
	s.Next(t0, nil, 32)
	if want := s.NeedChunkLists(); !slices.Equal(want, []int{big}) {
		t.Fatalf("chunk lists wanted for %v, want [%d] (the files before it went out whole)", want, big)
	}
	s.SetChunkLists(nil) // no list: sent whole
	blocks, _ := sendAll(t, s, t0)
	for _, b := range blocks {
		sent[b]++
	}
	for i := range entries {
		for b := s.first[i]; b < s.first[i]+blocksOf(entries[i].Size, s.blockSize); b++ {
			if sent[b] != 1 {
				t.Fatalf("block %d of entry %d went out %d times", b-s.first[i], i, sent[b])
			}
		}
	}
}

// TestNoEarlyDataInDryRun: a dry run sends no content, answered or not.
func TestNoEarlyDataInDryRun(t *testing.T) {
	s, err := NewSender(SenderConfig{Session: 9, Flags: wire.SessionDryRun, Entries: smallFiles(200), Members: []wire.NodeID{1, 2},
		MaxPayload: testPayload, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := s.Next(t0, nil, 32)
	if len(out) < 2 {
		t.Fatalf("want several offers, got %d", len(out))
	}
	answerOffer(s, out[0].Msg.(*wire.Offer), 1, nil)
	answerOffer(s, out[0].Msg.(*wire.Offer), 2, nil)
	out, _ = s.Next(t0, nil, 32)
	if slices.ContainsFunc(out, func(o Out) bool { return o.Msg == nil }) {
		t.Fatalf("a dry run sent content: %v", out)
	}
}

// TestReceiverLaysDecidedPrefix: a receiver takes the blocks of the offers
// it decided from the first on while later offers are still out, answers
// a poll below that layout, and ignores data and polls past it.
func TestReceiverLaysDecidedPrefix(t *testing.T) {
	bs := testPayload - wire.DataHeaderLen
	mk := func(index, first uint32, e wire.Entry) *wire.Offer {
		return &wire.Offer{Session: 1, BlockSize: uint32(bs), Entries: 3, Count: 3, Index: index, First: first, Items: []wire.Entry{e}}
	}
	size := uint64(2 * bs)
	in := testInbox(1 << 20)
	// Offer 1 first: not laid, offer 0 is missing.
	r, rd, _ := in.Step(t0, mk(1, 1, fileEntry("b", size)))
	decideAll(r, rd, 1<<30)
	data := func(b uint64) int {
		return len(r.Step(t0, &wire.Data{Session: 1, Block: b, Bytes: make([]byte, bs)}).Effects)
	}
	if n := data(2); n != 0 {
		t.Fatalf("a block of an entry after an offer not in was taken (%d effects)", n)
	}
	decideAll(r, r.Step(t0, mk(0, 0, fileEntry("a", size))), 1<<30)
	if r.layout {
		t.Fatal("layout complete with offer 2 missing")
	}
	if n := data(0); n != 1 {
		t.Fatalf("a block of offer 0 gave %d effects, want a write", n)
	}
	bFirst := blockBudget(size, bs) // b's blocks follow a's budget
	if n := data(bFirst); n != 1 {
		t.Fatalf("a block of offer 1 gave %d effects, want a write", n)
	}
	if n := data(2 * bFirst); n != 0 {
		t.Fatalf("a block past the layout gave %d effects", n)
	}
	nacks := func(wm uint64) []wire.Message {
		return r.Step(t0, &wire.Poll{Session: 1, Round: 1, Watermark: wm}).Msgs
	}
	if m := nacks(2 * bFirst); len(m) != 1 {
		t.Fatalf("a poll within the decided offers got %d answers, want 1", len(m))
	} else if n := m[0].(*wire.Nack); n.Missing != 2 {
		t.Fatalf("the answer lists %d missing blocks, want 2 (one of each file)", n.Missing)
	}
	if m := nacks(2*bFirst + 1); len(m) != 0 {
		t.Fatalf("a poll past the decided offers was answered: %v", m)
	}
	decideAll(r, r.Step(t0, mk(2, 2, fileEntry("c", size))), 1<<30)
	if !r.layout {
		t.Fatal("layout incomplete with every offer decided")
	}
}

// TestEarlyDataWaitsForPollAnswers: before every offer is answered, the
// data run at most earlyPolls polls ahead of a member's answers (it is
// still deciding the offers queued before them), and go on once it
// answers.
func TestEarlyDataWaitsForPollAnswers(t *testing.T) {
	s, err := NewSender(SenderConfig{Session: 9, Entries: smallFiles(3000), Members: []wire.NodeID{1, 2}, MaxPayload: testPayload, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := s.Next(t0, nil, 32)
	for _, o := range out[:len(out)-1] { // the last offer stays unanswered
		answerOffer(s, o.Msg.(*wire.Offer), 1, nil)
		answerOffer(s, o.Msg.(*wire.Offer), 2, nil)
	}
	drain := func() (blocks int, round uint32) {
		for range 10000 {
			out, wake := s.Next(t0, nil, 32)
			for _, o := range out {
				if o.Msg == nil {
					blocks++
				} else if p, ok := o.Msg.(*wire.Poll); ok {
					round = p.Round
				}
			}
			if len(out) == 0 && wake.After(t0) {
				return blocks, round
			}
		}
		t.Fatal("the sender never stopped sending")
		return 0, 0
	}
	blocks, round := drain()
	if blocks != earlyPolls*pollEvery || round != earlyPolls {
		t.Fatalf("%d blocks and %d polls went out unanswered, want %d and %d", blocks, round, earlyPolls*pollEvery, earlyPolls)
	}
	s.Step(t0, 1, &wire.Nack{Session: 9, Round: round})
	if more, _ := drain(); more != 0 {
		t.Fatalf("%d blocks went out while member 2 answered nothing", more)
	}
	s.Step(t0, 2, &wire.Nack{Session: 9, Round: 1})
	if more, _ := drain(); more != pollEvery {
		t.Fatalf("an answer to poll 1 let %d more blocks out, want %d", more, pollEvery)
	}
	if s.Phase() != PhaseOffer {
		t.Fatalf("phase %v with an offer unanswered", s.Phase())
	}
}
