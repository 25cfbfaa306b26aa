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
		b = appendAddrPort(b, p.Addr)
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
		addr, rest, err := readAddrPort(p[8:])
		if err != nil {
			return nil, fmt.Errorf("peer %d of %d: %w", i+1, n, err)
		}
		m.Peers = append(m.Peers, Peer{Node: node, Addr: addr})
		p = rest
	}
	return m, nil
}
