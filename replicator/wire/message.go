package wire

import "fmt"

// Message is a decoded payload.
type Message interface {
	Type() Type
	// AppendPayload appends the encoded payload (without header) to b.
	AppendPayload(b []byte) []byte
}

// ParsePayload decodes an (opened) payload of type t. The result does not
// retain p, except a Data's Bytes and what envelopes
// carry (Relay, RelayAnswers).
func ParsePayload(t Type, p []byte) (Message, error) {
	switch t {
	case TypeHeartbeat:
		return parseHeartbeat(p)
	case TypeGoodbye:
		return &Goodbye{}, nil
	case TypeOffer:
		return parseOffer(p)
	case TypeNeed:
		return parseNeed(p)
	case TypeData:
		return parseData(p)
	case TypePoll:
		return parsePoll(p)
	case TypeNack:
		return parseNack(p)
	case TypeCommit:
		s, err := parseSessionOnly(p, "commit")
		if err != nil {
			return nil, err
		}
		return &Commit{Session: s}, nil
	case TypeResult:
		return parseResult(p)
	case TypeBusy:
		s, err := parseSessionOnly(p, "busy")
		if err != nil {
			return nil, err
		}
		return &Busy{Session: s}, nil
	case TypeChunks:
		return parseChunks(p)
	case TypeChunkNeed:
		return parseChunkNeed(p)
	case TypePeers:
		return parsePeers(p)
	case TypeRelay:
		return parseRelay(p)
	case TypeRelayHello:
		return parseRelayHello(p)
	case TypeRelayAnswers:
		return parseRelayAnswers(p)
	case TypeAbort:
		s, err := parseSessionOnly(p, "abort")
		if err != nil {
			return nil, err
		}
		return &Abort{Session: s}, nil
	}
	return nil, fmt.Errorf("%w: %d", ErrUnknownType, uint8(t))
}

// Append encodes a whole unsealed datagram: h (with h.Type set from m) then
// m's payload.
func Append(b []byte, h Header, m Message) []byte {
	h.Type = m.Type()
	return m.AppendPayload(h.Append(b))
}

// Parse decodes a whole unsealed datagram.
func Parse(b []byte) (Header, Message, error) {
	h, p, err := ParseHeader(b)
	if err != nil {
		return Header{}, nil, err
	}
	if h.Flags&FlagSealed != 0 {
		return h, nil, fmt.Errorf("%w: sealed datagram needs a key", ErrMalformed)
	}
	m, err := ParsePayload(h.Type, p)
	if err != nil {
		return h, nil, err
	}
	return h, m, nil
}
