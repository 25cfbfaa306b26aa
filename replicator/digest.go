package replicator

import (
	"context"
	"slices"

	"github.com/makuo/makuo/replicator/session"
	"github.com/makuo/makuo/replicator/source"
	"github.com/makuo/makuo/replicator/wire"
)

// digest is the digest round of a recursive push: it offers the Merkle
// hash of every directory and prunes the subtrees that are the same on
// every member, so that a no-change resync of a large tree costs a
// datagram per few dozen directories instead of one entry per file.
//
// It runs while the sender scans, on the hashes its index held before
// (source.Predigest): each receiver refreshes its own tree for the round,
// which takes about as long as the sender's scan, and the two then
// overlap instead of adding up. A directory the scan found changed is
// not pruned (source.Scan.Same). Before the index knows the tree, the
// round runs after the scan, on its hashes.
type digest struct {
	dirs   []wire.Entry // nil: the round runs after the scan
	stop   context.CancelFunc
	done   chan struct{}
	outs   []session.Outcome
	wire   uint64
	err    error
	ids    []wire.NodeID
	target []wire.NodeID
}

// startDigest starts the digest round of a push of roots to the members
// ids (targets as the job gave them).
func (n *Node) startDigest(ctx context.Context, roots []string, ids, targets []wire.NodeID) *digest {
	d := &digest{dirs: source.Predigest(n.index, roots), ids: ids, target: targets}
	if d.dirs == nil {
		return d
	}
	ctx, d.stop = context.WithCancel(ctx)
	d.done = make(chan struct{})
	go func() {
		defer close(d.done)
		d.outs, d.wire, d.err = n.runDigest(ctx, d.dirs, ids, targets)
	}()
	return d
}

// cancel ends a round started ahead of a scan that failed.
func (d *digest) cancel() {
	if d != nil && d.done != nil {
		d.stop()
		<-d.done
	}
}

// finishDigest waits for the round (or runs it now, on the scan's hashes)
// and prunes the scan by its answers.
func (n *Node) finishDigest(ctx context.Context, d *digest, sc *source.Scan, out *outcome) error {
	if d == nil {
		return nil
	}
	if d.done == nil {
		d.dirs = sc.Digest(n.index)
		if len(d.dirs) == 0 {
			return nil
		}
		d.outs, d.wire, d.err = n.runDigest(ctx, d.dirs, d.ids, d.target)
	} else {
		<-d.done
		d.stop()
	}
	out.wire += d.wire
	if d.err != nil {
		return d.err
	}
	sc.Prune(sc.Same(n.index, d.dirs, func(i int) bool {
		return !slices.ContainsFunc(d.outs, func(o session.Outcome) bool { return o.Failed != "" || o.Changed(i) })
	}))
	return nil
}

// runDigest runs one digest session over dirs and returns the members'
// outcomes and the bytes it sent.
func (n *Node) runDigest(ctx context.Context, dirs []wire.Entry, ids, targets []wire.NodeID) ([]session.Outcome, uint64, error) {
	run, err := n.newSendRun(nil, dirs, wire.SessionDigest, ids, targets, nil)
	if err != nil {
		return nil, 0, err
	}
	defer n.endSendRun(run)
	err = n.drive(ctx, run)
	if err != nil {
		_ = n.conn.Send(&wire.Abort{Session: run.s.Session()})
		return nil, run.wire, err
	}
	return run.s.Outcomes(), run.wire, nil
}
