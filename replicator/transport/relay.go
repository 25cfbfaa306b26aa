package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

// RelayConfig makes a Conn a relay candidate of its segment (see the
// package doc, Relays).
type RelayConfig struct {
	// Segment names this member's segment; every candidate of one
	// segment names the same (wire.CheckSegment).
	Segment string
	// Peers are the relay candidates of the other segments: the address
	// and port of each one's relay socket. Datagrams to the relay socket
	// from any other address are refused.
	Peers []netip.AddrPort
	// Bind is the relay socket's address; default the address the
	// group's datagrams go out from (LocalAddr). Its port is the
	// group's.
	Bind netip.Addr
	// Every is how often a candidate says hello; default 1 s (the
	// heartbeat interval). Missed is how many hellos a candidate may miss
	// before it is taken for gone; default 3.
	Every  time.Duration
	Missed int
	// QueueLen bounds the forwarding queue; default 4096 datagrams. Past
	// it datagrams are dropped and counted (relay_queue_full).
	QueueLen int
	// PeersFile, when set with Reload, is watched (peers.FileWatch,
	// polled every PollEvery, default 10 s): on a change Run calls Reload
	// and lists what it returns instead of Peers. An error (a bad line,
	// with its number) is logged, and the previous list kept.
	PeersFile string
	PollEvery time.Duration
	Reload    func(ctx context.Context) ([]netip.AddrPort, error)
}

// Relay bounds: listed relays of other segments, and candidates heard on
// our own group (past it new ones are refused and counted).
const (
	maxRelayPeers      = 256
	maxLocalCandidates = 64
)

// relay is a candidate's state. The election state is under mu; active
// and targets are read without it by the read loop and the forwarder.
type relay struct {
	cfg  RelayConfig
	self func() wire.NodeID
	met  *metrics.Metrics
	log  *slog.Logger
	// sock is the relay socket: it takes the other segments' hellos and
	// envelopes and sends ours.
	sock *net.UDPConn
	pc   packetConn

	mu sync.Mutex
	// remote holds what each listed relay said last, by its address
	// (the keys are the listed addresses); listedSet is its keys, for
	// the read loop, which must not wait for mu.
	remote    map[netip.AddrPort]*remoteRelay
	listedSet atomic.Pointer[map[netip.AddrPort]bool]
	fam       family
	// local holds our segment's other candidates, by node id.
	local map[wire.NodeID]localCandidate

	// since is when the candidate started: it claims nothing for one
	// life (Missed hellos), so that it has heard its segment's other
	// candidates before it competes with them.
	since   time.Time
	active  atomic.Bool
	targets atomic.Pointer[[]*net.UDPAddr]
	// bySeg is targets by segment: where answers for an origin of that
	// segment go.
	bySeg atomic.Pointer[map[string]netip.AddrPort]
	// out and in count what was forwarded, ansOut and ansIn the answers
	// carried (metrics.Relayed).
	out, in, ansOut, ansIn prometheus.Counter
	// q is the forwarding queue; bufs recycles its buffers.
	q    chan relayItem
	bufs sync.Pool
}

type remoteRelay struct {
	node    wire.NodeID
	segment string
	active  bool
	heard   time.Time
}

type localCandidate struct {
	heard         time.Time
	hears, active bool
}

// relayItem is a datagram to forward: raw to the other segments' relays
// (out), or as an envelope on our group (in). An answer (see
// answers.go) goes in a batch to the active relay of its origin's
// segment (out) or to its origin in ours (in); its origin is the member
// that sent it, to the push's origin.
type relayItem struct {
	raw    *[]byte
	origin netip.AddrPort
	to     netip.AddrPort
	in     bool
	answer bool
}

func newRelay(cfg RelayConfig, fam family, self func() wire.NodeID, met *metrics.Metrics, log *slog.Logger) (*relay, error) {
	if err := wire.CheckSegment(cfg.Segment); err != nil {
		return nil, fmt.Errorf("transport: relay: %w", err)
	}
	if cfg.Every <= 0 {
		cfg.Every = time.Second
	}
	if cfg.Missed <= 0 {
		cfg.Missed = 3
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 4096
	}
	if cfg.PollEvery <= 0 {
		cfg.PollEvery = 10 * time.Second
	}
	r := &relay{cfg: cfg, self: self, met: met, log: log, remote: make(map[netip.AddrPort]*remoteRelay),
		local: make(map[wire.NodeID]localCandidate), q: make(chan relayItem, cfg.QueueLen), fam: fam}
	list, err := r.norm(cfg.Peers)
	if err != nil {
		return nil, err
	}
	r.targets.Store(&[]*net.UDPAddr{})
	r.setPeers(list, time.Now())
	r.bySeg.Store(&map[string]netip.AddrPort{})
	r.out, r.in = met.Relayed.WithLabelValues("out"), met.Relayed.WithLabelValues("in")
	r.ansOut, r.ansIn = met.Relayed.WithLabelValues("answers_out"), met.Relayed.WithLabelValues("answers_in")
	r.bufs.New = func() any { b := make([]byte, 0, 2048); return &b }
	return r, nil
}

