package replicator

import (
	"context"
	"slices"
	"time"

	"github.com/makuo/makuo/replicator/membership"
	"github.com/makuo/makuo/replicator/wire"
)

// catchUp brings members whose tree has differed from the majority's for
// longer than CatchUpGrace back in line, without operator action: members
// that were down, partitioned or too slow for a session. One watching
// member does it, the one with the lowest node id among those holding the
// majority root, so that a recovering member gets one stream, not one per
// watcher. The push is recursive with deletes and the watcher's conflict
// rule, so only differing subtrees go out (digest round) and newer local
// edits on the lagging member are kept.
func (n *Node) catchUp(ctx context.Context) {
	t := time.NewTicker(n.cfg.Heartbeat)
	defer t.Stop()
	tried := map[wire.NodeID]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			local := n.Root()
			if local == 0 {
				continue
			}
			members := n.members.Table().Snapshot()
			if !n.leadsCatchUp(members, local) {
				continue
			}
			var targets []wire.NodeID
			var names []string
			for _, m := range members {
				if m.Roles&wire.RoleRecv == 0 || inSync(m, local) || m.Root == 0 {
					continue
				}
				if n.lags.lag(m.ID, now) < n.cfg.CatchUpGrace || now.Sub(tried[m.ID]) < n.cfg.CatchUpGrace {
					continue
				}
				tried[m.ID] = now
				targets = append(targets, m.ID)
				names = append(names, m.Hostname)
			}
			if len(targets) == 0 {
				continue
			}
			n.log.Info("catching up members whose tree differs", "members", names)
			_, err := n.push(ctx, job{origin: "catch-up", recursive: true, mirror: true, sync: true, newerWins: true, targets: targets})
			if err != nil && ctx.Err() == nil {
				n.log.Warn("catch-up failed", "members", names, "err", err)
			}
		}
	}
}

// leadsCatchUp reports whether this member holds the most common root
// (ties to the higher root value, so every member agrees) and has the
// lowest node id among the watching members holding it.
func (n *Node) leadsCatchUp(members []membership.Member, local uint64) bool {
	count := map[uint64]int{local: 1}
	for _, m := range members {
		if m.Root != 0 {
			count[m.Root]++
		}
	}
	var major uint64
	for r, c := range count {
		if c > count[major] || (c == count[major] && r > major) {
			major = r
		}
	}
	if major != local {
		return false
	}
	ids := []wire.NodeID{n.ID()}
	for _, m := range members {
		if m.Root == local && m.Roles&wire.RoleWatch != 0 && m.Roles&wire.RoleSend != 0 {
			ids = append(ids, m.ID)
		}
	}
	return slices.Min(ids) == n.ID()
}
