package transport

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

// Answer routes bound what a Conn remembers to route answers through the
// relays: origins heard through an envelope, members heard on the group
// (a candidate's), and candidates of its segment heard saying hello.
const (
	maxAnswerOrigins = 4096
	// answerDelay bounds how long a relay holds an answer for others to
	// share its datagram: short beside a repair round trip.
	answerDelay = time.Millisecond
)

// answerRoutes is what a Conn knows to send its answers to origins of
// other segments through its segment's active relay, and, on a relay,
// where the answers it carries may go. It is filled by the read loop and
// read by senders and the relay's forwarder, under mu.
type answerRoutes struct {
	life time.Duration
	mu   sync.Mutex
	// remote holds the origins whose datagrams came in an envelope: they
	// are in another segment, whose name the relay that carried them
	// said (none when the envelope came on our group).
	remote map[netip.AddrPort]remoteOrigin
	// local holds, on a relay candidate, the addresses heard on its
	// group itself: the members of its segment, where it delivers.
	local map[netip.AddrPort]time.Time
	// relays holds our segment's candidates heard on our group, by node.
	relays map[wire.NodeID]segRelay
}

type remoteOrigin struct {
	segment string
	heard   time.Time
}

type segRelay struct {
	addr   netip.AddrPort
	active bool
	heard  time.Time
}

func newAnswerRoutes(life time.Duration) answerRoutes {
	return answerRoutes{life: life, remote: map[netip.AddrPort]remoteOrigin{},
		local: map[netip.AddrPort]time.Time{}, relays: map[wire.NodeID]segRelay{}}
}

// room makes room for one more key in m, dropping what is older than
// life; it reports whether there is room.
func room[V any](m map[netip.AddrPort]V, heard func(V) time.Time, life time.Duration, now time.Time) bool {
	if len(m) < maxAnswerOrigins {
		return true
	}
	for k, v := range m {
		if now.Sub(heard(v)) > life {
			delete(m, k)
		}
	}
	return len(m) < maxAnswerOrigins
}

// heardRemote notes an origin heard through an envelope; segment is ""
// where the envelope came on our group. A name once known is kept.
func (a *answerRoutes) heardRemote(origin netip.AddrPort, segment string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.remote[origin]
	if !ok && !room(a.remote, func(o remoteOrigin) time.Time { return o.heard }, a.life, now) {
		return
	}
	if segment != "" {
		e.segment = segment
	}
	e.heard = now
	a.remote[origin] = e
}

// remoteOf reports whether to is an origin of another segment heard
// lately, and the segment's name if known.
func (a *answerRoutes) remoteOf(to netip.AddrPort, now time.Time) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.remote[to]
	if !ok || now.Sub(e.heard) > a.life {
		return "", false
	}
	return e.segment, true
}

// heardLocal notes a member heard on our group itself (a candidate's).
func (a *answerRoutes) heardLocal(from netip.AddrPort, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.local[from]; ok || room(a.local, func(t time.Time) time.Time { return t }, a.life, now) {
		a.local[from] = now
	}
}

func (a *answerRoutes) isLocal(addr netip.AddrPort, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.local[addr]
	return ok && now.Sub(t) <= a.life
}

// heardHello notes a candidate of our segment, heard on our group from
// from (the socket it sends from, where it takes answers).
func (a *answerRoutes) heardHello(node wire.NodeID, from netip.AddrPort, active bool, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.relays[node]; !ok && len(a.relays) >= maxLocalCandidates {
		for id, r := range a.relays {
			if now.Sub(r.heard) > a.life {
				delete(a.relays, id)
			}
		}
		if len(a.relays) >= maxLocalCandidates {
			return
		}
	}
	a.relays[node] = segRelay{addr: from, active: active, heard: now}
}

// activeRelay returns our segment's active relay: of the live candidates
// that say so, the lowest node id (two may, for a hello, in a
// take-over). One that sends from the group's port (it runs with
// MulticastReplies) takes no answers there: its port is its relay
// socket's, which takes the listed relays alone.
func (a *answerRoutes) activeRelay(groupPort uint16, now time.Time) (netip.AddrPort, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var best wire.NodeID
	var at netip.AddrPort
	for id, r := range a.relays {
		if r.active && now.Sub(r.heard) <= a.life && r.addr.Port() != groupPort && (best == 0 || id < best) {
			best, at = id, r.addr
		}
	}
	return at, best != 0
}

// isCandidate reports whether from is a candidate of our segment heard
// lately: the only senders an origin takes answer batches from.
func (a *answerRoutes) isCandidate(from netip.AddrPort, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.relays {
		if r.addr == from && now.Sub(r.heard) <= a.life {
			return true
		}
	}
	return false
}