// norm checks a list of relay peers and puts their addresses in the form
// the sockets give them.
func (r *relay) norm(peers []netip.AddrPort) ([]netip.AddrPort, error) {
	if len(peers) == 0 || len(peers) > maxRelayPeers {
		return nil, fmt.Errorf("transport: relay: %d relay peers, want 1..%d", len(peers), maxRelayPeers)
	}
	out := make([]netip.AddrPort, 0, len(peers))
	for _, p := range peers {
		a := p.Addr()
		if !r.fam.v6 {
			a = a.Unmap()
		}
		if !a.IsValid() || a.IsMulticast() || a.IsUnspecified() || p.Port() == 0 || a.Is6() != r.fam.v6 {
			return nil, fmt.Errorf("transport: relay peer %v is not a unicast address of the group's family", p)
		}
		out = append(out, netip.AddrPortFrom(a, p.Port()))
	}
	return out, nil
}

// setPeers lists peers (normed) instead of the relays listed so far:
// what a relay still listed said is kept, one no longer listed is
// forgotten (and refused from then on), and the targets follow at once.
// It reports whether the list changed.
func (r *relay) setPeers(peers []netip.AddrPort, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	set := make(map[netip.AddrPort]bool, len(peers))
	for _, p := range peers {
		set[p] = true
	}
	changed := len(set) != len(r.remote)
	for at := range r.remote {
		if !set[at] {
			delete(r.remote, at)
			changed = true
		}
	}
	for at := range set {
		if r.remote[at] == nil {
			r.remote[at] = &remoteRelay{}
			changed = true
		}
	}
	r.listedSet.Store(&set)
	r.retarget(now)
	return changed
}

// listed reports whether from is a listed relay.
func (r *relay) listed(from netip.AddrPort) bool {
	return (*r.listedSet.Load())[from]
}

func (r *relay) life() time.Duration { return time.Duration(r.cfg.Missed) * r.cfg.Every }

// heardLocal notes a hello of a candidate of our segment, heard on our
// group; it reports whether it took it.
func (r *relay) heardLocal(node wire.NodeID, m *wire.RelayHello, now time.Time) bool {
	if m.Segment != r.cfg.Segment {
		// A candidate of another segment on our group: a misconfigured
		// --segment; its hellos must not bend our election.
		r.met.Drop(metrics.DropRelayRefused)
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.local[node]; !ok && len(r.local) >= maxLocalCandidates {
		r.met.Drop(metrics.DropRelayRefused)
		return false
	}
	r.local[node] = localCandidate{heard: now, hears: m.Hears, active: m.Active}
	return true
}

// segmentOf returns the segment the listed relay at from said it is of.
func (r *relay) segmentOf(from netip.AddrPort) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.remote[from]; e != nil {
		return e.segment
	}
	return ""
}

