package chunk

import (
	"bytes"
	"io"
	"testing"
)

// benchSize is large enough that per-stream costs (Reset, the first fill)
// vanish in the per-byte figure.
const benchSize = 64 << 20

// BenchmarkChunker measures chunking plus per-chunk and whole-stream
// hashing, reading from a bytes.Reader as from a file.
func BenchmarkChunker(b *testing.B) {
	data := randBytes(1, benchSize)
	r := bytes.NewReader(data)
	c := New(r)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	chunks := 0
	for b.Loop() {
		r.Reset(data)
		c.Reset(r)
		for {
			_, _, err := c.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			chunks++
		}
	}
	b.ReportMetric(float64(chunks)/float64(b.N), "chunks/op")
}

// BenchmarkCut measures the rolling hash alone, without hashing or copying.
func BenchmarkCut(b *testing.B) {
	data := randBytes(1, benchSize)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		for off := 0; off < len(data); {
			off += cut(data[off:])
		}
	}
}

// BenchmarkRefCut is the one-byte-per-step reference, for comparison.
func BenchmarkRefCut(b *testing.B) {
	data := randBytes(1, benchSize)
	b.SetBytes(benchSize)
	for b.Loop() {
		for off := 0; off < len(data); {
			off += refCut(data[off:])
		}
	}
}

// BenchmarkSplitBytes measures chunking in-memory data, no copy.
func BenchmarkSplitBytes(b *testing.B) {
	data := randBytes(1, benchSize)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		SplitBytes(data)
	}
}
