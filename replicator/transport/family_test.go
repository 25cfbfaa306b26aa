package transport

import (
	"errors"
	"github.com/makuo/makuo/internal/netiftest"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

// testNet is where a test's members meet: a group on an interface.
type testNet struct {
	group netip.Addr
	iface string
	// maxDatagram fits the interface's MTU (0: the default).
	maxDatagram int
}

// loopback4 is the IPv4 group on the loopback interface.
var loopback4 = testNet{group: netip.MustParseAddr("224.0.0.108"), iface: "lo"}

func (tn testNet) config(id wire.NodeID, port int, key []byte) Config {
	return Config{Group: tn.group, Interface: tn.iface, Port: port, Node: id, Key: key, MaxDatagram: tn.maxDatagram}
}

// forFamilies runs f on the IPv4 loopback group and on an IPv6 link-local
// group.
func forFamilies(t *testing.T, f func(*testing.T, testNet)) {
	t.Run("ipv4", func(t *testing.T) { f(t, loopback4) })
	t.Run("ipv6", func(t *testing.T) { f(t, ipv6Net(t)) })
}

// ipv6Net is a link-local IPv6 group (ff02::/16) on an interface of this
// host. It cannot be the loopback interface: Linux makes every route
// through lo to a non-loopback address, a multicast group's included, a
// reject route, so IPv6 multicast never works there. The datagrams go
// out on the link, which a link-local group and a hop limit of 1 keep
// them on. Without such an interface the test is skipped, or fails in
// CI.
func ipv6Net(t *testing.T) testNet {
	t.Helper()
	ifi, err := netiftest.IPv6LinkLocal()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot run in CI: %v", err)
		}
		t.Skip(err)
	}
	// Our group, not one a service of the host listens on.
	return testNet{group: netip.MustParseAddr("ff02::4d:6b"), iface: ifi.Name,
		maxDatagram: min(ifi.MTU, 1500) - 40 - 8}
}

func TestCheckGroup(t *testing.T) {
	for _, tt := range []struct {
		group, iface string
		want         string // in the error; "" for none
		needsIf      bool
	}{
		{"224.0.0.108", "", "", false},
		{"239.192.0.108", "eth0", "", false},
		{"ff02::108", "eth0", "", false},
		{"ff12::108", "eth0", "", false}, // transient, link-local
		{"ff05::108", "", "", false},
		{"ff08::108", "", "", false},
		{"ff0e::108", "eth0", "", false},
		{"ff7e:140:2001:db8::108", "", "", false}, // embedded rendezvous point
		{"ff02::108", "", "is link-local (ffx2::/16) and needs its interface", true},
		{"ff01::108", "lo", "is interface-local (ffx1::/16): its datagrams never leave this host", false},
		{"ff00::108", "eth0", "has a reserved scope (0)", false},
		{"ff0f::108", "", "has a reserved scope (f)", false},
		{"ff3e::8000:108", "", "is source-specific (ff3x::/32)", false},
		{"ff02::108%eth0", "", "has a zone", false},
		{"::ffff:224.0.0.108", "", "is an IPv4-mapped IPv6 address: give the IPv4 group itself (224.0.0.108)", false},
		{"10.0.0.1", "", "is not a multicast address (224.0.0.0/4 or ff00::/8)", false},
		{"fe80::1", "eth0", "is not a multicast address", false},
	} {
		err := CheckGroup(netip.MustParseAddr(tt.group), tt.iface)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s -i %q: %v", tt.group, tt.iface, err)
			}
			continue
		}
		ge, ok := errors.AsType[*GroupError](err)
		if !ok || !strings.Contains(err.Error(), tt.want) || ge.NeedsInterface != tt.needsIf {
			t.Errorf("%s -i %q: %v, want a GroupError with %q (needs interface %v)", tt.group, tt.iface, err, tt.want, tt.needsIf)
		}
	}
	if err := CheckGroup(netip.Addr{}, ""); err == nil {
		t.Error("the zero Addr is a group")
	}
}

