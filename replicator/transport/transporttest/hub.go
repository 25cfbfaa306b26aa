package transporttest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/replicator/wire"
)

// Defaults and bounds of a HubConn, the same as a transport.Conn's
// defaults: a receiver overruns here where a real one would.
const (
	// DefaultMaxDatagram is the datagram size of Hub.Conn(id, 0): a
	// 1500-byte MTU's UDP payload.
	DefaultMaxDatagram = 1472
	// QueueLen is the length of a HubConn's Packets queue.
	QueueLen = 2048
	// InboxBytes bounds the datagrams that have arrived for a HubConn and
	// wait for its Run loop, like a socket's receive buffer; past it
	// arrivals are dropped and counted in LinkStats.Overflow.
	InboxBytes = 16 << 20
)

// Hub is a small live multicast network inside one process: conns made
// with Conn exchange datagrams in real time, with the faults of a Network
// applied by a seeded random source under a mutex. Unlike Network it is
// not deterministic (goroutines and the clock decide the interleaving); it
// is for running real engines against each other. Its methods are safe
// for concurrent use.
type Hub struct {
	mu           sync.Mutex
	fab          fabric
	conns        []*HubConn // open, in creation order
	addrs        map[wire.NodeID]netip.AddrPort
	zone6        string // UseIPv6's zone; "" for IPv4 addresses
	incarnations uint64
	seq          uint64
	due          []time.Time
}

// NewHub returns a hub whose links have faults by default.
func NewHub(seed uint64, faults Faults) *Hub {
	return &Hub{fab: newFabric(seed, faults), addrs: make(map[wire.NodeID]netip.AddrPort)}
}

// Conn opens a member's endpoint on the hub, sending datagrams of at most
// maxDatagram bytes (0: DefaultMaxDatagram; else 512 to wire.MaxDatagram,
// as for transport.Config.MaxDatagram). Each conn of an id gets a higher
// incarnation than the one before (a restart), and keeps the id's address
// (10.0.0.N:5000, N in order of first appearance; [fe80::N%zone]:5000
// after UseIPv6). It receives from the moment it is opened; Run hands the
// datagrams to Packets.
func (h *Hub) Conn(id wire.NodeID, maxDatagram int) (*HubConn, error) {
	if maxDatagram == 0 {
		maxDatagram = DefaultMaxDatagram
	}
	if maxDatagram < 512 || maxDatagram > wire.MaxDatagram {
		return nil, fmt.Errorf("transporttest: datagram size %d outside 512..%d", maxDatagram, wire.MaxDatagram)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	addr, ok := h.addrs[id]
	if !ok {
		addr = hostAddr(len(h.addrs)+1, Port)
		if h.zone6 != "" {
			addr = hostAddr6(len(h.addrs)+1, h.zone6, Port)
		}
		h.addrs[id] = addr
	}
	h.incarnations++
	c := &HubConn{
		hub: h, id: id, incarnation: h.incarnations, addr: addr, maxDatagram: maxDatagram,
		out: make(chan *transport.Packet, QueueLen), wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	h.conns = append(h.conns, c)
	return c, nil
}

// UseIPv6 gives the ids that join from now on link-local IPv6 addresses
// with zone (fe80::N%zone), as members of a link-local IPv6 group see
// each other: answers by SendTo must then keep the zone.
func (h *Hub) UseIPv6(zone string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.zone6 = zone
}

// SetLink sets the faults of the directed link from -> to, in place of the
// hub's default.
func (h *Hub) SetLink(from, to wire.NodeID, f Faults) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fab.setLink(from, to, f)
}

// Partition cuts the hub into groups, as Network.Partition.
func (h *Hub) Partition(groups ...[]wire.NodeID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fab.partition(groups)
}

// Heal removes the partition.
func (h *Hub) Heal() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fab.heal()
}

// Stats returns the counts of every link that carried a datagram. A copy
// is delivered when its receiver's Run loop takes it; what the receiver
// then drops is in its ConnStats.
func (h *Hub) Stats() map[Link]LinkStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.fab.stats()
}

// send multicasts one framed datagram from c to every other open conn.
func (h *Hub) send(c *HubConn, b []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	for _, r := range h.conns {
		// Own datagrams are never delivered back, to any conn of the id:
		// the real Conn filters them by node id.
		if r.id != c.id {
			h.deliver(c, r, b, now)
		}
	}
}

// sendTo unicasts one framed datagram from c to the open conn whose
// address is to; to an address no open conn has, it is lost.
func (h *Hub) sendTo(c *HubConn, to netip.AddrPort, b []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.conns {
		if r.addr == to && r.id != c.id {
			h.deliver(c, r, b, time.Now())
			return
		}
	}
}

