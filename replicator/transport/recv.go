package transport

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

// Run reads datagrams until ctx ends, then closes the sockets and the
// Packets channel. It returns nil on cancellation. Besides the read loop
// of each socket it runs one keeper goroutine for the work the read loops
// must not block on (saving the replay state, renewing the node id); the
// replay state is saved once more when the read loops end. In unicast
// mode it also runs the peer table's loop and sends it our peer lists.
func (c *Conn) Run(ctx context.Context) error {
	defer close(c.out)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	keepStop, keepDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(keepDone)
		c.keep(keepStop)
	}()
	defer func() {
		close(keepStop)
		<-keepDone
		if c.persists() {
			c.saveSeen(c.replay.snapshot())
		}
	}()
	if c.cfg.Peers != nil {
		pctx, pcancel := context.WithCancel(ctx)
		peersDone, gossipStop, gossipDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
		go func() {
			defer close(peersDone)
			_ = c.cfg.Peers.Run(pctx)
		}()
		go func() {
			defer close(gossipDone)
			c.gossip(gossipStop)
		}()
		defer func() {
			pcancel()
			close(gossipStop)
			<-peersDone
			<-gossipDone
		}()
	}
	var loops []func()
	if c.replyPC != nil {
		loops = append(loops, func() { c.readLoop(ctx, c.replyPC, fromReply) })
	}
	if c.mcast && c.uniPC != nil {
		loops = append(loops, func() { c.readLoop(ctx, c.uniPC, fromPeers) })
	}
	if c.rel != nil {
		loops = append(loops, func() { c.readLoop(ctx, c.rel.pc, fromRelay) })
		defer c.runRelayPeers(ctx)()
		relayStop, relayDone := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(relayDone)
			c.relayLoop(relayStop)
		}()
		defer func() {
			close(relayStop)
			<-relayDone
		}()
	}
	for _, loop := range loops {
		done := make(chan struct{})
		go func() {
			defer close(done)
			loop()
		}()
		// Either loop ending ends every one: a socket that fails for
		// good leaves the member deaf on it.
		defer func() {
			c.Close()
			<-done
		}()
	}
	if c.mcast {
		c.readLoop(ctx, c.pc, fromGroup)
	} else {
		c.readLoop(ctx, c.pc, fromPeers)
	}
	return nil
}

// source says which socket a datagram came in on.
type source int

const (
	fromGroup source = iota // the group socket
	fromReply               // the reply socket: answers to our sessions
	fromPeers               // unicast mode's socket
	fromRelay               // the relay socket: other segments' relays
)

func (s source) String() string {
	return [...]string{"multicast", "unicast", "peer", "relay"}[s]
}

