package transporttest

import (
	"math/rand/v2"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// Faults is what a directed link does to the datagrams sent over it. The
// zero value is a clean link: no loss, no delay, in order. Probabilities
// at or below 0 never happen and at or above 1 always do; negative
// durations count as 0.
type Faults struct {
	// Loss is the probability that a datagram is lost on the link.
	Loss float64
	// Duplicate is the probability that a datagram that is not lost
	// arrives twice; the second copy is delayed on its own.
	Duplicate float64
	// Reorder is the probability that a copy is held back an extra random
	// time in (0, ReorderDelay], so that datagrams sent after it overtake
	// it.
	Reorder float64
	// ReorderDelay bounds the hold-back of a reordered copy; 0 means
	// DefaultReorderDelay.
	ReorderDelay time.Duration
	// Delay is the one-way delay of every copy.
	Delay time.Duration
	// Jitter adds a random delay in [0, Jitter) to every copy. Copies with
	// different jitter may overtake each other, as on a real path.
	Jitter time.Duration
}

// DefaultReorderDelay is the hold-back of a reordered copy when
// Faults.ReorderDelay is 0: long enough for the rest of a send burst to
// overtake the copy, short against the protocol's poll and expiry timers.
const DefaultReorderDelay = 10 * time.Millisecond

// Link is a directed pair of members.
type Link struct {
	From, To wire.NodeID
}

// LinkStats counts the datagrams of one directed link. Every copy ends in
// exactly one of Delivered, Lost and Overflow or is still in flight:
// Sent + Duplicated = Delivered + Lost + Overflow + in flight.
type LinkStats struct {
	Sent       uint64 // datagrams sent over the link
	Delivered  uint64 // copies handed to the receiver
	Lost       uint64 // lost to Faults.Loss, a partition or a dead receiver
	Duplicated uint64 // extra copies made by Faults.Duplicate
	Overflow   uint64 // copies dropped because the network's bound or the sender's uplink queue was full
}

// fabric is the fault model Network and Hub share: faults per directed
// link over a default, an optional partition, and a random stream per
// link. A stream of its own per link means that the fate of the datagrams
// between two members does not depend on traffic elsewhere: adding a
// member or a message to a simulation leaves the other links' draws as
// they were.
type fabric struct {
	seed   uint64
	def    Faults
	faults map[Link]Faults
	// group maps members to their partition group (0: named in none); nil
	// when there is no partition.
	group map[wire.NodeID]int
	links map[Link]*linkState
}

type linkState struct {
	rng   *rand.Rand
	stats LinkStats
}

func newFabric(seed uint64, def Faults) fabric {
	return fabric{seed: seed, def: def, faults: make(map[Link]Faults), links: make(map[Link]*linkState)}
}

func (f *fabric) link(k Link) *linkState {
	ls := f.links[k]
	if ls == nil {
		ls = &linkState{rng: rand.New(rand.NewPCG(f.seed, mix(mix(uint64(k.From))^uint64(k.To))))}
		f.links[k] = ls
	}
	return ls
}

// mix is splitmix64's finalizer: it spreads node ids (often small
// consecutive numbers) over the whole stream-selector space.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func (f *fabric) setLink(from, to wire.NodeID, ft Faults) {
	f.faults[Link{from, to}] = ft
}

// partition replaces any partition by groups; members named in no group
// form one more group together, and a member named twice belongs to the
// last group that names it.
func (f *fabric) partition(groups [][]wire.NodeID) {
	f.group = make(map[wire.NodeID]int)
	for i, g := range groups {
		for _, id := range g {
			f.group[id] = i + 1
		}
	}
}

func (f *fabric) heal() { f.group = nil }

func (f *fabric) cut(k Link) bool {
	return f.group != nil && f.group[k.From] != f.group[k.To]
}

// route decides the fate of one datagram sent over k at now: it appends
// to due the arrival time of each copy to deliver (none if it is lost) and
// counts it. Faults are decided at send time: a change of faults or
// partition affects only datagrams sent after it.
func (f *fabric) route(k Link, now time.Time, due []time.Time) []time.Time {
	ls := f.link(k)
	ls.stats.Sent++
	if f.cut(k) {
		ls.stats.Lost++
		return due
	}
	ft, ok := f.faults[k]
	if !ok {
		ft = f.def
	}
	if chance(ls.rng, ft.Loss) {
		ls.stats.Lost++
		return due
	}
	copies := 1
	if chance(ls.rng, ft.Duplicate) {
		copies = 2
		ls.stats.Duplicated++
	}
	for range copies {
		d := max(ft.Delay, 0)
		if ft.Jitter > 0 {
			d += time.Duration(ls.rng.Int64N(int64(ft.Jitter)))
		}
		if chance(ls.rng, ft.Reorder) {
			hold := ft.ReorderDelay
			if hold <= 0 {
				hold = DefaultReorderDelay
			}
			d += 1 + time.Duration(ls.rng.Int64N(int64(hold)))
		}
		due = append(due, now.Add(d))
	}
	return due
}

// chance draws from r only when p is a real probability, so that a clean
// link costs no draws.
func chance(r *rand.Rand, p float64) bool {
	switch {
	case p <= 0:
		return false
	case p >= 1:
		return true
	}
	return r.Float64() < p
}

func (f *fabric) stats() map[Link]LinkStats {
	out := make(map[Link]LinkStats, len(f.links))
	for k, ls := range f.links {
		out[k] = ls.stats
	}
	return out
}
