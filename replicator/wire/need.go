package wire

import (
	"encoding/binary"
	"fmt"
)

// Need is a receiver's answer to one offer: for each item of that offer,
// whether the receiver will change something (Change), whether it needs
// content (Data), and whether it holds an older copy worth diffing against
// (Basis: the sender then sends the file's chunk list, and the receiver
// fetches only the chunks it lacks). A receiver that is not a target of the
// session stays silent instead.
//
//	session(8) offer(4) nitems(2) change(bitmap) data(bitmap) basis(bitmap)
//
// Bitmaps hold ceil(nitems/8) bytes, item i at bit i%8 (LSB first) of
// byte i/8.
type Need struct {
	Session uint64
	Offer   uint32
	N       uint16
	Change  []byte
	Data    []byte
	Basis   []byte
}

// NewNeed returns a Need with zeroed bitmaps for n items.
func NewNeed(session uint64, offer uint32, n int) *Need {
	k := (n + 7) / 8
	return &Need{Session: session, Offer: offer, N: uint16(n), Change: make([]byte, k), Data: make([]byte, k), Basis: make([]byte, k)}
}

// Type implements Message.
func (*Need) Type() Type { return TypeNeed }

// AppendPayload implements Message.
func (m *Need) AppendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, m.Session)
	b = binary.BigEndian.AppendUint32(b, m.Offer)
	b = binary.BigEndian.AppendUint16(b, m.N)
	b = append(b, m.Change...)
	b = append(b, m.Data...)
	return append(b, m.Basis...)
}

// Set marks item i.
func Set(bitmap []byte, i int) { bitmap[i/8] |= 1 << (i % 8) }

// IsSet reports whether item i is marked.
func IsSet(bitmap []byte, i int) bool { return bitmap[i/8]&(1<<(i%8)) != 0 }

func parseNeed(p []byte) (*Need, error) {
	r := &reader{b: p}
	m := &Need{Session: r.u64(), Offer: r.u32(), N: r.u16()}
	k := (int(m.N) + 7) / 8
	m.Change = append([]byte(nil), r.bytes(k)...)
	m.Data = append([]byte(nil), r.bytes(k)...)
	m.Basis = append([]byte(nil), r.bytes(k)...)
	if r.err != nil {
		return nil, fmt.Errorf("need: %w", r.err)
	}
	return m, nil
}
