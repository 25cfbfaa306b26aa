package wire

import (
	"fmt"
	"net/netip"
)

// MaxSegment bounds a segment's name in a RelayHello.
const MaxSegment = 64

// RelayOverhead is what a Relay envelope adds to the datagram it carries,
// besides the envelope's own header (and seal): the origin's address.
const RelayOverhead = 1 + 16 + 2

// Relay is a relay's envelope: one whole datagram (Inner, as its origin
// sent it: header, payload, seal untouched) and the address it came from
// (Origin, where unicast answers to it go). It goes from a segment's
// relay to the relay of another segment, and from there once on that
// segment's group.
//
//	family(1: 4 or 6) addr(4 or 16) port(2) inner(rest)
//
// The origin's address carries no zone: a zone names an interface of the
// sender's host.
type Relay struct {
	Origin netip.AddrPort
	Inner  []byte
}

// Type implements Message.
func (*Relay) Type() Type { return TypeRelay }

// AppendPayload implements Message. An origin that is not an IPv4 or
// IPv6 address is encoded as 0.0.0.0:0, which receivers refuse.
func (m *Relay) AppendPayload(b []byte) []byte {
	return append(appendAddrPort(b, m.Origin), m.Inner...)
}

// parseRelay decodes an envelope; Inner aliases p. An inner datagram
// shorter than a header is refused here: it could not be a datagram.
func parseRelay(p []byte) (*Relay, error) {
	origin, inner, err := readAddrPort(p)
	if err != nil {
		return nil, fmt.Errorf("relay origin: %w", err)
	}
	m := &Relay{Origin: origin, Inner: inner}
	if len(m.Inner) < HeaderLen {
		return nil, fmt.Errorf("%w: relayed datagram of %d bytes", ErrShort, len(m.Inner))
	}
	return m, nil
}

// RelayHello is what a relay candidate says of itself, every heartbeat
// interval, on its segment's group and to the relays of other segments.
//
//	flags(1: bit 0 hears a remote relay, bit 1 active) seglen(1) segment(seglen)
//
// Segment is 1..MaxSegment bytes of printable ASCII.
type RelayHello struct {
	Segment string
	// Hears says the candidate heard a relay of another segment lately:
	// only such a candidate may be its segment's active relay.
	Hears bool
	// Active says the candidate is its segment's active relay: it
	// forwards the segment's datagrams and takes the other segments'.
	Active bool
}

const (
	helloHears  = 1 << 0
	helloActive = 1 << 1
)

// Type implements Message.
func (*RelayHello) Type() Type { return TypeRelayHello }

// AppendPayload implements Message. A segment name past MaxSegment is
// cut.
func (m *RelayHello) AppendPayload(b []byte) []byte {
	var f byte
	if m.Hears {
		f |= helloHears
	}
	if m.Active {
		f |= helloActive
	}
	s := m.Segment
	if len(s) > MaxSegment {
		s = s[:MaxSegment]
	}
	b = append(b, f, byte(len(s)))
	return append(b, s...)
}

func parseRelayHello(p []byte) (*RelayHello, error) {
	if len(p) < 2 {
		return nil, fmt.Errorf("%w: relay hello of %d bytes", ErrShort, len(p))
	}
	f, n := p[0], int(p[1])
	switch {
	case f&^(helloHears|helloActive) != 0:
		return nil, fmt.Errorf("%w: relay hello flags %#x", ErrMalformed, f)
	case n != len(p)-2:
		return nil, fmt.Errorf("%w: relay hello segment of %d bytes in %d", ErrMalformed, n, len(p)-2)
	}
	seg := string(p[2:])
	if err := CheckSegment(seg); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return &RelayHello{Segment: seg, Hears: f&helloHears != 0, Active: f&helloActive != 0}, nil
}

// CheckSegment checks a segment's name: 1..MaxSegment bytes of printable
// ASCII without spaces, as it appears in labels and status lines.
func CheckSegment(s string) error {
	if s == "" || len(s) > MaxSegment {
		return fmt.Errorf("segment name of %d bytes, want 1..%d", len(s), MaxSegment)
	}
	for i := range len(s) {
		if c := s[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("segment name %q has a byte %#x outside printable ASCII", s, c)
		}
	}
	return nil
}
