package session

import "sort"

// blockSet is the set of blocks of one file received so far: the
// contiguous prefix [0, contig) and sorted, disjoint runs beyond it. Its
// memory grows with the holes actually seen, never with the file size a
// sender announced, and listing what is missing walks the holes, not the
// blocks.
type blockSet struct {
	contig uint64
	runs   []run // sorted, disjoint, non-adjacent, all above contig
	count  uint64
}

// run is the blocks [start, end).
type run struct{ start, end uint64 }

func (s *blockSet) has(b uint64) bool {
	if b < s.contig {
		return true
	}
	k := sort.Search(len(s.runs), func(k int) bool { return s.runs[k].end > b })
	return k < len(s.runs) && s.runs[k].start <= b
}

// add inserts block b and reports whether it was new.
func (s *blockSet) add(b uint64) bool {
	if s.has(b) {
		return false
	}
	s.addRun(b, b+1)
	return true
}

// addRun inserts [start, end), none of which may be in the set yet.
func (s *blockSet) addRun(start, end uint64) {
	s.count += end - start
	if start == s.contig {
		s.contig = end
		for len(s.runs) > 0 && s.runs[0].start == s.contig {
			s.contig = s.runs[0].end
			s.runs = s.runs[1:]
		}
		if len(s.runs) == 0 {
			s.runs = nil
		}
		return
	}
	k := sort.Search(len(s.runs), func(k int) bool { return s.runs[k].start > start })
	// Merge with the run before (ending at start) and after (starting at end).
	if k > 0 && s.runs[k-1].end == start {
		s.runs[k-1].end = end
		if k < len(s.runs) && s.runs[k].start == end {
			s.runs[k-1].end = s.runs[k].end
			s.runs = append(s.runs[:k], s.runs[k+1:]...)
		}
		return
	}
	if k < len(s.runs) && s.runs[k].start == end {
		s.runs[k].start = start
		return
	}
	s.runs = append(s.runs, run{})
	copy(s.runs[k+1:], s.runs[k:])
	s.runs[k] = run{start, end}
}

// holes calls fn for each run of missing blocks below n, in order, until
// fn returns false.
func (s *blockSet) holes(n uint64, fn func(start, end uint64) bool) {
	at := s.contig
	for _, r := range s.runs {
		if at >= n {
			return
		}
		if !fn(at, min(r.start, n)) {
			return
		}
		at = r.end
	}
	if at < n {
		fn(at, n)
	}
}

// missingIn counts the blocks of [lo, hi) not in the set.
func (s *blockSet) missingIn(lo, hi uint64) uint64 {
	var n uint64
	lo = max(lo, s.contig)
	if lo >= hi {
		return 0
	}
	k := sort.Search(len(s.runs), func(k int) bool { return s.runs[k].end > lo })
	at := lo
	for ; k < len(s.runs) && at < hi; k++ {
		r := s.runs[k]
		if r.start > at {
			n += min(r.start, hi) - at
		}
		at = max(at, r.end)
	}
	if at < hi {
		n += hi - at
	}
	return n
}
