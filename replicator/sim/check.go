package sim

import (
	"fmt"
	"strings"

	"github.com/makuo/makuo/replicator/stage"
	"github.com/makuo/makuo/replicator/wire"
)

// CheckMirror checks DESIGN's guarantees after a push of the whole tree
// with --delete (a full resync), once the cluster has settled:
//
//   - every member the push was for is accounted for: it reported a
//     result or was reported dropped with a reason;
//   - a member that reported everything applied holds exactly the
//     sender's tree (no silent divergence);
//   - every other member holds, at every path, a version some member had
//     at some point (old or new, never torn);
//   - no member holds a temp file once its sessions ended.
//
// It returns one error per violation.
func (c *Cluster) CheckMirror(res *Result, members []wire.NodeID, hist History) []error {
	var errs []error
	want, err := c.Sender().Snapshot()
	if err != nil {
		return []error{err}
	}
	byID := map[wire.NodeID]int{}
	for k, o := range res.Outcomes {
		byID[o.ID] = k
	}
	for _, id := range members {
		n := c.byID[id]
		k, ok := byID[id]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: not in the push's outcome", n.Name))
			continue
		}
		o := res.Outcomes[k]
		if o.Failed == "" && o.Result == nil {
			errs = append(errs, fmt.Errorf("%s: neither a result nor a reason", n.Name))
		}
		if n.Down {
			continue
		}
		got, err := n.Snapshot()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for p := range got {
			if stage.IsTempName(p[strings.LastIndexByte(p, '/')+1:]) {
				errs = append(errs, fmt.Errorf("%s: temp file %s left behind", n.Name, p))
			}
		}
		if o.Failed == "" && o.Result != nil && o.Result.Failed == 0 {
			if d := Diff(want, got, 5); len(d) > 0 {
				errs = append(errs, fmt.Errorf("%s reported everything applied but differs from the sender: %s", n.Name, strings.Join(d, "; ")))
			}
			continue
		}
		for p, e := range got {
			if e.Mode.IsRegular() && !hist[p][e.Hash] && !stage.IsTempName(p[strings.LastIndexByte(p, '/')+1:]) {
				errs = append(errs, fmt.Errorf("%s (failed: %q) holds a version of %s no member ever had (torn?)", n.Name, o.Failed, p))
			}
		}
	}
	return errs
}
