package wire

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// MaxAnswers bounds the answers one RelayAnswers carries. The smallest
// answer takes AnswerOverhead plus a header, so a datagram of
// MaxDatagram holds fewer anyway; the bound keeps a decoder's work small
// whatever the count says.
const MaxAnswers = 1024

// AnswerOverhead is what one answer adds to a RelayAnswers besides the
// datagram it carries: two IPv6 addresses with ports and a length.
const AnswerOverhead = 2*(1+16+2) + 2

// RelayAnswers is a batch of answers (needs, nacks, results: what a
// receiver unicasts to a push's origin) crossing segments through their
// relays: from a member to its segment's active relay, from there to the
// origin's segment's active relay, and from that one to the origin. Each
// answer is one whole datagram as its member sealed it (Inner: header,
// payload, seal untouched), with the member's address (From: where the
// origin hears the member's datagrams from) and the origin's (To: where
// the member would have sent it).
//
//	count(2) { from(addr) to(addr) len(2) inner(len) } * count
//
// with addr as in Relay. count is 1..MaxAnswers, each inner at least a
// header long, and the answers fill the payload exactly.
type RelayAnswers struct {
	Answers []Answer
}

// Answer is one answer of a RelayAnswers.
type Answer struct {
	From, To netip.AddrPort
	Inner    []byte
}

// Type implements Message.
func (*RelayAnswers) Type() Type { return TypeRelayAnswers }

// AppendPayload implements Message. An answer past MaxAnswers is left
// out; one whose Inner is longer than a length can say is written empty,
// which readers refuse.
func (m *RelayAnswers) AppendPayload(b []byte) []byte {
	as := m.Answers
	if len(as) > MaxAnswers {
		as = as[:MaxAnswers]
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(as)))
	for _, a := range as {
		b = appendAddrPort(b, a.From)
		b = appendAddrPort(b, a.To)
		inner := a.Inner
		if len(inner) > 0xffff {
			inner = nil
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(inner)))
		b = append(b, inner...)
	}
	return b
}

// AnswerSize is what answer a takes in a RelayAnswers.
func AnswerSize(a *Answer) int {
	n := 2 + len(a.Inner)
	for _, ap := range []netip.AddrPort{a.From, a.To} {
		n += 1 + 4 + 2
		if ap.Addr().Is6() {
			n += 12
		}
	}
	return n
}

// parseRelayAnswers decodes a batch; each Inner aliases p.
func parseRelayAnswers(p []byte) (*RelayAnswers, error) {
	if len(p) < 2 {
		return nil, fmt.Errorf("%w: relay answers of %d bytes", ErrShort, len(p))
	}
	n := int(binary.BigEndian.Uint16(p))
	if n == 0 || n > MaxAnswers {
		return nil, fmt.Errorf("%w: %d relay answers, want 1..%d", ErrMalformed, n, MaxAnswers)
	}
	p = p[2:]
	m := &RelayAnswers{Answers: make([]Answer, 0, min(n, len(p)/(HeaderLen+2*7+2)+1))}
	for i := range n {
		var a Answer
		var err error
		if a.From, p, err = readAddrPort(p); err != nil {
			return nil, fmt.Errorf("relay answer %d from: %w", i, err)
		}
		if a.To, p, err = readAddrPort(p); err != nil {
			return nil, fmt.Errorf("relay answer %d to: %w", i, err)
		}
		if len(p) < 2 {
			return nil, fmt.Errorf("%w: relay answer %d length", ErrShort, i)
		}
		k := int(binary.BigEndian.Uint16(p))
		p = p[2:]
		switch {
		case k < HeaderLen:
			return nil, fmt.Errorf("%w: relay answer %d of %d bytes", ErrMalformed, i, k)
		case k > len(p):
			return nil, fmt.Errorf("%w: relay answer %d of %d bytes in %d", ErrShort, i, k, len(p))
		}
		a.Inner, p = p[:k:k], p[k:]
		m.Answers = append(m.Answers, a)
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after %d relay answers", ErrMalformed, len(p), n)
	}
	return m, nil
}
