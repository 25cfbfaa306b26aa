package e2e

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/replicator/transport/peers"
	"github.com/makuo/makuo/replicator/transport/transporttest"
	"github.com/makuo/makuo/replicator/wire"
)

// TestTransportConformance runs transporttest's conformance suite against
// the real multicast transport, one member per network namespace on the
// lab's bridge, on the IPv4 group and on the link-local IPv6 one, plain
// and sealed, and against unicast mode on a bridge that drops multicast:
// what the in-memory network promises is checked against the real wire.
func TestTransportConformance(t *testing.T) {
	t.Run("unicast", transportConformanceUnicast)
	lab := NewLab(t, 3)
	// Each case gets a port of its own, so that none hears another's
	// datagrams.
	port := 47100
	for _, tc := range []struct {
		name  string
		group string
		iface func(*Host) string
		key   []byte
	}{
		{"ipv4/plain", "224.0.0.108", func(h *Host) string { return h.Addr }, nil},
		{"ipv4/sealed", "224.0.0.108", func(h *Host) string { return h.Addr }, []byte("0123456789abcdef0123456789abcdef")},
		{"ipv6/plain", ipv6Group, func(*Host) string { return "eth0" }, nil},
		{"ipv6/sealed", ipv6Group, func(*Host) string { return "eth0" }, []byte("0123456789abcdef0123456789abcdef")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			transporttest.TestConn(t, func(t testing.TB, ids []wire.NodeID) []transporttest.Conn {
				t.Helper()
				if len(ids) > len(lab.Hosts) {
					t.Fatalf("%d members asked for, the lab has %d hosts", len(ids), len(lab.Hosts))
				}
				port++
				var conns []transporttest.Conn
				for i, id := range ids {
					h := lab.Hosts[i]
					var c *transport.Conn
					err := h.InNamespace(func() error {
						var err error
						c, err = transport.Listen(transport.Config{
							Group: netip.MustParseAddr(tc.group), Port: port, Interface: tc.iface(h),
							Node: id, Incarnation: uint64(time.Now().UnixNano()), Key: tc.key,
							Metrics: metrics.New(prometheus.NewRegistry(), "e2e"),
						})
						return err
					})
					if err != nil {
						t.Fatalf("%s: Listen: %v", h.Name, err)
					}
					t.Cleanup(func() { c.Close() })
					conns = append(conns, c)
				}
				return conns
			})
		})
	}
}

// transportConformanceUnicast runs the suite against unicast mode (no
// group), each member listing the others, where the bridge drops every
// multicast frame.
func transportConformanceUnicast(t *testing.T) {
	lab := NewNoMcastLab(t, 3)
	port := 47200
	for _, tc := range []struct {
		name string
		key  []byte
	}{{"plain", nil}, {"sealed", []byte("0123456789abcdef0123456789abcdef")}} {
		t.Run(tc.name, func(t *testing.T) {
			transporttest.TestConn(t, func(t testing.TB, ids []wire.NodeID) []transporttest.Conn {
				t.Helper()
				port++
				var conns []transporttest.Conn
				for i, id := range ids {
					h := lab.Hosts[i]
					met := metrics.New(prometheus.NewRegistry(), "e2e")
					pc := peers.Config{Port: port, Interval: time.Second, MissedHeartbeats: 3, Metrics: met}
					for _, o := range lab.Hosts[:len(ids)] {
						if o != h {
							pc.Specs = append(pc.Specs, peers.Spec{Host: o.Addr, Port: uint16(port)})
						}
					}
					var c *transport.Conn
					err := h.InNamespace(func() error {
						set, err := peers.New(context.Background(), pc)
						if err != nil {
							return err
						}
						c, err = transport.Listen(transport.Config{
							Port: port, Interface: h.Addr, Peers: set,
							Node: id, Incarnation: uint64(time.Now().UnixNano()), Key: tc.key, Metrics: met,
						})
						return err
					})
					if err != nil {
						t.Fatalf("%s: Listen: %v", h.Name, err)
					}
					t.Cleanup(func() { c.Close() })
					conns = append(conns, c)
				}
				return conns
			})
		})
	}
}
