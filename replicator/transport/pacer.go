package transport

import (
	"context"
	"sync"
	"time"
)

// Pacer spaces sends to a rate with a token bucket. The bucket may go into
// debt by one send, and Wait sleeps the debt off; the burst is bounded so
// that an idle pause does not turn into a line-rate burst that overruns the
// receivers' socket buffers. It is safe for concurrent use.
type Pacer struct {
	mu     sync.Mutex
	rate   float64 // bytes per second
	tokens float64
	last   time.Time
}

// burstTime is the length of the burst the bucket may hold: a few
// milliseconds keeps batches of datagrams whole without flooding anyone.
const burstTime = 4 * time.Millisecond

// NewPacer returns a pacer at bitsPerSecond.
func NewPacer(bitsPerSecond float64) *Pacer {
	return &Pacer{rate: bitsPerSecond / 8, last: time.Now()}
}

// SetRate changes the rate, in bits per second.
func (p *Pacer) SetRate(bitsPerSecond float64) {
	p.mu.Lock()
	p.rate = bitsPerSecond / 8
	p.mu.Unlock()
}

// Wait blocks until n more bytes may be sent, or ctx ends.
func (p *Pacer) Wait(ctx context.Context, n int) error {
	p.mu.Lock()
	now := time.Now()
	burst := max(p.rate*burstTime.Seconds(), 64<<10)
	p.tokens = min(p.tokens+now.Sub(p.last).Seconds()*p.rate, burst)
	p.last = now
	p.tokens -= float64(n)
	var wait time.Duration
	if p.tokens < 0 {
		wait = time.Duration(-p.tokens / p.rate * float64(time.Second))
	}
	p.mu.Unlock()
	if wait <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