// sendViaRelay sends answer m for the origin at to through the relays if
// to is an origin of another segment and our segment has an active relay
// (we may be it); it reports whether it did. Otherwise the caller sends
// it straight to the origin, as without relays.
func (c *Conn) sendViaRelay(m wire.Message, to netip.AddrPort) (bool, error) {
	if !c.mcast || c.cfg.Peers != nil || c.reply == nil {
		return false, nil
	}
	now := time.Now()
	if _, ok := c.routes.remoteOf(to, now); !ok {
		return false, nil
	}
	self := c.rel != nil && c.rel.active.Load()
	var relay netip.AddrPort
	if !self {
		var ok bool
		if relay, ok = c.routes.activeRelay(uint16(c.cfg.Port), now); !ok {
			return false, nil
		}
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	inner, err := c.frameOne(m)
	if err != nil {
		return false, err
	}
	if len(inner)+wire.AnswerOverhead > c.maxAnswer() {
		return false, nil
	}
	if self {
		c.rel.enqueue(relayItem{raw: c.rel.keepRaw(inner), origin: c.ownOrigin(), to: to, answer: true})
		return true, nil
	}
	// From is left out: the relay takes it from the datagram's source,
	// which is where the origin hears us from.
	batch := &wire.RelayAnswers{Answers: []wire.Answer{{To: to, Inner: inner}}}
	c.ansB = c.frame(c.ansB[:0], batch.Type(), batch.AppendPayload)
	if _, err := c.write(c.txUDP, c.ansB, net.UDPAddrFromAddrPort(relay)); err != nil {
		return true, err
	}
	return true, nil
}

// maxAnswer is the room for answers in a batch: a datagram of our size
// less the batch's header, count and seal.
func (c *Conn) maxAnswer() int {
	n := c.cfg.MaxDatagram - wire.HeaderLen - 2
	if c.aead != nil {
		n -= c.aead.Overhead()
	}
	return n
}

// takeAnswers handles an answer batch, authentic and new, read on src
// from from. Three hops send one:
//   - a member to its segment's active relay (the answers name no From:
//     the member is the datagram's source), which must be active, have
//     heard the member on its group, and queues each answer toward the
//     segment of its origin;
//   - a relay to the active relay of the origin's segment, on the relay
//     socket (a listed relay, checked in accept), which delivers each
//     answer to its origin, heard on its group, or to itself;
//   - that relay to the origin (the answers name their From), which
//     takes them from a candidate of its segment heard on its group.
//
// Anything else is refused (relay_refused), and an answer without a
// route is dropped (relay_no_route): nothing goes where no relay was
// heard, and a batch never grows on its way.
func (c *Conn) takeAnswers(m *wire.RelayAnswers, from netip.AddrPort, src source, now, at time.Time) {
	met := c.cfg.Metrics
	named := m.Answers[0].From.Port() != 0
	for _, a := range m.Answers[1:] {
		if (a.From.Port() != 0) != named {
			met.Drop(metrics.DropRelayRefused)
			return
		}
	}
	switch {
	case src == fromRelay && named:
		for i := range m.Answers {
			c.deliverAnswer(&m.Answers[i], src, now, at)
		}
	case src == fromReply && !named && c.rel != nil && c.rel.active.Load() && c.routes.isLocal(from, now):
		for _, a := range m.Answers {
			c.rel.enqueue(relayItem{raw: c.rel.keepRaw(a.Inner), origin: from, to: c.unmap(a.To), answer: true})
		}
	case src == fromReply && named && c.routes.isCandidate(from, now):
		for _, a := range m.Answers {
			c.acceptAnswer(&a, src, now, at)
		}
	default:
		met.Drop(metrics.DropRelayRefused)
	}
}

// deliverAnswer takes one answer another segment's relay carried: ours
// if we are its origin, else queued for its origin in our segment.
func (c *Conn) deliverAnswer(a *wire.Answer, src source, now, at time.Time) {
	to := c.unmap(a.To)
	switch {
	case to == c.ownOrigin():
		c.rel.ansIn.Inc()
		c.acceptAnswer(a, src, now, at)
	case c.routes.isLocal(to, now):
		c.rel.enqueue(relayItem{raw: c.rel.keepRaw(a.Inner), origin: c.unmap(a.From), to: to, answer: true, in: true})
	default:
		c.cfg.Metrics.Drop(metrics.DropRelayNoRoute)
	}
}

// acceptAnswer takes an answer addressed to us as if it came from its
// member, checked as any datagram is (seal, replay filter). It is opened
// in a copy: in place it could overwrite the batch's other answers.
func (c *Conn) acceptAnswer(a *wire.Answer, src source, now, at time.Time) {
	from := c.unmap(a.From)
	if _, err := c.unicastTo(from); err != nil || from.Addr().Zone() != "" {
		c.cfg.Metrics.Drop(metrics.DropRelayRefused)
		return
	}
	c.relayBuf = append(c.relayBuf[:0], a.Inner...)
	c.acceptDatagram(c.relayBuf, from, src, now, at, true)
}

// unmap puts an address in the form the sockets give ours: IPv4 ones
// unmapped in an IPv4 group.
func (c *Conn) unmap(ap netip.AddrPort) netip.AddrPort {
	if c.fam.v6 {
		return ap
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
