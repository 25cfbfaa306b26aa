package replicator

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/control"
	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/replicator/transport/transporttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// hubNode is a daemon's engine running in this process on an in-memory
// network.
type hubNode struct {
	*Node
	base string
	met  *metrics.Metrics
}

// startHubNodes starts n engines on hub and waits until each hears all the
// others; they stop when the test ends.
func startHubNodes(t testing.TB, hub *transporttest.Hub, n int, tweak func(*Config)) []*hubNode {
	t.Helper()
	return startHubNodesWith(t, hub, n, tweak, nil)
}

// startHubNodesWith is startHubNodes whose node i runs on wrap(i, conn)
// when wrap is set.
func startHubNodesWith(t testing.TB, hub *transporttest.Hub, n int, tweak func(*Config), wrap func(int, *transporttest.HubConn) Link) []*hubNode {
	t.Helper()
	return startNodes(t, n, func(_ int, cfg *Config) {
		if tweak != nil {
			tweak(cfg)
		}
	}, func(i int) func(transport.Config) (Link, error) {
		return func(tc transport.Config) (Link, error) {
			c, err := hub.Conn(tc.Node, tc.MaxDatagram)
			if err != nil || wrap == nil {
				return c, err
			}
			return wrap(i, c), nil
		}
	})
}

// startNodes starts n engines, node i configured by setup(i, cfg) over
// the link dial(i) opens, and waits until each hears all the others; they
// stop when the test ends.
func startNodes(t testing.TB, n int, setup func(int, *Config), dial func(int) func(transport.Config) (Link, error)) []*hubNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var nodes []*hubNode
	for i := range n {
		cfg := DefaultConfig()
		cfg.Base, cfg.StateDir, cfg.Hostname = t.TempDir(), t.TempDir(), "h"+string(rune('1'+i))
		cfg.Heartbeat = 100 * time.Millisecond
		cfg.SessionTimeout = 2 * time.Second
		setup(i, &cfg)
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		ident, err := openIdentity(cfg.StateDir, time.Now(), randomJitter)
		if err != nil {
			t.Fatal(err)
		}
		met := metrics.New(prometheus.NewRegistry(), "test")
		node, err := newNode(cfg, slog.New(slog.DiscardHandler), met, ident, dial(i))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := node.Run(ctx); err != nil {
				t.Errorf("%s: %v", cfg.Hostname, err)
			}
		})
		nodes = append(nodes, &hubNode{Node: node, base: cfg.Base, met: met})
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, x := range nodes {
		for x.members.Table().Len() < n-1 || x.Root() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s hears %d members", x.cfg.Hostname, x.members.Table().Len())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nodes
}

