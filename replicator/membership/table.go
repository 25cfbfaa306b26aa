package membership

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// MaxInterval is the longest heartbeat interval a member's expiry honours
// (and the longest this daemon may use). The wire carries up to 49 days:
// taken at its word, one spoofed heartbeat would keep a phantom member,
// its metric series and the sessions waiting on it alive that long. A
// minute still lets an operator quieten a large cluster, and keeps a dead
// member's detection within minutes.
const MaxInterval = time.Minute

// minInterval floors a member's announced interval where it measures
// whether its address is live (cmd refuses shorter heartbeats anyway).
const minInterval = 10 * time.Millisecond

// addrConfirm is how many heartbeats must come from a member's new
// address before the table moves the member there (see Heard).
const addrConfirm = 2

// Member is what is known about one peer.
type Member struct {
	ID          wire.NodeID
	Incarnation uint64
	Hostname    string
	Version     string
	Segment     string
	Roles       wire.Roles
	Addr        netip.Addr
	Root        uint64
	Interval    time.Duration // the member's own heartbeat period
	Joined      time.Time
	LastHeard   time.Time
	// addrHeard is when a heartbeat last came from Addr; cand is another
	// address heartbeats came from, candHeard how many.
	addrHeard time.Time
	cand      netip.Addr
	candHeard int
}

// Change says what a heartbeat did to the table.
type Change int

// Changes reported by Table.Heard.
const (
	Refreshed Change = iota // known member, same incarnation
	Joined                  // new member
	Restarted               // known member, newer incarnation
	Stale                   // heartbeat from an older incarnation: ignored
	Refused                 // new member, but the table is full: ignored
	Contested               // first heartbeat from another address while the member's is live: ignored
	Held                    // heartbeat from another address, not adopted (yet): ignored
	Moved                   // the member's address changed (it persisted while the old one fell silent)
)

// Table is the set of live members. It is safe for concurrent use.
type Table struct {
	// segment is this member's own (--segment); a member of another
	// segment is heard through the relays and lives twice as long (see
	// Expire).
	segment string
	missed  int
	minLife time.Duration
	max     int
	mu      sync.Mutex
	members map[wire.NodeID]*Member
	// order is members sorted for Snapshot, rebuilt only when a member
	// joins, leaves or changes its hostname, not on every heartbeat.
	order []*Member
	dirty bool
}

// NewTable returns an empty table that expires a member after missed of its
// heartbeat intervals (at most MaxInterval each), but never sooner than
// minLife, and holds at most maxMembers members.
func NewTable(missed int, minLife time.Duration, maxMembers int) *Table {
	return &Table{missed: missed, minLife: minLife, max: maxMembers, members: make(map[wire.NodeID]*Member)}
}

// Heard records a heartbeat from h.Node received from `from` at now.
//
// A heartbeat never moves a known member to another address on its own:
// without a key anyone can send one with any node id, and taking it at
// its word would hand the member's traffic (and its place in sessions) to
// the forger. A heartbeat from an address other than the member's is
// ignored while the member's address is live (heard within two of its
// intervals); the member moves there once its old address fell silent and
// the new one was heard addrConfirm times. That covers a member whose
// address changed, or that restarted elsewhere, within a few intervals.
func (t *Table) Heard(h wire.Header, hb *wire.Heartbeat, from netip.Addr, now time.Time) Change {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.members[h.Node]
	if !ok {
		if len(t.members) >= t.max {
			return Refused
		}
		m = &Member{ID: h.Node, Incarnation: h.Incarnation, Addr: from, Joined: now}
		t.members[h.Node] = m
		t.dirty = true
		t.update(m, hb, now)
		return Joined
	}
	if h.Incarnation < m.Incarnation {
		return Stale
	}
	change := Refreshed
	if from != m.Addr {
		if m.cand != from {
			m.cand, m.candHeard = from, 0
		}
		m.candHeard++
		live := now.Sub(m.addrHeard) <= 2*clampInterval(m.Interval)
		switch {
		case live && m.candHeard == 1:
			return Contested
		case live || m.candHeard < addrConfirm:
			return Held
		}
		m.Addr, m.cand, m.candHeard = from, netip.Addr{}, 0
		change = Moved
	}
	if h.Incarnation > m.Incarnation {
		m.Incarnation, m.Joined = h.Incarnation, now
		change = Restarted
	}
	t.update(m, hb, now)
	return change
}

// update copies what a heartbeat from m's address announces into m.
func (t *Table) update(m *Member, hb *wire.Heartbeat, now time.Time) {
	if m.Hostname != hb.Hostname {
		t.dirty = true
	}
	m.Hostname, m.Version, m.Roles, m.Segment = hb.Hostname, hb.Version, hb.Roles, hb.Segment
	m.Root, m.Interval = hb.Root, hb.Interval
	m.addrHeard, m.LastHeard = now, now
}

// Touch notes that any authenticated datagram came from id, so a member busy
// with a transfer whose heartbeats are late is not expired.
func (t *Table) Touch(id wire.NodeID, incarnation uint64, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m, ok := t.members[id]; ok && m.Incarnation == incarnation {
		m.LastHeard = now
	}
}

// Leave removes a member that said goodbye from `from`. A goodbye from an
// older incarnation (a delayed datagram from before a restart) or from
// another address than the member's (anyone may send one without a key)
// is ignored.
func (t *Table) Leave(id wire.NodeID, incarnation uint64, from netip.Addr) (Member, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.members[id]
	if !ok || incarnation < m.Incarnation || from != m.Addr {
		return Member{}, false
	}
	delete(t.members, id)
	t.dirty = true
	return *m, true
}

// Expire removes and returns the members silent for too long at now.
func (t *Table) Expire(now time.Time) []Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	var gone []Member
	for id, m := range t.members {
		life := time.Duration(t.missed) * min(m.Interval, MaxInterval)
		if life < t.minLife {
			life = t.minLife
		}
		if t.relayed(m) {
			// Its heartbeats come through its segment's relay, and when
			// that relay dies none come until a standby takes over, which
			// takes its own missed heartbeats: expiring the segment's
			// members at the same time would drop them from every push
			// just as the new relay would carry their answers.
			life *= 2
		}
		if now.Sub(m.LastHeard) > life {
			gone = append(gone, *m)
			delete(t.members, id)
			t.dirty = true
		}
	}
	return gone
}

// relayed reports whether m is in another segment than this member, so
// heard through the relays.
func (t *Table) relayed(m *Member) bool {
	return t.segment != "" && m.Segment != "" && m.Segment != t.segment
}

// Snapshot returns copies of the live members sorted by hostname, then id.
// It sorts only after the set of members or a hostname changed, so that
// callers may call it often.
func (t *Table) Snapshot() []Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dirty {
		t.order = t.order[:0]
		for _, m := range t.members {
			t.order = append(t.order, m)
		}
		slices.SortFunc(t.order, func(a, b *Member) int {
			return cmp.Or(cmp.Compare(a.Hostname, b.Hostname), cmp.Compare(a.ID, b.ID))
		})
		t.dirty = false
	}
	out := make([]Member, len(t.order))
	for i, m := range t.order {
		out[i] = *m
	}
	return out
}

// Get returns the live member id, if there is one.
func (t *Table) Get(id wire.NodeID) (Member, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.members[id]
	if !ok {
		return Member{}, false
	}
	return *m, true
}

// Len returns the number of live members.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.members)
}

// Max returns the most members the table holds.
func (t *Table) Max() int { return t.max }

func clampInterval(d time.Duration) time.Duration {
	return min(max(d, minInterval), MaxInterval)
}
