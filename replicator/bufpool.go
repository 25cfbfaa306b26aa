package replicator

import "math/bits"

// bufPool recycles the write-combining buffers of files being received,
// in power-of-two size classes from minPooledBuf to writeBufSize. Without
// it, a push of 100,000 small files allocates (and leaves to the garbage
// collector) a buffer per file, which for a while doubles the heap. It
// keeps a few buffers per class, and is owned by the receiver's goroutine.
type bufPool struct {
	free [poolClasses][][]byte
}

const (
	minPooledBuf = 4 << 10
	poolClasses  = 7 // 4 KiB ... 256 KiB (writeBufSize)
	poolKeep     = 8 // free buffers kept per class
)

// get returns an empty buffer with room for at least n bytes (at most
// writeBufSize).
func (p *bufPool) get(n int) []byte {
	c := poolClass(n)
	if c >= poolClasses {
		return make([]byte, 0, n)
	}
	if f := p.free[c]; len(f) > 0 {
		b := f[len(f)-1]
		f[len(f)-1] = nil
		p.free[c] = f[:len(f)-1]
		return b[:0]
	}
	return make([]byte, 0, minPooledBuf<<c)
}

// put gives b back; buffers that did not come from get are dropped.
func (p *bufPool) put(b []byte) {
	c := poolClass(cap(b))
	if c >= poolClasses || cap(b) != minPooledBuf<<c || len(p.free[c]) >= poolKeep {
		return
	}
	p.free[c] = append(p.free[c], b)
}

// poolClass is the smallest class whose buffers hold n bytes.
func poolClass(n int) int {
	if n <= minPooledBuf {
		return 0
	}
	return bits.Len(uint(n-1)) - bits.Len(uint(minPooledBuf-1))
}