func TestLinkLocalGroup(t *testing.T) {
	for g, want := range map[string]bool{
		"224.0.0.108": true, "224.0.0.255": true, "224.0.1.108": false, "239.192.0.108": false,
		"ff02::108": true, "ff12::108": true, "ff05::108": false, "ff0e::108": false, "fe80::1": false,
	} {
		if got := LinkLocalGroup(netip.MustParseAddr(g)); got != want {
			t.Errorf("LinkLocalGroup(%s) = %v, want %v", g, got, want)
		}
	}
}

// TestSendToAddresses: SendTo takes a unicast address of the group's
// family, a link-local one with its zone (or the Conn's interface when it
// has none), and refuses the rest.
func TestSendToAddresses(t *testing.T) {
	met := metrics.New(prometheus.NewRegistry(), "test")
	for _, tt := range []struct {
		group, iface, to string
		want             string // the address sent to; "" for refused
	}{
		{"224.0.0.108", "", "10.0.0.1:5000", "10.0.0.1"},
		{"224.0.0.108", "", "[::ffff:10.0.0.1]:5000", "10.0.0.1"},
		{"224.0.0.108", "", "[fd77::11]:5000", ""},
		{"224.0.0.108", "", "239.1.2.3:5000", ""},
		{"224.0.0.108", "", "0.0.0.0:5000", ""},
		{"224.0.0.108", "", "10.0.0.1:0", ""},
		{"ff02::108", "eth0", "[fe80::1%eth1]:5000", "fe80::1%eth1"},
		{"ff02::108", "eth0", "[fe80::1]:5000", "fe80::1%eth0"},
		{"ff05::108", "", "[fd77::11]:5000", "fd77::11"},
		{"ff05::108", "", "[fe80::1]:5000", ""}, // no zone to route it by
		{"ff02::108", "eth0", "[ff02::1]:5000", ""},
		{"ff02::108", "eth0", "[::]:5000", ""},
		{"ff02::108", "eth0", "10.0.0.1:5000", ""},
		{"ff02::108", "eth0", "[::ffff:10.0.0.1]:5000", ""},
	} {
		c, err := newConn(Config{Group: netip.MustParseAddr(tt.group), Interface: tt.iface, Port: 5000, Node: 1, Metrics: met})
		if err != nil {
			t.Fatal(err)
		}
		c.ifName = tt.iface // what open sets
		got, err := c.unicastTo(netip.MustParseAddrPort(tt.to))
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("group %s: SendTo %s accepted (as %v)", tt.group, tt.to, got)
		case tt.want != "" && (err != nil || got.String() != tt.want):
			t.Errorf("group %s: SendTo %s: %v, %v; want %s", tt.group, tt.to, got, err, tt.want)
		}
	}
	// The zero AddrPort, which a Packet from nowhere would carry.
	c, _ := newConn(Config{Group: netip.MustParseAddr("ff05::108"), Port: 5000, Node: 1, Metrics: met})
	if err := c.SendTo(&wire.Goodbye{}, netip.AddrPort{}); err == nil {
		t.Error("SendTo the zero AddrPort accepted")
	}
}

// TestFindInterface: -i takes a name, an IPv4 address or an IPv6 address
// (with the interface as zone, or without).
func TestFindInterface(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skip("no lo:", err)
	}
	for _, name := range []string{"lo", "127.0.0.1", "::1"} {
		ifi, err := findInterface(name)
		if err != nil || ifi.Index != lo.Index {
			t.Errorf("findInterface(%q) = %v, %v; want lo", name, ifi, err)
		}
	}
	for _, name := range []string{"nosuch0", "192.0.2.99", "::1%nosuch0", "2001:db8::99"} {
		if ifi, err := findInterface(name); err == nil {
			t.Errorf("findInterface(%q) = %v, want an error", name, ifi.Name)
		}
	}
	if ifi, err := netiftest.IPv6LinkLocal(); err == nil {
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			p, _ := netip.ParsePrefix(a.String())
			if !p.Addr().IsLinkLocalUnicast() || !p.Addr().Is6() {
				continue
			}
			for _, name := range []string{p.Addr().String(), p.Addr().WithZone(ifi.Name).String()} {
				got, err := findInterface(name)
				if err != nil || got.Index != ifi.Index {
					t.Errorf("findInterface(%q) = %v, %v; want %s", name, got, err, ifi.Name)
				}
			}
			if got, err := findInterface(p.Addr().WithZone("lo").String()); err == nil {
				t.Errorf("findInterface(%s%%lo) = %s: the address is not lo's", p.Addr(), got.Name)
			}
			break
		}
	}
}

