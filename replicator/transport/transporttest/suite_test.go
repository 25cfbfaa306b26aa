package transporttest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/makuo/makuo/internal/netiftest"
	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/replicator/transport/peers"
	"github.com/makuo/makuo/replicator/wire"
)

// makeConns opens one conn per id with open and closes them when the
// test ends: the body of every factory of the suite.
func makeConns(t testing.TB, ids []wire.NodeID, open func(i int, id wire.NodeID) (Conn, error)) []Conn {
	t.Helper()
	var conns []Conn
	for i, id := range ids {
		c, err := open(i, id)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	return conns
}

// hubConns is the suite's factory for HubConns on a clean hub.
func hubConns(t testing.TB, ids []wire.NodeID) []Conn {
	t.Helper()
	hub := NewHub(1, Faults{})
	return makeConns(t, ids, func(_ int, id wire.NodeID) (Conn, error) { return hub.Conn(id, 0) })
}

func TestConformanceHub(t *testing.T) { TestConn(t, hubConns) }

// TestConformanceHubIPv6: on a hub with link-local IPv6 addresses (with
// zones), the same.
func TestConformanceHubIPv6(t *testing.T) {
	TestConn(t, func(t testing.TB, ids []wire.NodeID) []Conn {
		t.Helper()
		hub := NewHub(1, Faults{})
		hub.UseIPv6("eth0")
		return makeConns(t, ids, func(_ int, id wire.NodeID) (Conn, error) {
			c, err := hub.Conn(id, 0)
			if err == nil {
				if a := c.LocalAddr(); !a.IsLinkLocalUnicast() || a.Zone() != "eth0" {
					c.Close()
					return nil, fmt.Errorf("address %v, want link-local with zone eth0", a)
				}
			}
			return c, err
		})
	})
}

// plainAndSealed runs f as subtests without a key and with one.
func plainAndSealed(t *testing.T, f func(t *testing.T, key []byte)) {
	for _, tc := range []struct {
		name string
		key  []byte
	}{{"plain", nil}, {"sealed", make([]byte, 32)}} {
		t.Run(tc.name, func(t *testing.T) { f(t, tc.key) })
	}
}

// TestConformanceLoopback runs the suite against the real transport on the
// loopback interface, where members share a host (package e2e runs it
// across network namespaces).
func TestConformanceLoopback(t *testing.T) {
	testConformanceReal(t, netip.MustParseAddr("224.0.0.108"), "lo", 0)
}

// TestConformanceIPv6 runs the suite against the real transport on a
// link-local IPv6 group. Not on lo: Linux makes every route through lo to
// a non-loopback address a reject route, multicast groups included, so
// IPv6 multicast never works there; the members share an interface that
// is up, multicast and has a link-local address, and the datagrams go out
// on its link, which the group's scope and a hop limit of 1 keep them on.
// Without such an interface the test is skipped, or fails in CI.
func TestConformanceIPv6(t *testing.T) {
	ifi, err := netiftest.IPv6LinkLocal()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot run in CI: %v", err)
		}
		t.Skip(err)
	}
	testConformanceReal(t, netip.MustParseAddr("ff02::4d:6b"), ifi.Name, min(ifi.MTU, 1500)-40-8)
}

func testConformanceReal(t *testing.T, group netip.Addr, iface string, maxDatagram int) {
	plainAndSealed(t, func(t *testing.T, key []byte) {
		TestConn(t, func(t testing.TB, ids []wire.NodeID) []Conn {
			t.Helper()
			port := nextPort()
			return makeConns(t, ids, func(_ int, id wire.NodeID) (Conn, error) {
				c, err := transport.Listen(transport.Config{
					Group: group, Port: port, Interface: iface, MaxDatagram: maxDatagram,
					Node: id, Incarnation: uint64(time.Now().UnixNano()), Key: key,
					Metrics: metrics.New(prometheus.NewRegistry(), "test"),
				})
				if err != nil {
					return nil, fmt.Errorf("Listen: %w", err)
				}
				return c, nil
			})
		})
	})
}

// TestConformanceUnicast runs the suite against the real transport in
// unicast mode (no group: every datagram goes to each peer), members on
// 127.0.0.1 at ports of their own, each listing the others.
func TestConformanceUnicast(t *testing.T) {
	plainAndSealed(t, func(t *testing.T, key []byte) {
		TestConn(t, func(t testing.TB, ids []wire.NodeID) []Conn {
			t.Helper()
			var ports []int
			for range ids {
				ports = append(ports, nextPort())
			}
			return makeConns(t, ids, func(i int, id wire.NodeID) (Conn, error) {
				return listenUnicast(t, id, "127.0.0.1", ports[i], ports, key), nil
			})
		})
	})
}

