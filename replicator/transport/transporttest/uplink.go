package transporttest

import (
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// Uplink is a member's egress bottleneck, as a tbf qdisc on its interface
// makes one: its datagrams leave one after the other at Rate bits per
// second, wait in a queue of at most Queue bytes meanwhile, and one that
// finds the queue full is dropped (tail drop) before any copy is made. A
// multicast datagram crosses the uplink once, whatever the member count.
// The zero value (or a Rate at or below 0) is no bottleneck.
type Uplink struct {
	Rate  float64
	Queue int
}

// uplinkState is one member's bottleneck and when it is next free.
type uplinkState struct {
	Uplink
	free time.Time
}

// SetUplink gives member id an egress bottleneck (the zero Uplink removes
// it). It applies to datagrams sent from then on.
func (n *Network) SetUplink(id wire.NodeID, u Uplink) {
	if u.Rate <= 0 {
		delete(n.uplinks, id)
		return
	}
	if n.uplinks == nil {
		n.uplinks = make(map[wire.NodeID]*uplinkState)
	}
	n.uplinks[id] = &uplinkState{Uplink: u}
}

// UplinkDrops returns how many datagrams member id's uplink dropped.
func (n *Network) UplinkDrops(id wire.NodeID) uint64 { return n.uplinkDrops[id] }

// depart returns when a datagram of size bytes sent by from at now leaves
// its uplink, or false if the uplink's queue has no room for it.
func (n *Network) depart(now time.Time, from wire.NodeID, size int) (time.Time, bool) {
	u := n.uplinks[from]
	if u == nil {
		return now, true
	}
	start := now
	if u.free.After(now) {
		// The queue holds what leaves between now and free.
		queued := u.free.Sub(now).Seconds() * u.Rate / 8
		if queued+float64(size) > float64(u.Queue) {
			if n.uplinkDrops == nil {
				n.uplinkDrops = make(map[wire.NodeID]uint64)
			}
			n.uplinkDrops[from]++
			return time.Time{}, false
		}
		start = u.free
	}
	u.free = start.Add(time.Duration(float64(size*8) / u.Rate * float64(time.Second)))
	return u.free, true
}
