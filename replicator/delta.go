package replicator

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/makuo/makuo/replicator/chunk"
	"github.com/makuo/makuo/replicator/wire"
)

// Block layout. Every file entry owns a fixed range of block numbers,
// derived from the offers alone so that every member agrees on it:
// ceil(size/bs) blocks when sent whole, plus room for one partial block per
// chunk when sent as chunks (a delta). A file too small to have more than
// one chunk is always sent whole.
func blockBudget(size uint64, bs int) uint64 {
	n := blocksOf(size, bs)
	if size >= chunk.MinSize {
		n += size/chunk.MinSize + 1
	}
	return n
}

func blocksOf(size uint64, blockSize int) uint64 {
	return (size + uint64(blockSize) - 1) / uint64(blockSize)
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

// locate maps an entry-relative block to its chunk, file offset and length.
func (p *chunkPlan) locate(local uint64, bs int) (c int, off int64, n int) {
	c = sort.Search(len(p.refs), func(i int) bool { return p.blk[i+1] > local }) // first chunk ending after local
	k := local - p.blk[c]
	off = p.off[c] + int64(k)*int64(bs)
	n = int(min(int64(bs), p.off[c]+int64(p.refs[c].Size)-off))
	return c, off, n
}

// wholeLocate is locate for a file sent whole.
func wholeLocate(local uint64, bs int, size uint64) (off int64, n int) {
	off = int64(local) * int64(bs)
	return off, int(min(int64(bs), int64(size)-off))
}

// chunkPart names one Chunks message of a session: entry and first chunk.
type chunkPart struct{ entry, first uint32 }

// chunkFile returns the chunk list of the sender's file rel and the whole
// hash it belongs to, from the index (cached while the file is unchanged).
func (n *Node) chunkFile(rel string) ([]wire.ChunkRef, uint64, error) {
	e, err := n.index.Chunks(rel)
	if err != nil {
		return nil, 0, fmt.Errorf("chunk %s: %w", rel, err)
	}
	refs := make([]wire.ChunkRef, len(e.Chunks))
	for i, c := range e.Chunks {
		refs[i] = wire.ChunkRef{Size: c.Size, Hash: c.Hash}
	}
	return refs, e.Hash, nil
}

// chunkPhase sends the chunk lists of the files some receiver can diff
// against, and gathers which chunks each receiver lacks. A file whose
// content changed since the scan is sent whole.
func (s *sendSession) chunkPhase(ctx context.Context) error {
	s.plans = map[int]*chunkPlan{}
	s.chunkNeed = map[int][]bool{}
	var msgs []*wire.Chunks
	per := (s.n.conn.MaxPayload() - wire.ChunksHeaderLen) / wire.ChunkRefLen
	for _, i := range s.files {
		e := &s.entries[i]
		if e.Size < chunk.MinSize {
			continue
		}
		basis := false
		for _, p := range s.peers {
			basis = basis || (p.active() && p.data[i] && p.basis[i])
		}
		if !basis {
			continue
		}
		refs, whole, err := s.n.chunkFile(e.Path)
		if err != nil || whole != e.Hash || len(refs) == 0 {
			continue // changed or unreadable since the scan: send it whole, receivers' check decides
		}
		s.plans[i] = newChunkPlan(refs, s.blockSize)
		s.chunkNeed[i] = make([]bool, len(refs))
		for first := 0; first < len(refs); first += per {
			end := min(first+per, len(refs))
			msgs = append(msgs, &wire.Chunks{Session: s.id, Entry: uint32(i), First: uint32(first), Total: uint32(len(refs)), Refs: refs[first:end]})
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	// Every receiver that needs the file answers every part.
	owed := func(p *peer, m *wire.Chunks) bool {
		return p.active() && p.data[m.Entry] && !p.chunksAnswered[chunkPart{m.Entry, m.First}]
	}
	for _, p := range s.peers {
		p.chunksAnswered = map[chunkPart]bool{}
	}
	for _, m := range msgs {
		s.send(m)
	}
	retry := offerRetry
	resend := time.NewTimer(retry)
	defer resend.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		pending := false
		for _, m := range msgs {
			for _, p := range s.peers {
				pending = pending || owed(p, m)
			}
		}
		if !pending {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case r := <-s.replies:
			if cn, ok := r.msg.(*wire.ChunkNeed); ok {
				if p := s.byID[r.from]; p != nil && p.active() {
					p.heard = time.Now()
					k := chunkPart{cn.Entry, cn.First}
					need := s.chunkNeed[int(cn.Entry)]
					if need != nil && !p.chunksAnswered[k] && int(cn.First)+int(cn.N) <= len(need) {
						p.chunksAnswered[k] = true
						for j := range int(cn.N) {
							if wire.IsSet(cn.Need, j) {
								need[int(cn.First)+j] = true
							}
						}
					}
				}
				continue
			}
			s.handle(r)
		case <-resend.C:
			for _, m := range msgs {
				for _, p := range s.peers {
					if owed(p, m) {
						s.send(m)
						break
					}
				}
			}
			retry = min(2*retry, time.Second)
			resend.Reset(retry)
		case now := <-tick.C:
			s.expire(now, "chunk lists")
		}
	}
}
