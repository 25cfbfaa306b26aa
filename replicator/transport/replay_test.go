package transport

import (
	"testing"

	"github.com/makuo/makuo/replicator/wire"
)

func TestReplayFilter(t *testing.T) {
	f := newReplayFilter()
	h := func(node wire.NodeID, inc, seq uint64) *wire.Header {
		return &wire.Header{Node: node, Incarnation: inc, Seq: seq}
	}
	steps := []struct {
		h    *wire.Header
		want bool
	}{
		{h(1, 10, 5), true},
		{h(1, 10, 5), false}, // duplicate
		{h(1, 10, 3), true},  // late but within the window
		{h(1, 10, 3), false},
		{h(1, 10, 5000), true},
		{h(1, 10, 5000-replayWindow), false}, // fell out of the window
		{h(1, 10, 5000-replayWindow+1), true},
		{h(1, 9, 6000), false},  // older incarnation
		{h(1, 11, 1), true},     // restart
		{h(1, 10, 5001), false}, // the old incarnation is gone for good
		{h(2, 10, 5), true},     // another node has its own window
		{h(1, 11, 1+64*40), true},
		{h(1, 11, 1), false},
	}
	for i, s := range steps {
		if got := f.check(s.h); got != s.want {
			t.Fatalf("step %d %+v: got %v want %v", i, *s.h, got, s.want)
		}
	}
}

func TestReplayFilterEvicts(t *testing.T) {
	f := newReplayFilter()
	for i := range maxTrackedSenders + 10 {
		f.check(&wire.Header{Node: wire.NodeID(i), Seq: 1})
	}
	if len(f.senders) > maxTrackedSenders {
		t.Fatalf("%d senders tracked", len(f.senders))
	}
}
