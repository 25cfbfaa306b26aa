package transport

import (
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

// relayable reports whether a datagram of type t crosses to other
// segments: everything the engine sends, not the transport's own
// messages (peer lists are unicast mode's, hellos and envelopes the
// relays').
func relayable(t wire.Type) bool {
	return t != wire.TypePeers && !relayOwnType(t)
}

// relayOwnType reports whether t is a relays' message: a hello, an
// envelope or an answer batch.
func relayOwnType(t wire.Type) bool {
	return t == wire.TypeRelay || t == wire.TypeRelayHello || t == wire.TypeRelayAnswers
}

// maxRelayed is the largest datagram an envelope can carry: a datagram
// of wire.MaxDatagram less the envelope's header, origin and seal.
func (c *Conn) maxRelayed() int {
	n := wire.MaxDatagram - wire.HeaderLen - wire.RelayOverhead
	if c.aead != nil {
		n -= c.aead.Overhead()
	}
	return n
}

// forwarding reports whether a datagram read on src must be kept raw for
// the other segments: we are the active relay and it came in on our
// group itself (an envelope there is refused in relayable).
func (c *Conn) forwarding(src source) bool {
	return c.rel != nil && src == fromGroup && c.rel.active.Load()
}

// keepRaw copies datagram b into a buffer of the forwarding pool, before
// opening it decrypts it in place.
func (r *relay) keepRaw(b []byte) *[]byte {
	p := r.bufs.Get().(*[]byte)
	*p = append((*p)[:0], b...)
	return p
}

func (r *relay) put(p *[]byte) {
	if p != nil && cap(*p) <= wire.MaxDatagram {
		r.bufs.Put(p)
	}
}

// enqueue hands a datagram to the forwarder, or counts the drop: the read
// loop and the senders must never wait for the inter-segment link.
func (r *relay) enqueue(it relayItem) {
	select {
	case r.q <- it:
	default:
		r.put(it.raw)
		r.met.Drop(metrics.DropRelayQueue)
	}
}

// relayOwn queues a copy of one of our own datagrams for the other
// segments while we are the active relay (the socket filter keeps them
// from coming back to our read loop).
func (c *Conn) relayOwn(t wire.Type, b []byte) {
	if c.rel == nil || !c.rel.active.Load() || !relayable(t) {
		return
	}
	c.rel.enqueue(relayItem{raw: c.rel.keepRaw(b), origin: c.ownOrigin()})
}

// ownOrigin is the address our datagrams come from: where members of
// other segments send their answers.
func (c *Conn) ownOrigin() netip.AddrPort {
	port := c.cfg.Port
	if c.reply != nil {
		port = c.reply.LocalAddr().(*net.UDPAddr).Port
	}
	return netip.AddrPortFrom(c.LocalAddr().WithZone(""), uint16(port))
}

// relayBatch bounds the datagrams the forwarder sends at once: as many
// as one segmented send takes.
const relayBatch = maxSegments

// forwarder is the forwarding goroutine's reused buffers: the envelopes
// of one batch, and the messages that send them.
type forwarder struct {
	items   []relayItem
	bufs    [][]byte
	out, in [][]byte
	msgs    []ipv4.Message
	oob     [][]byte
	// batches are the answers waiting, by where they go; pending counts
	// them, ansB is the buffer a batch is framed in.
	batches map[netip.AddrPort]*answerBatch
	pending int
	ansB    []byte
}

func newForwarder() *forwarder {
	fw := &forwarder{bufs: make([][]byte, relayBatch), msgs: make([]ipv4.Message, relayBatch), oob: make([][]byte, relayBatch),
		batches: map[netip.AddrPort]*answerBatch{}}
	for i := range fw.oob {
		fw.oob[i] = make([]byte, unix.CmsgSpace(2))
	}
	return fw
}

// forward sends first and whatever else the queue holds, up to
// relayBatch datagrams, each in an envelope: those for the other
// segments to every target, those for our group once on it, each set in
// as few segmented sends as the kernel takes.
func (c *Conn) forward(fw *forwarder, first relayItem) {
	r := c.rel
	fw.items = append(fw.items[:0], first)
	for more := true; more && len(fw.items) < relayBatch; {
		select {
		case it := <-r.q:
			fw.items = append(fw.items, it)
		default:
			more = false
		}
	}
	fw.out, fw.in = fw.out[:0], fw.in[:0]
	for i, it := range fw.items {
		if it.answer {
			c.pendAnswer(fw, it)
			continue
		}
		if len(*it.raw) > c.maxRelayed() {
			r.met.Drop(metrics.DropOversize)
			r.put(it.raw)
			continue
		}
		env := &wire.Relay{Origin: it.origin, Inner: *it.raw}
		fw.bufs[i] = c.frame(fw.bufs[i][:0], env.Type(), env.AppendPayload)
		r.put(it.raw)
		if it.in {
			fw.in = append(fw.in, fw.bufs[i])
		} else {
			fw.out = append(fw.out, fw.bufs[i])
		}
	}
	if len(fw.in) > 0 {
		if _, err := c.sendFrames(c.tx, c.dst, fw.in, fw.msgs, fw.oob); err != nil {
			c.cfg.Logger.Debug("relayed datagrams not multicast", "err", err)
		} else {
			r.in.Add(float64(len(fw.in)))
		}
	}
	if len(fw.out) == 0 {
		return
	}
	for _, to := range *r.targets.Load() {
		if _, err := c.sendFrames(r.pc, to, fw.out, fw.msgs, fw.oob); err != nil {
			c.cfg.Logger.Debug("datagrams not relayed", "relay", to, "err", err)
			continue
		}
		r.out.Add(float64(len(fw.out)))
	}
}

// noteRelay takes a relay's hello or envelope, accepted (authentic, not
// a replay) on src. It runs on the read loop.
func (c *Conn) noteRelay(h *wire.Header, payload []byte, from netip.AddrPort, src source, now, at time.Time) {
	met := c.cfg.Metrics
	m, err := wire.ParsePayload(h.Type, payload)
	if err != nil {
		met.Drop(metrics.DropMalformed)
		return
	}
	switch m := m.(type) {
	case *wire.RelayHello:
		switch {
		case src == fromGroup && c.rel == nil:
			// Every member notes its segment's candidates: where its
			// answers to other segments go.
			c.routes.heardHello(h.Node, from, m.Active, now)
		case src == fromGroup:
			if c.rel.heardLocal(h.Node, m, now) {
				c.routes.heardHello(h.Node, from, m.Active, now)
			}
		case src == fromRelay:
			c.rel.heardRemote(from, h.Node, m, now)
		default:
			met.Drop(metrics.DropRelayRefused)
		}
	case *wire.Relay:
		c.unwrap(m, from, src, now, at)
	case *wire.RelayAnswers:
		c.takeAnswers(m, from, src, now, at)
	}
}

// unwrap delivers the datagram an envelope carries as if it came from
// its origin. From another segment's relay (src fromRelay) a datagram
// new to us also goes once on our group, in an envelope of ours; from
// our group it goes nowhere else: a datagram crosses one inter-segment
// hop at most, and the replay filter lets each through once, so it
// cannot loop.
func (c *Conn) unwrap(m *wire.Relay, from netip.AddrPort, src source, now, at time.Time) {
	met := c.cfg.Metrics
	origin := m.Origin
	if !c.fam.v6 {
		origin = netip.AddrPortFrom(origin.Addr().Unmap(), origin.Port())
	}
	if src != fromGroup && src != fromRelay {
		met.Drop(metrics.DropRelayRefused)
		return
	}
	if _, err := c.unicastTo(origin); err != nil || origin.Addr().Zone() != "" {
		met.Drop(metrics.DropRelayRefused)
		return
	}
	var raw *[]byte
	if src == fromRelay {
		raw = c.rel.keepRaw(m.Inner)
	}
	// The inner datagram is opened in place: it must not alias what the
	// envelope was opened into (openBuf, with several keys).
	c.relayBuf = append(c.relayBuf[:0], m.Inner...)
	h, ok := c.acceptDatagram(c.relayBuf, origin, src, now, at, true)
	if ok && h.Type != wire.TypeData {
		// The origin is in another segment: our answers to it may go
		// through the relays (answers.go).
		seg := ""
		if src == fromRelay {
			seg = c.rel.segmentOf(from)
		}
		c.routes.heardRemote(origin, seg, now)
	}
	if raw == nil {
		return
	}
	if ok && relayable(h.Type) {
		c.rel.enqueue(relayItem{raw: raw, origin: origin, in: true})
		return
	}
	c.rel.put(raw)
}
