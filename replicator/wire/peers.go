package wire

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// MaxPeers bounds the entries of one Peers message (a count byte); a
// member that hears more peers than fit in one datagram sends several.
const MaxPeers = 255

// peerMinLen and peerMaxLen are the encoded sizes of an IPv4 and an IPv6
// entry: node(8) family(1) addr(4 or 16) port(2).
const (
	peerMinLen = 8 + 1 + 4 + 2
	peerMaxLen = 8 + 1 + 16 + 2
)

// PeerLen is the most bytes one entry takes in a Peers payload, for
// senders that split their list by datagram size.
const PeerLen = peerMaxLen

// Peers is unicast mode's gossip: the unicast peers the sender heard from
// itself lately, so that a member given one peer learns the rest. It goes
// by unicast to each peer, never to a group.
//
//	count(1) then count × { node(8) family(1: 4 or 6) addr(4 or 16) port(2) }
//
// An address carries no zone: a zone names an interface of the sender's
// host, meaningless on the receiver's.
type Peers struct {
	Peers []Peer
}

// Peer is one entry of a Peers message: a member's node id and the
// address its datagrams come from.
type Peer struct {
	Node NodeID
	Addr netip.AddrPort
}

// Type implements Message.
func (*Peers) Type() Type { return TypePeers }

// AppendPayload implements Message. Entries past MaxPeers are left out,
// and an address's zone is dropped; an entry whose address is not an
// IPv4 or IPv6 address is encoded as 0.0.0.0:0, which receivers ignore.
func (m *Peers) AppendPayload(b []byte) []byte {
	ps := m.Peers
	if len(ps) > MaxPeers {
		ps = ps[:MaxPeers]
	}
	b = append(b, byte(len(ps)))
	for _, p := range ps {
		b = binary.BigEndian.AppendUint64(b, uint64(p.Node))
		a := p.Addr.Addr().WithZone("")
		port := p.Addr.Port()
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
		b = binary.BigEndian.AppendUint16(b, port)
	}
	return b
}

func parsePeers(p []byte) (*Peers, error) {
	if len(p) < 1 {
		return nil, fmt.Errorf("%w: peers of %d bytes", ErrShort, len(p))
	}
	n := int(p[0])
	p = p[1:]
	// Sized by what arrived, not by what the count claims.
	m := &Peers{Peers: make([]Peer, 0, min(n, len(p)/peerMinLen))}
	for i := range n {
		if len(p) < 9 {
			return nil, fmt.Errorf("%w: peer %d of %d", ErrShort, i+1, n)
		}
		node := NodeID(binary.BigEndian.Uint64(p))
		var a netip.Addr
		switch fam := p[8]; fam {
		case 4:
			if len(p) < peerMinLen {
				return nil, fmt.Errorf("%w: peer %d of %d", ErrShort, i+1, n)
			}
			a = netip.AddrFrom4([4]byte(p[9:13]))
			p = p[13:]
		case 6:
			if len(p) < peerMaxLen {
				return nil, fmt.Errorf("%w: peer %d of %d", ErrShort, i+1, n)
			}
			a = netip.AddrFrom16([16]byte(p[9:25]))
			p = p[25:]
		default:
			return nil, fmt.Errorf("%w: peer %d has address family %d", ErrMalformed, i+1, fam)
		}
		m.Peers = append(m.Peers, Peer{Node: node, Addr: netip.AddrPortFrom(a, binary.BigEndian.Uint16(p))})
		p = p[2:]
	}
	return m, nil
}
