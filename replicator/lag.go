package replicator

import (
	"context"
	"sync"
	"time"

	"github.com/makuo/makuo/replicator/membership"
	"github.com/makuo/makuo/replicator/wire"
)

// lagTracker remembers since when each member's announced root differs
// from this member's: the replication lag an operator alerts on. It is
// safe for concurrent use.
type lagTracker struct {
	mu    sync.Mutex
	since map[wire.NodeID]time.Time
	// left remembers this member's recent roots and when each stopped
	// being current: a member announcing one of them is missing exactly
	// the changes made since then, so its lag counts from there, not from
	// when it was first seen differing (under a steady stream of writes a
	// member is always a little behind, never stuck).
	left     map[uint64]time.Time
	order    []uint64
	lastRoot uint64
}

// rootHistory bounds how many past roots are remembered.
const rootHistory = 1024

// observe updates the tracker from the member table at now.
func (l *lagTracker) observe(members []membership.Member, local uint64, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.since == nil {
		l.since = map[wire.NodeID]time.Time{}
		l.left = map[uint64]time.Time{}
	}
	if local != l.lastRoot {
		if l.lastRoot != 0 {
			l.left[l.lastRoot] = now
			l.order = append(l.order, l.lastRoot)
			if len(l.order) > rootHistory {
				delete(l.left, l.order[0])
				l.order = l.order[1:]
			}
		}
		delete(l.left, local)
		l.lastRoot = local
	}
	live := map[wire.NodeID]bool{}
	for _, m := range members {
		live[m.ID] = true
		switch t, known := l.left[m.Root]; {
		case inSync(m, local) || m.Roles&wire.RoleRecv == 0:
			delete(l.since, m.ID)
		case known:
			l.since[m.ID] = t
		default:
			if _, ok := l.since[m.ID]; !ok {
				l.since[m.ID] = now
			}
		}
	}
	for id := range l.since {
		if !live[id] {
			delete(l.since, id)
		}
	}
}

// lag returns how long m has differed (0 when in sync or unknown).
func (l *lagTracker) lag(id wire.NodeID, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.since[id]; ok {
		return now.Sub(t)
	}
	return 0
}

func inSync(m membership.Member, local uint64) bool {
	return local != 0 && m.Root == local
}

// trackLag refreshes the lag tracker ten times a second (often enough to
// record nearly every root this member passes through) until ctx ends.
func (n *Node) trackLag(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n.lags.observe(n.members.Table().Snapshot(), n.Root(), now)
		}
	}
}
