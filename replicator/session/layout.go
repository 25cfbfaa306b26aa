package session

import (
	"math/bits"
	"sort"

	"github.com/makuo/makuo/replicator/wire"
)

// MinChunk is the smallest content-defined chunk (package chunk's MinSize,
// repeated here so that session imports wire only; a test pins the two
// together). A file smaller than that has one chunk and is always sent
// whole.
const MinChunk = 16 << 10

// maxLayoutBlocks bounds a session's block numbers. Sizes are bounded by
// wire.MaxFileSize and entries by wire.MaxEntries, so an honest layout
// stays far below; the bound keeps the sums of a crafted offer from
// wrapping around.
const maxLayoutBlocks = 1 << 62

// Block layout. Every file entry owns a fixed range of block numbers,
// derived from the offers alone so that every member agrees on it:
// ceil(size/bs) blocks when sent whole, plus room for one partial block per
// chunk when sent as chunks (a delta). A file too small to have more than
// one chunk is always sent whole.
func blockBudget(size uint64, bs int) uint64 {
	n := blocksOf(size, bs)
	if size >= MinChunk {
		n += size/MinChunk + 1
	}
	return n
}

// blocksOf is ceil(size/bs), without overflow for any size.
func blocksOf(size uint64, bs int) uint64 {
	q, r := bits.Div64(0, size, uint64(bs))
	if r != 0 {
		q++
	}
	return q
}

// wholeLocate maps block local of a file sent whole to its file offset
// and length.
func wholeLocate(local uint64, bs int, size uint64) (off int64, n int) {
	off = int64(local) * int64(bs)
	return off, int(min(int64(bs), int64(size)-off))
}

// chunkPlan is a file's chunk list with the block layout of a delta: chunk
// c covers file bytes [off[c], off[c]+size) and the entry's blocks
// [blk[c], blk[c+1]).
type chunkPlan struct {
	refs []wire.ChunkRef
	off  []int64
	blk  []uint64 // len(refs)+1 prefix sums
}

func newChunkPlan(refs []wire.ChunkRef, bs int) *chunkPlan {
	p := &chunkPlan{refs: refs, off: make([]int64, len(refs)), blk: make([]uint64, len(refs)+1)}
	var off int64
	for i, r := range refs {
		p.off[i] = off
		off += int64(r.Size)
		p.blk[i+1] = p.blk[i] + blocksOf(uint64(r.Size), bs)
	}
	return p
}

// blocks is the number of blocks the delta layout uses.
func (p *chunkPlan) blocks() uint64 { return p.blk[len(p.refs)] }

// size is the file size the chunks add up to.
func (p *chunkPlan) size() uint64 {
	var n uint64
	for _, r := range p.refs {
		n += uint64(r.Size)
	}
	return n
}

// locate maps an entry-relative block to its chunk, file offset and length.
func (p *chunkPlan) locate(local uint64, bs int) (c int, off int64, n int) {
	c = sort.Search(len(p.refs), func(i int) bool { return p.blk[i+1] > local }) // first chunk ending after local
	k := local - p.blk[c]
	off = p.off[c] + int64(k)*int64(bs)
	n = int(min(int64(bs), p.off[c]+int64(p.refs[c].Size)-off))
	return c, off, n
}

// bitset is a set of small integers, 64 to a word.
type bitset []uint64

func newBitset(n uint64) bitset { return make(bitset, (n+63)/64) }

func (b bitset) has(i uint64) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bitset) set(i uint64)      { b[i/64] |= 1 << (i % 64) }

// firstClear returns the first index >= from that is not set, or n.
func (b bitset) firstClear(from, n uint64) uint64 {
	for i := from; i < n; {
		w := b[i/64] >> (i % 64)
		if w != ^uint64(0)>>(i%64) {
			i += uint64(bits.TrailingZeros64(^w))
			return min(i, n)
		}
		i = (i/64 + 1) * 64
	}
	return n
}

// firstSet returns the first index >= from that is set, or n.
func (b bitset) firstSet(from, n uint64) uint64 {
	for i := from; i < n; {
		w := b[i/64] >> (i % 64)
		if w != 0 {
			return min(i+uint64(bits.TrailingZeros64(w)), n)
		}
		i = (i/64 + 1) * 64
	}
	return n
}
