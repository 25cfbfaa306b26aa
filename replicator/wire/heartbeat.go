package wire

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Roles says what a member takes part in.
type Roles uint8

// Role bits.
const (
	RoleSend  Roles = 1 << 0 // may send (not started with -s)
	RoleRecv  Roles = 1 << 1 // applies received changes (not started with -r)
	RoleWatch Roles = 1 << 2 // replicates its own changes continuously (-w)
)

func (r Roles) String() string {
	var parts []string
	if r&RoleSend != 0 {
		parts = append(parts, "send")
	}
	if r&RoleRecv != 0 {
		parts = append(parts, "recv")
	}
	if r&RoleWatch != 0 {
		parts = append(parts, "watch")
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// MaxName bounds hostnames and version strings in heartbeats (a str8).
const MaxName = 255

// Heartbeat announces a live member. It is multicast about once per
// Interval; peers that stop hearing it expire the member.
type Heartbeat struct {
	Roles    Roles
	Interval time.Duration // sender's heartbeat period, so peers can scale expiry
	Root     uint64        // root hash of the sender's tree index (0: unknown)
	Hostname string
	Version  string
	// Segment is the sender's --segment, "" for none: a trailing field
	// that daemons before it neither send nor read.
	Segment string
}

// Type implements Message.
func (*Heartbeat) Type() Type { return TypeHeartbeat }

// AppendPayload implements Message. Strings longer than MaxName are cut.
func (m *Heartbeat) AppendPayload(b []byte) []byte {
	b = append(b, byte(m.Roles))
	b = binary.BigEndian.AppendUint32(b, uint32(m.Interval/time.Millisecond))
	b = binary.BigEndian.AppendUint64(b, m.Root)
	b = appendStr8(b, m.Hostname)
	b = appendStr8(b, m.Version)
	if m.Segment != "" && CheckSegment(m.Segment) == nil {
		b = appendStr8(b, m.Segment)
	}
	return b
}

func parseHeartbeat(p []byte) (*Heartbeat, error) {
	if len(p) < 13 {
		return nil, fmt.Errorf("%w: heartbeat of %d bytes", ErrShort, len(p))
	}
	m := &Heartbeat{
		Roles:    Roles(p[0]),
		Interval: time.Duration(binary.BigEndian.Uint32(p[1:])) * time.Millisecond,
		Root:     binary.BigEndian.Uint64(p[5:]),
	}
	var err error
	rest := p[13:]
	if m.Hostname, rest, err = readStr8(rest); err != nil {
		return nil, fmt.Errorf("heartbeat hostname: %w", err)
	}
	if m.Hostname == "" || !utf8.ValidString(m.Hostname) {
		return nil, fmt.Errorf("%w: heartbeat hostname %q", ErrMalformed, m.Hostname)
	}
	if m.Version, rest, err = readStr8(rest); err != nil {
		return nil, fmt.Errorf("heartbeat version: %w", err)
	}
	if !utf8.ValidString(m.Version) {
		return nil, fmt.Errorf("%w: heartbeat version %q", ErrMalformed, m.Version)
	}
	// Fields past the version are later ones: what does not read as a
	// segment is a field of a newer daemon, ignored like any after it.
	if seg, _, err := readStr8(rest); err == nil && CheckSegment(seg) == nil {
		m.Segment = seg
	}
	return m, nil
}

// Goodbye is sent by a member that shuts down cleanly, so that peers drop
// it at once instead of waiting for its heartbeats to expire.
type Goodbye struct{}

// Type implements Message.
func (*Goodbye) Type() Type { return TypeGoodbye }

// AppendPayload implements Message.
func (*Goodbye) AppendPayload(b []byte) []byte { return b }

func appendStr8(b []byte, s string) []byte {
	if len(s) > MaxName {
		s = s[:MaxName]
	}
	b = append(b, byte(len(s)))
	return append(b, s...)
}

func readStr8(p []byte) (string, []byte, error) {
	if len(p) < 1 || len(p) < 1+int(p[0]) {
		return "", nil, fmt.Errorf("%w: string runs past the end", ErrShort)
	}
	n := int(p[0])
	return string(p[1 : 1+n]), p[1+n:], nil
}
