package replicator

import (
	"slices"
	"sync"
	"time"

	"github.com/makuo/makuo/replicator/control"
)

// historyLen is how many finished pushes msync --status and the status
// page show.
const historyLen = 20

// history keeps the latest pushes. It is safe for concurrent use.
type history struct {
	mu   sync.Mutex
	ring []control.Transfer
}

func (h *history) add(t control.Transfer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(t.Paths) > 5 {
		t.Paths = append(t.Paths[:5:5], "...")
	}
	h.ring = append(h.ring, t)
	if len(h.ring) > historyLen {
		h.ring = h.ring[len(h.ring)-historyLen:]
	}
}

// recent returns the pushes, newest first.
func (h *history) recent() []control.Transfer {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := slices.Clone(h.ring)
	slices.Reverse(out)
	return out
}

func transferRecord(req control.PushRequest, origin string, start time.Time, sum *control.Summary, err error) control.Transfer {
	t := control.Transfer{Started: start, Seconds: time.Since(start).Seconds(), Paths: slices.Clone(req.Paths), Origin: origin}
	if len(t.Paths) == 0 {
		t.Paths = []string{"."}
	}
	if err != nil {
		t.Error = err.Error()
	}
	if sum != nil {
		t.Members, t.FailedMembers, t.Changed, t.Failed, t.PayloadBytes = len(sum.Members), sum.FailedMembers, sum.Changed, sum.Failed, sum.PayloadBytes
	}
	return t
}
