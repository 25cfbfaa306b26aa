package session

import (
	"fmt"
	"slices"
	"sort"

	"github.com/makuo/makuo/replicator/wire"
)

// offer records a new offer and asks for decisions on its entries, or
// answers a repeated one with the same Need.
func (r *Receiver) offer(o *wire.Offer) {
	if o.Entries != r.nEntries || o.BlockSize != uint32(r.blockSize) || o.Count != r.nOffers || o.Flags != r.flags {
		r.ready.Dropped = DropMalformed
		return
	}
	if r.refused != "" {
		r.send(wire.NewNeed(r.key.Session, o.Index, len(o.Items)))
		return
	}
	k := sort.Search(len(r.parts), func(k int) bool { return r.parts[k].first >= o.First })
	if k < len(r.parts) && r.parts[k].first == o.First && (len(o.Items) > 0 || r.parts[k].index == o.Index) {
		// A repeated offer (our Need was lost): the same answer again.
		if p := r.parts[k]; p.index == o.Index && p.need != nil && len(p.entries) == len(o.Items) {
			r.send(p.need)
		} else if p.index != o.Index || len(p.entries) != len(o.Items) {
			r.ready.Dropped = DropMalformed
		}
		return
	}
	end := uint64(o.First) + uint64(len(o.Items))
	overlaps := (k > 0 && uint64(r.parts[k-1].first)+uint64(len(r.parts[k-1].entries)) > uint64(o.First)) ||
		(k < len(r.parts) && uint64(r.parts[k].first) < end)
	if overlaps || (len(o.Items) == 0 && r.nEntries != 0) || slices.ContainsFunc(r.parts, func(p *part) bool { return p.index == o.Index }) {
		r.ready.Dropped = DropMalformed
		return
	}
	cost := int64(0)
	for i := range o.Items {
		e := &o.Items[i]
		cost += entryCost + int64(len(e.Path)+len(e.Target)+len(e.Basis))
	}
	if !r.budget.take(cost) {
		r.refuse(fmt.Sprintf("offer past this member's session memory (%d MiB): push fewer paths at once", r.budget.limit>>20))
		r.ready.Dropped = DropMemory
		r.send(wire.NewNeed(r.key.Session, o.Index, len(o.Items)))
		return
	}
	r.charged += cost
	if o.Index == 0 {
		r.excludes = o.Excludes
	}
	p := &part{index: o.Index, first: o.First, entries: make([]entry, len(o.Items))}
	for i := range o.Items {
		p.entries[i] = newEntry(&o.Items[i], int(o.First)+i)
	}
	r.parts = slices.Insert(r.parts, k, p)
	r.held += uint32(len(o.Items))
	if len(o.Items) == 0 {
		r.decided(p, nil, 0)
		return
	}
	r.effect(Effect{Kind: EffectDecide, Entry: int(o.First), Items: o.Items})
}

// refuse gives up taking part: the member answers without needing
// anything and reports why at commit.
func (r *Receiver) refuse(why string) {
	r.refused = why
	r.release()
}

// Decided records the filesystem's decisions on the entries of the offer
// starting at entry first, answers the offer, and once every offer is in
// lays out the blocks (free is the free space, in bytes, for content).
func (r *Receiver) Decided(first int, ds []Decision, free uint64) *Ready {
	r.ready.reset()
	k := sort.Search(len(r.parts), func(k int) bool { return r.parts[k].first >= uint32(first) })
	if k == len(r.parts) || int(r.parts[k].first) != first || len(ds) != len(r.parts[k].entries) {
		return &r.ready
	}
	r.decided(r.parts[k], ds, free)
	return &r.ready
}

func (r *Receiver) decided(p *part, ds []Decision, free uint64) {
	need := wire.NewNeed(r.key.Session, p.index, len(p.entries))
	for i, d := range ds {
		e := &p.entries[i]
		e.change, e.data, e.basis = d.Change, d.Data && e.Kind == wire.KindFile, d.Basis
		e.setFail(d.Fail)
		if d.Fail != nil {
			e.change, e.data = true, false
		}
		if e.change {
			wire.Set(need.Change, i)
		}
		if d.Items != 0 && e.change {
			if need.Items == nil {
				need.Items = make([]wire.ItemFlags, len(p.entries))
			}
			need.Items[i] = d.Items
		}
		if e.data {
			wire.Set(need.Data, i)
			if e.basis {
				wire.Set(need.Basis, i)
			}
		}
	}
	p.need = need
	r.send(need)
	if !r.freeKnown {
		// Free space before this session wrote anything: later answers
		// would count its own temp files against it.
		r.free, r.freeKnown = free, true
	}
	r.lay()
}

// lay assigns blocks to the entries of the decided offers that follow the
// ones laid already, so that data for them can come in while later offers
// are still being decided; the layout is complete once every offer is in.
// A file that cannot fit in the free space fails now with a clear reason,
// so an offer cannot make this member reserve state for more content than
// its disk could take.
func (r *Receiver) lay() {
	for r.laidParts < len(r.parts) {
		p := r.parts[r.laidParts]
		if p.first != r.laidTo || p.need == nil {
			break
		}
		for i := range p.entries {
			r.layEntry(&p.entries[i])
		}
		r.laidParts++
		r.laidTo += uint32(len(p.entries))
	}
	r.layout = r.laidTo == r.nEntries && uint32(r.laidParts) == r.nOffers
}

func (r *Receiver) layEntry(e *entry) {
	if e.Kind != wire.KindFile {
		return
	}
	e.first = r.total
	e.blocks = blocksOf(e.Size, r.blockSize)
	r.total += blockBudget(e.Size, r.blockSize)
	if !e.data || e.failure() != nil || !r.applying() {
		return
	}
	if e.Size > r.free-r.reserved {
		e.setFail(&wire.Failure{Code: wire.FailNoSpace, Msg: fmt.Sprintf("%d bytes needed, %d free", r.reserved+e.Size, r.free)})
		return
	}
	r.reserved += e.Size
	if e.blocks > 0 {
		r.order = append(r.order, e)
		r.pending++
	}
}
