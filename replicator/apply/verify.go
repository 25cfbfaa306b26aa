package apply

import (
	"github.com/cespare/xxhash/v2"

	"github.com/makuo/makuo/replicator/chunk"
	"github.com/makuo/makuo/replicator/wire"
)

// chunkCheck verifies a delta file chunk by chunk instead of by one hash
// over the whole content, which would read back every byte copied from
// the basis. It stands for the whole-file hash only when the basis's index
// key proved its chunk list (trustBasis): then every chunk of the sender's
// list is either one the basis holds, with that hash, or one received and
// hashed here as its last block lands; and the sender's list comes from
// the same read of its file as the whole-file hash it offered
// (source.ChunkLists), so a file whose every chunk matches has that hash.
type chunkCheck struct {
	refs []wire.ChunkRef
	have []bool // copied from the basis
	next int    // first chunk not checked yet
	off  int64  // its offset
	bad  bool   // a received chunk did not match
	// scratch holds a chunk read back from the temp file (the Applier's,
	// of chunk.MaxSize bytes).
	scratch []byte
}

func newChunkCheck(refs []wire.ChunkRef, have []bool, scratch []byte) *chunkCheck {
	return &chunkCheck{refs: refs, have: have, scratch: scratch}
}

// checkTo checks the received chunks that end at or before end, the
// complete prefix of the file, reading them from the write buffer or
// else from the temp file.
func (f *file) checkTo(end int64) error {
	c := f.check
	for c.next < len(c.refs) {
		r := c.refs[c.next]
		cend := c.off + int64(r.Size)
		if cend > end {
			return nil
		}
		if !c.have[c.next] {
			ok, err := f.chunkMatches(c.off, r, c.scratch)
			if err != nil {
				return err
			}
			c.bad = c.bad || !ok
		}
		c.next++
		c.off = cend
	}
	return nil
}

// chunkMatches hashes the received chunk r at off.
func (f *file) chunkMatches(off int64, r wire.ChunkRef, scratch []byte) (bool, error) {
	n := int64(r.Size)
	if off >= f.woff && off+n <= f.woff+int64(len(f.wbuf)) {
		return xxhash.Sum64(f.wbuf[off-f.woff:off-f.woff+n]) == r.Hash, nil
	}
	if n > int64(len(scratch)) {
		return false, nil // no chunker makes such a chunk
	}
	if err := f.flush(); err != nil {
		return false, err
	}
	b := scratch[:n]
	if _, err := f.tmp.ReadAt(b, off); err != nil {
		return false, err
	}
	return xxhash.Sum64(b) == r.Hash, nil
}

// verified reports whether every chunk was checked and matched.
func (c *chunkCheck) verified() bool { return !c.bad && c.next == len(c.refs) }

// chunks returns the verified file's chunk list, for the index.
func (c *chunkCheck) chunks() []chunk.Chunk { return refChunks(c.refs) }
