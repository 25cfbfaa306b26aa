package wire

import (
	"encoding/binary"
	"fmt"
)

// Commit tells the receivers that every block has been sent and repaired:
// apply what remains (directories' metadata, links, deletions) and answer
// with a Result. Receivers answer a repeated Commit with the same Result.
//
//	session(8)
type Commit struct {
	Session uint64
}

// Type implements Message.
func (*Commit) Type() Type { return TypeCommit }

// AppendPayload implements Message.
func (m *Commit) AppendPayload(b []byte) []byte {
	return binary.BigEndian.AppendUint64(b, m.Session)
}

// Abort ends a session early: receivers discard what they staged.
//
//	session(8)
type Abort struct {
	Session uint64
}

// Type implements Message.
func (*Abort) Type() Type { return TypeAbort }

// AppendPayload implements Message.
func (m *Abort) AppendPayload(b []byte) []byte {
	return binary.BigEndian.AppendUint64(b, m.Session)
}

func parseSessionOnly(p []byte, what string) (uint64, error) {
	if len(p) < 8 {
		return 0, fmt.Errorf("%s: %w", what, ErrShort)
	}
	return binary.BigEndian.Uint64(p), nil
}

// FailCode classifies why a receiver could not apply an entry.
type FailCode uint8

// Failure codes. ONLY APPEND.
const (
	FailOther    FailCode = 0
	FailIO       FailCode = 1
	FailNoSpace  FailCode = 2
	FailPerm     FailCode = 3
	FailPath     FailCode = 4 // refused path (escape, bad name)
	FailHash     FailCode = 5 // content did not match the offered hash
	FailConflict FailCode = 6 // type conflict the receiver would not resolve
	FailOwner    FailCode = 7 // -O: owner differs
	// FailKeptLocal: the watcher's conflict rule kept this member's own
	// newer version (or its unreplicated edits inside a directory deleted
	// elsewhere). Not an error: the conflict is settled, and the local
	// version travels the other way.
	FailKeptLocal FailCode = 8
	maxFailCode            = FailKeptLocal
)

func (c FailCode) String() string {
	names := [...]string{"error", "io error", "no space left", "permission denied", "path refused", "content mismatch", "type conflict", "owner differs", "kept local version"}
	if int(c) < len(names) {
		return names[c]
	}
	return fmt.Sprintf("code%d", uint8(c))
}

// Failure is one entry a receiver could not apply.
type Failure struct {
	Entry uint32
	Code  FailCode
	Msg   string
}

// ResultFlags describe a Result.
type ResultFlags uint8

// Result flags. ONLY APPEND.
const (
	ResultTruncated ResultFlags = 1 << 0 // more failures or deletions than listed
)

// Result is a receiver's outcome of a committed session.
//
//	session(8) flags(1) applied(4) failed(4) deleted(4)
//	nfail(2) (entry(4) code(1) msg(str8))... ndel(2) path(str16)...
type Result struct {
	Session     uint64
	Flags       ResultFlags
	Applied     uint32 // entries changed
	Failed      uint32 // entries that could not be applied (Failures may list fewer)
	DeleteCount uint32 // paths deleted by mirroring (Deleted may list fewer)
	Failures    []Failure
	Deleted     []string
}

// Type implements Message.
func (*Result) Type() Type { return TypeResult }

// AppendPayload implements Message.
func (m *Result) AppendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, m.Session)
	b = append(b, byte(m.Flags))
	b = binary.BigEndian.AppendUint32(b, m.Applied)
	b = binary.BigEndian.AppendUint32(b, m.Failed)
	b = binary.BigEndian.AppendUint32(b, m.DeleteCount)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Failures)))
	for _, f := range m.Failures {
		b = binary.BigEndian.AppendUint32(b, f.Entry)
		b = append(b, byte(f.Code))
		b = appendStr8(b, f.Msg)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Deleted)))
	for _, d := range m.Deleted {
		b = appendStr16(b, d)
	}
	return b
}

func parseResult(p []byte) (*Result, error) {
	r := &reader{b: p}
	m := &Result{Session: r.u64(), Flags: ResultFlags(r.u8()), Applied: r.u32(), Failed: r.u32(), DeleteCount: r.u32()}
	nf := int(r.u16())
	for range nf {
		if r.err != nil {
			break
		}
		f := Failure{Entry: r.u32(), Code: FailCode(r.u8()), Msg: r.str8()}
		if f.Code > maxFailCode {
			f.Code = FailOther // a newer peer's code: still a failure
		}
		m.Failures = append(m.Failures, f)
	}
	nd := int(r.u16())
	for range nd {
		if r.err != nil {
			break
		}
		m.Deleted = append(m.Deleted, r.str16())
	}
	if r.err != nil {
		return nil, fmt.Errorf("result: %w", r.err)
	}
	return m, nil
}

// Busy tells the sender that a receiver is still working on the session
// (hashing or copying a large local file) although it has nothing to
// answer yet, so that it is not dropped as silent.
//
//	session(8)
type Busy struct {
	Session uint64
}

// Type implements Message.
func (*Busy) Type() Type { return TypeBusy }

// AppendPayload implements Message.
func (m *Busy) AppendPayload(b []byte) []byte {
	return binary.BigEndian.AppendUint64(b, m.Session)
}
