package replicator

import "sync"

// pendingEdits is the set of paths changed on this member (seen by its
// watcher, or changed while the daemon was stopped) that have not reached
// every member yet. The conflict rule protects them: a receiver keeps such
// a path against an older version, saves it as a conflict copy against a
// newer one, and a rescan's mirror never deletes it. It is safe for
// concurrent use.
type pendingEdits struct {
	mu sync.Mutex
	m  map[string]bool
}

func (p *pendingEdits) add(paths ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]bool{}
	}
	for _, x := range paths {
		p.m[x] = true
	}
}

func (p *pendingEdits) done(path string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, path)
}

func (p *pendingEdits) has(path string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[path]
}
