package membership

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// Member is what is known about one peer.
type Member struct {
	ID          wire.NodeID
	Incarnation uint64
	Hostname    string
	Version     string
	Roles       wire.Roles
	Addr        netip.Addr
	Root        uint64
	Interval    time.Duration // the member's own heartbeat period
	Joined      time.Time
	LastHeard   time.Time
}

// Change says what a heartbeat did to the table.
type Change int

// Changes reported by Table.Heard.
const (
	Refreshed Change = iota // known member, same incarnation
	Joined                  // new member
	Restarted               // known member, newer incarnation
	Stale                   // heartbeat from an older incarnation: ignored
)

// Table is the set of live members. It is safe for concurrent use.
type Table struct {
	missed  int
	minLife time.Duration
	mu      sync.Mutex
	members map[wire.NodeID]*Member
}

// NewTable returns an empty table that expires a member after missed of its
// heartbeat intervals, but never sooner than minLife.
func NewTable(missed int, minLife time.Duration) *Table {
	return &Table{missed: missed, minLife: minLife, members: make(map[wire.NodeID]*Member)}
}

// Heard records a heartbeat from h.Node received at now.
func (t *Table) Heard(h wire.Header, hb *wire.Heartbeat, from netip.Addr, now time.Time) Change {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.members[h.Node]
	change := Refreshed
	switch {
	case !ok:
		m = &Member{ID: h.Node, Joined: now}
		t.members[h.Node] = m
		change = Joined
	case h.Incarnation < m.Incarnation:
		return Stale
	case h.Incarnation > m.Incarnation:
		m.Joined = now
		change = Restarted
	}
	m.Incarnation = h.Incarnation
	m.Hostname, m.Version, m.Roles = hb.Hostname, hb.Version, hb.Roles
	m.Root, m.Interval = hb.Root, hb.Interval
	m.Addr = from
	m.LastHeard = now
	return change
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

// Leave removes a member that said goodbye. A goodbye from an older
// incarnation (a delayed datagram from before a restart) is ignored.
func (t *Table) Leave(id wire.NodeID, incarnation uint64) (Member, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.members[id]
	if !ok || incarnation < m.Incarnation {
		return Member{}, false
	}
	delete(t.members, id)
	return *m, true
}

// Expire removes and returns the members silent for too long at now.
func (t *Table) Expire(now time.Time) []Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	var gone []Member
	for id, m := range t.members {
		life := time.Duration(t.missed) * m.Interval
		if life < t.minLife {
			life = t.minLife
		}
		if now.Sub(m.LastHeard) > life {
			gone = append(gone, *m)
			delete(t.members, id)
		}
	}
	return gone
}

// Snapshot returns copies of the live members sorted by hostname, then id.
func (t *Table) Snapshot() []Member {
	t.mu.Lock()
	out := make([]Member, 0, len(t.members))
	for _, m := range t.members {
		out = append(out, *m)
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int {
		return cmp.Or(cmp.Compare(a.Hostname, b.Hostname), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// Len returns the number of live members.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.members)
}
