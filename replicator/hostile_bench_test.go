package replicator

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/replicator/wire"
)

// floodLink is a Link whose received datagrams a test feeds in directly,
// with any header it likes (a spoofed node id is one field), and whose
// sends are counted and dropped.
type floodLink struct {
	in      chan *transport.Packet // Packets: stays empty, the engine takes Deliver
	deliver func(*transport.Packet)
	sent    atomic.Uint64
	once    sync.Once
}

func newFloodLink() *floodLink { return &floodLink{in: make(chan *transport.Packet)} }

func (l *floodLink) Send(m wire.Message) error         { l.sent.Add(1); return nil }
func (l *floodLink) SendN(m wire.Message) (int, error) { l.sent.Add(1); return 100, nil }
func (l *floodLink) SendBatch(ms []wire.Message) (int, error) {
	l.sent.Add(uint64(len(ms)))
	return 0, nil
}
func (l *floodLink) SendTo(m wire.Message, _ netip.AddrPort) error { l.sent.Add(1); return nil }
func (l *floodLink) UnicastReplies() bool                          { return true }
func (l *floodLink) Packets() <-chan *transport.Packet             { return l.in }
func (l *floodLink) Deliver(f func(*transport.Packet))             { l.deliver = f }
func (l *floodLink) MaxPayload() int                               { return 1472 - wire.HeaderLen }
func (l *floodLink) LocalAddr() netip.Addr                         { return netip.MustParseAddr("10.9.0.1") }
func (l *floodLink) Close() error                                  { l.once.Do(func() { close(l.in) }); return nil }
func (l *floodLink) Run(ctx context.Context) error                 { <-ctx.Done(); return l.Close() }
func (l *floodLink) feed(h wire.Header, m wire.Message)            { l.deliver(packet(h, m)) }
func packet(h wire.Header, m wire.Message) *transport.Packet {
	h.Type = m.Type()
	return &transport.Packet{Header: h, Payload: m.AppendPayload(nil), From: netip.MustParseAddrPort("10.9.0.2:5000")}
}

// hostile draws the adversarial messages of BenchmarkHostileFlood: spoofed
// members' heartbeats, offers claiming the most entries and the largest
// files, data far past any layout, polls with huge watermarks, chunk lists
// claiming millions of chunks, for real and bogus sessions, from members
// and non-members.
type hostile struct {
	r        *rand.Rand
	members  []wire.NodeID
	sessions []uint64
	seq      uint64
	first    map[uint64]uint32 // next entry of the offers that fill a session
}

// fill is an offer that fits its session, with long paths: what makes a
// receiver hold the most memory per datagram.
func (h *hostile) fill(hdr wire.Header, sess uint64) (wire.Header, wire.Message) {
	items := make([]wire.Entry, 12)
	for i := range items {
		items[i] = wire.Entry{Kind: wire.KindFile, Path: fmt.Sprintf("%0100d", h.r.Uint64()), Mode: 0o644, Size: 1}
	}
	f := h.first[sess]
	h.first[sess] = f + uint32(len(items))
	return hdr, &wire.Offer{Session: sess, BlockSize: 256, Entries: wire.MaxEntries, Count: wire.MaxEntries / 12,
		Index: f / 12, First: f, Items: items}
}

