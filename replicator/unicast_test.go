package replicator

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/makuo/makuo/replicator/control"
	"github.com/makuo/makuo/replicator/transport"
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
	nodes := startNodes(t, n, func(i int, cfg *Config) {
		cfg.Hostname = fmt.Sprintf("u%d", i+1)
		cfg.Port, cfg.Interface = ports[i], "127.0.0.1"
		cfg.Peers = []string{fmt.Sprintf("127.0.0.1:%d", ports[(i+1)%n])}
	}, func(int) func(transport.Config) (Link, error) { return listen })
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
