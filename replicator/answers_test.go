package replicator

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/control"
	"github.com/makuo/makuo/replicator/transport/transporttest"
)

// multicastReplies is a sender's link that does not take unicast answers,
// as a daemon of before them (or one run with --multicast-replies).
type multicastReplies struct{ *transporttest.HubConn }

func (multicastReplies) UnicastReplies() bool { return false }

// TestAnswersUnicast: receivers answer a sender that takes unicast answers
// by unicast, so no receiver gets another's answers; a sender that does
// not is answered by multicast, as before, and its push works as well.
func TestAnswersUnicast(t *testing.T) {
	for _, tc := range []struct {
		name      string
		unicast   bool
		wantCross func(cross, heartbeats uint64) bool
	}{
		// Between two receivers only heartbeats flow, each way one a
		// second.
		{"unicast", true, func(cross, heartbeats uint64) bool { return cross <= heartbeats }},
		{"multicast", false, func(cross, heartbeats uint64) bool { return cross >= heartbeats+30 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := transporttest.NewHub(11, transporttest.Faults{})
			nodes := startHubNodesWith(t, hub, 3, func(c *Config) { c.Heartbeat = time.Second },
				func(i int, c *transporttest.HubConn) Link {
					if i == 0 && !tc.unicast {
						return multicastReplies{c}
					}
					return c
				})
			src := nodes[0].base
			// Enough entries for many offer windows, each answered by a need.
			for i := range 1000 {
				p := filepath.Join(src, fmt.Sprintf("d%02d", i%10), fmt.Sprintf("f%04d", i))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(p), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			before, start := hub.Stats(), time.Now()
			sum, fails := pushReq(t, nodes[0], control.PushRequest{Recursive: true})
			heartbeats := 2 * uint64(time.Since(start)/time.Second+2)
			if len(fails) > 0 || len(sum.Members) != 2 {
				t.Fatalf("summary %+v, failures %+v", sum, fails)
			}
			after := hub.Stats()
			delivered := func(from, to uint64) uint64 {
				k := transporttest.Link{From: nodes[from].ID(), To: nodes[to].ID()}
				return after[k].Delivered - before[k].Delivered
			}
			cross, toSender := delivered(1, 2)+delivered(2, 1), delivered(1, 0)+delivered(2, 0)
			if !tc.wantCross(cross, heartbeats) || toSender < 30 {
				t.Errorf("datagrams between the receivers %d (heartbeats: at most %d), from them to the sender %d",
					cross, heartbeats, toSender)
			}
			for _, x := range nodes[1:] {
				if _, err := os.Stat(filepath.Join(x.base, "d09", "f0999")); err != nil {
					t.Errorf("%s: %v", x.cfg.Hostname, err)
				}
			}
		})
	}
}
