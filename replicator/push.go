package replicator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/makuo/makuo/exclude"
	"github.com/makuo/makuo/replicator/control"
	"github.com/makuo/makuo/replicator/membership"
	"github.com/makuo/makuo/replicator/wire"
)

var _ control.Pusher = (*Node)(nil)

// ErrNoSend reports a push to a daemon started with -s.
var ErrNoSend = errors.New("this member was started with -s: it does not send")

// Push implements control.Pusher: it scans the requested paths and runs
// one send session to the receiving members, reporting per path and
// member.
func (n *Node) Push(ctx context.Context, req control.PushRequest, emit func(control.Event)) error {
	return n.push(ctx, req, "msync", emit)
}

// push runs one push and records it in the history.
func (n *Node) push(ctx context.Context, req control.PushRequest, origin string, emit func(control.Event)) (err error) {
	start := time.Now()
	var sum *control.Summary
	defer func() { n.history.add(transferRecord(req, origin, start, sum, err)) }()
	return n.runPush(ctx, req, func(ev control.Event) {
		if ev.Type == control.EventSummary {
			sum = ev.Summary
		}
		emit(ev)
	})
}

func (n *Node) runPush(ctx context.Context, req control.PushRequest, emit func(control.Event)) error {
	if n.cfg.NoSend {
		return ErrNoSend
	}
	excl, err := exclude.New(req.Excludes)
	if err != nil {
		return err
	}
	if req.Delete && !req.Recursive {
		return errors.New("delete mirrors directories and needs recursive (msync -r --delete)")
	}
	roots := req.Paths
	if len(roots) == 0 {
		if !req.Recursive {
			return errors.New("no path to push (give one, or -r for the whole base directory)")
		}
		roots = []string{"."}
	}
	for i, p := range roots {
		if roots[i], err = relPath(n.cfg.Base, p); err != nil {
			return err
		}
	}
	peers, targetIDs, err := n.receivers(req.Targets)
	if err != nil {
		return err
	}
	if req.SkipDropped {
		peers = slices.DeleteFunc(peers, func(m membership.Member) bool { return n.droppedRecently(m.ID) })
	}
	select {
	case n.pushSlots <- struct{}{}:
		defer func() { <-n.pushSlots }()
	case <-ctx.Done():
		return ctx.Err()
	}
	start := time.Now()
	scanned, err := n.scan(ctx, roots, scanOptions{recursive: req.Recursive, mirror: req.Delete, sync: req.Sync, excludes: excl})
	if err != nil {
		return err
	}
	var flags wire.SessionFlags
	if req.DryRun {
		flags |= wire.SessionDryRun
	}
	if req.Check {
		flags |= wire.SessionCheck
	}
	if req.NewerWins {
		flags |= wire.SessionNewerWins
	}
	entries := scanned.entries
	if len(entries) > wire.MaxEntries {
		return fmt.Errorf("%d paths in one push, at most %d: push subdirectories separately", len(entries), wire.MaxEntries)
	}
	var digestWire uint64
	if req.Recursive && len(req.Excludes) == 0 && !req.Check && len(peers) > 0 {
		var same map[string]bool
		same, digestWire, err = n.digestPhase(ctx, peers, targetIDs, entries)
		if err != nil {
			return err
		}
		entries = pruneSame(entries, same)
	}
	s := n.newSendSession(peers, entries, flags)
	s.wire = digestWire
	s.progress = func(sent, total uint64) {
		emit(control.Event{Type: control.EventProgress, BytesSent: sent, BytesTotal: total})
	}
	if err := n.startSession(s, targetIDs, req.Excludes); err != nil {
		return err
	}
	defer n.endSession(s)
	n.log.Info("push started", "session", fmt.Sprintf("%016x", s.id), "entries", len(s.entries), "bytes", scanned.bytes, "members", len(s.peers))
	err = s.run(ctx)
	n.lastRate.Store(math.Float64bits(s.rate))
	if err != nil {
		s.send(&wire.Abort{Session: s.id})
		n.met.Sessions.WithLabelValues("aborted").Inc()
		return fmt.Errorf("push aborted: %w", err)
	}
	// What reached every member is no longer an unreplicated local edit:
	// the conflict rule must not protect it from a later delete or a newer
	// version. What some member missed stays protected until it gets it.
	s.noteReplicated()
	n.members.Kick()
	sum := s.report(req, emit)
	sum.Entries = len(scanned.entries)
	sum.Seconds = time.Since(start).Seconds()
	n.met.SessionSeconds.Observe(sum.Seconds)
	outcome := "ok"
	if !sum.OK() {
		outcome = "failed"
	}
	n.met.Sessions.WithLabelValues(outcome).Inc()
	n.log.Info("push finished", "session", fmt.Sprintf("%016x", s.id), "changed", sum.Changed, "failed", sum.Failed,
		"failed_members", len(sum.FailedMembers), "payload", sum.PayloadBytes, "wire", sum.WireBytes, "seconds", sum.Seconds)
	emit(control.Event{Type: control.EventSummary, Summary: sum})
	return nil
}

