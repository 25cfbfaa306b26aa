package wire

import "errors"

// Decoding errors. Callers count drops by these (errors.Is).
var (
	ErrShort       = errors.New("wire: datagram too short")
	ErrBadMagic    = errors.New("wire: bad magic")
	ErrVersion     = errors.New("wire: unsupported version")
	ErrUnknownType = errors.New("wire: unknown message type")
	ErrMalformed   = errors.New("wire: malformed payload")
)