// deliver routes a copy of b from c to r over their link's faults. The
// hub's mutex is held.
func (h *Hub) deliver(c, r *HubConn, b []byte, now time.Time) {
	k := Link{c.id, r.id}
	h.due = h.fab.route(k, now, h.due[:0])
	for _, at := range h.due {
		h.seq++
		e := entry{seq: h.seq, Delivery: Delivery{At: at, From: c.id, FromAddr: c.addr, To: r.id, Datagram: append([]byte(nil), b...)}}
		if !r.arrive(e) {
			h.fab.link(k).stats.Overflow++
		}
	}
}

func (h *Hub) remove(c *HubConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, o := range h.conns {
		if o == c {
			h.conns = slices.Delete(h.conns, i, i+1)
			break
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.inbox {
		h.fab.link(Link{e.From, e.To}).stats.Lost++
	}
	c.inbox, c.inboxBytes = nil, 0
}

func (h *Hub) delivered(batch []entry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range batch {
		h.fab.link(Link{batch[i].From, batch[i].To}).stats.Delivered++
	}
}

// HubConn is one member's endpoint on a Hub, with the method set and the
// behaviour of transport.Conn: datagrams framed with a wire header (node
// id, incarnation, increasing seq), never delivered back to their sender,
// filtered for replays, and handed over in a bounded queue whose last
// eighth is kept for control messages. It does not seal: its datagrams
// never leave the process.
type HubConn struct {
	hub         *Hub
	id          wire.NodeID
	incarnation uint64
	addr        netip.AddrPort
	maxDatagram int
	out         chan *transport.Packet
	deliver     func(*transport.Packet)
	wake        chan struct{}
	done        chan struct{}
	closed      atomic.Bool
	running     atomic.Bool
	// sendMu keeps sequence numbers in the order datagrams enter the hub.
	sendMu sync.Mutex
	seq    uint64
	// mu guards the inbox: arrived datagrams waiting for their time and
	// for Run.
	mu         sync.Mutex
	inbox      schedule
	inboxBytes int
	batch      []entry // Run's scratch
	stats      connCounters
}

var _ Conn = (*HubConn)(nil)

// ConnStats counts what a HubConn's receive side did with the datagrams
// that reached it, as transport.Conn's metrics do.
type ConnStats struct {
	Received  uint64 // datagrams that reached Run (the real Conn's DatagramsReceived)
	Queued    uint64 // handed to Packets
	QueueFull uint64 // dropped: Packets full, or its last eighth for data
	Replayed  uint64 // dropped by the replay filter (duplicates)
	Malformed uint64 // dropped: no valid header
}

type connCounters struct {
	received, queued, queueFull, replayed, malformed atomic.Uint64
}

// ID returns the member's node id.
func (c *HubConn) ID() wire.NodeID { return c.id }

// Stats returns the receive side's counts.
func (c *HubConn) Stats() ConnStats {
	return ConnStats{
		Received: c.stats.received.Load(), Queued: c.stats.queued.Load(), QueueFull: c.stats.queueFull.Load(),
		Replayed: c.stats.replayed.Load(), Malformed: c.stats.malformed.Load(),
	}
}

// LocalAddr returns the member's address on the hub.
func (c *HubConn) LocalAddr() netip.Addr { return c.addr.Addr() }

// MaxPayload is the largest payload SendBatch accepts.
func (c *HubConn) MaxPayload() int { return c.maxDatagram - wire.HeaderLen }

// Packets returns the queue of accepted datagrams. It is closed when Run
// returns. Release on its packets is a no-op.
func (c *HubConn) Packets() <-chan *transport.Packet { return c.out }

// Deliver implements transport.Link: Run calls f for each accepted
// datagram, one at a time.
func (c *HubConn) Deliver(f func(*transport.Packet)) { c.deliver = f }

// Send frames and multicasts one message; like transport.Conn.Send it
// accepts messages past MaxPayload, up to wire.MaxDatagram.
func (c *HubConn) Send(m wire.Message) error {
	_, err := c.SendN(m)
	return err
}

// SendN is Send that also returns the bytes written.
func (c *HubConn) SendN(m wire.Message) (int, error) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	b := c.frame(m)
	if len(b) > wire.MaxDatagram {
		return 0, fmt.Errorf("transporttest: %v datagram of %d bytes exceeds %d", m.Type(), len(b), wire.MaxDatagram)
	}
	if c.closed.Load() {
		return 0, fmt.Errorf("transporttest: send %v: %w", m.Type(), net.ErrClosed)
	}
	c.hub.send(c, b)
	return len(b), nil
}

// SendBatch frames and multicasts msgs in order and returns the bytes
// written. A message past MaxPayload fails the whole batch before any of
// it is sent.
func (c *HubConn) SendBatch(msgs []wire.Message) (int, error) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	frames := make([][]byte, len(msgs))
	for i, m := range msgs {
		frames[i] = c.frame(m)
		if len(frames[i]) > c.maxDatagram {
			return 0, fmt.Errorf("transporttest: %v datagram of %d bytes exceeds %d", m.Type(), len(frames[i]), c.maxDatagram)
		}
	}
	if c.closed.Load() {
		return 0, fmt.Errorf("transporttest: send batch: %w", net.ErrClosed)
	}
	total := 0
	for _, b := range frames {
		c.hub.send(c, b)
		total += len(b)
	}
	return total, nil
}

