package transport

import (
	"net"
	"net/netip"
	"time"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

// relayable reports whether a datagram of type t crosses to other
// segments: everything the engine sends, not the transport's own
// messages (peer lists are unicast mode's, hellos and envelopes the
// relays').
func relayable(t wire.Type) bool {
	return t != wire.TypePeers && t != wire.TypeRelay && t != wire.TypeRelayHello
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

// forward sends one queued datagram in an envelope framed into buf: to
// every other segment's active relay, or once on our group. It returns
// buf for reuse.
func (c *Conn) forward(buf []byte, it relayItem) []byte {
	r := c.rel
	defer r.put(it.raw)
	if len(*it.raw) > c.maxRelayed() {
		r.met.Drop(metrics.DropOversize)
		return buf
	}
	env := &wire.Relay{Origin: it.origin, Inner: *it.raw}
	buf = c.frame(buf, env.Type(), env.AppendPayload)
	if it.in {
		if _, err := c.write(c.txUDP, buf, c.dst); err != nil {
			c.cfg.Logger.Debug("relayed datagram not multicast", "err", err)
			return buf
		}
		r.met.Relayed.WithLabelValues("in").Inc()
		return buf
	}
	for _, to := range *r.targets.Load() {
		if _, err := c.write(r.sock, buf, to); err != nil {
			c.cfg.Logger.Debug("datagram not relayed", "relay", to, "err", err)
			continue
		}
		r.met.Relayed.WithLabelValues("out").Inc()
	}
	return buf
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
		case c.rel == nil:
			// Members that are not candidates hear their segment's
			// hellos on the group, and have no use for them.
		case src == fromGroup:
			c.rel.heardLocal(h.Node, m, now)
		case src == fromRelay:
			c.rel.heardRemote(from, h.Node, m, now)
		default:
			met.Drop(metrics.DropRelayRefused)
		}
	case *wire.Relay:
		c.unwrap(m, src, now, at)
	}
}

// unwrap delivers the datagram an envelope carries as if it came from
// its origin. From another segment's relay (src fromRelay) a datagram
// new to us also goes once on our group, in an envelope of ours; from
// our group it goes nowhere else: a datagram crosses one inter-segment
// hop at most, and the replay filter lets each through once, so it
// cannot loop.
func (c *Conn) unwrap(m *wire.Relay, src source, now, at time.Time) {
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
	if raw == nil {
		return
	}
	if ok && relayable(h.Type) {
		c.rel.enqueue(relayItem{raw: raw, origin: origin, in: true})
		return
	}
	c.rel.put(raw)
}
