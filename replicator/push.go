package replicator

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/makuo/makuo/exclude"
	"github.com/makuo/makuo/replicator/membership"
	"github.com/makuo/makuo/replicator/session"
	"github.com/makuo/makuo/replicator/source"
	"github.com/makuo/makuo/replicator/wire"
)

// ErrNoSend reports a push to a daemon started with -s.
var ErrNoSend = errors.New("this member was started with -s: it does not send")

// job is one push, however it was asked for: by msync (through the
// control adapter), by the watcher, or by catch-up. Targets are node ids.
type job struct {
	origin    string
	paths     []string
	recursive bool
	mirror    bool // --delete
	sync      bool // a path gone locally is deleted on members
	dryRun    bool
	check     bool
	// newerWins: the watcher's conflict rule (a receiver keeps a newer
	// local version; see wire.SessionNewerWins).
	newerWins bool
	excludes  []string
	targets   []wire.NodeID
	// skipDropped leaves out members dropped from a session in the last
	// minute: the watcher's pushes do not wait for a member that stopped
	// answering; catch-up brings it back in line once it answers again.
	skipDropped bool
	progress    func(sent, total uint64)
}

// outcome is what a push did, per member and entry.
type outcome struct {
	entries []wire.Entry
	members []memberOutcome
	scanned int    // entries the scan found (before the digest round pruned)
	payload uint64 // content bytes sent once
	wire    uint64 // datagram bytes sent, digest round and repairs included
	seconds float64
}

// memberOutcome is one member's part of a push.
type memberOutcome struct {
	session.Outcome
	hostname string
	fate     fate // of a member dropped from the push (Failed set)
}

// failures returns the member's failures whose entry is in the session.
func (m *memberOutcome) failures(entries int) []wire.Failure {
	if m.Result == nil {
		return nil
	}
	return slices.DeleteFunc(slices.Clone(m.Result.Failures), func(f wire.Failure) bool { return int(f.Entry) >= entries })
}

// ok reports whether every member applied everything.
func (o *outcome) ok() bool {
	for _, m := range o.members {
		if m.Failed != "" || (m.Result != nil && m.Result.Failed > 0) {
			return false
		}
	}
	return true
}

// push runs one job and records it in the history.
func (n *Node) push(ctx context.Context, j job) (*outcome, error) {
	start := time.Now()
	out, err := n.runJob(ctx, j)
	n.history.add(transferRecord(j, start, out, err))
	return out, err
}

