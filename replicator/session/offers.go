package session

import "github.com/makuo/makuo/replicator/wire"

// buildOffers packs entries into offers that fit maxPayload each (an entry
// too large for that gets an offer of its own). An offer's Items are a
// window on entries, not a copy: with 100,000 entries a copy is 12 MB.
func buildOffers(base wire.Offer, entries []wire.Entry, excludes []string, maxPayload int) []*wire.Offer {
	base.Entries = uint32(len(entries))
	var offers []*wire.Offer
	var cur *wire.Offer
	size := 0
	for i := range entries {
		el := entries[i].EncodedLen()
		if cur == nil || (len(cur.Items) > 0 && size+el > maxPayload) || len(cur.Items) == 0xffff {
			o := base
			if len(offers) == 0 {
				o.Excludes = excludes
			}
			o.Index, o.First = uint32(len(offers)), uint32(i)
			cur = &o
			offers = append(offers, cur)
			size = cur.HeaderLen()
		}
		cur.Items = entries[cur.First : i+1 : i+1]
		size += el
	}
	if len(offers) == 0 { // an empty push still runs, to learn who is there
		o := base
		o.Excludes = excludes
		offers = append(offers, &o)
	}
	for _, o := range offers {
		o.Count = uint32(len(offers))
	}
	return offers
}
