package peers

import (
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

// Targets is where a datagram meant for every peer goes: one address per
// peer. A Targets is shared and never modified; a change makes a new one.
type Targets struct {
	// Gen grows with every change, so that a user may cache what it
	// derives from Addrs.
	Gen   uint64
	Addrs []netip.AddrPort
}

// Info is what the set knows about one address (Snapshot).
type Info struct {
	Addr netip.AddrPort
	// Node is the member heard from (or named for) the address; 0 while
	// unknown.
	Node wire.NodeID
	// Listed: named by --peer, --peers-file or their DNS answers. Self:
	// our own datagrams came back from it. Target: datagrams for every
	// peer go to it.
	Listed, Self, Target bool
}

// entry is one peer address.
type entry struct {
	node   wire.NodeID
	listed bool
	self   bool
	// heard is when a heartbeat or a peer list last came from the
	// address, life how long it counts as live after that (its member's
	// missed heartbeats); vouched is when it was learned from, or named
	// again in, a live peer's list.
	heard   time.Time
	life    time.Duration
	vouched time.Time
}

// maxInterval clamps a peer's announced heartbeat interval where it sets
// how long its address lives, as membership.MaxInterval does for its
// expiry: one forged heartbeat must not keep an address for weeks.
const maxInterval = time.Minute

// fullLogEvery rate-limits the log line about a full table.
const fullLogEvery = time.Minute

// Set is unicast mode's table of peer addresses: the listed ones, which
// stay, and the learned ones (from heartbeats and peers' lists), which go
// when silent. It is safe for concurrent use; Heard, Gossip, Own and
// HeardOnGroup are called from a read loop and never block.
type Set struct {
	cfg   Config
	fam6  bool
	log   *slog.Logger
	met   *metrics.Metrics
	kick  chan struct{}
	tgt   atomic.Pointer[Targets]
	mu    sync.Mutex
	peers map[netip.AddrPort]*entry
	// learned counts the entries that are not listed (MaxLearned).
	learned int
	// group is when nodes were last heard on the multicast group (mixed
	// mode): they get no unicast copies.
	group      map[wire.NodeID]time.Time
	gen        uint64
	fullLogged time.Time
	src        sources // Run's: the listed specs and their answers
}

// Is6 reports whether the set's peers are IPv6 (else IPv4): every address
// in it is of that family.
func (s *Set) Is6() bool { return s.fam6 }

// Targets returns where a datagram for every peer goes now.
func (s *Set) Targets() *Targets { return s.tgt.Load() }

// Kicked is signalled when an address was added: the owner sends its
// peer list soon, so that the news spreads in a round trip.
func (s *Set) Kicked() <-chan struct{} { return s.kick }

// Known reports whether a is one of the set's addresses.
func (s *Set) Known(a netip.AddrPort) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.peers[a]
	return ok
}

// Heard records a heartbeat (interval is the one it announces) or a
// peer list (interval 0) of node from the address from: a new address is
// learned, unless the table of learned addresses is full (a counted
// drop).
func (s *Set) Heard(node wire.NodeID, from netip.AddrPort, interval time.Duration, now time.Time) {
	from, ok := s.usable(from, from)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.peers[from]
	changed := e == nil || !e.live(now)
	if e == nil {
		if e = s.learn(from, now); e == nil {
			return
		}
	}
	e.heard = now
	if interval > 0 {
		iv := min(max(interval, 10*time.Millisecond), maxInterval)
		e.life = max(s.cfg.Timeout, time.Duration(s.cfg.MissedHeartbeats)*iv+iv/2)
	}
	if e.life == 0 {
		e.life = s.cfg.Timeout
	}
	if e.node != node || e.self {
		e.node, e.self = node, false
		changed = true
	}
	// Most heartbeats change nothing: the rebuild, which walks the
	// table, is for the ones that do (Expire catches addresses that fell
	// silent).
	if changed {
		s.rebuild(now)
	}
}

