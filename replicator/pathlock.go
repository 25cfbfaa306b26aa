package replicator

import (
	"context"
	"strings"
	"sync"
)

// pathLocks serializes pushes whose paths overlap (one is the other or
// below it): two pushes of the same file at once (the watcher's and an
// operator's msync, say) would both find the members without it and both
// send it; one after the other, the second finds them up to date. Pushes
// of disjoint paths run side by side (makuosan -f).
type pathLocks struct {
	mu      sync.Mutex
	held    map[*[]string]struct{}
	changed chan struct{} // closed and replaced whenever a push releases its paths
}

// lock waits until no push holding paths overlaps roots, then holds roots
// until the returned function is called.
func (l *pathLocks) lock(ctx context.Context, roots []string) (unlock func(), err error) {
	key := &roots
	for {
		l.mu.Lock()
		if l.held == nil {
			l.held = map[*[]string]struct{}{}
			l.changed = make(chan struct{})
		}
		if !l.overlaps(roots) {
			l.held[key] = struct{}{}
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				delete(l.held, key)
				close(l.changed)
				l.changed = make(chan struct{})
				l.mu.Unlock()
			}, nil
		}
		wait := l.changed
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wait:
		}
	}
}

func (l *pathLocks) overlaps(roots []string) bool {
	for held := range l.held {
		for _, a := range *held {
			for _, b := range roots {
				if overlap(a, b) {
					return true
				}
			}
		}
	}
	return false
}

// overlap reports whether one of two clean relative paths is the other or
// below it.
func overlap(a, b string) bool {
	return a == "." || b == "." || a == b || strings.HasPrefix(b, a+"/") || strings.HasPrefix(a, b+"/")
}
