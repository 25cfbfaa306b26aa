package replicator

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/makuo/makuo/replicator/control"
	"github.com/makuo/makuo/replicator/transport/transporttest"
)

// TestIPv6Members: engines on a link-local IPv6 group, whose members know
// each other by link-local addresses with a zone: the status names the
// group as an address with a port is written, members list each other's
// addresses with the zone, a push is answered by unicast to such an
// address (the zone must survive to SendTo, or the answers are lost), and
// -t takes a member's address with its zone or without.
func TestIPv6Members(t *testing.T) {
	hub := transporttest.NewHub(5, transporttest.Faults{})
	hub.UseIPv6("eth0")
	nodes := startHubNodes(t, hub, 3, func(c *Config) {
		c.Group, c.Interface = netip.MustParseAddr("ff02::108"), "eth0"
	})
	st, err := nodes[0].Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Group != "[ff02::108]:5000" {
		t.Errorf("status group %q, want [ff02::108]:5000", st.Group)
	}
	ms, err := nodes[0].Members(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{}
	for _, m := range ms {
		addrs[m.Hostname] = m.Addr
	}
	want := map[string]string{"h1": "fe80::1%eth0", "h2": "fe80::2%eth0", "h3": "fe80::3%eth0"}
	for h, a := range want {
		if addrs[h] != a {
			t.Errorf("members: %s at %q, want %q (all: %v)", h, addrs[h], a, addrs)
		}
	}
	write := func(name string) {
		if err := os.WriteFile(filepath.Join(nodes[0].base, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("all")
	sum, fails := pushReq(t, nodes[0], control.PushRequest{Paths: []string{"all"}})
	if len(fails) > 0 || len(sum.Members) != 2 {
		t.Fatalf("push: summary %+v, failures %+v", sum, fails)
	}
	for i, target := range []string{"fe80::3", "fe80::3%eth0"} {
		name := "to-h3-" + string(rune('a'+i))
		write(name)
		sum, fails := pushReq(t, nodes[0], control.PushRequest{Paths: []string{name}, Targets: []string{target}})
		if len(fails) > 0 || len(sum.Members) != 1 {
			t.Fatalf("-t %s: summary %+v, failures %+v", target, sum, fails)
		}
		if _, err := os.Stat(filepath.Join(nodes[2].base, name)); err != nil {
			t.Errorf("-t %s: h3 lacks %s: %v", target, name, err)
		}
		if _, err := os.Stat(filepath.Join(nodes[1].base, name)); err == nil {
			t.Errorf("-t %s: h2 got %s too", target, name)
		}
	}
	for _, x := range nodes[1:] {
		if _, err := os.Stat(filepath.Join(x.base, "all")); err != nil {
			t.Errorf("%s: %v", x.cfg.Hostname, err)
		}
	}
}