// Gossip records the list of a peer at from: addresses it heard lately.
// The caller leaves out entries carrying our own node id. Addresses that
// are not a member's (multicast, another family, a port 0, loopback from
// another host) are ignored.
func (s *Set) Gossip(from netip.AddrPort, list []wire.Peer, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.peers[from]; e == nil || !e.live(now) {
		return // only a live peer vouches
	}
	changed := false
	for _, p := range list {
		a, ok := s.usable(p.Addr, from)
		if !ok || a == from {
			continue
		}
		e := s.peers[a]
		if e == nil {
			if e = s.learn(a, now); e == nil {
				continue
			}
			changed = true
		}
		e.vouched = now
		if e.node == 0 && !e.self && p.Node != 0 {
			e.node, changed = p.Node, true
		}
	}
	if changed {
		s.rebuild(now)
	}
}

// Own notes that one of our own datagrams came back from a: the address
// is ours (a DNS name that lists every member lists us too), and gets
// nothing more.
func (s *Set) Own(a netip.AddrPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.peers[a]; e != nil && !e.self {
		e.self, e.node = true, 0
		s.rebuild(time.Now())
	}
}

// HeardOnGroup notes a heartbeat of node on the multicast group (mixed
// mode): while it is heard there, it gets no unicast copies. A node the
// set does not hold yet is noted too, since a peer's list may name it a
// moment later (and it would get unicast copies until its next heartbeat
// on the group); such nodes are bounded by MaxLearned, so forged
// heartbeats cannot grow the map without end.
func (s *Set) HeardOnGroup(node wire.NodeID, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, had := s.group[node]
	if !had && len(s.group) >= s.cfg.MaxLearned && !s.hasNode(node) {
		for n, t := range s.group {
			if now.Sub(t) > s.cfg.Timeout {
				delete(s.group, n)
			}
		}
		if len(s.group) >= s.cfg.MaxLearned {
			return
		}
	}
	s.group[node] = now
	if !had {
		s.rebuild(now)
	}
}

// Expire forgets the learned addresses silent for too long at now, and
// returns how many.
func (s *Set) Expire(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for a, e := range s.peers {
		if e.listed || e.live(now) || now.Sub(e.vouched) <= s.cfg.Timeout {
			continue
		}
		delete(s.peers, a)
		s.learned--
		n++
		s.log.Debug("peer forgotten", "addr", a, "member", e.node)
	}
	for node, t := range s.group {
		if now.Sub(t) > s.cfg.Timeout {
			delete(s.group, node)
		}
	}
	s.rebuild(now)
	return n
}

// Live returns the peers to tell others about: one address per member,
// heard from lately.
func (s *Set) Live(now time.Time) []wire.Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []wire.Peer
	for a, e := range s.best(now) {
		if e.live(now) {
			out = append(out, wire.Peer{Node: e.node, Addr: a})
		}
	}
	slices.SortFunc(out, func(x, y wire.Peer) int { return x.Addr.Compare(y.Addr) })
	return out
}

// Snapshot returns what the set holds, sorted by address.
func (s *Set) Snapshot() []Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	tgt := s.tgt.Load().Addrs
	out := make([]Info, 0, len(s.peers))
	for a, e := range s.peers {
		_, target := slices.BinarySearchFunc(tgt, a, netip.AddrPort.Compare)
		out = append(out, Info{Addr: a, Node: e.node, Listed: e.listed, Self: e.self, Target: target})
	}
	slices.SortFunc(out, func(x, y Info) int { return x.Addr.Compare(y.Addr) })
	return out
}

func (e *entry) live(now time.Time) bool { return !e.heard.IsZero() && now.Sub(e.heard) <= e.life }

// learn adds a learned address, or counts the drop when the table of
// learned addresses is full. It holds s.mu.
func (s *Set) learn(a netip.AddrPort, now time.Time) *entry {
	if s.learned >= s.cfg.MaxLearned {
		if s.met != nil {
			s.met.Drop(metrics.DropPeerLimit)
		}
		if now.Sub(s.fullLogged) >= fullLogEvery {
			s.fullLogged = now
			s.log.Warn("table of learned peers full; new peer addresses ignored (forged heartbeats? or raise the limit)",
				"limit", s.cfg.MaxLearned, "addr", a)
		}
		return nil
	}
	e := &entry{vouched: now}
	s.peers[a] = e
	s.learned++
	s.log.Debug("peer learned", "addr", a)
	s.signal()
	return e
}

