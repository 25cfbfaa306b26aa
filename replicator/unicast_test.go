package replicator

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/control"
)

// TestUnicastNodes: engines in unicast mode over real sockets on
// 127.0.0.1, each told of the next one only, find every other, push to
// all of them, and say how they reach their peers in the status.
func TestUnicastNodes(t *testing.T) {
	const n = 3
	var ports []int
	for range n {
		u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, u.LocalAddr().(*net.UDPAddr).Port)
		u.Close()
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var nodes []*hubNode
	for i := range n {
		cfg := DefaultConfig()
		cfg.Base, cfg.StateDir, cfg.Hostname = t.TempDir(), t.TempDir(), fmt.Sprintf("u%d", i+1)
		cfg.Heartbeat, cfg.SessionTimeout = 100*time.Millisecond, 2*time.Second
		cfg.Port, cfg.Interface = ports[i], "127.0.0.1"
		cfg.Peers = []string{fmt.Sprintf("127.0.0.1:%d", ports[(i+1)%n])}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		ident, err := openIdentity(cfg.StateDir, time.Now(), randomJitter)
		if err != nil {
			t.Fatal(err)
		}
		met := metrics.New(prometheus.NewRegistry(), "test")
		node, err := newNode(cfg, slog.New(slog.DiscardHandler), met, ident, listen)
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
	st, err := nodes[0].Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("unicast peers, port %d", ports[0]); st.Group != want {
		t.Errorf("status group %q, want %q", st.Group, want)
	}
	if err := os.WriteFile(filepath.Join(nodes[0].base, "f"), []byte("unicast"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, fails := pushReq(t, nodes[0], control.PushRequest{Paths: []string{"f"}})
	if len(fails) > 0 || len(sum.Members) != n-1 {
		t.Fatalf("push: summary %+v, failures %+v", sum, fails)
	}
	for _, x := range nodes[1:] {
		if b, err := os.ReadFile(filepath.Join(x.base, "f")); err != nil || string(b) != "unicast" {
			t.Errorf("%s: %q, %v", x.cfg.Hostname, b, err)
		}
	}
}
