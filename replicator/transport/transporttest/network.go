package transporttest

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// Bounds of a Network's pending deliveries. Past either, new copies are
// dropped and counted in LinkStats.Overflow, so that a sender that runs
// away in a simulation shows up in the statistics instead of eating the
// machine's memory. Both are beyond what the receive buffers (16 MiB per
// socket) of a cluster of eight real members hold.
const (
	MaxPending      = 1 << 16
	MaxPendingBytes = 128 << 20
)

// Port is the UDP port of every member's address.
const Port = 5000

// Network is a deterministic in-memory multicast network on a virtual
// clock. The caller drives it from one goroutine: Send and SendTo with the
// current virtual time, Next to take the earliest pending delivery. It
// starts no goroutine, reads no clock and draws its randomness only from
// its seed. It is not safe for concurrent use.
type Network struct {
	fab      fabric
	members  []member // attached, by id
	addrs    map[wire.NodeID]netip.AddrPort
	queue    schedule
	seq      uint64
	bytes    int
	maxCount int
	maxBytes int
	due      []time.Time
	// uplinks are the members' egress bottlenecks (SetUplink), and
	// uplinkDrops what each one's full queue dropped.
	uplinks     map[wire.NodeID]*uplinkState
	uplinkDrops map[wire.NodeID]uint64
}

type member struct {
	id   wire.NodeID
	addr netip.AddrPort
}

// NewNetwork returns an empty network, clean (no faults), whose random
// choices all come from seed.
func NewNetwork(seed uint64) *Network {
	return &Network{
		fab: newFabric(seed, Faults{}), addrs: make(map[wire.NodeID]netip.AddrPort),
		maxCount: MaxPending, maxBytes: MaxPendingBytes,
	}
}

// Attach makes id a live member and returns its address. The first member
// ever attached is 10.0.0.1, the next 10.0.0.2, and so on; a member that
// is attached again after Detach (a restart) keeps its address. Attaching
// a live member changes nothing.
func (n *Network) Attach(id wire.NodeID) netip.AddrPort {
	i, ok := n.find(id)
	if ok {
		return n.members[i].addr
	}
	addr, known := n.addrs[id]
	if !known {
		addr = hostAddr(len(n.addrs)+1, Port)
		n.addrs[id] = addr
	}
	n.members = slices.Insert(n.members, i, member{id: id, addr: addr})
	return addr
}

// Detach makes id a dead member: the deliveries pending for it vanish
// (counted as lost), it sends nothing and is sent nothing until attached
// again. Its own datagrams already in flight still arrive.
func (n *Network) Detach(id wire.NodeID) {
	i, ok := n.find(id)
	if !ok {
		return
	}
	n.members = slices.Delete(n.members, i, i+1)
	n.queue.filter(func(e *entry) bool {
		if e.To != id {
			return false
		}
		n.bytes -= len(e.Datagram)
		n.fab.link(Link{e.From, e.To}).stats.Lost++
		return true
	})
}

// SetDefault sets the faults of every link that has none of its own.
func (n *Network) SetDefault(f Faults) { n.fab.def = f }

// SetLink sets the faults of the directed link from -> to, in place of the
// default.
func (n *Network) SetLink(from, to wire.NodeID, f Faults) { n.fab.setLink(from, to, f) }

// Partition cuts the network into groups: no datagram crosses from one
// group to another. Members named in no group form one more group
// together. It replaces any earlier partition.
func (n *Network) Partition(groups ...[]wire.NodeID) { n.fab.partition(groups) }

// Heal removes the partition; link faults stay.
func (n *Network) Heal() { n.fab.heal() }

// SetLimits replaces MaxPending and MaxPendingBytes for this network
// (values below 1 keep the current bound).
func (n *Network) SetLimits(deliveries, bytes int) {
	if deliveries > 0 {
		n.maxCount = deliveries
	}
	if bytes > 0 {
		n.maxBytes = bytes
	}
}