// usable returns a as an address to send a member's datagrams to, told
// by from: of the set's family, a unicast address with a port, loopback
// only from loopback, and a link-local one with from's zone.
func (s *Set) usable(a, from netip.AddrPort) (netip.AddrPort, bool) {
	ip := a.Addr()
	if a.Port() == 0 || !ip.IsValid() || checkAddr(ip) != nil || ip.Is6() != s.fam6 {
		return a, false
	}
	if ip.IsLoopback() && !from.Addr().IsLoopback() {
		return a, false
	}
	if ip.IsLinkLocalUnicast() && ip.Is6() && ip.Zone() == "" {
		z := from.Addr().Zone()
		if z == "" || !from.Addr().IsLinkLocalUnicast() {
			return a, false
		}
		a = netip.AddrPortFrom(ip.WithZone(z), a.Port())
	}
	return a, true
}

func (s *Set) hasNode(node wire.NodeID) bool {
	for _, e := range s.peers {
		if e.node == node {
			return true
		}
	}
	return false
}

func (s *Set) signal() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// best picks one address per peer: every address whose member is
// unknown, and for each known member one of its addresses (a live one
// first, then a listed one, then the lowest), so that a member with
// several addresses (IPv4 and IPv6 answers of one name, a host with two
// interfaces) gets each datagram once. Our own addresses and, in mixed
// mode, members heard on the group get none. It holds s.mu.
func (s *Set) best(now time.Time) map[netip.AddrPort]*entry {
	out := make(map[netip.AddrPort]*entry, len(s.peers))
	chosen := make(map[wire.NodeID]netip.AddrPort)
	for a, e := range s.peers {
		switch {
		case e.self:
			continue
		case e.node == 0:
			out[a] = e
			continue
		}
		if t, ok := s.group[e.node]; ok && now.Sub(t) <= s.cfg.Timeout {
			continue
		}
		if b, ok := chosen[e.node]; ok && better(s.peers[b], b, e, a, now) {
			continue
		} else if ok {
			delete(out, b)
		}
		chosen[e.node] = a
		out[a] = e
	}
	return out
}

// better reports whether address a (entry x) is a better address for its
// member than b (entry y).
func better(x *entry, a netip.AddrPort, y *entry, b netip.AddrPort, now time.Time) bool {
	if lx, ly := x.live(now), y.live(now); lx != ly {
		return lx
	}
	if x.listed != y.listed {
		return x.listed
	}
	return a.Compare(b) < 0
}

// rebuild makes a new Targets if the chosen addresses changed. It holds
// s.mu.
func (s *Set) rebuild(now time.Time) {
	addrs := make([]netip.AddrPort, 0, len(s.peers))
	for a := range s.best(now) {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.AddrPort.Compare)
	if old := s.tgt.Load(); old != nil && slices.Equal(old.Addrs, addrs) {
		return
	}
	s.gen++
	s.tgt.Store(&Targets{Gen: s.gen, Addrs: addrs})
	if s.met != nil {
		s.met.Peers.WithLabelValues("listed").Set(float64(len(s.peers) - s.learned))
		s.met.Peers.WithLabelValues("learned").Set(float64(s.learned))
	}
}

// setListed makes addrs the listed addresses: new ones are added, ones no
// longer listed become learned ones (kept while live, beyond the cap if
// need be: they were trusted a moment ago) or go if never heard.
func (s *Set) setListed(addrs []netip.AddrPort, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := make(map[netip.AddrPort]bool, len(addrs))
	for _, a := range addrs {
		want[a] = true
	}
	for a, e := range s.peers {
		switch {
		case !e.listed || want[a]:
		case e.heard.IsZero():
			delete(s.peers, a)
		default:
			e.listed, e.vouched = false, now
			s.learned++
		}
	}
	for a := range want {
		e := s.peers[a]
		switch {
		case e == nil:
			s.peers[a] = &entry{listed: true}
			s.signal()
		case !e.listed:
			e.listed = true
			s.learned--
		}
	}
	s.rebuild(now)
}
