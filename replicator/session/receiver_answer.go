package session

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// poll answers with the blocks below the watermark this member still
// misses. The work is bounded whatever the poll claims: the watermark is
// cut to the layout, the loss window to maxWindowScan blocks, and the
// listing to a datagram and maxPollScan entries past the first incomplete
// one.
func (r *Receiver) poll(now time.Time, m *wire.Poll) {
	if !r.layout && m.Watermark > r.total {
		// Blocks past the decided offers: the sender re-offers, and
		// answering now would claim too much.
		return
	}
	nack := &wire.Nack{Session: r.key.Session, Round: m.Round}
	wm := min(m.Watermark, r.total)
	lo, hi := r.polledTo, wm
	if hi > lo {
		r.polledTo = hi
		lo = max(lo, hi-min(hi, maxWindowScan))
	} else {
		lo = hi // a repeated or reordered poll: no loss window
	}
	for r.pollFrom < len(r.order) && (r.order[r.pollFrom].done || r.order[r.pollFrom].failure() != nil) {
		r.pollFrom++
	}
	r.window(nack, lo, hi)
	if r.pending > 0 {
		r.listMissing(nack, wm, (r.room-wire.NackHeaderLen-wire.NackDeliveryLen)/wire.NackRangeLen)
	}
	r.arrived.report(nack, now)
	r.send(nack)
}

// window measures the loss among the blocks this member needs in [lo, hi).
func (r *Receiver) window(nack *wire.Nack, lo, hi uint64) {
	if hi <= lo {
		return
	}
	k := sort.Search(len(r.order), func(k int) bool { return r.order[k].first+r.order[k].blocks > lo })
	for ; k < len(r.order) && r.order[k].first < hi; k++ {
		e := r.order[k]
		ws, we := max(lo, e.first), min(hi, e.first+e.blocks)
		if we <= ws {
			continue
		}
		nack.WindowSize += uint32(we - ws)
		if e.done || e.failure() != nil {
			continue
		}
		if e.gotSet() == nil {
			nack.WindowLost += uint32(we - ws)
		} else {
			nack.WindowLost += uint32(e.gotSet().missingIn(ws-e.first, we-e.first))
		}
	}
}

// listMissing lists the missing blocks below wm from the first incomplete
// entry on.
func (r *Receiver) listMissing(nack *wire.Nack, wm uint64, room int) {
	scanned := 0
	for _, e := range r.order[r.pollFrom:] {
		if e.first >= wm {
			return
		}
		if scanned++; scanned > maxPollScan {
			nack.Flags |= wire.NackTruncated
			nack.Missing = max(nack.Missing, 1)
			return
		}
		if e.done || e.failure() != nil {
			continue
		}
		end := min(e.blocks, wm-e.first)
		full := false
		add := func(start, stop uint64) bool {
			nack.Missing += stop - start
			for start < stop {
				n := min(stop-start, 1<<31)
				abs := e.first + start
				if k := len(nack.Ranges); k > 0 && nack.Ranges[k-1].Start+uint64(nack.Ranges[k-1].Count) == abs && uint64(nack.Ranges[k-1].Count)+n < 1<<32 {
					nack.Ranges[k-1].Count += uint32(n)
				} else if k < room {
					nack.Ranges = append(nack.Ranges, wire.Range{Start: abs, Count: uint32(n)})
				} else {
					// Full: Missing is then a lower bound, which is all
					// the sender needs (zero or not).
					nack.Flags |= wire.NackTruncated
					full = true
					return false
				}
				start += n
			}
			return true
		}
		if e.gotSet() == nil {
			add(0, end)
		} else {
			e.gotSet().holes(end, add)
		}
		if full {
			return
		}
	}
}