// Send multicasts datagram from a live member at now: every other live
// member gets its own copy (or two, or none), per the link's faults. The
// sender never gets one, and a dead sender sends nothing. The caller may
// reuse datagram when Send returns.
func (n *Network) Send(now time.Time, from wire.NodeID, datagram []byte) {
	i, ok := n.find(from)
	if !ok {
		return
	}
	src := n.members[i].addr
	at, ok := n.depart(now, from, len(datagram))
	if !ok {
		n.dropAll(from)
		return
	}
	// n.members cannot change during the loop: deliver does not attach or
	// detach.
	for _, m := range n.members {
		if m.id != from {
			n.deliver(at, from, src, m.id, datagram)
		}
	}
}

// dropAll counts a multicast datagram of from that its uplink dropped as
// sent and overflowed on every link it would have crossed.
func (n *Network) dropAll(from wire.NodeID) {
	for _, m := range n.members {
		if m.id != from {
			st := &n.fab.link(Link{from, m.id}).stats
			st.Sent++
			st.Overflow++
		}
	}
}

// SendTo sends datagram from a live member to one member, as a unicast
// answer; a datagram to a dead member is counted as lost.
func (n *Network) SendTo(now time.Time, from, to wire.NodeID, datagram []byte) {
	i, ok := n.find(from)
	if !ok || from == to {
		return
	}
	if _, live := n.find(to); !live {
		st := &n.fab.link(Link{from, to}).stats
		st.Sent++
		st.Lost++
		return
	}
	at, ok := n.depart(now, from, len(datagram))
	if !ok {
		st := &n.fab.link(Link{from, to}).stats
		st.Sent++
		st.Overflow++
		return
	}
	n.deliver(at, from, n.members[i].addr, to, datagram)
}

// Next removes and returns the earliest pending delivery; deliveries due
// at the same time come in the order they were scheduled.
func (n *Network) Next() (Delivery, bool) {
	if len(n.queue) == 0 {
		return Delivery{}, false
	}
	e := n.queue.pop()
	n.bytes -= len(e.Datagram)
	n.fab.link(Link{e.From, e.To}).stats.Delivered++
	return e.Delivery, true
}

// Peek returns the time of the earliest pending delivery.
func (n *Network) Peek() (time.Time, bool) {
	if len(n.queue) == 0 {
		return time.Time{}, false
	}
	return n.queue[0].At, true
}

// Pending returns the number of deliveries not yet taken.
func (n *Network) Pending() int { return len(n.queue) }

// Stats returns the counts of every link that carried a datagram.
func (n *Network) Stats() map[Link]LinkStats { return n.fab.stats() }

func (n *Network) deliver(now time.Time, from wire.NodeID, src netip.AddrPort, to wire.NodeID, datagram []byte) {
	k := Link{from, to}
	n.due = n.fab.route(k, now, n.due[:0])
	for _, at := range n.due {
		if len(n.queue) >= n.maxCount || n.bytes+len(datagram) > n.maxBytes {
			n.fab.link(k).stats.Overflow++
			continue
		}
		n.seq++
		n.bytes += len(datagram)
		n.queue.push(entry{seq: n.seq, Delivery: Delivery{
			At: at, From: from, FromAddr: src, To: to, Datagram: slices.Clone(datagram),
		}})
	}
}

func (n *Network) find(id wire.NodeID) (int, bool) {
	return slices.BinarySearchFunc(n.members, id, func(m member, id wire.NodeID) int { return cmp.Compare(m.id, id) })
}

// hostAddr is the i-th member's address: 10.0.0.i for the first 254.
func hostAddr(i int, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), port)
}

// hostAddr6 is the i-th member's link-local IPv6 address on zone.
func hostAddr6(i int, zone string, port uint16) netip.AddrPort {
	b := [16]byte{0: 0xfe, 1: 0x80, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)}
	return netip.AddrPortFrom(netip.AddrFrom16(b).WithZone(zone), port)
}