// listenUnicast opens a unicast-mode Conn bound to addr:port whose peers
// are addr at every other of ports.
func listenUnicast(t testing.TB, id wire.NodeID, addr string, port int, ports []int, key []byte) *transport.Conn {
	t.Helper()
	met := metrics.New(prometheus.NewRegistry(), "test")
	pc := peers.Config{Port: port, Interval: time.Second, MissedHeartbeats: 3, Metrics: met}
	for _, p := range ports {
		if p != port {
			pc.Specs = append(pc.Specs, peers.Spec{Host: addr, Port: uint16(p)})
		}
	}
	set, err := peers.New(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := transport.Listen(transport.Config{
		Port: port, Interface: addr, Peers: set,
		Node: id, Incarnation: uint64(time.Now().UnixNano()), Key: key, Metrics: met,
	})
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	return c
}

// testPort hands each factory call its own port, so that no case hears
// another's datagrams.
var testPort = struct {
	sync.Mutex
	next int
}{next: 47500}

func nextPort() int {
	testPort.Lock()
	defer testPort.Unlock()
	testPort.next++
	return testPort.next
}

// TestEveryMessageType: the suite's message set has one message of every
// type package wire names, so a new type cannot slip past it. A peer list
// (wire.Peers) and the relays' hellos, envelopes and answer batches are the exceptions:
// the transport's own, never handed to the consumer (package transport
// tests that).
func TestEveryMessageType(t *testing.T) {
	have := map[wire.Type]bool{wire.TypePeers: true, wire.TypeRelay: true, wire.TypeRelayHello: true, wire.TypeRelayAnswers: true}
	for _, m := range everyMessage() {
		if have[m.Type()] {
			t.Errorf("%v twice", m.Type())
		}
		have[m.Type()] = true
	}
	for i := range 256 {
		typ := wire.Type(i)
		if named := typ.String() != fmt.Sprintf("type%d", i); named != have[typ] {
			t.Errorf("%v: named by wire %v, in the suite %v", typ, named, have[typ])
		}
	}
}

// TestSuiteCatchesBrokenConns runs suite cases against conns broken on
// purpose: each case must fail, or it proves nothing about conns that
// pass it.
func TestSuiteCatchesBrokenConns(t *testing.T) {
	for _, tc := range []struct {
		name    string
		run     func(testing.TB, NewConns)
		breakIt func(*HubConn) Conn
	}{
		{"Run returns an error", testCancelRun, func(c *HubConn) Conn { return runError{c} }},
		{"SendBatch sends what precedes a refused message", testMaxPayload, func(c *HubConn) Conn { return partialBatch{c} }},
		{"sender hears itself", testMulticast, newEcho},
		{"SendTo multicasts", testUnicast, func(c *HubConn) Conn { return unicastToAll{c} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				tc.run(rec, func(t testing.TB, ids []wire.NodeID) []Conn {
					var out []Conn
					for _, c := range hubConns(t, ids) {
						out = append(out, tc.breakIt(c.(*HubConn)))
					}
					return out
				})
			}()
			<-done
			if !rec.failed() {
				t.Fatal("the suite passed a broken conn")
			}
			t.Logf("suite failed as it should: %s", rec.first())
		})
	}
}

// recorder is a testing.TB that records failures instead of failing the
// test it wraps.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}
func (r *recorder) Error(args ...any) { r.Errorf("%s", fmt.Sprint(args...)) }
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }
func (r *recorder) Fail()             { r.Errorf("Fail") }
func (r *recorder) FailNow()          { r.Fatalf("FailNow") }
func (r *recorder) Failed() bool      { return r.failed() }

func (r *recorder) failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs) > 0
}

func (r *recorder) first() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.msgs, "; ")
}

// runError's Run returns an error on cancellation.
type runError struct{ *HubConn }

func (c runError) Run(ctx context.Context) error {
	c.HubConn.Run(ctx)
	return errors.New("broken: cancelled")
}

// partialBatch sends a batch message by message, so that what precedes a
// refused message goes out.
// unicastToAll sends an answer to every member, not the one addressed.
type unicastToAll struct{ *HubConn }

func (c unicastToAll) SendTo(m wire.Message, _ netip.AddrPort) error { return c.HubConn.Send(m) }

type partialBatch struct{ *HubConn }

func (c partialBatch) SendBatch(msgs []wire.Message) (int, error) {
	total := 0
	for _, m := range msgs {
		n, err := c.HubConn.SendBatch([]wire.Message{m})
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// echo hands the conn's own datagrams back to it, as a socket without the
// own-datagram filter would.
type echo struct {
	*HubConn
	out chan *transport.Packet
	mu  sync.Mutex
	seq uint64
}

func newEcho(c *HubConn) Conn {
	return &echo{HubConn: c, out: make(chan *transport.Packet, QueueLen)}
}

func (c *echo) Packets() <-chan *transport.Packet { return c.out }

func (c *echo) Send(m wire.Message) error {
	if err := c.HubConn.Send(m); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	c.out <- &transport.Packet{
		Header:  wire.Header{Type: m.Type(), Node: c.ID(), Seq: c.seq},
		Payload: m.AppendPayload(nil), From: netip.AddrPortFrom(c.LocalAddr(), Port),
	}
	return nil
}

func (c *echo) Run(ctx context.Context) error {
	forwarded := make(chan struct{})
	go func() {
		defer close(forwarded)
		for p := range c.HubConn.Packets() {
			c.out <- p
		}
	}()
	err := c.HubConn.Run(ctx)
	<-forwarded
	close(c.out)
	return err
}
