package apply

import (
	"slices"
	"testing"
	"time"
)

// TestSettleAsYouGo: settle(false) collects only the batches already
// renamed, keeps those still in flight in their order, and leaves no
// reference to a collected batch behind in the slice's backing array (a
// push of a big tree would otherwise hold every batch's files until its
// commit); settle(true) waits for the rest.
func TestSettleAsYouGo(t *testing.T) {
	finished := func() *batch {
		b := &batch{files: make([]staged, 3), done: make(chan struct{})}
		close(b.done)
		return b
	}
	d1, d2, d3 := finished(), finished(), finished()
	p1 := &batch{files: make([]staged, 3), done: make(chan struct{})}
	p2 := &batch{files: make([]staged, 3), done: make(chan struct{})}
	s := &Session{inflight: []*batch{d1, p1, d2, p2, d3}}
	backing := s.inflight[:len(s.inflight)]

	s.settle(false)
	if !slices.Equal(s.inflight, []*batch{p1, p2}) {
		t.Fatalf("in flight after settle(false): %v, want the two unfinished batches in order", s.inflight)
	}
	for i, b := range backing[len(s.inflight):] {
		if b != nil {
			t.Errorf("backing array slot %d still holds a batch after settle(false)", len(s.inflight)+i)
		}
	}

	go func() {
		time.Sleep(10 * time.Millisecond)
		close(p1.done)
		close(p2.done)
	}()
	s.settle(true)
	if len(s.inflight) != 0 {
		t.Fatalf("%d batches in flight after settle(true)", len(s.inflight))
	}
	for i, b := range backing {
		if b != nil {
			t.Errorf("backing array slot %d still holds a batch after settle(true)", i)
		}
	}
}
