package replicator

import "testing"

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