func (n *Node) startRate() float64 {
	if r := math.Float64frombits(n.lastRate.Load()); r > 0 {
		return r
	}
	return startRate
}

// noteReplicated takes the entries every member applied (or already had)
// off the set of unreplicated local edits. (It must not touch the echo
// guard: a local write racing with this push must still reach the
// watcher.)
func (s *sendSession) noteReplicated() {
	failed := map[int]bool{}
	for _, p := range s.peers {
		if !p.active() {
			return
		}
		if p.result != nil {
			for _, f := range p.result.Failures {
				failed[int(f.Entry)] = true
			}
		}
	}
	for i := range s.entries {
		if s.entries[i].Kind != wire.KindDir && !failed[i] {
			s.n.markSynced(s.entries[i].Path)
		}
	}
}

// receivers returns the live receiving members, narrowed to targets
// (hostnames or addresses) when given, and the target ids for the offers.
func (n *Node) receivers(targets []string) ([]membership.Member, []wire.NodeID, error) {
	var out []membership.Member
	for _, m := range n.members.Table().Snapshot() {
		if m.Roles&wire.RoleRecv != 0 {
			out = append(out, m)
		}
	}
	if len(targets) == 0 {
		return out, nil, nil
	}
	if len(targets) > wire.MaxTargets {
		return nil, nil, fmt.Errorf("at most %d targets (-t)", wire.MaxTargets)
	}
	var picked []membership.Member
	var ids []wire.NodeID
	for _, t := range targets {
		i := slices.IndexFunc(out, func(m membership.Member) bool {
			return m.Hostname == t || m.Addr.String() == t || m.ID.String() == t
		})
		if i < 0 {
			return nil, nil, fmt.Errorf("unknown member %q: not a live receiving member (msync --members lists them)", t)
		}
		if !slices.Contains(ids, out[i].ID) {
			picked = append(picked, out[i])
			ids = append(ids, out[i].ID)
		}
	}
	return picked, ids, nil
}

