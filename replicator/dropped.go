package replicator

import (
	"time"

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
