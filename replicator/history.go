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

func transferRecord(j job, start time.Time, o *outcome, err error) control.Transfer {
	t := control.Transfer{Started: start, Seconds: time.Since(start).Seconds(), Paths: slices.Clone(j.paths), Origin: j.origin}
	if len(t.Paths) == 0 {
		t.Paths = []string{"."}
	}
	if err != nil {
		t.Error = err.Error()
	}
	if o == nil {
		return t
	}
	t.Members, t.PayloadBytes = len(o.members), o.payload
	changed := make([]bool, len(o.entries))
	for k := range o.members {
		m := &o.members[k]
		if m.Failed != "" {
			t.FailedMembers = append(t.FailedMembers, m.hostname)
			continue
		}
		if m.Result != nil {
			t.Failed += int(m.Result.Failed)
		}
		for i := range o.entries {
			changed[i] = changed[i] || m.Changed(i)
		}
	}
	for _, c := range changed {
		if c {
			t.Changed++
		}
	}
	return t
}