// heardRemote notes a hello of a listed relay of another segment.
func (r *relay) heardRemote(from netip.AddrPort, node wire.NodeID, m *wire.RelayHello, now time.Time) {
	if m.Segment == r.cfg.Segment {
		r.met.Drop(metrics.DropRelayRefused)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.remote[from]
	if e == nil {
		// Listed when the read loop looked, unlisted since.
		return
	}
	changed := e.node != node || e.segment != m.Segment || e.active != m.Active || !r.live(e, now)
	e.node, e.segment, e.active, e.heard = node, m.Segment, m.Active, now
	if changed {
		// At once, not at the next hello: a take-over must not wait.
		r.retarget(now)
	}
}

func (r *relay) live(e *remoteRelay, now time.Time) bool {
	return !e.heard.IsZero() && now.Sub(e.heard) <= r.life()
}

// retarget recomputes where datagrams go: per remote segment, the lowest
// node id of its live relays that say they are active (two may, for a
// hello or so, while one takes over). It reports whether any listed
// relay is live. It holds mu.
func (r *relay) retarget(now time.Time) bool {
	hears := false
	best := map[string]*remoteRelay{}
	bestAt := map[string]netip.AddrPort{}
	for at, e := range r.remote {
		if !r.live(e, now) {
			continue
		}
		hears = true
		if b := best[e.segment]; e.active && (b == nil || e.node < b.node) {
			best[e.segment], bestAt[e.segment] = e, at
		}
	}
	targets := make([]*net.UDPAddr, 0, len(bestAt))
	for _, at := range bestAt {
		targets = append(targets, net.UDPAddrFromAddrPort(at))
	}
	r.targets.Store(&targets)
	r.bySeg.Store(&bestAt)
	return hears
}

// elect recomputes, at now, whether we are our segment's active relay
// and where the other segments' active relays are (retarget), and
// returns the hello to send. A candidate hears the other side if a
// listed relay said hello within Missed hellos; the active one is the
// lowest node id of the live candidates that hear it. An active relay
// yields to a lower one only once that one says it is active: a
// candidate that starts (and claims nothing for a while) must not leave
// the segment without a relay meanwhile.
func (r *relay) elect(now time.Time) *wire.RelayHello {
	r.mu.Lock()
	defer r.mu.Unlock()
	life, self := r.life(), r.self()
	hears := r.retarget(now)
	active := hears && now.Sub(r.since) >= life
	was := r.active.Load()
	for id, lc := range r.local {
		if now.Sub(lc.heard) > life {
			delete(r.local, id)
			continue
		}
		if lc.hears && id < self && (lc.active || !was) {
			active = false
		}
	}
	if was != active {
		r.active.Store(active)
		r.met.RelayActive.Set(map[bool]float64{false: 0, true: 1}[active])
		r.log.Info("relay role changed", "segment", r.cfg.Segment, "active", active, "hears_other_segments", hears)
	}
	return &wire.RelayHello{Segment: r.cfg.Segment, Hears: hears, Active: active}
}

// RelayStatus is what a relay candidate knows of the relays.
type RelayStatus struct {
	Segment string
	// Active says this member is its segment's active relay.
	Active bool
	// Remote lists the listed relays heard lately.
	Remote []RemoteRelay
	// Targets are the other segments' active relays, where this member
	// forwards while it is active.
	Targets []netip.AddrPort
}

// RemoteRelay is one relay of another segment as we heard it.
type RemoteRelay struct {
	Addr    netip.AddrPort
	Node    wire.NodeID
	Segment string
	Active  bool
}

// RelayStatus reports the relay state; ok is false for a Conn that is
// not a relay candidate.
func (c *Conn) RelayStatus() (st RelayStatus, ok bool) {
	r := c.rel
	if r == nil {
		return st, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st = RelayStatus{Segment: r.cfg.Segment, Active: r.active.Load()}
	now := time.Now()
	for at, e := range r.remote {
		if r.live(e, now) {
			st.Remote = append(st.Remote, RemoteRelay{Addr: at, Node: e.node, Segment: e.segment, Active: e.active})
		}
	}
	for _, to := range *r.targets.Load() {
		st.Targets = append(st.Targets, to.AddrPort())
	}
	return st, true
}

// openRelay opens the relay socket, on Bind or the address our multicast
// goes out from, at the group's port.
func (c *Conn) openRelay() error {
	at := c.rel.cfg.Bind
	if !at.IsValid() {
		at = c.local
	}
	if !at.IsValid() {
		return errors.New("transport: no unicast address for the relay socket on the multicast interface (name it with -i)")
	}
	u, err := listenUnicast(c.fam, netip.AddrPortFrom(at, uint16(c.cfg.Port)))
	if err != nil {
		return fmt.Errorf("transport: relay socket: %w", err)
	}
	c.rel.sock, c.rel.pc = u, c.fam.wrap(u)
	if err := c.setBuffers(u); err != nil {
		u.Close()
		return err
	}
	return nil
}

// relayLoop says hello every Every (on the group and to every listed
// relay) and forwards the queue's datagrams, until stop is closed.
// Answers wait in their batches answerDelay at most after the first.
func (c *Conn) relayLoop(stop <-chan struct{}) {
	r := c.rel
	tick := time.NewTicker(r.cfg.Every)
	defer tick.Stop()
	flush := time.NewTimer(answerDelay)
	flush.Stop()
	var due <-chan time.Time
	r.since = time.Now()
	c.hello(r.since)
	fw := newForwarder()
	defer c.flushAnswers(fw)
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			c.hello(time.Now())
		case it := <-r.q:
			c.forward(fw, it)
			if fw.pending > 0 && due == nil {
				flush.Reset(answerDelay)
				due = flush.C
			}
		case <-due:
			due = nil
			c.flushAnswers(fw)
		}
	}
}

// hello runs the election and says its outcome.
func (c *Conn) hello(now time.Time) {
	r := c.rel
	m := r.elect(now)
	b := c.frame(nil, m.Type(), m.AppendPayload)
	if _, err := c.write(c.txUDP, b, c.dst); err != nil {
		c.cfg.Logger.Debug("relay hello not sent to the group", "err", err)
	}
	for at := range *r.listedSet.Load() {
		if _, err := c.write(r.sock, b, net.UDPAddrFromAddrPort(at)); err != nil {
			c.cfg.Logger.Debug("relay hello not sent", "relay", at, "err", err)
		}
	}
}
