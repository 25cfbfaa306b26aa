package transport

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestPacerRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPacer(80e6) // 10 MB/s
		start := time.Now()
		for range 1000 {
			if err := p.Wait(context.Background(), 10_000); err != nil {
				t.Fatal(err)
			}
		}
		// 10 MB at 10 MB/s: one second, less the initial burst allowance.
		if got := time.Since(start); got < 990*time.Millisecond || got > time.Second {
			t.Fatalf("10 MB took %v at 10 MB/s", got)
		}
		p.SetRate(160e6)
		start = time.Now()
		for range 1000 {
			_ = p.Wait(context.Background(), 10_000)
		}
		if got := time.Since(start); got > 510*time.Millisecond {
			t.Fatalf("10 MB took %v at 20 MB/s", got)
		}
	})
}

func TestPacerCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPacer(8) // one byte per second
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = p.Wait(ctx, 1)
		if err := p.Wait(ctx, 1<<20); err == nil {
			t.Fatal("Wait did not return the context error")
		}
	})
}
