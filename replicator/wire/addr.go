package wire

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// appendAddrPort appends ap as family(1: 4 or 6) address(4 or 16)
// port(2). An address of neither family (none at all) is written as
// 0.0.0.0:0, which readers of peers and envelopes refuse.
func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	a, port := ap.Addr().WithZone(""), ap.Port()
	switch {
	case a.Is4():
		b = append(b, 4)
		b = append(b, a.AsSlice()...)
	case a.Is6():
		b = append(b, 6)
		b = append(b, a.AsSlice()...)
	default:
		b = append(b, 4, 0, 0, 0, 0)
		port = 0
	}
	return binary.BigEndian.AppendUint16(b, port)
}

// readAddrPort decodes what appendAddrPort wrote at the front of p and
// returns the rest of p.
func readAddrPort(p []byte) (netip.AddrPort, []byte, error) {
	if len(p) < 1 {
		return netip.AddrPort{}, nil, fmt.Errorf("%w: address", ErrShort)
	}
	var a netip.Addr
	switch fam := p[0]; fam {
	case 4:
		if len(p) < 1+4+2 {
			return netip.AddrPort{}, nil, fmt.Errorf("%w: IPv4 address", ErrShort)
		}
		a, p = netip.AddrFrom4([4]byte(p[1:5])), p[5:]
	case 6:
		if len(p) < 1+16+2 {
			return netip.AddrPort{}, nil, fmt.Errorf("%w: IPv6 address", ErrShort)
		}
		a, p = netip.AddrFrom16([16]byte(p[1:17])), p[17:]
	default:
		return netip.AddrPort{}, nil, fmt.Errorf("%w: address family %d", ErrMalformed, fam)
	}
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(p)), p[2:], nil
}
