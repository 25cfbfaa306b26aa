package session

import (
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	"github.com/makuo/makuo/replicator/wire"
)

// BenchmarkSessionMemory reports what a receive session holds per offered
// path (a 100,000-file push: paths of about 40 bytes), against what the
// budget charges for it.
func BenchmarkSessionMemory(b *testing.B) {
	const n, per = 100_000, 20
	for range b.N {
		in := testInbox(1 << 30)
		var r *Receiver
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for first := 0; first < n; first += per {
			items := make([]wire.Entry, per)
			for i := range items {
				items[i] = fileEntry(fmt.Sprintf("htdocs/assets/img/%04d/file-%06d.png", (first+i)/100, first+i), 4096)
			}
			o := &wire.Offer{Session: 1, BlockSize: testPayload - wire.DataHeaderLen, Entries: n, Count: n / per,
				Index: uint32(first / per), First: uint32(first), Items: items}
			var rd *Ready
			r, rd, _ = in.Step(t0, o)
			decideAll(r, rd, 1<<40)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/path")
		b.ReportMetric(float64(in.cfg.Budget.Used())/n, "charged-B/path")
		runtime.KeepAlive(r)
	}
}

// TestEntrySize: a session holds one entry per offered path for its whole
// life; entryCost charges for this size.
func TestEntrySize(t *testing.T) {
	if s := unsafe.Sizeof(entry{}); s > 88 {
		t.Fatalf("entry is %d bytes", s)
	}
}
