package chunk

import (
	"errors"
	"fmt"
	"io"

	"github.com/cespare/xxhash/v2"
)

// Chunk size limits. They are part of the protocol: every node must use the
// same values, or their boundaries, and so their chunk hashes, disagree.
const (
	// MinSize is the smallest chunk except the last one of a stream. Below
	// it the fixed cost per chunk (a chunk-list entry, a bit in every need
	// bitmap, a hash to look up) outweighs the finer deduplication, and it
	// bounds a 1 GiB file to at most 65536 chunks. The rolling hash skips
	// these bytes, which is where most of FastCDC's speed comes from.
	MinSize = 16 << 10

	// AvgSize is the target chunk size: the normalization point where the
	// cut condition switches from hard to easy. An edit costs about two
	// chunks (~128 KiB) on the wire, and a 1 GiB file has ~15000 chunks,
	// whose list fits in a few hundred datagrams. On random data the
	// realized mean is about 72 KiB (see TestSizeDistribution).
	AvgSize = 64 << 10

	// MaxSize is the largest chunk. It bounds the buffer a receiver needs
	// per chunk in flight and the resend when one datagram of a chunk is
	// lost for good, and it makes data without cut points (long runs of
	// one byte) still split into equal, deduplicable chunks.
	MaxSize = 256 << 10
)

// bufSize is the Chunker's read buffer. It must be at least MaxSize so that
// every chunk fits; at 4*MaxSize a refill reads at least 3*MaxSize bytes and
// moves at most MaxSize, so the copy costs at most a third of the reading.
const bufSize = 4 * MaxSize

// maxEmptyReads is how many (0, nil) results in a row a Reader may return
// before Next gives up with io.ErrNoProgress, as bufio does.
const maxEmptyReads = 100

// errBadCount is returned when a Reader reports reading a negative count or
// more bytes than it was given room for.
var errBadCount = errors.New("chunk: reader returned an invalid count")

// Chunk describes one content-defined chunk of a stream.
type Chunk struct {
	Offset int64  // position of the first byte in the stream
	Size   uint32 // length in bytes, in [1, MaxSize]
	Hash   uint64 // xxhash64 of the chunk's bytes
}

// End returns the offset just past the chunk's last byte.
func (c Chunk) End() int64 { return c.Offset + int64(c.Size) }

// Chunker splits the stream of an io.Reader into content-defined chunks.
// The zero value is ready for Reset. A Chunker is not safe for concurrent
// use; give each goroutine its own and reuse it with Reset.
type Chunker struct {
	r          io.Reader
	buf        []byte        // bufSize bytes, allocated once
	start, end int           // unconsumed data is buf[start:end]
	off        int64         // stream offset of buf[start]
	err        error         // io.EOF once r is drained, or the wrapped read error
	whole      xxhash.Digest // over every byte returned by Next
	prev       following     // Follow's chunk list, until the next Reset
}

// New returns a Chunker reading from r. It allocates a 1 MiB buffer, which
// Reset keeps.
func New(r io.Reader) *Chunker {
	c := new(Chunker)
	c.Reset(r)
	return c
}

// Reset makes c read a new stream from r, keeping its buffer, so chunking
// many files with one Chunker does not allocate.
func (c *Chunker) Reset(r io.Reader) {
	if c.buf == nil {
		c.buf = make([]byte, bufSize)
	}
	c.r = r
	c.start, c.end = 0, 0
	c.off = 0
	c.err = nil
	c.whole.Reset()
	c.prev = following{}
}

// Next returns the next chunk and its bytes. The bytes belong to c and are
// valid only until the next call of Next or Reset. At the end of the stream
// Next returns io.EOF; if the stream is empty it does so at once.
//
// A read error other than io.EOF ends the stream: Next returns it, wrapped
// with the offset, on this and every later call. The chunks returned before
// it are correct, but the data read after the last of them is dropped, as
// its boundaries cannot be known.
func (c *Chunker) Next() (Chunk, []byte, error) {
	if c.end-c.start < MaxSize && c.err == nil {
		c.fill()
	}
	if c.err != nil && c.err != io.EOF {
		return Chunk{}, nil, c.err
	}
	if c.start == c.end {
		return Chunk{}, nil, io.EOF
	}
	// Here either MaxSize bytes are buffered or the rest of the stream is,
	// which is all cut needs.
	n, h, ok := c.follow()
	if !ok {
		n = cut(c.buf[c.start:c.end])
		h = xxhash.Sum64(c.buf[c.start : c.start+n])
	}
	b := c.buf[c.start : c.start+n : c.start+n]
	ch := Chunk{Offset: c.off, Size: uint32(n), Hash: h}
	_, _ = c.whole.Write(b) // never fails
	c.start += n
	c.off += int64(n)
	return ch, b, nil
}

// Sum returns the xxhash64 of every byte returned by Next since New or
// Reset. Once Next has returned io.EOF it is the hash of the whole stream.
func (c *Chunker) Sum() uint64 { return c.whole.Sum64() }

// fill moves the unconsumed bytes to the front of the buffer and reads until
// the buffer is full or the reader fails. It records io.EOF or the wrapped
// error in c.err.
func (c *Chunker) fill() {
	if c.start > 0 {
		c.end = copy(c.buf, c.buf[c.start:c.end])
		c.start = 0
	}
	empty := 0
	for c.end < len(c.buf) {
		n, err := c.r.Read(c.buf[c.end:])
		if n < 0 || n > len(c.buf)-c.end {
			c.err = fmt.Errorf("%w: %d", errBadCount, n)
			return
		}
		c.end += n
		switch {
		case err == io.EOF:
			c.err = io.EOF
			return
		case err != nil:
			c.err = fmt.Errorf("chunk: read at offset %d: %w", c.off+int64(c.end), err)
			return
		case n == 0:
			if empty++; empty >= maxEmptyReads {
				c.err = fmt.Errorf("chunk: read at offset %d: %w", c.off+int64(c.end), io.ErrNoProgress)
				return
			}
		default:
			empty = 0
		}
	}
}

// Split reads r to its end and returns its chunks and the xxhash64 of the
// whole stream. On a read error it returns the chunks found before it, a
// zero hash and the error.
func Split(r io.Reader) (chunks []Chunk, whole uint64, err error) {
	c := New(r)
	for {
		ch, _, err := c.Next()
		if err == io.EOF {
			return chunks, c.Sum(), nil
		}
		if err != nil {
			return chunks, 0, err
		}
		chunks = append(chunks, ch)
	}
}

// SplitBytes returns the chunks of b and the xxhash64 of all of b. It gives
// the same result as Split(bytes.NewReader(b)) without copying b.
func SplitBytes(b []byte) (chunks []Chunk, whole uint64) {
	if len(b) > 0 {
		chunks = make([]Chunk, 0, len(b)/AvgSize+1)
	}
	for off := 0; off < len(b); {
		n := cut(b[off:])
		chunks = append(chunks, Chunk{Offset: int64(off), Size: uint32(n), Hash: xxhash.Sum64(b[off : off+n])})
		off += n
	}
	return chunks, xxhash.Sum64(b)
}
