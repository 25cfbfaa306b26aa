package transporttest

import (
	"net/netip"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// Delivery is one copy of a datagram arriving at a member.
type Delivery struct {
	At       time.Time
	From     wire.NodeID
	FromAddr netip.AddrPort
	To       wire.NodeID
	// Datagram is this delivery's own copy: the receiver may keep it.
	Datagram []byte
}

type entry struct {
	Delivery
	seq uint64 // insertion order, to break ties in At
}

func (e *entry) before(o *entry) bool {
	if !e.At.Equal(o.At) {
		return e.At.Before(o.At)
	}
	return e.seq < o.seq
}

// schedule is a min-heap of deliveries by (At, insertion order). It is
// written out rather than built on container/heap, which boxes every
// element it pushes: a simulation pushes millions.
type schedule []entry

func (s *schedule) push(e entry) {
	*s = append(*s, e)
	h := *s
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h[i].before(&h[parent]) {
			break
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
}

func (s *schedule) pop() entry {
	h := *s
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h[last] = entry{} // drop the reference to the datagram
	*s = h[:last]
	s.down(0)
	return top
}

func (s schedule) down(i int) {
	for {
		least := i
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < len(s) && s[c].before(&s[least]) {
				least = c
			}
		}
		if least == i {
			return
		}
		s[i], s[least] = s[least], s[i]
		i = least
	}
}

// filter removes the entries drop reports true for, and restores the heap.
func (s *schedule) filter(drop func(*entry) bool) {
	h := (*s)[:0]
	for i := range *s {
		if !drop(&(*s)[i]) {
			h = append(h, (*s)[i])
		}
	}
	clear((*s)[len(h):])
	*s = h
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}