// report emits the per-path events of a finished session and returns its
// summary.
func (s *sendSession) report(req control.PushRequest, emit func(control.Event)) *control.Summary {
	sum := &control.Summary{Entries: len(s.entries), PayloadBytes: s.payload, WireBytes: s.wire,
		DryRun: req.DryRun, Check: req.Check, Members: []string{}, FailedMembers: []string{}}
	failures := map[int]map[string]string{} // entry → member → reason
	deletes := map[string][]string{}        // path → members
	for _, p := range s.peers {
		sum.Members = append(sum.Members, p.hostname)
		if !p.active() {
			sum.FailedMembers = append(sum.FailedMembers, p.hostname)
			emit(control.Event{Type: control.EventFailure, Member: p.hostname, Reason: p.failed})
			continue
		}
		if p.result == nil {
			continue
		}
		for _, f := range p.result.Failures {
			if int(f.Entry) >= len(s.entries) {
				continue
			}
			if failures[int(f.Entry)] == nil {
				failures[int(f.Entry)] = map[string]string{}
			}
			failures[int(f.Entry)][p.hostname] = f.Code.String() + ": " + f.Msg
		}
		sum.Failed += int(p.result.Failed)
		sum.Deleted += int(p.result.DeleteCount)
		for _, d := range p.result.Deleted {
			deletes[d] = append(deletes[d], p.hostname)
		}
		if p.result.Flags&wire.ResultTruncated != 0 && len(p.result.Failures) < int(p.result.Failed) {
			emit(control.Event{Type: control.EventFailure, Member: p.hostname,
				Reason: fmt.Sprintf("%d more failures not listed", int(p.result.Failed)-len(p.result.Failures))})
		}
	}
	for i := range s.entries {
		e := &s.entries[i]
		byAction := map[string][]string{}
		for _, p := range s.peers {
			if !p.active() || !p.change[i] {
				continue
			}
			if _, failed := failures[i][p.hostname]; failed {
				continue
			}
			byAction[s.action(e, p, i)] = append(byAction[s.action(e, p, i)], p.hostname)
		}
		if len(byAction) > 0 {
			sum.Changed++
		} else if req.Verbose {
			emit(control.Event{Type: control.EventPath, Path: e.Path, Action: "same"})
		}
		for _, a := range sortedKeys(byAction) {
			emit(control.Event{Type: control.EventPath, Path: e.Path, Action: a, Members: byAction[a]})
		}
		for _, h := range sortedKeys(failures[i]) {
			emit(control.Event{Type: control.EventFailure, Path: e.Path, Member: h, Reason: failures[i][h]})
		}
	}
	for _, d := range sortedKeys(deletes) {
		emit(control.Event{Type: control.EventPath, Path: d, Action: "delete", Members: deletes[d]})
	}
	return sum
}

func (s *sendSession) action(e *wire.Entry, p *peer, i int) string {
	switch {
	case s.flags&wire.SessionCheck != 0:
		return "differs"
	case e.Kind == wire.KindAbsent:
		return "delete"
	case p.data[i]:
		return "send"
	}
	return "update"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// PushChanges replicates what the watcher saw: paths are pushed one by one
// (a path gone locally is deleted on the members), rescan roots in full with
// deletes below them. It returns what did not reach every member (a
// failure on some member, or a member dropped), for the caller to retry.
func (n *Node) PushChanges(ctx context.Context, paths, rescans []string, excludes []string) (retry []string) {
	run := func(what string, req control.PushRequest) bool {
		var failures []string
		failedPaths := map[string]bool{}
		whole := false
		var members int
		err := n.push(ctx, req, "watcher", func(ev control.Event) {
			if ev.Type == control.EventSummary {
				members = len(ev.Summary.Members)
			}
			if ev.Type != control.EventFailure {
				return
			}
			failures = append(failures, fmt.Sprintf("%s %s: %s", ev.Member, ev.Path, ev.Reason))
			if ev.Path == "" {
				whole = true
			} else if !strings.HasPrefix(ev.Reason, wire.FailConflict.String()) {
				failedPaths[ev.Path] = true // a conflict was settled, not failed
			}
		})
		switch {
		case err != nil && ctx.Err() == nil:
			n.log.Warn("replicating changes failed; will retry", "what", what, "err", err)
			return true
		case whole || len(failedPaths) > 0:
			n.log.Warn("some members did not apply changes; will retry", "what", what, "failures", failures)
			return true
		case err == nil && members == 0:
			// Nobody to give it to (yet): keep it for when members show up.
			return true
		}
		return false
	}
	if len(paths) > 0 && run("changes", control.PushRequest{Paths: withParents(paths), Sync: true, Excludes: excludes, NewerWins: true, SkipDropped: true}) {
		retry = append(retry, paths...)
	}
	if len(rescans) > 0 && run("rescan", control.PushRequest{Paths: rescans, Recursive: true, Delete: true, Sync: true, Excludes: excludes, NewerWins: true, SkipDropped: true}) {
		retry = append(retry, rescans...)
	}
	return retry
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
