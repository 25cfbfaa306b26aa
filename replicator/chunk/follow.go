package chunk

import (
	"io"

	"github.com/cespare/xxhash/v2"
)

// following is what Follow gave: an earlier version's chunk list and where
// to look in it.
type following struct {
	old   []Chunk
	shift int64
	at    [2]int // per candidate offset (same, shifted): first chunk of old not behind
}

// Follow makes Next, until the next Reset, take the chunks of old wherever
// the stream still holds them, instead of rolling the gear hash over their
// bytes. old is the chunk list the chunker made of an earlier version of
// the stream, in order (given another list, the hashes still match the
// bytes, but the boundaries may not be the chunker's), and shift is the
// stream's size minus that version's. At each
// chunk start Next first hashes the chunk of old that started at the same
// offset, or at the same distance from the end (an insertion or a deletion
// before it moved it by shift); if its bytes are the same it is the next
// chunk. The chunks are the ones Next finds without Follow: a cut depends
// only on the bytes from its chunk's start to it, so the same bytes cut
// the same way (up to a collision of xxhash64, which leaves the hashes
// right for the bytes and only the boundary different). An unchanged file
// then costs hashing instead of rolling, and an edited one rolling over
// the edit until the cuts meet the old ones again. The last chunk of old
// ended at the old end of the stream, not at a cut: it is taken only where
// it still ends the stream.
func (c *Chunker) Follow(old []Chunk, shift int64) {
	c.prev = following{old: old, shift: shift}
}

// follow returns the length and hash of the next chunk if it is one of
// Follow's.
func (c *Chunker) follow() (int, uint64, bool) {
	p := &c.prev
	if len(p.old) == 0 {
		return 0, 0, false
	}
	for k, shift := range [2]int64{0, p.shift} {
		if k == 1 && shift == 0 {
			break
		}
		want := c.off - shift
		i := p.at[k]
		for i < len(p.old) && p.old[i].Offset < want {
			i++
		}
		p.at[k] = i
		if i == len(p.old) || p.old[i].Offset != want {
			continue
		}
		n := int(p.old[i].Size)
		ends := c.err == io.EOF && n == c.end-c.start // the rest of the stream
		// Sizes the chunker never makes are refused, whatever list old is:
		// every chunk returned stays one a saved index accepts.
		if n == 0 || n > MaxSize || n > c.end-c.start || n < MinSize && !ends || i == len(p.old)-1 && !ends {
			continue
		}
		if h := xxhash.Sum64(c.buf[c.start : c.start+n]); h == p.old[i].Hash {
			return n, h, true
		}
	}
	return 0, 0, false
}