// chunks collects a file's chunk list; once complete, it asks the
// filesystem what the local basis holds (EffectPlan). A repeated part of
// a complete list is answered again. Memory grows with the parts that
// arrived, never with the count a part claims.
func (r *Receiver) chunks(m *wire.Chunks) {
	if !r.layout || !r.applying() {
		return
	}
	e := r.entry(int(m.Entry))
	// A file that needs data and has not failed is in r.order once laid out.
	if e == nil || e.Kind != wire.KindFile || !e.data || e.failure() != nil || e.done || e.blocks == 0 {
		return
	}
	if e.chunkSt() != nil && e.chunkSt().plan != nil {
		r.answerChunks(e, m.First, len(m.Refs))
		return
	}
	if e.chunkSt() == nil {
		if m.Total == 0 || uint64(m.Total) > e.Size/MinChunk+1 {
			r.ready.Dropped = DropMalformed
			return
		}
		e.setChunks(&chunkState{total: m.Total, parts: map[uint32][]wire.ChunkRef{}})
	}
	ck := e.chunkSt()
	if m.Total != ck.total {
		r.ready.Dropped = DropMalformed
		return
	}
	if _, dup := ck.parts[m.First]; dup || len(m.Refs) == 0 {
		return
	}
	ck.parts[m.First] = m.Refs
	ck.nrefs += uint32(len(m.Refs))
	if ck.nrefs < ck.total {
		return
	}
	refs, err := assemble(ck)
	if err == nil {
		plan := newChunkPlan(refs, r.blockSize)
		switch {
		case plan.size() != e.Size:
			err = fmt.Errorf("chunk list covers %d bytes, file has %d", plan.size(), e.Size)
		case plan.blocks() > blockBudget(e.Size, r.blockSize):
			err = fmt.Errorf("chunk list of %d chunks does not fit the layout", len(refs))
		default:
			ck.plan = plan
		}
	}
	if err != nil {
		r.settle(e, &wire.Failure{Code: wire.FailOther, Msg: "bad chunk list: " + err.Error()})
		return
	}
	e.blocks = ck.plan.blocks()
	e.setGot(&blockSet{})
	r.effect(Effect{Kind: EffectPlan, Entry: int(e.index), Refs: refs})
}

// assemble joins the parts of a chunk list, which must tile it exactly.
func assemble(ck *chunkState) ([]wire.ChunkRef, error) {
	firsts := make([]uint32, 0, len(ck.parts))
	for f := range ck.parts {
		firsts = append(firsts, f)
	}
	slices.Sort(firsts)
	refs := make([]wire.ChunkRef, 0, ck.total)
	for _, f := range firsts {
		if uint32(len(refs)) != f {
			return nil, fmt.Errorf("parts overlap or leave a gap at chunk %d", f)
		}
		refs = append(refs, ck.parts[f]...)
	}
	if uint32(len(refs)) != ck.total {
		return nil, fmt.Errorf("%d chunks of %d", len(refs), ck.total)
	}
	return refs, nil
}

// Planned records which chunks of entry i the filesystem copied from the
// local basis (have[c]), answers every part of the chunk list with the
// chunks still lacking, and asks to verify the file if nothing is.
func (r *Receiver) Planned(i int, have []bool, f *wire.Failure) *Ready {
	r.ready.reset()
	e := r.entry(i)
	if e == nil || e.chunkSt() == nil || e.chunkSt().plan == nil || e.failure() != nil || e.done {
		return &r.ready
	}
	if f != nil {
		r.settle(e, f)
		return &r.ready
	}
	plan := e.chunkSt().plan
	e.chunkSt().need = newBitset(uint64(len(plan.refs)))
	for c := range plan.refs {
		if c < len(have) && have[c] {
			if from, to := plan.blk[c], plan.blk[c+1]; to > from {
				e.gotSet().addRun(from, to)
			}
		} else {
			e.chunkSt().need.set(uint64(c))
		}
	}
	for first, refs := range e.chunkSt().parts {
		r.answerChunks(e, first, len(refs))
	}
	e.chunkSt().parts = nil
	if e.gotSet().count == e.blocks {
		r.effect(Effect{Kind: EffectWrite, Entry: int(e.index), Offset: int64(e.Size), Hashed: int64(e.Size), Last: true})
	}
	return &r.ready
}

