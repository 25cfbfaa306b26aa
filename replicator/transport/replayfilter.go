package transport

import (
	"net/netip"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// ReplayFilter is the read loop's replay filter, for other implementations
// of Conn's contract (package transporttest): it accepts each (node,
// incarnation, seq) at most once, within the same window and sender bound
// as Conn, so that a fake network's duplicates vanish exactly where real
// ones do. Strict is the rule for sealed traffic (see the package doc). It
// is not safe for concurrent use.
type ReplayFilter struct{ f *replayFilter }

// NewReplayFilter returns an empty filter.
func NewReplayFilter(strict bool) *ReplayFilter {
	return &ReplayFilter{f: newReplayFilter(strict, nil)}
}

// Check reports whether h, from address from at now, is new, and records
// it if so.
func (r *ReplayFilter) Check(h *wire.Header, from netip.Addr, now time.Time) bool {
	return r.f.check(h, from, now)
}
