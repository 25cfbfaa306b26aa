package transport

import "github.com/makuo/makuo/replicator/wire"

// ReplayFilter is the read loop's replay filter, for other implementations
// of Conn's contract (package transporttest): it accepts each (node,
// incarnation, seq) at most once, within the same window and sender bound
// as Conn, so that a fake network's duplicates vanish exactly where real
// ones do. It is not safe for concurrent use.
type ReplayFilter struct{ f *replayFilter }

// NewReplayFilter returns an empty filter.
func NewReplayFilter() *ReplayFilter { return &ReplayFilter{f: newReplayFilter()} }

// Check reports whether h is new, and records it if so.
func (r *ReplayFilter) Check(h *wire.Header) bool { return r.f.check(h) }
