package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

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
	return startNodeCfg(t, id, port, key, false)
}

func startNodeCfg(t *testing.T, id wire.NodeID, port int, key []byte, noOffload bool) *node {
	t.Helper()
	return startNodeWith(t, Config{Port: port, Node: id, Key: key, NoOffload: noOffload})
}

// startNodeWith runs a Conn of cfg; without a Group, on the loopback
// interface's IPv4 group.
func startNodeWith(t *testing.T, cfg Config) *node {
	t.Helper()
	if !cfg.Group.IsValid() {
		cfg.Group, cfg.Interface = loopback4.group, loopback4.iface
	}
	return runNode(t, cfg)
}

// runNode runs a Conn of cfg as it is until the test ends.
func runNode(t *testing.T, cfg Config) *node {
	t.Helper()
	met := cfg.Metrics
	if met == nil {
		met = metrics.New(prometheus.NewRegistry(), "test")
	}
	cfg.Incarnation, cfg.Metrics = uint64(time.Now().UnixNano()), met
	c, err := Listen(cfg)
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

// sockoptInt reads an integer option of c's group socket.
func sockoptInt(t *testing.T, c *Conn, level, opt int) int {
	t.Helper()
	rc, err := c.udp.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

func TestSendReceive(t *testing.T) {
	forFamilies(t, func(t *testing.T, tn testNet) {
		testSendReceive(t, tn)
	})
}

func testSendReceive(t *testing.T, tn testNet) {
	for _, tc := range []struct {
		name string
		key  []byte
	}{{"plain", nil}, {"sealed", make([]byte, 32)}} {
		t.Run(tc.name, func(t *testing.T) {
			port := nextPort()
			a := startNodeWith(t, tn.config(1, port, tc.key))
			b := startNodeWith(t, tn.config(2, port, tc.key))
			hb := &wire.Heartbeat{Roles: wire.RoleSend, Hostname: "a", Version: "v"}
			sent := time.Now()
			if err := a.conn.Send(hb); err != nil {
				t.Fatal(err)
			}
			p := recv(t, b.conn)
			defer p.Release()
			if p.Header.Node != 1 || p.Header.Type != wire.TypeHeartbeat {
				t.Fatalf("header %+v", p.Header)
			}
			// The kernel stamps what arrives; the arrival lies between the
			// send and the receive.
			if got := sockoptInt(t, b.conn, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS); got != 1 {
				t.Errorf("SO_TIMESTAMPNS = %d on the group socket", got)
			}
			if p.At.Before(sent) || p.At.After(time.Now()) {
				t.Errorf("arrival %v, sent at %v", p.At, sent)
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
		{"unicast group", Config{Group: netip.MustParseAddr("10.0.0.1"), Port: 5000, Node: 1, Metrics: met}},
		{"link-local IPv6 group without an interface", Config{Group: netip.MustParseAddr("ff02::108"), Port: 5000, Node: 1, Metrics: met}},
		{"interface-local IPv6 group", Config{Group: netip.MustParseAddr("ff01::108"), Port: 5000, Interface: "lo", Node: 1, Metrics: met}},
		{"bad port", Config{Group: netip.MustParseAddr("224.0.0.108"), Port: 70000, Node: 1, Metrics: met}},
		{"no interface", Config{Group: netip.MustParseAddr("224.0.0.108"), Port: 5000, Interface: "nosuch0", Node: 1, Metrics: met}},
		{"no address", Config{Group: netip.MustParseAddr("224.0.0.108"), Port: 5000, Interface: "192.0.2.99", Node: 1, Metrics: met}},
		{"short key", Config{Group: netip.MustParseAddr("224.0.0.108"), Port: 5000, Key: []byte{1}, Node: 1, Metrics: met}},
		{"no node id", Config{Group: netip.MustParseAddr("224.0.0.108"), Port: 5000, Metrics: met}},
		{"seen store fails", Config{Group: netip.MustParseAddr("224.0.0.108"), Port: 5000, Key: make([]byte, 32), Node: 1,
			Seen: failingSeen{}, Metrics: met}},
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

// failingSeen is a SeenStore that cannot load.
type failingSeen struct{}

func (failingSeen) Load() ([]Seen, error) { return nil, errors.New("corrupt") }
func (failingSeen) Save([]Seen) error     { return nil }

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

// TestSendBatchSegments sends runs of equal-sized datagrams (which go out
// as UDP_SEGMENT sends and may come back coalesced by UDP_GRO) with sizes
// changing mid-batch, and checks every datagram arrives whole, in order,
// once.
func TestSendBatchSegments(t *testing.T) {
	forFamilies(t, testSendBatchSegments)
}

func testSendBatchSegments(t *testing.T, tn testNet) {
	for _, tc := range []struct {
		name      string
		noOffload bool
		key       []byte
	}{{"offload", false, nil}, {"offload-sealed", false, make([]byte, 32)}, {"no-offload", true, nil}} {
		t.Run(tc.name, func(t *testing.T) {
			port := nextPort()
			ca, cb := tn.config(1, port, tc.key), tn.config(2, port, tc.key)
			ca.NoOffload, cb.NoOffload = tc.noOffload, tc.noOffload
			a, b := startNodeWith(t, ca), startNodeWith(t, cb)
			// 150 datagrams: 100 full, one short, 49 full again; more than
			// one segment run, several sendmmsg messages.
			var msgs []wire.Message
			for i := range 150 {
				n := a.conn.MaxPayload() - wire.DataHeaderLen
				if i == 100 {
					n = 7
				}
				body := make([]byte, n)
				for k := range body {
					body[k] = byte(i + k)
				}
				msgs = append(msgs, &wire.Data{Session: 9, Block: uint64(i), Bytes: body})
			}
			for len(msgs) > 0 {
				k := min(len(msgs), 64)
				if _, err := a.conn.SendBatch(msgs[:k]); err != nil {
					t.Fatal(err)
				}
				msgs = msgs[k:]
			}
			for i := range 150 {
				p := recv(t, b.conn)
				m, err := wire.ParsePayload(p.Header.Type, p.Payload)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				d := m.(*wire.Data)
				if d.Block != uint64(i) {
					t.Fatalf("datagram %d carries block %d", i, d.Block)
				}
				for k, c := range d.Bytes {
					if c != byte(i+k) {
						t.Fatalf("datagram %d: byte %d differs", i, k)
					}
				}
				p.Release()
			}
			if got := testutil.ToFloat64(a.met.DatagramsSent); got != 150 {
				t.Fatalf("datagrams sent = %v, want 150", got)
			}
			if got := testutil.ToFloat64(b.met.DatagramsReceived); got != 150 {
				t.Fatalf("datagrams received = %v, want 150", got)
			}
		})
	}
}

func TestReadControls(t *testing.T) {
	gro := make([]byte, unix.CmsgSpace(4))
	putCmsgHeader(gro, unix.SOL_UDP, unix.UDP_GRO, 4)
	binary.NativeEndian.PutUint32(gro[unix.CmsgLen(0):], 1472)
	other := make([]byte, unix.CmsgSpace(4))
	putCmsgHeader(other, unix.SOL_IP, unix.IP_TTL, 4)
	at := time.Unix(1_700_000_000, 123456789)
	stamp := make([]byte, unix.CmsgSpace(16))
	putCmsgHeader(stamp, unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, 16)
	binary.NativeEndian.PutUint64(stamp[unix.CmsgLen(0):], uint64(at.Unix()))
	binary.NativeEndian.PutUint64(stamp[unix.CmsgLen(0)+8:], uint64(at.Nanosecond()))
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	tests := []struct {
		name  string
		oob   []byte
		seg   int
		stamp time.Time
	}{
		{"none", nil, 0, time.Time{}},
		{"gro", gro, 1472, time.Time{}},
		{"after another", cat(other, gro), 1472, time.Time{}},
		{"other only", other, 0, time.Time{}},
		{"truncated", gro[:unix.SizeofCmsghdr+1], 0, time.Time{}},
		{"short header", gro[:4], 0, time.Time{}},
		{"stamp", stamp, 0, at},
		{"gro and stamp", cat(gro, stamp), 1472, at},
		{"stamp and gro", cat(stamp, gro), 1472, at},
		{"stamp, gro cut", cat(stamp, gro[:unix.SizeofCmsghdr+1]), 0, at},
	}
	for _, tt := range tests {
		seg, st := readControls(tt.oob)
		if seg != tt.seg || !st.Equal(tt.stamp) {
			t.Errorf("%s: readControls = %d, %v; want %d, %v", tt.name, seg, st, tt.seg, tt.stamp)
		}
	}
	seg := putSegmentSize(make([]byte, unix.CmsgSpace(2)), 8972)
	if got := binary.NativeEndian.Uint16(seg[unix.CmsgLen(0):]); got != 8972 {
		t.Fatalf("UDP_SEGMENT size %d", got)
	}
}

// FuzzReadControls: control data is written by the kernel, but the parser
// must still never read out of bounds whatever it is given.
func FuzzReadControls(f *testing.F) {
	gro := make([]byte, unix.CmsgSpace(4))
	putCmsgHeader(gro, unix.SOL_UDP, unix.UDP_GRO, 4)
	f.Add(gro)
	stamp := make([]byte, unix.CmsgSpace(16))
	putCmsgHeader(stamp, unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, 16)
	f.Add(stamp)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, oob []byte) {
		_, _ = readControls(oob)
	})
}

// TestArrival: a datagram's arrival is the read time moved back by its
// wait in the socket buffer, on the read time's monotonic clock; a stamp
// that is missing, ahead of the read or far behind it is not believed.
func TestArrival(t *testing.T) {
	now := time.Now()
	wall := now.Round(0)
	tests := []struct {
		name  string
		stamp time.Time
		want  time.Duration // before now
	}{
		{"no stamp", time.Time{}, 0},
		{"waited", wall.Add(-3 * time.Millisecond), 3 * time.Millisecond},
		{"ahead", wall.Add(time.Millisecond), 0},
		{"stepped clock", wall.Add(-time.Hour), 0},
	}
	for _, tt := range tests {
		got := arrival(now, tt.stamp)
		if d := now.Sub(got); d != tt.want {
			t.Errorf("%s: arrival %v before the read, want %v", tt.name, d, tt.want)
		}
		if got.Round(0) == got {
			t.Errorf("%s: arrival lost the monotonic clock reading", tt.name)
		}
	}
}

// TestOwnDatagramsFiltered: with loopback on, our own datagrams come back
// to our socket; the socket filter drops them in the kernel while a second
// member on the same host hears every one.
func TestOwnDatagramsFiltered(t *testing.T) {
	forFamilies(t, testOwnDatagramsFiltered)
}

func testOwnDatagramsFiltered(t *testing.T, tn testNet) {
	port := nextPort()
	a := startNodeWith(t, tn.config(0x0102030405060708, port, nil))
	b := startNodeWith(t, tn.config(2, port, nil))
	var msgs []wire.Message
	for i := range 100 {
		msgs = append(msgs, &wire.Data{Session: 1, Block: uint64(i), Bytes: make([]byte, 1000)})
	}
	if _, err := a.conn.SendBatch(msgs); err != nil {
		t.Fatal(err)
	}
	if err := a.conn.Send(&wire.Goodbye{}); err != nil {
		t.Fatal(err)
	}
	for range 101 {
		recv(t, b.conn).Release()
	}
	// b's answer queues behind whatever of ours reached a's socket.
	if err := b.conn.Send(&wire.Goodbye{}); err != nil {
		t.Fatal(err)
	}
	recv(t, a.conn).Release()
	if n := a.conn.ownSeen.Load(); n != 0 {
		t.Fatalf("%d own datagrams reached the read loop", n)
	}
	// A datagram too short for a node id still reaches accept, to be
	// counted as malformed.
	if _, err := a.conn.txUDP.WriteTo([]byte("Mk\x01"), a.conn.dst); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, b.met.DatagramsDropped.WithLabelValues(metrics.DropMalformed), 1)
	waitCounter(t, a.met.DatagramsDropped.WithLabelValues(metrics.DropMalformed), 1)
	// And it is the filter that keeps them out: with one that passes
	// everything, our own datagram reaches the read loop (ahead of b's,
	// which a then receives).
	passAll, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 1 << 17}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.conn.pc.SetBPF(passAll); err != nil {
		t.Fatal(err)
	}
	if err := a.conn.Send(&wire.Goodbye{}); err != nil {
		t.Fatal(err)
	}
	if err := b.conn.Send(&wire.Goodbye{}); err != nil {
		t.Fatal(err)
	}
	recv(t, a.conn).Release()
	if n := a.conn.ownSeen.Load(); n != 1 {
		t.Fatalf("without the filter %d own datagrams reached the read loop, want 1: loopback did not hand them back", n)
	}
}

// TestReplySocket: by default a member sends from a socket of its own,
// whose address peers answer by unicast; with MulticastReplies it sends
// from the group's port and takes no unicast answers.
func TestReplySocket(t *testing.T) {
	forFamilies(t, testReplySocket)
}

func testReplySocket(t *testing.T, tn testNet) {
	port := nextPort()
	a := startNodeWith(t, tn.config(1, port, nil))
	cb := tn.config(2, port, nil)
	cb.MulticastReplies = true
	b := startNodeWith(t, cb)
	c := startNodeWith(t, tn.config(3, port, nil))
	if !a.conn.UnicastReplies() || b.conn.UnicastReplies() {
		t.Fatalf("UnicastReplies: default %v, MulticastReplies %v", a.conn.UnicastReplies(), b.conn.UnicastReplies())
	}
	if err := a.conn.Send(&wire.Goodbye{}); err != nil {
		t.Fatal(err)
	}
	pa := recv(t, c.conn)
	if pa.From.Port() == uint16(port) {
		t.Errorf("default member's datagram from the group's port %v", pa.From)
	}
	if err := b.conn.Send(&wire.Goodbye{}); err != nil {
		t.Fatal(err)
	}
	pb := recv(t, c.conn)
	if pb.Header.Node != 2 || pb.From.Port() != uint16(port) {
		t.Errorf("MulticastReplies member's datagram %v from %v, want from the group's port %d", pb.Header.Node, pb.From, port)
	}
	// An answer unicast to the default member reaches it alone.
	if err := c.conn.SendTo(&wire.Goodbye{}, pa.From); err != nil {
		t.Fatal(err)
	}
	for p := recv(t, a.conn); p.Header.Node != 3; p = recv(t, a.conn) {
		// b's goodbye, multicast to the group
	}
	for {
		select {
		case p := <-b.conn.Packets():
			if p.Header.Node == 3 {
				t.Fatal("the unicast answer reached another member too")
			}
			continue
		case <-time.After(200 * time.Millisecond):
		}
		break
	}
}
