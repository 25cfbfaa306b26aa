package session

import (
	"runtime"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

var t0 = time.Unix(1_700_000_000, 0)

const testPayload = 1472 - wire.HeaderLen

func testInbox(budget int64) *Inbox {
	return NewInbox(InboxConfig{Self: func() wire.NodeID { return 7 }, Node: 1, MaxSessions: 4, Idle: 2 * time.Minute, MaxPayload: testPayload, Budget: NewBudget(budget)})
}

// decideAll answers a Decide effect: every file changes and needs data.
func decideAll(r *Receiver, rd *Ready, free uint64) *Ready {
	for _, ef := range append([]Effect(nil), rd.Effects...) {
		if ef.Kind == EffectDecide {
			ds := make([]Decision, len(ef.Items))
			for i := range ds {
				ds[i] = Decision{Change: true, Data: ef.Items[i].Kind == wire.KindFile}
			}
			rd = r.Decided(ef.Entry, ds, free)
		}
	}
	return rd
}

func fileEntry(path string, size uint64) wire.Entry {
	return wire.Entry{Kind: wire.KindFile, Path: path, Mode: 0o644, Size: size}
}

func offer(session uint64, entries ...wire.Entry) *wire.Offer {
	return &wire.Offer{Session: session, BlockSize: testPayload - wire.DataHeaderLen, Entries: uint32(len(entries)), Count: 1, Items: entries}
}

// TestFreeSpaceSumDoesNotWrap: sizes that add up past 2^64 once made the
// free-space check pass (issue 12, defect 1); the sum is checked per file.
func TestFreeSpaceSumDoesNotWrap(t *testing.T) {
	in := testInbox(1 << 20)
	o := offer(1, fileEntry("a", 256), fileEntry("b", wire.MaxFileSize))
	r, rd, _ := in.Step(t0, o)
	decideAll(r, rd, 1000)
	_, st, _ := r.Lookup(1)
	if st.Fail == nil || st.Fail.Code != wire.FailNoSpace {
		t.Fatalf("a file far larger than the free space was accepted: %+v", st)
	}
	if _, st, _ := r.Lookup(0); st.Fail != nil {
		t.Fatalf("the small file failed: %+v", st.Fail)
	}
	// Data for the refused file costs nothing.
	rd = r.Step(t0, &wire.Data{Session: 1, Block: 1, Bytes: make([]byte, 10)})
	if len(rd.Effects) != 0 {
		t.Fatalf("data for a refused file produced %v", rd.Effects)
	}
}

// TestHugeFileStateGrowsWithData: a block of a file announced at the
// largest size allocates state for what arrived, not for the announced
// size (a bitmap of the announced blocks was 2^40 bytes).
func TestHugeFileStateGrowsWithData(t *testing.T) {
	in := testInbox(1 << 20)
	r, rd, _ := in.Step(t0, offer(1, fileEntry("big", wire.MaxFileSize)))
	decideAll(r, rd, ^uint64(0))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	bs := testPayload - wire.DataHeaderLen
	for _, b := range []uint64{0, 5, 1 << 30, 1 << 37} {
		rd = r.Step(t0, &wire.Data{Session: 1, Block: b, Bytes: make([]byte, bs)})
		if len(rd.Effects) != 1 || rd.Effects[0].Kind != EffectWrite {
			t.Fatalf("block %d: effects %v", b, rd.Effects)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 1<<20 {
		t.Fatalf("four blocks of a huge file grew the heap by %d bytes", grew)
	}
	// A poll asking about every block of it answers at once: the answer
	// walks the holes, not the blocks.
	done := make(chan *wire.Nack, 1)
	go func() {
		rd := r.Step(t0, &wire.Poll{Session: 1, Round: 1, Watermark: ^uint64(0), Final: true})
		done <- rd.Msgs[0].(*wire.Nack)
	}()
	select {
	case n := <-done:
		if n.Missing < 1<<37 || len(n.Ranges) == 0 {
			t.Fatalf("nack %+v", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a poll over a huge file did not answer: the work is not bounded")
	}
}

// TestOfferMemoryFromWhatArrived: an offer announcing the most entries a
// session may have holds memory for the entries it carries only (a
// 68-byte offer once pinned 32 MiB), and an offer for a session that
// targets others holds nothing (issue 12, defect 2).
func TestOfferMemoryFromWhatArrived(t *testing.T) {
	in := testInbox(1 << 20)
	o := offer(1, fileEntry("a", 1))
	o.Entries, o.Count = wire.MaxEntries, wire.MaxEntries
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, _, _ := in.Step(t0, o)
	runtime.ReadMemStats(&after)
	if r == nil {
		t.Fatal("no session")
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 64<<10 {
		t.Fatalf("a one-entry offer grew the heap by %d bytes", grew)
	}
	other := offer(2, fileEntry("a", 1))
	other.Targets = []wire.NodeID{99}
	if r, _, _ := in.Step(t0, other); r != nil {
		t.Fatal("a session for another member was started")
	}
	if in.Len() != 1 {
		t.Fatalf("%d sessions held", in.Len())
	}
}

// TestSessionCaps: past MaxSessions sessions of one node, offers are
// refused with DropLimit; past the memory budget, the session is refused
// and says why at commit.
func TestSessionCaps(t *testing.T) {
	in := testInbox(1 << 20)
	for id := range uint64(4) {
		if r, _, drop := in.Step(t0, offer(10+id, fileEntry("a", 1))); r == nil || drop != DropNone {
			t.Fatalf("session %d refused: %v", id, drop)
		}
	}
	if r, _, drop := in.Step(t0, offer(20, fileEntry("a", 1))); r != nil || drop != DropLimit {
		t.Fatalf("fifth session: %v %v", r, drop)
	}
	small := testInbox(4 << 10)
	var es []wire.Entry
	for i := range 40 {
		es = append(es, fileEntry(string(rune('a'+i%26))+"xxxxxxxxxxxxxxxx", 1))
	}
	r, rd, _ := small.Step(t0, offer(1, es...))
	if rd.Dropped != DropMemory || len(rd.Msgs) != 1 {
		t.Fatalf("offer past the budget: dropped %v, %d answers", rd.Dropped, len(rd.Msgs))
	}
	rd = r.Step(t0, &wire.Commit{Session: 1})
	res, ok := rd.Msgs[0].(*wire.Result)
	if !ok || res.Failed == 0 || len(res.Failures) != 1 || res.Failures[0].Code != wire.FailNoSpace {
		t.Fatalf("commit of a refused session: %+v", rd.Msgs)
	}
	if small.cfg.Budget.Used() != 0 {
		t.Fatalf("%d bytes still charged", small.cfg.Budget.Used())
	}
}

// TestChunkListFromParts: a chunk list claiming many chunks allocates for
// the parts that arrived, and parts that do not tile the list fail the
// entry, not the session.
func TestChunkListFromParts(t *testing.T) {
	in := testInbox(1 << 20)
	const size = 1 << 30
	r, rd, _ := in.Step(t0, offer(1, fileEntry("a", size), fileEntry("b", 10)))
	decideAll(r, rd, ^uint64(0))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rd = r.Step(t0, &wire.Chunks{Session: 1, Entry: 0, First: 0, Total: size / MinChunk, Refs: []wire.ChunkRef{{Size: MinChunk, Hash: 1}}})
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 64<<10 {
		t.Fatalf("one part of a 65536-chunk list grew the heap by %d bytes", grew)
	}
	if len(rd.Msgs) != 0 || len(rd.Effects) != 0 {
		t.Fatalf("an incomplete list was answered: %v %v", rd.Msgs, rd.Effects)
	}
	// Two parts that overlap make the list complete by count but not by
	// position.
	r2, rd2, _ := in.Step(t0, offer(2, fileEntry("a", 3*MinChunk)))
	decideAll(r2, rd2, ^uint64(0))
	refs := []wire.ChunkRef{{Size: MinChunk, Hash: 1}, {Size: MinChunk, Hash: 2}}
	r2.Step(t0, &wire.Chunks{Session: 2, Entry: 0, First: 0, Total: 3, Refs: refs})
	r2.Step(t0, &wire.Chunks{Session: 2, Entry: 0, First: 1, Total: 3, Refs: refs[:1]})
	if _, st, _ := r2.Lookup(0); st.Fail == nil {
		t.Fatal("overlapping chunk-list parts were accepted")
	}
}

// TestRepeatedOffersAnswered: a repeated offer (the Need was lost) gets
// the same Need again, also for an empty session, and costs no decision.
func TestRepeatedOffersAnswered(t *testing.T) {
	for _, o := range []*wire.Offer{offer(1), offer(2, fileEntry("a", 1))} {
		in := testInbox(1 << 20)
		r, rd, _ := in.Step(t0, o)
		rd = decideAll(r, rd, 1<<30)
		if len(rd.Msgs) != 1 {
			t.Fatalf("%d entries: first offer answered with %v", o.Entries, rd.Msgs)
		}
		first := rd.Msgs[0]
		_, rd, _ = in.Step(t0, o)
		if len(rd.Effects) != 0 || len(rd.Msgs) != 1 || rd.Msgs[0] != first || rd.Dropped != DropNone {
			t.Fatalf("%d entries: repeated offer: %v %v %v", o.Entries, rd.Msgs, rd.Effects, rd.Dropped)
		}
	}
}
