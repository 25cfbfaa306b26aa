package wire

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// Version is the header version this package writes and accepts.
const Version = 1

// HeaderLen is the size of the fixed header that starts every datagram.
const HeaderLen = 32

// NodeOffset is where the sender's big-endian NodeID sits in the header,
// for filters that look at raw datagrams.
const NodeOffset = 8

// MaxDatagram bounds every datagram this package produces or accepts: the
// largest UDP payload over IPv4 (65535 - 20 IP - 8 UDP).
const MaxDatagram = 65507

// magic identifies makuo datagrams; anything else on the port is dropped.
var magic = [2]byte{'M', 'k'}

// Type identifies the payload layout of a datagram.
//
// The values are part of the protocol: ONLY APPEND, never renumber.
type Type uint8

// Message types.
const (
	TypeHeartbeat Type = 1
	TypeGoodbye   Type = 2
	TypeOffer     Type = 3
	TypeNeed      Type = 4
	TypeData      Type = 5
	TypePoll      Type = 6
	TypeNack      Type = 7
	TypeCommit    Type = 8
	TypeResult    Type = 9
	TypeAbort     Type = 10
	TypeChunks    Type = 11
	TypeChunkNeed Type = 12
	TypeBusy      Type = 13
	TypePeers     Type = 14
	// TypeRelay and TypeRelayHello are the relays' (package transport).
	TypeRelay      Type = 15
	TypeRelayHello Type = 16
	// TypeRelayAnswers is the relays' too: answers crossing segments.
	TypeRelayAnswers Type = 17
)

func (t Type) String() string {
	switch t {
	case TypeHeartbeat:
		return "heartbeat"
	case TypeGoodbye:
		return "goodbye"
	case TypeOffer:
		return "offer"
	case TypeNeed:
		return "need"
	case TypeData:
		return "data"
	case TypePoll:
		return "poll"
	case TypeNack:
		return "nack"
	case TypeCommit:
		return "commit"
	case TypeResult:
		return "result"
	case TypeAbort:
		return "abort"
	case TypeChunks:
		return "chunks"
	case TypeChunkNeed:
		return "chunkneed"
	case TypeBusy:
		return "busy"
	case TypePeers:
		return "peers"
	case TypeRelay:
		return "relay"
	case TypeRelayHello:
		return "relayhello"
	case TypeRelayAnswers:
		return "relayanswers"
	}
	return "type" + strconv.Itoa(int(t))
}

// Flags are header bits.
type Flags uint8

// FlagSealed marks a payload encrypted and authenticated with the group key.
const FlagSealed Flags = 1 << 0

// NodeID identifies a daemon independently of its address; it is persisted
// so that it survives restarts.
type NodeID uint64

func (id NodeID) String() string { return fmt.Sprintf("%016x", uint64(id)) }

// Header is the fixed part of every datagram.
type Header struct {
	Type        Type
	Flags       Flags
	Node        NodeID
	Incarnation uint64
	Seq         uint64
}

// Append appends the encoded header to b.
func (h Header) Append(b []byte) []byte {
	b = append(b, magic[0], magic[1], Version, byte(h.Type), byte(h.Flags), 0, 0, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Node))
	b = binary.BigEndian.AppendUint64(b, h.Incarnation)
	return binary.BigEndian.AppendUint64(b, h.Seq)
}

// ParseHeader decodes the header at the start of b and returns it with the
// rest of b (the payload, still sealed if FlagSealed is set).
func ParseHeader(b []byte) (Header, []byte, error) {
	if len(b) < HeaderLen {
		return Header{}, nil, fmt.Errorf("%w: %d bytes, header needs %d", ErrShort, len(b), HeaderLen)
	}
	if b[0] != magic[0] || b[1] != magic[1] {
		return Header{}, nil, ErrBadMagic
	}
	if b[2] != Version {
		return Header{}, nil, fmt.Errorf("%w: got %d, want %d", ErrVersion, b[2], Version)
	}
	h := Header{
		Type:        Type(b[3]),
		Flags:       Flags(b[4]),
		Node:        NodeID(binary.BigEndian.Uint64(b[NodeOffset:])),
		Incarnation: binary.BigEndian.Uint64(b[16:]),
		Seq:         binary.BigEndian.Uint64(b[24:]),
	}
	if h.Flags&^FlagSealed != 0 {
		return Header{}, nil, fmt.Errorf("%w: unknown flags %#x", ErrMalformed, uint8(h.Flags))
	}
	return h, b[HeaderLen:], nil
}
