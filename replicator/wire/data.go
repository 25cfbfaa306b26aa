package wire

import (
	"encoding/binary"
	"fmt"
)

// DataHeaderLen is the size of a Data payload before its bytes.
const DataHeaderLen = 16

// Data carries one block of a session's content. Blocks are numbered across
// the whole session: every KindFile entry, in entry order, owns
// ceil(size/block_size) consecutive blocks, so every member derives the
// same layout from the offers alone.
//
//	session(8) block(8) bytes...
//
// Unlike other messages, a parsed Data's Bytes alias the parsed buffer:
// the hot path must not copy.
type Data struct {
	Session uint64
	Block   uint64
	Bytes   []byte
}

// Type implements Message.
func (*Data) Type() Type { return TypeData }

// AppendPayload implements Message.
func (m *Data) AppendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, m.Session)
	b = binary.BigEndian.AppendUint64(b, m.Block)
	return append(b, m.Bytes...)
}

// Decode decodes a data payload into m, which then aliases p. It is
// ParsePayload for the one message type that comes by the hundred
// thousand: the caller can reuse m.
func (m *Data) Decode(p []byte) error {
	if len(p) < DataHeaderLen {
		return fmt.Errorf("data: %w: %d bytes", ErrShort, len(p))
	}
	*m = Data{
		Session: binary.BigEndian.Uint64(p),
		Block:   binary.BigEndian.Uint64(p[8:]),
		Bytes:   p[DataHeaderLen:],
	}
	return nil
}

func parseData(p []byte) (*Data, error) {
	m := new(Data)
	if err := m.Decode(p); err != nil {
		return nil, err
	}
	return m, nil
}

// Poll asks the session's receivers which blocks below Watermark they still
// miss. Final marks the poll after the sender has sent everything once.
//
//	session(8) round(4) watermark(8) final(1)
type Poll struct {
	Session   uint64
	Round     uint32
	Watermark uint64
	Final     bool
}

// Type implements Message.
func (*Poll) Type() Type { return TypePoll }

// AppendPayload implements Message.
func (m *Poll) AppendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, m.Session)
	b = binary.BigEndian.AppendUint32(b, m.Round)
	b = binary.BigEndian.AppendUint64(b, m.Watermark)
	return append(b, boolByte(m.Final))
}

func parsePoll(p []byte) (*Poll, error) {
	r := &reader{b: p}
	m := &Poll{Session: r.u64(), Round: r.u32(), Watermark: r.u64()}
	m.Final = r.u8() != 0
	if r.err != nil {
		return nil, fmt.Errorf("poll: %w", r.err)
	}
	return m, nil
}

// Range is a run of Count blocks from Start.
type Range struct {
	Start uint64
	Count uint32
}

// NackFlags describe a Nack.
type NackFlags uint8

// Nack flags. ONLY APPEND.
const (
	NackTruncated NackFlags = 1 << 0 // more blocks are missing than listed
	NackDelivery  NackFlags = 1 << 1 // Delivered and Span follow the ranges
)

// Nack answers a Poll with the blocks below its watermark that the receiver
// needs and lacks (empty: it has all it needs up to there). Missing is the
// total count, Ranges may be truncated to fit one datagram. WindowLost of
// WindowSize is the loss among the blocks the receiver needs between the
// previous poll's watermark and this one: the sender's congestion signal.
//
// With NackDelivery, the receiver reports how fast data reaches it: the
// data datagrams (header and payload, unsealed) of a run of arrivals came
// at Delivered bytes per Span microseconds, counting from the run's first
// datagram, whose own bytes are not in Delivered. A zero Span reports no
// run long enough to tell. Receivers of before the field leave the flag
// and the fields out, and a Nack without the flag is read without them.
//
//	session(8) round(4) flags(1) missing(8) window_lost(4) window_size(4)
//	nranges(2) (start(8) count(4))... [delivered(4) span_us(4)]
type Nack struct {
	Session    uint64
	Round      uint32
	Flags      NackFlags
	Missing    uint64
	WindowLost uint32
	WindowSize uint32
	Ranges     []Range
	Delivered  uint32
	Span       uint32
}

// NackRangeLen is the encoded size of one Range.
const NackRangeLen = 12

// NackHeaderLen is the encoded size of a Nack without ranges and delivery
// fields.
const NackHeaderLen = 31

// NackDeliveryLen is the encoded size of a Nack's delivery fields.
const NackDeliveryLen = 8

// Type implements Message.
func (*Nack) Type() Type { return TypeNack }

// AppendPayload implements Message.
func (m *Nack) AppendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, m.Session)
	b = binary.BigEndian.AppendUint32(b, m.Round)
	b = append(b, byte(m.Flags))
	b = binary.BigEndian.AppendUint64(b, m.Missing)
	b = binary.BigEndian.AppendUint32(b, m.WindowLost)
	b = binary.BigEndian.AppendUint32(b, m.WindowSize)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Ranges)))
	for _, rg := range m.Ranges {
		b = binary.BigEndian.AppendUint64(b, rg.Start)
		b = binary.BigEndian.AppendUint32(b, rg.Count)
	}
	if m.Flags&NackDelivery != 0 {
		b = binary.BigEndian.AppendUint32(b, m.Delivered)
		b = binary.BigEndian.AppendUint32(b, m.Span)
	}
	return b
}

func parseNack(p []byte) (*Nack, error) {
	r := &reader{b: p}
	m := &Nack{Session: r.u64(), Round: r.u32(), Flags: NackFlags(r.u8()), Missing: r.u64(), WindowLost: r.u32(), WindowSize: r.u32()}
	if r.err == nil && m.WindowLost > m.WindowSize {
		r.fail("window loss %d of %d", m.WindowLost, m.WindowSize)
	}
	n := int(r.u16())
	if r.err == nil && len(r.b) < n*NackRangeLen {
		r.fail("%d ranges in %d bytes", n, len(r.b))
	}
	for range n {
		if r.err != nil {
			break
		}
		rg := Range{Start: r.u64(), Count: r.u32()}
		if rg.Count == 0 || rg.Start+uint64(rg.Count) < rg.Start {
			r.fail("range %d+%d", rg.Start, rg.Count)
		}
		m.Ranges = append(m.Ranges, rg)
	}
	if m.Flags&NackDelivery != 0 {
		m.Delivered, m.Span = r.u32(), r.u32()
	}
	// Bytes past the known fields are a newer revision's: ignored.
	if r.err != nil {
		return nil, fmt.Errorf("nack: %w", r.err)
	}
	return m, nil
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}
