package replicator

import (
	"context"
	"errors"
	"os"
	"path"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/makuo/makuo/replicator/wire"
)

// WriteInProgress reports whether some process has the regular file rel
// open for writing: Linux refuses a read lease on such a file. A file still
// being written is not worth shipping yet; the watcher's quiet period alone
// cannot tell a slow writer from a finished one. Anything that prevents the
// check (not a regular file, no right to take leases) reports false.
func (n *Node) WriteInProgress(rel string) bool {
	f, err := n.root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	fd := int(f.Fd())
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_RDLCK); err != nil {
		return errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EBUSY)
	}
	_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
	return false
}

// Deferral of files being written: a watcher-reported file held open for
// writing is re-checked every deferRecheck and shipped when closed, or
// after deferMax anyway (a log that is never closed still replicates).
const (
	deferRecheck = 100 * time.Millisecond
	deferMax     = 10 * time.Second
	// retryEvery spaces the retries of changes some member missed (it was
	// partitioned, full, or dropped from the session).
	retryEvery = 5 * time.Second
)

// Watch makes Run replicate the batches that arrive on changes (the
// watcher's, converted by cmd), with excludes for their pushes. Call it
// before Run.
func (n *Node) Watch(changes <-chan WatchBatch, excludes []string) {
	n.watchChanges, n.watchExcludes = changes, excludes
}

// watchLoop replicates the watcher's batches until ctx ends: paths whose
// files are still open for writing wait until they are closed (or deferMax
// passes), the rest go at once. next delivers the watcher's batches.
func (n *Node) watchLoop(ctx context.Context, next <-chan WatchBatch, excludes []string) error {
	deferred := map[string]time.Time{} // path → first deferred
	retry := map[string]bool{}         // pushes some member missed
	tick := time.NewTicker(deferRecheck)
	defer tick.Stop()
	retryTick := time.NewTicker(retryEvery)
	defer retryTick.Stop()
	ship := func(paths, rescans []string) {
		var ready []string
		now := time.Now()
		for _, p := range paths {
			first, was := deferred[p]
			if !was {
				first = now
			}
			if now.Sub(first) < deferMax && n.WriteInProgress(p) {
				deferred[p] = first
				continue
			}
			delete(deferred, p)
			ready = append(ready, p)
		}
		if len(ready) > 0 || len(rescans) > 0 {
			for _, p := range n.PushChanges(ctx, ready, rescans, excludes) {
				retry[p] = true
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case b := <-next:
			ship(b.Paths, b.Rescan)
		case changed := <-n.startChanges:
			// Changed while the daemon was stopped: the index saved at the
			// last stop tells what, deletions included. Give the members
			// a couple of heartbeats to be heard first.
			n.log.Info("replicating changes made while stopped", "paths", len(changed))
			select {
			case <-time.After(2 * n.cfg.Heartbeat):
			case <-ctx.Done():
				return nil
			}
			ship(changed, nil)
		case <-retryTick.C:
			if len(retry) > 0 {
				// A retried rescan root is pushed like a path (its own entry
				// and, for a directory, its subtree through the digest
				// round of a recursive push): push them all recursively.
				var roots []string
				for p := range retry {
					roots = append(roots, p)
				}
				clear(retry)
				sort.Strings(roots)
				for _, p := range n.PushChanges(ctx, nil, roots, excludes) {
					retry[p] = true
				}
			}
		case <-tick.C:
			if len(deferred) > 0 {
				paths := make([]string, 0, len(deferred))
				for p := range deferred {
					paths = append(paths, p)
				}
				sort.Strings(paths)
				ship(paths, nil)
			}
		}
	}
}

// WatchBatch is one batch of changes from the watcher: changed paths and
// subtrees to rescan (see watcher.Batch; cmd converts, so this package does
// not depend on the watcher).
type WatchBatch struct {
	Paths  []string
	Rescan []string
}

// PushChanges replicates what the watcher saw: paths are pushed one by one
// (a path gone locally is deleted on the members), rescan roots in full with
// deletes below them. It returns what did not reach every member (a
// failure on some member, or a member dropped), for the caller to retry.
func (n *Node) PushChanges(ctx context.Context, paths, rescans []string, excludes []string) (retry []string) {
	base := job{origin: "watcher", sync: true, excludes: excludes, newerWins: true, skipDropped: true}
	if len(paths) > 0 {
		j := base
		j.paths = withParents(paths)
		if n.needsRetry(ctx, "changes", j) {
			retry = append(retry, paths...)
		}
	}
	if len(rescans) > 0 {
		j := base
		j.paths, j.recursive, j.mirror = rescans, true, true
		if n.needsRetry(ctx, "rescan", j) {
			retry = append(retry, rescans...)
		}
	}
	return retry
}

// needsRetry runs a watcher push and reports whether it must be tried
// again: it failed, a member missed something, or nobody was there to take
// it (kept for when members show up). A version the conflict rule kept on
// a member is a settled conflict, not a failure.
func (n *Node) needsRetry(ctx context.Context, what string, j job) bool {
	out, err := n.push(ctx, j)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			n.log.Warn("replicating changes failed; will retry", "what", what, "err", err)
		}
		return true
	case len(out.members) == 0:
		return true
	}
	var missed []string
	for k := range out.members {
		m := &out.members[k]
		if m.Failed != "" {
			missed = append(missed, m.hostname+": "+m.Failed)
			continue
		}
		for _, f := range m.failures(len(out.entries)) {
			if f.Code != wire.FailKeptLocal {
				missed = append(missed, m.hostname+" "+out.entries[f.Entry].Path+": "+f.Code.String()+": "+f.Msg)
			}
		}
		if m.Result != nil && m.Result.Flags&wire.ResultTruncated != 0 && int(m.Result.Failed) > len(m.Result.Failures) {
			missed = append(missed, m.hostname+": more failures not listed")
		}
	}
	if len(missed) > 0 {
		n.log.Warn("some members did not apply changes; will retry", "what", what, "failures", missed)
		return true
	}
	return false
}

// withParents adds the parent directories of paths (a file created or
// deleted changes its directory's mtime, which the watcher does not
// report), parents first, without duplicates.
func withParents(paths []string) []string {
	seen := map[string]bool{}
	var out []string
	var add func(p string)
	add = func(p string) {
		if p == "." || p == "" || seen[p] {
			return
		}
		add(path.Dir(p))
		seen[p] = true
		out = append(out, p)
	}
	for _, p := range paths {
		add(p)
	}
	return out
}
