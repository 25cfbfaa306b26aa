package replicator

import (
	"time"

	"github.com/makuo/makuo/replicator/membership"
	"github.com/makuo/makuo/replicator/wire"
)

// droppedFor is how long a member dropped from a session is left out of
// the watcher's pushes (catch-up covers it meanwhile).
const droppedFor = time.Minute

func (n *Node) noteDropped(id wire.NodeID) {
	n.droppedMu.Lock()
	defer n.droppedMu.Unlock()
	if n.dropped == nil {
		n.dropped = map[wire.NodeID]time.Time{}
	}
	n.dropped[id] = time.Now()
}

func (n *Node) droppedRecently(id wire.NodeID) bool {
	n.droppedMu.Lock()
	defer n.droppedMu.Unlock()
	t, ok := n.dropped[id]
	return ok && time.Since(t) < droppedFor
}

// fate is what becomes of a member dropped from a push, as the push's
// result reports it: a member dropped for a while (its segment's relay
// died, a partition) is heard again and waits for catch-up, where one
// that died is not.
type fate uint8

const (
	fateNone      fate = iota // took part to the end
	fateLost                  // not in the member table when the push ended, nobody runs catch-up
	fateLostCatch             // the same, with a watching sender to catch it up should it come back
	fateCatchUp               // a member still (or again), and a watching sender will catch it up
	fatePushAgain             // a member still, but nobody runs catch-up: only a new push brings it in line
)

// fateOf classifies a member dropped from a push by the member table at
// the push's end. Catch-up is run by the watching senders (catchUp), this
// daemon included when it watches.
func fateOf(id wire.NodeID, members []membership.Member, selfWatches bool) fate {
	found, watcher := false, selfWatches
	for _, m := range members {
		if m.ID == id {
			found = true
		}
		if m.Roles&wire.RoleWatch != 0 && m.Roles&wire.RoleSend != 0 {
			watcher = true
		}
	}
	switch {
	case !found && watcher:
		return fateLostCatch
	case !found:
		return fateLost
	case watcher:
		return fateCatchUp
	}
	return fatePushAgain
}

// lost reports whether the member was no longer heard when the push ended.
func (f fate) lost() bool { return f == fateLost || f == fateLostCatch }

// String is the fate as the push's result words it, after the reason the
// member was dropped.
func (f fate) String() string {
	switch f {
	case fateLost:
		return "lost: not heard since; only a new push brings it in line should it come back"
	case fateLostCatch:
		return "lost: not heard since; catch-up brings it in line should it come back"
	case fateCatchUp:
		return "heard since: catch-up will bring it in line"
	case fatePushAgain:
		return "heard since, but no member watches (-w) to catch it up: push again"
	}
	return ""
}