// readLoop reads one socket until it is closed.
func (c *Conn) readLoop(ctx context.Context, pc packetConn, src source) {
	msgs, free := readMessages()
	defer free()
	for {
		n, err := pc.ReadBatch(msgs, 0)
		if err != nil {
			if ctx.Err() != nil || c.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient errors (ENOBUFS, ICMP-induced errors) must not
			// kill the loop; back off briefly so a persistent one cannot
			// spin.
			c.cfg.Logger.Warn(src.String()+" read failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		now := time.Now()
		c.acceptMu.Lock()
		for i := range msgs[:n] {
			c.acceptRead(&msgs[i], src, now)
		}
		c.snapshotSeen(now)
		c.acceptMu.Unlock()
	}
}

// acceptRead splits one read into its datagrams: several when the kernel
// coalesced them (a UDP_GRO control message gives the segment size; the
// last segment may be shorter).
func (c *Conn) acceptRead(m *ipv4.Message, src source, now time.Time) {
	b := m.Buffers[0][:m.N]
	var from netip.AddrPort
	if ua, ok := m.Addr.(*net.UDPAddr); ok {
		from = ua.AddrPort()
		if !c.fam.v6 {
			from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		}
		if from.Addr().Zone() != "" {
			from = netip.AddrPortFrom(c.zoned(from.Addr()), from.Port())
		}
	}
	if m.Flags&unix.MSG_TRUNC != 0 {
		c.cfg.Metrics.DatagramsReceived.Inc()
		c.cfg.Metrics.BytesReceived.Add(float64(m.N))
		c.cfg.Metrics.Drop(metrics.DropOversize)
		return
	}
	seg, stamp := readControls(m.OOB[:m.NN])
	at := arrival(now, stamp)
	if seg <= 0 || seg >= len(b) {
		c.accept(b, from, src, now, at)
		return
	}
	for len(b) > 0 {
		k := min(seg, len(b))
		c.accept(b[:k], from, src, now, at)
		b = b[k:]
	}
}

// accept checks one datagram read at now on src, which arrived at at,
// and queues it, or counts the drop. The active relay keeps a raw copy of
// what its group brings, for the other segments, if it is accepted.
func (c *Conn) accept(b []byte, from netip.AddrPort, src source, now, at time.Time) {
	if src == fromRelay && !c.rel.listed(from) {
		// Checked before anything costs: the relay socket is for the
		// listed relays alone.
		c.cfg.Metrics.DatagramsReceived.Inc()
		c.cfg.Metrics.BytesReceived.Add(float64(len(b)))
		c.cfg.Metrics.Drop(metrics.DropRelayRefused)
		return
	}
	if !c.forwarding(src) {
		h, ok := c.acceptDatagram(b, from, src, now, at, false)
		c.noteLocal(h, ok, from, src, now)
		return
	}
	raw := c.rel.keepRaw(b)
	h, ok := c.acceptDatagram(b, from, src, now, at, false)
	c.noteLocal(h, ok, from, src, now)
	if ok && relayable(h.Type) {
		c.rel.enqueue(relayItem{raw: raw, origin: from})
		return
	}
	c.rel.put(raw)
}

// noteLocal notes, on a relay candidate, a member heard on the group
// itself: one it may deliver answers to, and take its answers. Data
// datagrams are left out: they are the many, and every member says
// something else (a heartbeat) often enough.
func (c *Conn) noteLocal(h wire.Header, ok bool, from netip.AddrPort, src source, now time.Time) {
	if ok && c.rel != nil && src == fromGroup && h.Type != wire.TypeData {
		c.routes.heardLocal(from, now)
	}
}

// acceptDatagram checks one datagram and queues it, or counts the drop.
// It reports whether the datagram was new and authentic (queued, or
// dropped for a full queue only). A relayed datagram (one an envelope
// carried, from its origin at from) was counted as the envelope.
func (c *Conn) acceptDatagram(b []byte, from netip.AddrPort, src source, now, at time.Time, relayed bool) (wire.Header, bool) {
	met := c.cfg.Metrics
	h, payload, err := wire.ParseHeader(b)
	if err == nil && h.Incarnation == c.cfg.Incarnation && c.isOwn(h.Node) {
		c.ownSeen.Add(1)
		if src == fromPeers {
			// A peer address that is ours (a name listing every
			// member lists us too).
			c.cfg.Peers.Own(from)
		}
		return h, false // our own datagram, looped back
	}
	if !relayed {
		met.DatagramsReceived.Inc()
		met.BytesReceived.Add(float64(len(b)))
	}
	if err != nil {
		if errors.Is(err, wire.ErrVersion) {
			met.Drop(metrics.DropVersion)
		} else {
			met.Drop(metrics.DropMalformed)
		}
		return h, false
	}
	sealed := h.Flags&wire.FlagSealed != 0
	switch {
	case sealed != (c.aead != nil):
		met.Drop(metrics.DropAuth)
		return h, false
	case sealed:
		if len(payload) < c.aead.Overhead() {
			met.Drop(metrics.DropAuth)
			return h, false
		}
		if payload, err = c.openSealed(b, payload); err != nil {
			met.Drop(metrics.DropAuth)
			return h, false
		}
	}
	if (relayed || src == fromRelay) && relayable(h.Type) != relayed {
		// An envelope carries what the engine sends, never an envelope
		// or a hello; the relay socket takes envelopes and hellos only.
		// Refused before the replay filter, so that it costs the
		// sender's window nothing.
		met.Drop(metrics.DropRelayRefused)
		return h, false
	}
	filter := c.replay
	if relayOwnType(h.Type) {
		// A relay's own messages are numbered in its stream as its
		// other datagrams are, but framed when they go, while what they
		// carry waits in relay queues first: in one window, a hello or
		// envelope would put the relay's own relayed datagrams behind
		// it, past the window when the queues are long. Each has a
		// filter of its own.
		filter = c.relayReplay
	}
	if !filter.check(&h, from.Addr(), now) {
		met.Drop(metrics.DropReplay)
		return h, false
	}
	if h.Node == c.Node() {
		// Another daemon with our node id: nothing of it may reach the
		// consumer, which would take it for our own or mix the two up.
		met.Drop(metrics.DropDuplicateID)
		c.clash(&h, from, now)
		return h, false
	}
	if relayOwnType(h.Type) {
		c.noteRelay(&h, payload, from, src, now, at)
		return h, false
	}
	if !relayed && (c.cfg.Peers != nil || h.Type == wire.TypePeers) {
		if c.notePeer(&h, payload, from, src, now) {
			return h, false
		}
	}
	// The last eighth of the queue is kept for control messages: when
	// data overruns a member, the polls that make it report the loss (and
	// slow the sender down) must still get through.
	if c.deliver == nil && h.Type == wire.TypeData && len(c.out) >= cap(c.out)-cap(c.out)/8 {
		met.Drop(metrics.DropQueueFull)
		return h, true
	}
	c.handOver(h, payload, from, at)
	return h, true
}

// handOver copies an accepted datagram's payload into a pooled Packet for
// the consumer: Deliver's function takes it, or the Packets queue, where a
// full queue is a counted drop.
func (c *Conn) handOver(h wire.Header, payload []byte, from netip.AddrPort, at time.Time) {
	class := 0
	for len(payload) > packetSizes[class] {
		class++
	}
	pool := &c.pools[class]
	p := pool.Get().(*Packet)
	p.Header, p.From, p.At, p.pool = h, from, at, pool
	p.Payload = append(p.buf[:0], payload...)
	if c.deliver != nil {
		c.deliver(p)
		return
	}
	select {
	case c.out <- p:
	default:
		p.Release()
		c.cfg.Metrics.Drop(metrics.DropQueueFull)
	}
}

// openSealed authenticates and decrypts the sealed payload of datagram b. With
// one key it decrypts in place; with several it tries each into openBuf,
// since a failed Open wipes its output, which in place is the ciphertext.
func (c *Conn) openSealed(b, payload []byte) ([]byte, error) {
	nonce, ad := b[8:wire.HeaderLen], b[:wire.HeaderLen]
	if len(c.openers) == 1 {
		return c.aead.Open(payload[:0], nonce, payload, ad)
	}
	var err error
	for _, a := range c.openers {
		var out []byte
		if out, err = a.Open(c.openBuf[:0], nonce, payload, ad); err == nil {
			return out, nil
		}
	}
	return nil, err
}

// isOwn reports whether id is ours: the current node id or one we used
// before a renewal.
func (c *Conn) isOwn(id wire.NodeID) bool {
	return id == c.Node() || slices.Contains(*c.past.Load(), id)
}

// clash handles an authentic, fresh datagram that carries our node id
// with another incarnation. Only a heartbeat counts as proof of another
// daemon: every daemon sends one each interval whatever it is doing. The
// daemon with the older incarnation gives way (a deterministic rule both
// sides apply alike): if that is us, the keeper renews our node id; if it
// is the other, it will renew its own when it hears our heartbeat. A
// replay of one of our own earlier heartbeats carries an older
// incarnation, so it never makes us renew.
func (c *Conn) clash(h *wire.Header, from netip.AddrPort, now time.Time) {
	if h.Type != wire.TypeHeartbeat {
		return
	}
	if h.Incarnation > c.cfg.Incarnation && c.cfg.Renew != nil {
		select {
		case c.renewq <- renewal{old: h.Node, incarnation: h.Incarnation, from: from}:
		default: // one is pending already
		}
		return
	}
	if now.Sub(c.clashLogged) < clashLogEvery {
		return
	}
	c.clashLogged = now
	if h.Incarnation > c.cfg.Incarnation {
		c.cfg.Logger.Warn("another daemon uses this node id and has the newer incarnation; give this one a fresh state directory",
			"node", h.Node, "other", from, "other_incarnation", h.Incarnation)
		return
	}
	c.cfg.Logger.Warn("heard this node id from another daemon with an older incarnation (or a replay of an earlier run); that daemon takes a fresh id",
		"node", h.Node, "other", from, "other_incarnation", h.Incarnation)
}

// snapshotSeen hands the replay state to the keeper for saving when it
// changed and the last save is long enough ago (saveEvery, refreshEvery).
// It runs on the read loop: the copy is cheap, the file I/O is not.
func (c *Conn) snapshotSeen(now time.Time) {
	if !c.persists() {
		return
	}
	f := c.replay
	wait := refreshEvery
	switch {
	case f.changed:
		wait = saveEvery
	case !f.moved:
		return
	}
	if now.Sub(c.lastSnap) < wait {
		return
	}
	c.lastSnap = now
	snap := f.snapshot()
	select {
	case c.saveq <- snap:
	default:
		// The keeper is still busy with the previous one: this one is
		// newer, replace it. The read loop is the only sender.
		select {
		case <-c.saveq:
		default:
		}
		select {
		case c.saveq <- snap:
		default:
		}
	}
}

// keep does the read loop's blocking work until stop is closed.
func (c *Conn) keep(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case seen := <-c.saveq:
			c.saveSeen(seen)
		case r := <-c.renewq:
			c.renew(r)
		}
	}
}