func (r *Receiver) answerChunks(e *entry, first uint32, n int) {
	need := e.chunkSt().need
	if uint64(first)+uint64(n) > uint64(len(e.chunkSt().plan.refs)) {
		return
	}
	cn := &wire.ChunkNeed{Session: r.key.Session, Entry: e.index, First: first, N: uint16(n), Need: make([]byte, (n+7)/8)}
	for j := range n {
		if need.has(uint64(first) + uint64(j)) {
			wire.Set(cn.Need, j)
		}
	}
	r.send(cn)
}

// commit asks the filesystem to apply the session; Committed answers.
func (r *Receiver) commit() {
	if r.refused != "" {
		r.result = &wire.Result{Session: r.key.Session, Flags: wire.ResultTruncated, Failed: r.nEntries,
			Failures: []wire.Failure{{Entry: 0, Code: wire.FailNoSpace, Msg: r.refused}}}
		r.send(r.result)
		return
	}
	if !r.layout {
		return
	}
	r.effect(Effect{Kind: EffectCommit})
}

// Each calls fn for every entry of the session in order, with whether it
// changes something, needs content, has its content staged, and its
// failure so far. The commit effect walks the session with it.
func (r *Receiver) Each(fn func(i int, e *wire.Entry, st EntryState) bool) {
	var w wire.Entry
	for _, p := range r.parts {
		for k := range p.entries {
			e := &p.entries[k]
			w = e.wire()
			if !fn(int(e.index), &w, EntryState{Change: e.change, Data: e.data, Done: e.done, Applied: e.applied, Fail: e.failure()}) {
				return
			}
		}
	}
}

// Lookup returns entry i of the session, as offered, and its state.
func (r *Receiver) Lookup(i int) (wire.Entry, EntryState, bool) {
	e := r.entry(i)
	if e == nil {
		return wire.Entry{}, EntryState{}, false
	}
	return e.wire(), EntryState{Change: e.change, Data: e.data, Done: e.done, Applied: e.applied, Fail: e.failure()}, true
}

// EntryState is what the session knows of one entry.
type EntryState struct {
	Change, Data, Done, Applied bool
	Fail                        *wire.Failure
}

// Committed builds the session's result once the commit effect ran:
// deleted lists the paths a mirror deleted (or would, for a dry run).
func (r *Receiver) Committed(deleted []string) *Ready {
	r.ready.reset()
	if r.result != nil || !r.layout {
		return &r.ready
	}
	res := &wire.Result{Session: r.key.Session}
	apply := r.applying()
	for _, p := range r.parts {
		for k := range p.entries {
			e := &p.entries[k]
			switch {
			case e.failure() != nil:
				res.Failed++
				f := *e.failure()
				f.Entry = e.index
				res.Failures = append(res.Failures, f)
			case e.applied:
				res.Applied++
			case apply && e.data && e.blocks > 0 && !e.done:
				res.Failed++
				res.Failures = append(res.Failures, wire.Failure{Entry: e.index, Code: wire.FailIO, Msg: "content incomplete"})
			}
		}
	}
	res.DeleteCount = uint32(len(deleted))
	res.Deleted = deleted
	fitResult(res, r.room)
	r.result = res
	r.send(res)
	// The session stays a while to answer a repeated commit; the result is
	// all it needs for that.
	r.release()
	return &r.ready
}

// fitResult trims the lists of res so that it fits room bytes.
func fitResult(res *wire.Result, room int) {
	for len(res.AppendPayload(nil)) > room {
		res.Flags |= wire.ResultTruncated
		switch {
		case len(res.Deleted) > 0:
			res.Deleted = res.Deleted[:len(res.Deleted)/2]
		case len(res.Failures) > 0:
			res.Failures = res.Failures[:len(res.Failures)/2]
		default:
			return
		}
	}
}
