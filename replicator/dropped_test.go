package replicator

import (
	"slices"
	"strings"
	"testing"

	"github.com/makuo/makuo/replicator/control"
	"github.com/makuo/makuo/replicator/membership"
	"github.com/makuo/makuo/replicator/session"
	"github.com/makuo/makuo/replicator/wire"
)

func TestFateOf(t *testing.T) {
	dropped, other := wire.NodeID(1), wire.NodeID(2)
	recv := membership.Member{ID: dropped, Roles: wire.RoleSend | wire.RoleRecv}
	watcher := membership.Member{ID: other, Roles: wire.RoleSend | wire.RoleRecv | wire.RoleWatch}
	plain := membership.Member{ID: other, Roles: wire.RoleSend | wire.RoleRecv}
	noSendWatcher := membership.Member{ID: other, Roles: wire.RoleRecv | wire.RoleWatch}
	for _, c := range []struct {
		name        string
		members     []membership.Member
		selfWatches bool
		want        fate
	}{
		{"gone from the table", []membership.Member{plain}, false, fateLost},
		{"gone from the table, a watcher left", []membership.Member{watcher}, false, fateLostCatch},
		{"heard again, another member watches", []membership.Member{recv, watcher}, false, fateCatchUp},
		{"heard again, this daemon watches", []membership.Member{recv, plain}, true, fateCatchUp},
		{"heard again, nobody watches", []membership.Member{recv, plain}, false, fatePushAgain},
		{"heard again, the watcher cannot send", []membership.Member{recv, noSendWatcher}, false, fatePushAgain},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := fateOf(dropped, c.members, c.selfWatches); got != c.want {
				t.Errorf("fateOf = %v, want %v", got, c.want)
			}
		})
	}
}

// TestReportFates: the push's result tells a member that applied from one
// dropped and to be caught up and from one lost, in the failure events and
// in the summary's lists.
func TestReportFates(t *testing.T) {
	o := &outcome{members: []memberOutcome{
		{Outcome: session.Outcome{Result: &wire.Result{}}, hostname: "applied"},
		{Outcome: session.Outcome{Failed: "left the group during data"}, hostname: "survivor", fate: fateCatchUp},
		{Outcome: session.Outcome{Failed: "left the group during data"}, hostname: "relay", fate: fateLostCatch},
		{Outcome: session.Outcome{Failed: "no answer for 5s during data", Dropped: true}, hostname: "alone", fate: fatePushAgain},
	}}
	reasons := map[string]string{}
	sum := report(o, control.PushRequest{}, func(ev control.Event) {
		if ev.Type == control.EventFailure {
			reasons[ev.Member] = ev.Reason
		}
	})
	if want := []string{"survivor", "relay", "alone"}; !slices.Equal(sum.FailedMembers, want) {
		t.Errorf("failed members %q, want %q", sum.FailedMembers, want)
	}
	if !slices.Equal(sum.CatchUp, []string{"survivor"}) || !slices.Equal(sum.Lost, []string{"relay"}) {
		t.Errorf("catch-up %q, lost %q; want [survivor], [relay]", sum.CatchUp, sum.Lost)
	}
	for member, want := range map[string]string{
		"survivor": "left the group during data; heard since: catch-up",
		"relay":    "left the group during data; lost",
		"alone":    "no answer for 5s during data; heard since, but no member watches",
	} {
		if !strings.HasPrefix(reasons[member], want) {
			t.Errorf("%s: reason %q, want it to start %q", member, reasons[member], want)
		}
	}
	if _, ok := reasons["applied"]; ok {
		t.Errorf("a failure reported for the member that applied: %q", reasons["applied"])
	}
}