func (h *hostile) next() (wire.Header, wire.Message) {
	h.seq++
	node := h.members[h.r.IntN(len(h.members))]
	if h.r.IntN(10) == 0 {
		node = wire.NodeID(h.r.Uint64()) // a node nobody heard of
	}
	hdr := wire.Header{Node: node, Incarnation: 1, Seq: h.seq}
	sess := h.sessions[h.r.IntN(len(h.sessions))]
	if h.r.IntN(4) == 0 {
		sess = h.r.Uint64()
	}
	switch k := h.r.IntN(20); {
	case k < 1:
		// A few sessions of members grow as long as the receiver lets
		// them: the memory attack.
		k := h.r.IntN(8)
		hdr.Node = h.members[k]
		return h.fill(hdr, uint64(1000+k))
	case k < 2:
		hdr.Node = wire.NodeID(h.r.Uint64()) // a spoofed member
		return hdr, &wire.Heartbeat{Roles: wire.RoleSend | wire.RoleRecv, Interval: time.Hour, Hostname: "x", Version: "v"}
	case k < 7:
		items := make([]wire.Entry, 1+h.r.IntN(8))
		for i := range items {
			items[i] = wire.Entry{Kind: wire.KindFile, Path: fmt.Sprintf("p%d/%d", h.r.IntN(100), h.r.Uint32()), Mode: 0o644,
				Size: []uint64{0, 1, wire.MaxFileSize, h.r.Uint64N(wire.MaxFileSize)}[h.r.IntN(4)]}
		}
		first := uint32(0)
		if h.r.IntN(2) == 0 {
			first = h.r.Uint32N(wire.MaxEntries - 8)
		}
		return hdr, &wire.Offer{Session: sess, BlockSize: 256, Entries: wire.MaxEntries, Count: wire.MaxEntries / 8,
			Index: h.r.Uint32N(wire.MaxEntries / 8), First: first, Items: items}
	case k < 13:
		return hdr, &wire.Data{Session: sess, Block: h.r.Uint64N(1 << 44), Bytes: make([]byte, 256)}
	case k < 16:
		return hdr, &wire.Poll{Session: sess, Round: h.r.Uint32(), Watermark: ^uint64(0) >> h.r.IntN(20), Final: h.r.IntN(2) == 0}
	case k < 18:
		return hdr, &wire.Chunks{Session: sess, Entry: h.r.Uint32N(8), First: h.r.Uint32N(1 << 20), Total: 1 << 30,
			Refs: []wire.ChunkRef{{Size: 1 << 20, Hash: h.r.Uint64()}}}
	case k < 19:
		return hdr, &wire.Commit{Session: sess}
	}
	return hdr, &wire.Abort{Session: sess}
}

// BenchmarkHostileFlood feeds 10^6 adversarial messages per iteration to
// one receiving engine and reports the peak heap above idle, the CPU time
// per message, and the slowest answer of the status call an operator's
// msync --status makes meanwhile (it must stay responsive).
func BenchmarkHostileFlood(b *testing.B) {
	const messages = 1_000_000
	link := newFloodLink()
	cfg := DefaultConfig()
	cfg.Base, cfg.StateDir, cfg.Hostname = b.TempDir(), b.TempDir(), "victim"
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	ident, err := openIdentity(cfg.StateDir, time.Now(), randomJitter)
	if err != nil {
		b.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	n, err := newNode(cfg, slog.New(slog.DiscardHandler), metrics.New(reg, "bench"), ident, func(transport.Config) (Link, error) { return link, nil })
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	h := &hostile{r: rand.New(rand.NewPCG(1, 2)), first: map[uint64]uint32{}}
	for i := range 64 { // members heard before the flood
		id := wire.NodeID(0x100 + i)
		h.members = append(h.members, id)
		link.feed(wire.Header{Node: id, Incarnation: 1, Seq: 1}, &wire.Heartbeat{Roles: wire.RoleSend, Interval: time.Second, Hostname: "m", Version: "v"})
	}
	for range 32 {
		h.sessions = append(h.sessions, h.r.Uint64())
	}
	runtime.GC()
	var idle runtime.MemStats
	runtime.ReadMemStats(&idle)
	var peak atomic.Uint64
	var worst atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
				start := time.Now()
				if _, err := n.Status(ctx); err != nil {
					b.Error(err)
				}
				if d := time.Since(start); int64(d) > worst.Load() {
					worst.Store(int64(d))
				}
			}
		}
	})
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	for range b.N {
		for range messages {
			link.feed(h.next())
		}
	}
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	close(stop)
	wg.Wait()
	runtime.GC()
	var live runtime.MemStats
	runtime.ReadMemStats(&live)
	b.ReportMetric(float64(int64(live.HeapAlloc)-int64(idle.HeapAlloc))/(1<<20), "live-heap-MiB")
	b.ReportMetric(float64(n.budget.Used())/(1<<20), "charged-MiB")
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
	b.ReportMetric(float64(int64(peak.Load())-int64(idle.HeapInuse))/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*messages), "cpu-µs/msg")
	b.ReportMetric(float64(time.Duration(worst.Load()).Milliseconds()), "status-max-ms")
	b.ReportMetric(float64(n.members.Table().Len()), "members")
	drops := map[string]float64{}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "makuosan_transport_datagrams_dropped_total" {
			for _, m := range mf.GetMetric() {
				drops[labelOf(m, "reason")] = m.GetCounter().GetValue()
			}
		}
	}
	b.Logf("drops by reason: %v; answers sent: %d", drops, link.sent.Load())
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
