package transport

import (
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

// BenchmarkAccept measures the per-datagram receive path after the socket
// read: header check, opening a sealed datagram, replay check, queueing
// and release. It must not allocate.
func BenchmarkAccept(b *testing.B) {
	for _, sealed := range []bool{false, true} {
		name := "plain"
		if sealed {
			name = "sealed"
		}
		b.Run(name, func(b *testing.B) {
			met := metrics.New(prometheus.NewRegistry(), "bench")
			var key []byte
			if sealed {
				key = make([]byte, chacha20poly1305.KeySize)
			}
			rx, err := newConn(Config{Group: netip.MustParseAddr("224.0.0.108"), Port: 5000, Node: 1, Metrics: met, Key: key, QueueLen: 1})
			if err != nil {
				b.Fatal(err)
			}
			tx, err := newConn(Config{Group: netip.MustParseAddr("224.0.0.108"), Port: 5000, Node: 2, Incarnation: 1, Metrics: met, Key: key})
			if err != nil {
				b.Fatal(err)
			}
			d := &wire.Data{Session: 1, Bytes: make([]byte, 1472-wire.HeaderLen-wire.DataHeaderLen)}
			if sealed {
				d.Bytes = d.Bytes[:len(d.Bytes)-16]
			}
			from := netip.MustParseAddrPort("192.0.2.1:5000")
			buf := make([]byte, 0, 2048)
			now := time.Now()
			b.SetBytes(1472)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				d.Block = uint64(i)
				dgram := tx.frame(buf[:0], wire.TypeData, d.AppendPayload)
				rx.accept(dgram, from, fromGroup, now, now)
				(<-rx.out).Release()
			}
		})
	}
}

// BenchmarkSendBatch measures framing and sending 64 data datagrams
// through a real socket on the loopback interface (offload on or off).
func BenchmarkSendBatch(b *testing.B) {
	for _, noOffload := range []bool{false, true} {
		name := "offload"
		if noOffload {
			name = "no-offload"
		}
		b.Run(name, func(b *testing.B) {
			met := metrics.New(prometheus.NewRegistry(), "bench")
			c, err := Listen(Config{Group: netip.MustParseAddr("224.0.0.108"), Port: nextPort(), Interface: "lo",
				Node: 1, Metrics: met, NoOffload: noOffload})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msgs := make([]wire.Message, 64)
			datas := make([]wire.Data, 64)
			for i := range msgs {
				datas[i] = wire.Data{Session: 1, Block: uint64(i), Bytes: make([]byte, c.MaxPayload()-wire.DataHeaderLen)}
				msgs[i] = &datas[i]
			}
			b.SetBytes(int64(64 * c.cfg.MaxDatagram))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.SendBatch(msgs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
