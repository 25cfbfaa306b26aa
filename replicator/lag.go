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
}

// observe updates the tracker from the member table at now.
func (l *lagTracker) observe(members []membership.Member, local uint64, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.since == nil {
		l.since = map[wire.NodeID]time.Time{}
	}
	live := map[wire.NodeID]bool{}
	for _, m := range members {
		live[m.ID] = true
		if inSync(m, local) || m.Roles&wire.RoleRecv == 0 {
			delete(l.since, m.ID)
		} else if _, ok := l.since[m.ID]; !ok {
			l.since[m.ID] = now
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

// trackLag refreshes the lag tracker every heartbeat interval until ctx
// ends.
func (n *Node) trackLag(ctx context.Context) {
	t := time.NewTicker(n.cfg.Heartbeat)
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
