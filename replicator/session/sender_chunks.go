package session

import (
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// chunkPhase is the delta step of a session: the chunk lists of files some
// member can diff against go out, and members answer which chunks they
// lack.
type chunkPhase struct {
	// wanted lists the files whose chunk lists the driver must supply
	// (SetChunkLists); nil once supplied.
	wanted  []int
	plans   map[int]*chunkPlan // files sent as chunks
	need    map[int]bitset     // per delta file: chunks some member lacks
	msgs    []*wire.Chunks
	sendAll bool // the lists were just supplied: send every part
}

func (s *Sender) enterChunks(now time.Time, out []Out) []Out {
	s.phase = PhaseChunks
	s.chunks.plans = map[int]*chunkPlan{}
	s.chunks.need = map[int]bitset{}
	wanted := []int{}
	// Files before the cursor's limit went out whole while offers were
	// still being answered: none of them is a delta.
	for _, i := range s.files[s.data.sendable:] {
		if s.deltaCandidate(i) {
			wanted = append(wanted, i)
		}
	}
	if len(wanted) == 0 {
		return s.enterData(now, out)
	}
	s.chunks.wanted = wanted
	return out
}

// NeedChunkLists returns the file entries whose chunk lists the session
// needs before it can go on (files some member holds an older copy of),
// nil when it needs none.
func (s *Sender) NeedChunkLists() []int {
	if s.phase != PhaseChunks {
		return nil
	}
	return s.chunks.wanted
}

// SetChunkLists supplies the chunk lists NeedChunkLists asked for. A file
// without a list, or whose list does not add up to its size (it changed
// since the scan), is sent whole, and the receivers' hash check decides.
func (s *Sender) SetChunkLists(lists map[int][]wire.ChunkRef) {
	c := &s.chunks
	if s.phase != PhaseChunks || c.wanted == nil {
		return
	}
	per := (s.cfg.MaxPayload - wire.ChunksHeaderLen) / wire.ChunkRefLen
	for _, i := range c.wanted {
		refs := lists[i]
		if len(refs) == 0 || uint64(len(refs)) > s.entries[i].Size/MinChunk+1 {
			continue
		}
		plan := newChunkPlan(refs, s.blockSize)
		if plan.size() != s.entries[i].Size || plan.blocks() > blockBudget(s.entries[i].Size, s.blockSize) {
			continue
		}
		c.plans[i] = plan
		c.need[i] = newBitset(uint64(len(refs)))
		for first := 0; first < len(refs); first += per {
			end := min(first+per, len(refs))
			c.msgs = append(c.msgs, &wire.Chunks{Session: s.cfg.Session, Entry: uint32(i), First: uint32(first),
				Total: uint32(len(refs)), Refs: refs[first:end]})
		}
	}
	c.wanted = nil
	c.sendAll = true
	for _, p := range s.peers {
		p.chunksAnswered = map[chunkPart]struct{}{}
	}
}

// owed reports whether member p still has to answer chunk-list part m:
// every member that needs the file answers every part.
func (p *peer) owed(m *wire.Chunks) bool {
	if !p.active() || !p.data.has(uint64(m.Entry)) {
		return false
	}
	_, done := p.chunksAnswered[chunkPart{m.Entry, m.First}]
	return !done
}

func (s *Sender) nextChunks(now time.Time, out []Out) []Out {
	c := &s.chunks
	if c.wanted != nil {
		return out
	}
	if c.sendAll {
		c.sendAll = false
		for _, m := range c.msgs {
			out = append(out, Out{Msg: m})
		}
		s.retry = offerRetry
		s.resendAt = now.Add(s.retry)
		return out
	}
	pending := false
	resend := !now.Before(s.resendAt)
	for _, m := range c.msgs {
		for _, p := range s.peers {
			if p.owed(m) {
				pending = true
				if resend {
					out = append(out, Out{Msg: m})
				}
				break
			}
		}
	}
	if !pending {
		return s.enterData(now, out)
	}
	if resend {
		s.retry = min(2*s.retry, maxRetry)
		s.resendAt = now.Add(s.retry)
	}
	return out
}

// chunkNeed records which chunks of a part member p lacks.
func (s *Sender) chunkNeed(p *peer, m *wire.ChunkNeed) {
	need := s.chunks.need[int(m.Entry)]
	if need == nil || p.chunksAnswered == nil || !p.data.has(uint64(m.Entry)) {
		return
	}
	n := uint64(len(s.chunks.plans[int(m.Entry)].refs))
	k := chunkPart{m.Entry, m.First}
	if _, done := p.chunksAnswered[k]; done || uint64(m.First)+uint64(m.N) > n {
		return
	}
	p.chunksAnswered[k] = struct{}{}
	for j := range int(m.N) {
		if wire.IsSet(m.Need, j) {
			need.set(uint64(m.First) + uint64(j))
		}
	}
}