// TestLocalAddr: LocalAddr is the source peers see our datagrams from
// (the kernel's pick for the group on the interface), on both families;
// over IPv6 on a link-local group it is link-local and carries the zone.
func TestLocalAddr(t *testing.T) {
	forFamilies(t, func(t *testing.T, tn testNet) {
		port := nextPort()
		a := startNodeWith(t, tn.config(1, port, nil))
		b := startNodeWith(t, tn.config(2, port, nil))
		if err := a.conn.Send(&wire.Goodbye{}); err != nil {
			t.Fatal(err)
		}
		p := recv(t, b.conn)
		defer p.Release()
		if got := a.conn.LocalAddr(); !got.IsValid() || got != p.From.Addr() {
			t.Fatalf("LocalAddr %v, datagram from %v", got, p.From)
		}
		if tn.group.Is6() && (!p.From.Addr().IsLinkLocalUnicast() || p.From.Addr().Zone() != tn.iface) {
			t.Fatalf("datagram from %v, want a link-local address with zone %s", p.From, tn.iface)
		}
	})
}

// TestGroupSocketBound: the group socket is bound to the group's address,
// not the wildcard: it takes neither unicast datagrams to the group's
// port nor another group's datagrams on that port (joined by another
// socket of the host), only its group's.
func TestGroupSocketBound(t *testing.T) {
	port := nextPort()
	a := startNode(t, 1, port, nil)
	b := startNodeWith(t, Config{Group: netip.MustParseAddr("224.0.0.109"), Interface: "lo", Port: port, Node: 2})
	c := startNode(t, 3, port, nil)
	// A well-formed datagram unicast to the group's port on the loopback
	// address: a socket bound to the wildcard would take it.
	uni, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer uni.Close()
	if _, err := uni.Write(crafter{t: t}.datagram(4, 1, 1, &wire.Goodbye{})); err != nil {
		t.Fatal(err)
	}
	if err := b.conn.Send(&wire.Goodbye{}); err != nil {
		t.Fatal(err)
	}
	if err := c.conn.Send(&wire.Goodbye{}); err != nil {
		t.Fatal(err)
	}
	// c's datagram went last: what a took before it got past the binding.
	p := recv(t, a.conn)
	defer p.Release()
	if p.Header.Node != 3 {
		t.Fatalf("the group socket took a datagram of node %v (unicast to its port, or another group's)", p.Header.Node)
	}
	if got := testutil.ToFloat64(a.met.DatagramsReceived); got != 1 {
		t.Fatalf("%v datagrams received, want 1", got)
	}
	select {
	case p := <-a.conn.Packets():
		t.Fatalf("another datagram of node %v", p.Header.Node)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestZoned: a link-local peer address takes the name of the Conn's
// interface, whatever the process-wide caches named its zone; other
// addresses, and any address on a Conn without an interface, keep theirs.
func TestZoned(t *testing.T) {
	with, without := &Conn{ifName: "eth0", ifZone: "2"}, &Conn{}
	for _, tt := range []struct {
		c        *Conn
		in, want string
	}{
		{with, "fe80::1%ifb0", "fe80::1%eth0"},
		{with, "fe80::1%2", "fe80::1%eth0"},
		{with, "fe80::1", "fe80::1%eth0"},
		{with, "fd77::11", "fd77::11"},
		{with, "10.0.0.1", "10.0.0.1"},
		{without, "fe80::1%ifb0", "fe80::1%ifb0"},
	} {
		if got := tt.c.zoned(netip.MustParseAddr(tt.in)); got.String() != tt.want {
			t.Errorf("zoned(%s) on %q = %v, want %s", tt.in, tt.c.ifName, got, tt.want)
		}
	}
}