func (c *Conn) saveSeen(seen []Seen) {
	if err := c.cfg.Seen.Save(seen); err != nil {
		c.cfg.Logger.Warn("saving the replay state failed; a restart would accept replays it has refused", "err", err)
	}
}

// renew takes a fresh node id because of r, unless an earlier request
// already did.
func (c *Conn) renew(r renewal) {
	old := c.Node()
	if old != r.old {
		return
	}
	id, err := c.cfg.Renew()
	if err == nil && (id == 0 || c.isOwn(id)) {
		err = errors.New("renewal returned a used node id")
	}
	if err != nil {
		c.cfg.Logger.Error("another daemon uses this node id; taking a fresh one failed, keeping it",
			"node", old, "other", r.from, "err", err)
		return
	}
	c.setNode(id)
	c.cfg.Metrics.DuplicateIDs.Inc()
	c.cfg.Logger.Warn("another daemon uses this node id with a newer incarnation (a cloned state directory?); took a fresh node id",
		"old", old, "new", id, "other", r.from, "other_incarnation", r.incarnation)
}

// setNode makes id the node id of our datagrams, keeping the old one
// recognised as ours so that those still in flight are not taken for a
// peer's.
func (c *Conn) setNode(id wire.NodeID) {
	past := append(slices.Clone(*c.past.Load()), c.Node())
	if len(past) > maxPastIDs {
		past = past[len(past)-maxPastIDs:]
	}
	c.past.Store(&past)
	if c.mcast && c.pc != nil {
		c.filterOwn(id)
	}
	c.node.Store(uint64(id))
}
