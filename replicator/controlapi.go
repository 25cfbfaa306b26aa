package replicator

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/makuo/makuo/replicator/control"
	"github.com/makuo/makuo/replicator/wire"
)

var _ control.Pusher = (*Node)(nil)

// Push implements control.Pusher: msync's request becomes a job, and the
// job's outcome becomes the events msync prints. This adapter is the only
// place where results turn into strings.
func (n *Node) Push(ctx context.Context, req control.PushRequest, emit func(control.Event)) error {
	targets, err := n.resolveTargets(req.Targets)
	if err != nil {
		return err
	}
	j := job{origin: "msync", paths: req.Paths, recursive: req.Recursive, mirror: req.Delete, sync: req.Sync,
		dryRun: req.DryRun, check: req.Check, excludes: req.Excludes, targets: targets,
		progress: func(sent, total uint64) {
			emit(control.Event{Type: control.EventProgress, BytesSent: sent, BytesTotal: total})
		}}
	out, err := n.push(ctx, j)
	if err != nil {
		return err
	}
	emit(control.Event{Type: control.EventSummary, Summary: report(out, req, emit)})
	return nil
}

// resolveTargets turns msync's -t names (hostnames, addresses or node ids)
// into the node ids of live receiving members. A hostname that several
// members share names them all.
func (n *Node) resolveTargets(names []string) ([]wire.NodeID, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if len(names) > wire.MaxTargets {
		return nil, fmt.Errorf("at most %d targets (-t)", wire.MaxTargets)
	}
	members := n.receivingMembers(nil)
	var ids []wire.NodeID
	for _, t := range names {
		found := false
		for _, m := range members {
			// A link-local address matches with its zone or without.
			if m.Hostname == t || m.Addr.String() == t || m.Addr.WithZone("").String() == t || m.ID.String() == t {
				found = true
				if !slices.Contains(ids, m.ID) {
					ids = append(ids, m.ID)
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown member %q: not a live receiving member (msync --members lists them)", t)
		}
	}
	if len(ids) > wire.MaxTargets {
		return nil, fmt.Errorf("at most %d targets (-t)", wire.MaxTargets)
	}
	return ids, nil
}

// report emits the per-path events of a finished push and returns its
// summary.
func report(o *outcome, req control.PushRequest, emit func(control.Event)) *control.Summary {
	sum := &control.Summary{Entries: o.scanned, PayloadBytes: o.payload, WireBytes: o.wire, Seconds: o.seconds,
		DryRun: req.DryRun, Check: req.Check, Members: []string{}, FailedMembers: []string{}}
	failures := map[int]map[string]string{} // entry → member → reason
	deletes := map[string][]string{}        // path → members
	for k := range o.members {
		m := &o.members[k]
		sum.Members = append(sum.Members, m.hostname)
		if m.Failed != "" {
			sum.FailedMembers = append(sum.FailedMembers, m.hostname)
			switch {
			case m.fate.lost():
				sum.Lost = append(sum.Lost, m.hostname)
			case m.fate == fateCatchUp:
				sum.CatchUp = append(sum.CatchUp, m.hostname)
			}
			emit(control.Event{Type: control.EventFailure, Member: m.hostname, Reason: m.Failed + "; " + m.fate.String()})
			continue
		}
		if m.Result == nil {
			continue
		}
		for _, f := range m.failures(len(o.entries)) {
			if failures[int(f.Entry)] == nil {
				failures[int(f.Entry)] = map[string]string{}
			}
			failures[int(f.Entry)][m.hostname] = f.Code.String() + ": " + f.Msg
		}
		sum.Failed += int(m.Result.Failed)
		sum.Deleted += int(m.Result.DeleteCount)
		for _, d := range m.Result.Deleted {
			deletes[d] = append(deletes[d], m.hostname)
		}
		if m.Result.Flags&wire.ResultTruncated != 0 && len(m.Result.Failures) < int(m.Result.Failed) {
			emit(control.Event{Type: control.EventFailure, Member: m.hostname,
				Reason: fmt.Sprintf("%d more failures not listed", int(m.Result.Failed)-len(m.Result.Failures))})
		}
	}
	for i := range o.entries {
		e := &o.entries[i]
		byAction := map[string][]string{}
		for k := range o.members {
			m := &o.members[k]
			if m.Failed != "" || !m.Changed(i) {
				continue
			}
			if _, failed := failures[i][m.hostname]; failed {
				continue
			}
			a := action(e, m, i, req.Check)
			if req.Itemize {
				a += "\x00" + itemCode(e, m.Items(i))
			}
			byAction[a] = append(byAction[a], m.hostname)
		}
		if len(byAction) > 0 {
			sum.Changed++
		} else if req.Verbose {
			emit(control.Event{Type: control.EventPath, Path: e.Path, Action: "same"})
		}
		for _, a := range sortedKeys(byAction) {
			act, items, _ := strings.Cut(a, "\x00")
			emit(control.Event{Type: control.EventPath, Path: e.Path, Action: act, Items: items, Members: byAction[a]})
		}
		for _, h := range sortedKeys(failures[i]) {
			emit(control.Event{Type: control.EventFailure, Path: e.Path, Member: h, Reason: failures[i][h]})
		}
	}
	for _, d := range sortedKeys(deletes) {
		ev := control.Event{Type: control.EventPath, Path: d, Action: "delete", Members: deletes[d]}
		if req.Itemize {
			ev.Items = "*deleting"
		}
		emit(ev)
	}
	return sum
}

func action(e *wire.Entry, m *memberOutcome, i int, check bool) string {
	switch {
	case check:
		return "differs"
	case e.Kind == wire.KindAbsent:
		return "delete"
	case m.SentData(i):
		return "send"
	}
	return "update"
}

// itemCode writes what differs, rsync -i style (see control.Event.Items).
func itemCode(e *wire.Entry, f wire.ItemFlags) string {
	if f&wire.ItemDelete != 0 || e.Kind == wire.KindAbsent {
		return "*deleting"
	}
	kind := map[wire.EntryKind]byte{wire.KindFile: 'f', wire.KindDir: 'd', wire.KindSymlink: 'L', wire.KindHardlink: 'h',
		wire.KindCharDev: 'D', wire.KindBlockDev: 'D', wire.KindFifo: 'S'}[e.Kind]
	y := byte('.')
	switch {
	case e.Kind == wire.KindFile && f&(wire.ItemContent|wire.ItemNew|wire.ItemType) != 0:
		y = '>'
	case f&(wire.ItemContent|wire.ItemNew|wire.ItemType) != 0:
		y = 'c'
	}
	if f&(wire.ItemNew|wire.ItemType) != 0 {
		return string([]byte{y, kind}) + "++++"
	}
	b := []byte{y, kind, '.', '.', '.', '.'}
	for k, bit := range []wire.ItemFlags{wire.ItemContent, wire.ItemMtime, wire.ItemMode, wire.ItemOwner} {
		if f&bit != 0 {
			b[2+k] = "ctpo"[k]
		}
	}
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
