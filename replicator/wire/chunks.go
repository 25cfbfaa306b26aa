package wire

import (
	"encoding/binary"
	"fmt"
)

// ChunkRef describes one content-defined chunk of a file.
type ChunkRef struct {
	Size uint32
	Hash uint64
}

// ChunkRefLen is the encoded size of a ChunkRef.
const ChunkRefLen = 12

// Chunks carries part of a file entry's chunk list, for receivers that
// reported a basis for it. Chunk i of the file starts where chunk i-1 ends.
//
//	session(8) entry(4) first(4) total(4) nchunks(2) (size(4) hash(8))...
type Chunks struct {
	Session uint64
	Entry   uint32
	First   uint32 // index of the first chunk listed
	Total   uint32 // chunks in the whole list
	Refs    []ChunkRef
}

// ChunksHeaderLen is the encoded size of a Chunks without refs.
const ChunksHeaderLen = 22

// Type implements Message.
func (*Chunks) Type() Type { return TypeChunks }

// AppendPayload implements Message.
func (m *Chunks) AppendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, m.Session)
	b = binary.BigEndian.AppendUint32(b, m.Entry)
	b = binary.BigEndian.AppendUint32(b, m.First)
	b = binary.BigEndian.AppendUint32(b, m.Total)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Refs)))
	for _, c := range m.Refs {
		b = binary.BigEndian.AppendUint32(b, c.Size)
		b = binary.BigEndian.AppendUint64(b, c.Hash)
	}
	return b
}

func parseChunks(p []byte) (*Chunks, error) {
	r := &reader{b: p}
	m := &Chunks{Session: r.u64(), Entry: r.u32(), First: r.u32(), Total: r.u32()}
	n := int(r.u16())
	if r.err == nil && len(r.b) < n*ChunkRefLen {
		r.fail("%d chunk refs in %d bytes", n, len(r.b))
	}
	for range n {
		if r.err != nil {
			break
		}
		c := ChunkRef{Size: r.u32(), Hash: r.u64()}
		if c.Size == 0 {
			r.fail("empty chunk")
		}
		m.Refs = append(m.Refs, c)
	}
	if r.err == nil && uint64(m.First)+uint64(len(m.Refs)) > uint64(m.Total) {
		r.fail("chunks %d+%d past %d", m.First, len(m.Refs), m.Total)
	}
	if r.err != nil {
		return nil, fmt.Errorf("chunks: %w", r.err)
	}
	return m, nil
}

// ChunkNeed answers a Chunks: which of the listed chunks the receiver
// lacks (bit i for chunk First+i).
//
//	session(8) entry(4) first(4) n(2) need(bitmap)
type ChunkNeed struct {
	Session uint64
	Entry   uint32
	First   uint32
	N       uint16
	Need    []byte
}

// Type implements Message.
func (*ChunkNeed) Type() Type { return TypeChunkNeed }

// AppendPayload implements Message.
func (m *ChunkNeed) AppendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, m.Session)
	b = binary.BigEndian.AppendUint32(b, m.Entry)
	b = binary.BigEndian.AppendUint32(b, m.First)
	b = binary.BigEndian.AppendUint16(b, m.N)
	return append(b, m.Need...)
}

func parseChunkNeed(p []byte) (*ChunkNeed, error) {
	r := &reader{b: p}
	m := &ChunkNeed{Session: r.u64(), Entry: r.u32(), First: r.u32(), N: r.u16()}
	m.Need = append([]byte(nil), r.bytes((int(m.N)+7)/8)...)
	if r.err != nil {
		return nil, fmt.Errorf("chunk need: %w", r.err)
	}
	return m, nil
}
