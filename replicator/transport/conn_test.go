package transport

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testPort hands each test its own port so tests never hear each other.
var testPort = struct {
	sync.Mutex
	next int
}{next: 47000}

func nextPort() int {
	testPort.Lock()
	defer testPort.Unlock()
	testPort.next++
	return testPort.next
}

type node struct {
	conn *Conn
	met  *metrics.Metrics
}

// startNode opens a Conn on the loopback interface and runs it until the
// test ends.
func startNode(t *testing.T, id wire.NodeID, port int, key []byte) *node {
	t.Helper()
	met := metrics.New(prometheus.NewRegistry(), "test")
	c, err := Listen(Config{
		Group: netip.MustParseAddr("224.0.0.108"), Port: port, Interface: "lo",
		Node: id, Incarnation: uint64(time.Now().UnixNano()), Key: key, Metrics: met,
	})
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &node{conn: c, met: met}
}

func recv(t *testing.T, c *Conn) *Packet {
	t.Helper()
	select {
	case p := <-c.Packets():
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no datagram within 5s")
		return nil
	}
}

func TestSendReceive(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  []byte
	}{{"plain", nil}, {"sealed", make([]byte, 32)}} {
		t.Run(tc.name, func(t *testing.T) {
			port := nextPort()
			a := startNode(t, 1, port, tc.key)
			b := startNode(t, 2, port, tc.key)
			hb := &wire.Heartbeat{Roles: wire.RoleSend, Hostname: "a", Version: "v"}
			if err := a.conn.Send(hb); err != nil {
				t.Fatal(err)
			}
			p := recv(t, b.conn)
			defer p.Release()
			if p.Header.Node != 1 || p.Header.Type != wire.TypeHeartbeat {
				t.Fatalf("header %+v", p.Header)
			}
			m, err := wire.ParsePayload(p.Header.Type, p.Payload)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.(*wire.Heartbeat).Hostname; got != "a" {
				t.Fatalf("hostname %q", got)
			}
			// The sender does not hear itself.
			select {
			case p := <-a.conn.Packets():
				t.Fatalf("sender received its own datagram %+v", p.Header)
			case <-time.After(100 * time.Millisecond):
			}
		})
	}
}

func TestWrongKeyDropped(t *testing.T) {
	port := nextPort()
	k1, k2 := make([]byte, 32), make([]byte, 32)
	k2[0] = 1
	a := startNode(t, 1, port, k1)
	b := startNode(t, 2, port, k2)
	c := startNode(t, 3, port, nil)
	for range 3 {
		if err := a.conn.Send(&wire.Goodbye{}); err != nil {
			t.Fatal(err)
		}
	}
	waitCounter(t, b.met.DatagramsDropped.WithLabelValues(metrics.DropAuth), 3)
	waitCounter(t, c.met.DatagramsDropped.WithLabelValues(metrics.DropAuth), 3)
	if len(b.conn.Packets()) != 0 || len(c.conn.Packets()) != 0 {
		t.Fatal("a datagram with the wrong key was delivered")
	}
}

func waitCounter(t *testing.T, c prometheus.Collector, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := testutil.ToFloat64(c)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("counter = %v, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestListenErrors(t *testing.T) {
	met := metrics.New(prometheus.NewRegistry(), "test")
	tests := []struct {
		name string
		cfg  Config
	}{
		{"unicast group", Config{Group: netip.MustParseAddr("10.0.0.1"), Port: 5000, Metrics: met}},
		{"bad port", Config{Group: netip.MustParseAddr("224.0.0.108"), Port: 70000, Metrics: met}},
		{"no interface", Config{Group: netip.MustParseAddr("224.0.0.108"), Port: 5000, Interface: "nosuch0", Metrics: met}},
		{"no address", Config{Group: netip.MustParseAddr("224.0.0.108"), Port: 5000, Interface: "192.0.2.99", Metrics: met}},
		{"short key", Config{Group: netip.MustParseAddr("224.0.0.108"), Port: 5000, Key: []byte{1}, Metrics: met}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Listen(tt.cfg)
			if err == nil {
				c.Close()
				t.Fatal("Listen succeeded")
			}
		})
	}
}

func TestDeriveKey(t *testing.T) {
	if _, err := DeriveKey([]byte("short\n")); !errors.Is(err, ErrWeakKey) {
		t.Fatalf("short key: %v", err)
	}
	k1, err := DeriveKey([]byte("0123456789abcdef\n"))
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := DeriveKey([]byte("  0123456789abcdef"))
	k3, _ := DeriveKey([]byte("0123456789abcdeg"))
	if string(k1) != string(k2) || string(k1) == string(k3) || len(k1) != 32 {
		t.Fatal("derivation not as documented")
	}
}