// pushReq pushes from x and returns its summary and failure events.
func pushReq(t testing.TB, x *hubNode, req control.PushRequest) (*control.Summary, []control.Event) {
	t.Helper()
	var sum *control.Summary
	var fails []control.Event
	err := x.Push(context.Background(), req, func(ev control.Event) {
		switch ev.Type {
		case control.EventSummary:
			sum = ev.Summary
		case control.EventFailure:
			fails = append(fails, ev)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return sum, fails
}

// TestHubPush: engines on an in-memory network with loss and reordering
// push a tree, and every member ends with it; then a mirror push deletes
// what the sender no longer has.
func TestHubPush(t *testing.T) {
	hub := transporttest.NewHub(7, transporttest.Faults{Loss: 0.02, Reorder: 0.02})
	nodes := startHubNodes(t, hub, 3, nil)
	src := nodes[0].base
	for i, size := range []int{0, 100, 5000, 300_000} {
		p := filepath.Join(src, "d", "f"+string(rune('0'+i)))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum, fails := pushReq(t, nodes[0], control.PushRequest{Recursive: true})
	if len(fails) > 0 || len(sum.Members) != 2 || sum.Changed == 0 {
		t.Fatalf("summary %+v, failures %+v", sum, fails)
	}
	for _, x := range nodes[1:] {
		if fi, err := os.Stat(filepath.Join(x.base, "d", "f3")); err != nil || fi.Size() != 300_000 {
			t.Fatalf("%s: %v %v", x.cfg.Hostname, fi, err)
		}
	}
	if err := os.Remove(filepath.Join(src, "d", "f1")); err != nil {
		t.Fatal(err)
	}
	sum, fails = pushReq(t, nodes[0], control.PushRequest{Recursive: true, Delete: true})
	if len(fails) > 0 || sum.Deleted != 2 {
		t.Fatalf("mirror: summary %+v, failures %+v", sum, fails)
	}
	for _, x := range nodes[1:] {
		if _, err := os.Stat(filepath.Join(x.base, "d", "f1")); !os.IsNotExist(err) {
			t.Fatalf("%s: d/f1 not deleted: %v", x.cfg.Hostname, err)
		}
	}
}

// TestPathLocks: pushes of overlapping paths wait for each other, pushes
// of disjoint paths do not.
func TestPathLocks(t *testing.T) {
	var l pathLocks
	ctx := context.Background()
	unlockA, err := l.lock(ctx, []string{"a/b"})
	if err != nil {
		t.Fatal(err)
	}
	unlockC, err := l.lock(ctx, []string{"c", "ab"}) // disjoint: at once
	if err != nil {
		t.Fatal(err)
	}
	for _, roots := range [][]string{{"a"}, {"a/b/c"}, {"."}, {"x", "a/b"}} {
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		if _, err := l.lock(short, roots); err == nil {
			t.Errorf("%v taken while a/b is held", roots)
		}
		cancel()
	}
	got := make(chan struct{})
	go func() {
		unlock, err := l.lock(ctx, []string{"a"})
		if err == nil {
			unlock()
		}
		close(got)
	}()
	unlockA()
	<-got
	unlockC()
}

// TestTargetsShareHostname: members are targeted by node id; a hostname
// two members share (containers, several daemons on a host) names both,
// and a node id names one (issue 12: the first match used to win).
func TestTargetsShareHostname(t *testing.T) {
	hub := transporttest.NewHub(3, transporttest.Faults{})
	i := 0
	nodes := startHubNodes(t, hub, 3, func(c *Config) {
		if i > 0 {
			c.Hostname = "web"
		}
		i++
	})
	write := func(name string) {
		if err := os.WriteFile(filepath.Join(nodes[0].base, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("both")
	sum, fails := pushReq(t, nodes[0], control.PushRequest{Paths: []string{"both"}, Targets: []string{"web"}})
	if len(fails) > 0 || len(sum.Members) != 2 {
		t.Fatalf("-t web: members %v, failures %v", sum.Members, fails)
	}
	write("one")
	sum, fails = pushReq(t, nodes[0], control.PushRequest{Paths: []string{"one"}, Targets: []string{nodes[2].ID().String()}})
	if len(fails) > 0 || len(sum.Members) != 1 {
		t.Fatalf("-t ID: members %v, failures %v", sum.Members, fails)
	}
	for k, x := range nodes[1:] {
		_, errBoth := os.Stat(filepath.Join(x.base, "both"))
		_, errOne := os.Stat(filepath.Join(x.base, "one"))
		if errBoth != nil || (errOne == nil) != (k == 1) {
			t.Errorf("%s: both %v, one %v", x.ID(), errBoth, errOne)
		}
	}
}

// TestItemize: a dry run with Itemize says per path and member what
// differs, rsync -i style, and changes nothing.
func TestItemize(t *testing.T) {
	hub := transporttest.NewHub(5, transporttest.Faults{})
	nodes := startHubNodes(t, hub, 2, nil)
	src, dst := nodes[0].base, nodes[1].base
	put := func(base, name, content string, mode os.FileMode, mtime time.Time) {
		p := filepath.Join(base, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	t1, t2 := time.Unix(1_600_000_000, 0), time.Unix(1_600_000_100, 0)
	put(src, "new", "x", 0o644, t1)
	put(src, "content", "new content", 0o644, t1)
	put(dst, "content", "old content", 0o644, t1)
	put(src, "meta", "same", 0o600, t2)
	put(dst, "meta", "same", 0o644, t1)
	put(dst, "extra", "only here", 0o644, t1)
	items := map[string]string{}
	err := nodes[0].Push(context.Background(), control.PushRequest{Recursive: true, Delete: true, DryRun: true, Itemize: true},
		func(ev control.Event) {
			if ev.Type == control.EventPath {
				items[ev.Path] = ev.Items
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"new": ">f++++", "content": ">fc...", "meta": ".f.tp.", "extra": "*deleting"}
	for p, w := range want {
		if items[p] != w {
			t.Errorf("%s: %q, want %q (all: %v)", p, items[p], w, items)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "content")); string(b) != "old content" {
		t.Fatal("a dry run changed a file")
	}
}
