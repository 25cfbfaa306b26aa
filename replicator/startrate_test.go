package replicator

import (
	"testing"

	"github.com/makuo/makuo/replicator/session"
)

// TestStartRate: a session starts where the latest one ended, settled only
// if that one had settled; one that ended still probing (a digest round
// of a few datagrams ends at the start rate) leaves the next one probing,
// from no lower than the start rate.
func TestStartRate(t *testing.T) {
	for _, tc := range []struct {
		name        string
		last        float64
		lastSettled bool
		want        float64
		wantSettled bool
	}{
		{"first session", 0, false, session.StartRate, false},
		{"after a digest round", session.StartRate, false, session.StartRate, false},
		{"after one that probed up", 3e9, false, 3e9, false},
		{"after one that probed little", session.StartRate / 4, false, session.StartRate, false},
		{"after one that settled", 7e8, true, 7e8, true},
		{"after one that settled low", 5e7, true, 5e7, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n Node
			if tc.last > 0 {
				n.lastRate.store(tc.last, tc.lastSettled)
			}
			got, settled := n.startRate()
			if got != tc.want || settled != tc.wantSettled {
				t.Errorf("startRate() = %.0f, %v; want %.0f, %v", got, settled, tc.want, tc.wantSettled)
			}
		})
	}
}
