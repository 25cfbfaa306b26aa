package apply

import (
	"fmt"
	"io/fs"
	"testing"
	"time"
)

func TestBufPool(t *testing.T) {
	var p bufPool
	for _, tt := range []struct{ n, cap int }{
		{0, 4 << 10}, {1, 4 << 10}, {4 << 10, 4 << 10}, {4<<10 + 1, 8 << 10},
		{100 << 10, 128 << 10}, {writeBufSize, writeBufSize}, {writeBufSize + 1, writeBufSize + 1},
	} {
		if b := p.get(tt.n); len(b) != 0 || cap(b) != tt.cap {
			t.Errorf("get(%d): len %d cap %d, want 0, %d", tt.n, len(b), cap(b), tt.cap)
		}
	}
	b := p.get(5000)
	b = append(b, "dirty"...)
	p.put(b)
	if c := p.get(6000); &c[:1][0] != &b[0] || len(c) != 0 {
		t.Error("a returned buffer was not reused, or not emptied")
	}
	p.put(make([]byte, 0, 5000)) // not a class size: dropped
	if len(p.free[1]) != 0 {
		t.Error("a buffer of a foreign size was kept")
	}
	for range 2 * poolKeep {
		p.put(make([]byte, 0, 4<<10))
	}
	if len(p.free[0]) != poolKeep {
		t.Errorf("%d buffers kept, want at most %d", len(p.free[0]), poolKeep)
	}
}

// TestEchoSweepsRarely: past echoSweepAt records, the expired ones are
// swept out once per echoTTL/10, not at every note (which made a push of
// 100,000 files quadratic), and old records do go.
func TestEchoSweepsRarely(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	p := NewProvenance(true, func() time.Time { return now })
	p.echo["old"] = appliedSig{at: now.Add(-2 * echoTTL).UnixNano()}
	for i := range echoSweepAt + 10 {
		p.Applied(fmt.Sprintf("f%d", i), nil, fs.ErrNotExist, 1)
	}
	first := p.nextExpire
	if first.IsZero() {
		t.Fatal("no sweep past echoSweepAt records")
	}
	if _, ok := p.echo["old"]; ok {
		t.Fatal("an expired record survived the sweep")
	}
	for i := range 1000 {
		p.Applied(fmt.Sprintf("g%d", i), nil, fs.ErrNotExist, 1)
	}
	if p.nextExpire != first {
		t.Fatal("swept again within echoTTL/10")
	}
	if len(p.echo) != echoSweepAt+10+1000 {
		t.Fatalf("%d records, want every recent one kept", len(p.echo))
	}
	// Without -w no echo record is kept at all.
	q := NewProvenance(false, func() time.Time { return now })
	q.Applied("x", nil, fs.ErrNotExist, 1)
	if len(q.echo) != 0 {
		t.Fatal("echo records kept without the watcher")
	}
}
