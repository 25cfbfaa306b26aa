package membership

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/makuo/makuo/replicator/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bus is an in-memory multicast group: every Send is handed to every other
// attached service.
type bus struct {
	mu    sync.Mutex
	nodes []*busNode
}

type busNode struct {
	bus  *bus
	id   wire.NodeID
	inc  uint64
	addr netip.Addr
	svc  *Service
	mute bool // drops everything this node sends, like a SIGKILLed process
}

func (n *busNode) Send(m wire.Message) error {
	n.bus.mu.Lock()
	defer n.bus.mu.Unlock()
	if n.mute {
		return nil
	}
	h := wire.Header{Type: m.Type(), Node: n.id, Incarnation: n.inc}
	for _, o := range n.bus.nodes {
		if o != n && o.svc != nil {
			o.svc.Handle(h, m, n.addr)
		}
	}
	return nil
}

func (b *bus) add(t *testing.T, id wire.NodeID, host string) *busNode {
	t.Helper()
	n := &busNode{bus: b, id: id, inc: 1, addr: netip.AddrFrom4([4]byte{10, 0, 0, byte(id)})}
	cfg := DefaultConfig()
	cfg.Hostname, cfg.Version, cfg.Roles = host, "test", wire.RoleSend|wire.RoleRecv
	svc, err := New(cfg, n)
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	n.svc = svc
	b.nodes = append(b.nodes, n)
	b.mu.Unlock()
	return n
}

func hosts(s *Service) []string {
	var out []string
	for _, m := range s.Table().Snapshot() {
		out = append(out, m.Hostname)
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestJoinExpireGoodbye(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &bus{}
		nodes := []*busNode{b.add(t, 1, "c"), b.add(t, 2, "a"), b.add(t, 3, "b")}
		ctx, cancel := context.WithCancel(context.Background())
		cancels := make([]context.CancelFunc, len(nodes))
		var wg sync.WaitGroup
		for i, n := range nodes {
			nctx, ncancel := context.WithCancel(ctx)
			cancels[i] = ncancel
			wg.Go(func() { n.svc.Run(nctx) })
		}
		defer func() { cancel(); wg.Wait() }()

		// Joining takes one round of early heartbeats, not an interval.
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		if got := hosts(nodes[0].svc); !equal(got, []string{"a", "b"}) {
			t.Fatalf("node c sees %v", got)
		}

		// A silent member (killed) is expired after ~3.5 intervals, not before.
		b.mu.Lock()
		nodes[1].mute = true
		b.mu.Unlock()
		cancels[1]()
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if got := hosts(nodes[0].svc); !equal(got, []string{"a", "b"}) {
			t.Fatalf("after 3s node c sees %v, want a still there", got)
		}
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		if got := hosts(nodes[0].svc); !equal(got, []string{"b"}) {
			t.Fatalf("after 4.5s node c sees %v, want a expired", got)
		}

		// A goodbye removes the member at once.
		cancels[2]()
		synctest.Wait()
		if got := hosts(nodes[0].svc); len(got) != 0 {
			t.Fatalf("after goodbye node c sees %v", got)
		}
	})
}

func TestTableIncarnations(t *testing.T) {
	tab := NewTable(3, time.Second, 16)
	now := time.Unix(1000, 0)
	hb := &wire.Heartbeat{Hostname: "h", Interval: time.Second}
	addr := netip.MustParseAddr("10.0.0.1")
	steps := []struct {
		inc  uint64
		want Change
	}{{5, Joined}, {5, Refreshed}, {4, Stale}, {6, Restarted}, {6, Refreshed}}
	for _, s := range steps {
		if got := tab.Heard(wire.Header{Node: 9, Incarnation: s.inc}, hb, addr, now); got != s.want {
			t.Fatalf("incarnation %d: got %v want %v", s.inc, got, s.want)
		}
	}
	if _, ok := tab.Leave(9, 5, addr); ok {
		t.Fatal("goodbye from an older incarnation removed the member")
	}
	if _, ok := tab.Leave(9, 6, addr); !ok || tab.Len() != 0 {
		t.Fatal("goodbye did not remove the member")
	}
}

func TestNewValidates(t *testing.T) {
	base := DefaultConfig()
	base.Hostname = "h"
	for name, mut := range map[string]func(*Config){
		"interval": func(c *Config) { c.Interval = 0 },
		"missed":   func(c *Config) { c.MissedHeartbeats = 0 },
		"jitter":   func(c *Config) { c.Jitter = 1 },
		"long":     func(c *Config) { c.Interval = MaxInterval + time.Millisecond },
		"members":  func(c *Config) { c.MaxMembers = 0 },
		"hostname": func(c *Config) { c.Hostname = "" },
	} {
		cfg := base
		mut(&cfg)
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("%s: New accepted a bad config", name)
		}
	}
}