// SendTo frames and unicasts one message to the conn whose address is
// to, with the faults of the link to it.
func (c *HubConn) SendTo(m wire.Message, to netip.AddrPort) error {
	if !to.IsValid() || to.Addr().IsMulticast() || to.Port() == 0 {
		return fmt.Errorf("transporttest: send %v: %v is not a member's unicast address", m.Type(), to)
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	b := c.frame(m)
	if len(b) > wire.MaxDatagram {
		return fmt.Errorf("transporttest: %v datagram of %d bytes exceeds %d", m.Type(), len(b), wire.MaxDatagram)
	}
	if c.closed.Load() {
		return fmt.Errorf("transporttest: send %v: %w", m.Type(), net.ErrClosed)
	}
	c.hub.sendTo(c, to, b)
	return nil
}

// UnicastReplies is true: a conn takes datagrams sent to its address.
func (c *HubConn) UnicastReplies() bool { return true }

func (c *HubConn) frame(m wire.Message) []byte {
	c.seq++
	return wire.Append(nil, wire.Header{Node: c.id, Incarnation: c.incarnation, Seq: c.seq}, m)
}

// Run hands arrived datagrams to Packets at their due time until ctx ends
// or Close is called, then closes Packets. It returns nil then; it may
// be called once.
func (c *HubConn) Run(ctx context.Context) error {
	if c.running.Swap(true) {
		return errors.New("transporttest: Run called twice")
	}
	defer close(c.out)
	replay := transport.NewReplayFilter(false)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if wait, ok := c.takeDue(replay); ok {
			timer.Reset(wait)
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			c.Close()
			return nil
		case <-c.done:
			return nil
		case <-c.wake:
		case <-timer.C:
		}
	}
}

// Close detaches the conn from the hub (datagrams still on their way to it
// are lost) and makes Run return. It is safe to call more than once.
func (c *HubConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.hub.remove(c)
	close(c.done)
	return nil
}

// arrive puts a datagram into the inbox, or reports that the inbox is
// full. The hub's mutex is held.
func (c *HubConn) arrive(e entry) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inboxBytes+len(e.Datagram) > InboxBytes {
		return false
	}
	c.inboxBytes += len(e.Datagram)
	c.inbox.push(e)
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

// takeDue accepts every datagram that is due and returns how long until
// the next one is.
func (c *HubConn) takeDue(replay *transport.ReplayFilter) (time.Duration, bool) {
	now := time.Now()
	c.batch = c.batch[:0]
	c.mu.Lock()
	for len(c.inbox) > 0 && !c.inbox[0].At.After(now) {
		e := c.inbox.pop()
		c.inboxBytes -= len(e.Datagram)
		c.batch = append(c.batch, e)
	}
	var wait time.Duration
	pending := len(c.inbox) > 0
	if pending {
		wait = c.inbox[0].At.Sub(now)
	}
	c.mu.Unlock()
	if len(c.batch) > 0 {
		c.hub.delivered(c.batch)
	}
	for i := range c.batch {
		c.accept(&c.batch[i], replay)
		c.batch[i] = entry{}
	}
	return wait, pending
}

// accept checks one datagram and queues it, or counts the drop, in the
// order and by the rules of transport.Conn's read loop.
func (c *HubConn) accept(e *entry, replay *transport.ReplayFilter) {
	c.stats.received.Add(1)
	h, payload, err := wire.ParseHeader(e.Datagram)
	if err != nil || h.Flags&wire.FlagSealed != 0 {
		// The hub has no keys: a sealed datagram cannot be opened.
		c.stats.malformed.Add(1)
		return
	}
	now := time.Now()
	if !replay.Check(&h, e.FromAddr.Addr(), now) {
		c.stats.replayed.Add(1)
		return
	}
	p := &transport.Packet{Header: h, Payload: payload, From: e.FromAddr, At: now}
	if c.deliver != nil {
		c.stats.queued.Add(1)
		c.deliver(p)
		return
	}
	// The last eighth of the queue is kept for control messages, as in
	// transport.Conn.
	if h.Type == wire.TypeData && len(c.out) >= cap(c.out)-cap(c.out)/8 {
		c.stats.queueFull.Add(1)
		return
	}
	// Counted before the hand-over: a reader that took the packet sees
	// it counted.
	c.stats.queued.Add(1)
	select {
	case c.out <- p:
	default:
		c.stats.queued.Add(^uint64(0))
		c.stats.queueFull.Add(1)
	}
}
