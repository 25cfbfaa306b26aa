package apply

import (
	"github.com/makuo/makuo/replicator/chunk"
	"github.com/makuo/makuo/replicator/tree"
	"github.com/makuo/makuo/replicator/wire"
)

// plan switches entry i to its chunk layout and copies into its temp file
// every chunk its local basis already holds; have[c] tells which.
func (s *Session) plan(i int, refs []wire.ChunkRef) ([]bool, *wire.Failure) {
	f, err := s.openFile(i)
	if err == nil {
		err = f.restart(&s.a.wbufs)
	}
	if err != nil {
		s.dropFile(i)
		return nil, fail(err)
	}
	have := make([]bool, len(refs))
	n := s.notes[i]
	if n == nil || n.basisPath == "" {
		return have, nil
	}
	var be tree.Entry
	if err := s.whileBusy(func() (err error) { be, err = s.a.cfg.Index.Chunks(n.basisPath); return err }); err != nil {
		return have, nil // gone or unreadable since the offer: fetch everything
	}
	basis, err := s.a.cfg.Dir.Open(n.basisPath)
	if err != nil {
		return have, nil
	}
	defer basis.Close()
	byHash := make(map[uint64]chunk.Chunk, len(be.Chunks))
	for _, ch := range be.Chunks {
		byHash[ch.Hash] = ch
	}
	if s.a.chunkBuf == nil {
		s.a.chunkBuf = make([]byte, chunk.MaxSize)
	}
	var off int64
	for c, ref := range refs {
		at := off
		off += int64(ref.Size)
		ch, ok := byHash[ref.Hash]
		if !ok || ch.Size != ref.Size || int(ref.Size) > len(s.a.chunkBuf) {
			continue
		}
		b := s.a.chunkBuf[:ref.Size]
		if _, err := basis.ReadAt(b, ch.Offset); err != nil {
			continue
		}
		if c%64 == 0 && s.a.cfg.Busy > 0 {
			s.busy()
		}
		if _, err := f.tmp.WriteAt(b, at); err != nil {
			s.dropFile(i)
			return nil, fail(err)
		}
		have[c] = true
		s.a.cfg.Metrics.ChunksReused.Inc()
	}
	return have, nil
}