func (n *Node) runJob(ctx context.Context, j job) (*outcome, error) {
	if n.cfg.NoSend {
		return nil, ErrNoSend
	}
	excl, err := exclude.New(j.excludes)
	if err != nil {
		return nil, err
	}
	roots, err := j.roots(n.cfg.Base)
	if err != nil {
		return nil, err
	}
	peers := n.receivingMembers(j.targets)
	if j.skipDropped {
		peers = slices.DeleteFunc(peers, func(m membership.Member) bool { return n.droppedRecently(m.ID) })
	}
	if j.origin != "catch-up" {
		// Catch-up is targeted and rare: it neither waits for nor holds
		// up the pushes to everyone.
		unlock, err := n.paths.lock(ctx, roots)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	select {
	case n.pushSlots <- struct{}{}:
		defer func() { <-n.pushSlots }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ids := make([]wire.NodeID, len(peers))
	host := map[wire.NodeID]string{}
	for i, m := range peers {
		ids[i], host[m.ID] = m.ID, m.Hostname
	}
	start := time.Now()
	var dg *digest
	if j.recursive && len(j.excludes) == 0 && !j.check && len(peers) > 0 {
		dg = n.startDigest(ctx, roots, ids, j.targets)
	}
	sc, err := source.Build(ctx, n.index, roots, source.Options{Recursive: j.recursive, Mirror: j.mirror, Sync: j.sync, Excludes: excl,
		OwnerOnly: n.cfg.SendOwnedOnly, Owner: uint32(os.Geteuid())})
	if err != nil {
		dg.cancel()
		return nil, err
	}
	if sc.OwnerSkipped > 0 {
		n.log.Info("skip: owner unmatch (-O)", "paths", sc.OwnerSkipped, "uid", os.Geteuid(), "not_mirrored", sc.MirrorDropped)
	}
	if len(sc.Entries) > wire.MaxEntries {
		dg.cancel()
		return nil, fmt.Errorf("%d paths in one push, at most %d: push subdirectories separately", len(sc.Entries), wire.MaxEntries)
	}
	out := &outcome{scanned: len(sc.Entries)}
	scanned := time.Now()
	if err := n.finishDigest(ctx, dg, sc, out); err != nil {
		return nil, err
	}
	digested := time.Now()
	run, err := n.newSendRun(sc, sc.Entries, j.flags(), ids, j.targets, j.excludes)
	if err != nil {
		return nil, err
	}
	run.progress = j.progress
	defer n.endSendRun(run)
	n.log.Info("push started", "session", fmt.Sprintf("%016x", run.s.Session()), "entries", len(sc.Entries), "bytes", sc.Bytes, "members", len(ids),
		"scan_seconds", scanned.Sub(start).Seconds(), "digest_seconds", digested.Sub(scanned).Seconds())
	if err := n.drive(ctx, run); err != nil {
		_ = n.conn.Send(&wire.Abort{Session: run.s.Session()})
		n.met.Sessions.WithLabelValues("aborted").Inc()
		return nil, fmt.Errorf("push aborted: %w", err)
	}
	out.entries = sc.Entries
	out.payload, _ = run.s.Progress()
	out.wire += run.wire
	n.collect(run, host, out)
	if !j.dryRun && !j.check {
		n.noteReplicated(out, sc)
	}
	n.members.Kick()
	out.seconds = time.Since(start).Seconds()
	n.met.SessionSeconds.Observe(out.seconds)
	result := "ok"
	if !out.ok() {
		result = "failed"
	}
	n.met.Sessions.WithLabelValues(result).Inc()
	n.log.Info("push finished", "session", fmt.Sprintf("%016x", run.s.Session()), "outcome", result,
		"payload", out.payload, "wire", out.wire, "seconds", out.seconds)
	return out, nil
}

// collect records each member's outcome of a finished session.
func (n *Node) collect(run *sendRun, host map[wire.NodeID]string, out *outcome) {
	members := n.members.Table().Snapshot()
	for _, o := range run.s.Outcomes() {
		mo := memberOutcome{Outcome: o, hostname: host[o.ID]}
		if o.Failed != "" {
			mo.fate = fateOf(o.ID, members, n.cfg.Watch && !n.cfg.NoSend)
		}
		out.members = append(out.members, mo)
		if o.Failed != "" {
			n.met.MembersDropped.Inc()
			if o.Dropped {
				n.noteDropped(o.ID)
			}
			n.log.Warn("member dropped from session", "session", fmt.Sprintf("%016x", run.s.Session()), "member", host[o.ID], "reason", o.Failed,
				"then", mo.fate.String())
		}
	}
}

// roots returns the job's paths relative to base, "." for a recursive
// job without any.
func (j *job) roots(base string) ([]string, error) {
	if j.mirror && !j.recursive {
		return nil, errors.New("delete mirrors directories and needs recursive (msync -r --delete)")
	}
	roots := slices.Clone(j.paths)
	if len(roots) == 0 {
		if !j.recursive {
			return nil, errors.New("no path to push (give one, or -r for the whole base directory)")
		}
		roots = []string{"."}
	}
	for i, p := range roots {
		var err error
		if roots[i], err = source.RelPath(base, p); err != nil {
			return nil, err
		}
	}
	return roots, nil
}

func (j *job) flags() wire.SessionFlags {
	var f wire.SessionFlags
	if j.dryRun {
		f |= wire.SessionDryRun
	}
	if j.check {
		f |= wire.SessionCheck
	}
	if j.newerWins {
		f |= wire.SessionNewerWins
	}
	return f
}

// noteReplicated takes the entries every member applied (or already had)
// off the set of unreplicated local edits. What some member missed stays
// protected until it gets it.
func (n *Node) noteReplicated(o *outcome, sc *source.Scan) {
	failed := map[int]bool{}
	for _, m := range o.members {
		if m.Failed != "" {
			return
		}
		for _, f := range m.failures(len(o.entries)) {
			failed[int(f.Entry)] = true
		}
	}
	dirs := source.Dirs{Root: n.root}
	defer dirs.Close()
	for i := range o.entries {
		e := &o.entries[i]
		if e.Kind == wire.KindDir || failed[i] {
			continue
		}
		if ino, ok := sc.Ino(i); ok {
			// The version offered, not the one there now: a file
			// changed since its data went out is not on the members.
			n.prov.Known(e.Path, int64(e.Size), e.Mtime, ino)
			continue
		}
		var fi fs.FileInfo
		in, name, err := dirs.Parent(e.Path)
		if err == nil {
			fi, err = in.Lstat(name)
		}
		if err != nil {
			fi = nil
		}
		n.prov.Replicated(e.Path, fi)
	}
}

// receivingMembers returns the live receiving members, narrowed to
// targets when given.
func (n *Node) receivingMembers(targets []wire.NodeID) []membership.Member {
	var out []membership.Member
	for _, m := range n.members.Table().Snapshot() {
		if m.Roles&wire.RoleRecv != 0 && (len(targets) == 0 || slices.Contains(targets, m.ID)) {
			out = append(out, m)
		}
	}
	return out
}
