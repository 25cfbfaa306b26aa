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
//	  [items(nitems): ItemFlags per item]
//
// Bitmaps hold ceil(nitems/8) bytes, item i at bit i%8 (LSB first) of
// byte i/8. Items, added in a later revision, say what differs for each
// item (msync -n -i); a receiver that does not send them is understood
// as saying nothing more than Change.
type Need struct {
	Session uint64
	Offer   uint32
	N       uint16
	Change  []byte
	Data    []byte
	Basis   []byte
	Items   []ItemFlags // nil or N of them
}

// ItemFlags say what differs between an offered entry and the receiver's
// copy. ONLY APPEND.
type ItemFlags uint8

// What differs.
const (
	ItemNew     ItemFlags = 1 << 0 // the path does not exist on the receiver
	ItemType    ItemFlags = 1 << 1 // it exists as another kind of entry
	ItemContent ItemFlags = 1 << 2 // content (or a link's target)
	ItemMode    ItemFlags = 1 << 3
	ItemOwner   ItemFlags = 1 << 4
	ItemMtime   ItemFlags = 1 << 5
	ItemDelete  ItemFlags = 1 << 6 // deleted (the sender lacks it)
)

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
	b = append(b, m.Basis...)
	for _, f := range m.Items {
		b = append(b, byte(f))
	}
	return b
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
	if r.err == nil && len(r.b) >= int(m.N) && m.N > 0 {
		m.Items = make([]ItemFlags, m.N)
		for i, c := range r.bytes(int(m.N)) {
			m.Items[i] = ItemFlags(c)
		}
	}
	if r.err != nil {
		return nil, fmt.Errorf("need: %w", r.err)
	}
	return m, nil
}
