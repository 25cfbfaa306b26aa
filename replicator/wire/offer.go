package wire

import (
	"encoding/binary"
	"fmt"
)

// SessionFlags modify what a transfer session does.
type SessionFlags uint16

// Session flags. ONLY APPEND.
const (
	SessionDryRun SessionFlags = 1 << 0 // report what would change, change nothing
	SessionCheck  SessionFlags = 1 << 1 // compare content hashes, report differences, change nothing
	// SessionNewerWins: changes seen by a watcher, not an operator's
	// push. A receiver keeps its own version of a file when it is newer
	// (mtime; ties go to the higher node id), and saves an unreplicated
	// local edit that loses as a conflict copy.
	SessionNewerWins SessionFlags = 1 << 2
	// SessionDigest: the offer lists directories with their Merkle hashes
	// (EntryDigest) and receivers answer, in Change, which differ from
	// theirs. Nothing is applied; the sender ends it with an Abort.
	SessionDigest SessionFlags = 1 << 3
	// SessionReplyUnicast: the sender takes this session's answers (need,
	// nack, chunk need, busy, result) by unicast at the source address of
	// its datagrams, so that no member receives the others' answers. A
	// receiver that does not know the flag multicasts them, which the
	// sender takes as well.
	SessionReplyUnicast SessionFlags = 1 << 4
)

// EntryKind is the type of an offered path.
type EntryKind uint8

// Entry kinds. ONLY APPEND.
const (
	KindAbsent   EntryKind = 0 // the path does not exist on the sender: delete it
	KindFile     EntryKind = 1
	KindDir      EntryKind = 2
	KindSymlink  EntryKind = 3
	KindHardlink EntryKind = 4 // another name of the file entry LinkTo
	KindFifo     EntryKind = 5
	KindCharDev  EntryKind = 6
	KindBlockDev EntryKind = 7
	maxKind                = KindBlockDev
)

func (k EntryKind) String() string {
	names := [...]string{"absent", "file", "dir", "symlink", "hardlink", "fifo", "chardev", "blockdev"}
	if int(k) < len(names) {
		return names[k]
	}
	return fmt.Sprintf("kind%d", uint8(k))
}

// EntryFlags qualify one entry.
type EntryFlags uint8

// Entry flags. ONLY APPEND.
const (
	// EntryMirror on a directory: receivers delete what they have below it
	// that the session does not offer (msync --delete), sparing excluded
	// paths.
	EntryMirror EntryFlags = 1 << 0
	// EntryBasis: Basis names a path whose local copy receivers may build
	// the file from (the old name of a renamed file).
	EntryBasis EntryFlags = 1 << 1
	// EntrySame on a directory: its whole subtree matched on every
	// receiver in the digest round, so its contents are not offered;
	// receivers leave them alone (no mirror deletes below it).
	EntrySame EntryFlags = 1 << 2
	// EntryDigest on a directory: Hash holds its Merkle hash.
	EntryDigest EntryFlags = 1 << 3
)

// Entry is one path offered in a session.
//
//	kind(1) flags(1) path(str16) mode(4) uid(4) gid(4) mtime_ns(8)
//	  file:      size(8) hash(8) [basis(str16) if EntryBasis]
//	  symlink:   target(str16)
//	  hardlink:  link_to(4)
//	  devices:   rdev(8)
//	  dir:       [hash(8) if EntryDigest]
type Entry struct {
	Kind   EntryKind
	Flags  EntryFlags
	Path   string // relative to the base directory, slash-separated
	Mode   uint32 // permission bits incl. setuid/setgid/sticky (07777)
	Uid    uint32
	Gid    uint32
	Mtime  int64 // unix nanoseconds
	Size   uint64
	Hash   uint64 // xxhash64 of the whole content
	Target string
	LinkTo uint32 // session index of the KindFile entry this is a hard link of
	Rdev   uint64
	Basis  string // with EntryBasis: a path receivers may copy or diff from
}

func (e *Entry) append(b []byte) []byte {
	b = append(b, byte(e.Kind), byte(e.Flags))
	b = appendStr16(b, e.Path)
	b = binary.BigEndian.AppendUint32(b, e.Mode)
	b = binary.BigEndian.AppendUint32(b, e.Uid)
	b = binary.BigEndian.AppendUint32(b, e.Gid)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Mtime))
	switch e.Kind {
	case KindFile:
		b = binary.BigEndian.AppendUint64(b, e.Size)
		b = binary.BigEndian.AppendUint64(b, e.Hash)
		if e.Flags&EntryBasis != 0 {
			b = appendStr16(b, e.Basis)
		}
	case KindSymlink:
		b = appendStr16(b, e.Target)
	case KindHardlink:
		b = binary.BigEndian.AppendUint32(b, e.LinkTo)
	case KindCharDev, KindBlockDev:
		b = binary.BigEndian.AppendUint64(b, e.Rdev)
	case KindDir:
		if e.Flags&EntryDigest != 0 {
			b = binary.BigEndian.AppendUint64(b, e.Hash)
		}
	}
	return b
}

// EncodedLen is the size of e on the wire.
func (e *Entry) EncodedLen() int { return len(e.append(nil)) }

// minEntryLen is the encoded length of the smallest entry: kind, flags,
// an empty path, mode, uid, gid and mtime.
const minEntryLen = 2 + 2 + 12 + 8

func (e *Entry) read(r *reader) {
	e.Kind = EntryKind(r.u8())
	e.Flags = EntryFlags(r.u8())
	e.Path = r.str16()
	e.Mode = r.u32()
	e.Uid = r.u32()
	e.Gid = r.u32()
	e.Mtime = int64(r.u64())
	switch e.Kind {
	case KindFile:
		e.Size = r.u64()
		e.Hash = r.u64()
		if e.Flags&EntryBasis != 0 {
			e.Basis = r.str16()
		}
	case KindSymlink:
		e.Target = r.str16()
	case KindHardlink:
		e.LinkTo = r.u32()
	case KindCharDev, KindBlockDev:
		e.Rdev = r.u64()
	case KindDir:
		if e.Flags&EntryDigest != 0 {
			e.Hash = r.u64()
		}
	}
	if e.Flags&(EntryDigest|EntrySame) != 0 && e.Kind != KindDir {
		r.fail("directory flag on a %v entry", e.Kind)
	}
	if e.Kind > maxKind {
		r.fail("entry kind %d", e.Kind)
	}
	if e.Mode&^0o7777 != 0 {
		r.fail("entry mode %#o", e.Mode)
	}
	if e.Flags&EntryBasis != 0 && e.Kind != KindFile {
		r.fail("basis on a %v entry", e.Kind)
	}
	if e.Size > MaxFileSize {
		r.fail("file size %d past %d", e.Size, uint64(MaxFileSize))
	}
}

// Offer announces entries of a session. A session's entries are spread over
// Count offers; offer Index carries entries First.. First+len(Items)-1.
// Every offer repeats the session parameters so that any one of them lets
// a receiver join the session; Excludes travel in offer 0 only.
//
//	session(8) flags(2) block_size(4) entries(4) index(4) count(4) first(4)
//	ntargets(1) target(8)... nexcludes(2) exclude(str16)... nitems(2) entry...
type Offer struct {
	Session   uint64
	Flags     SessionFlags
	BlockSize uint32 // data block size: DATA payloads hold this many bytes (the last of a file fewer)
	Entries   uint32 // entries in the whole session
	Index     uint32
	Count     uint32
	First     uint32
	Targets   []NodeID // empty: every receiving member
	Excludes  []string
	Items     []Entry
}

// MaxEntries bounds the entries of one session: a receiver keeps a small
// record per entry, so an offer may not make it reserve unbounded memory.
// 4 Mi entries is far beyond a tree anyone pushes at once.
const MaxEntries = 4 << 20

// MaxFileSize bounds Entry.Size: 256 TiB, far beyond any file pushed, and
// small enough that block counts and their sums over MaxEntries entries
// cannot wrap around in 64 bits, whatever an offer claims.
const MaxFileSize = 1 << 48

// MaxTargets bounds Offer.Targets (msync -t), so that the list fits in a
// datagram with room for entries.
const MaxTargets = 64

// MinBlockSize and MaxBlockSize bound Offer.BlockSize.
const (
	MinBlockSize = 256
	MaxBlockSize = MaxDatagram
)

// Type implements Message.
func (*Offer) Type() Type { return TypeOffer }

// AppendPayload implements Message.
func (m *Offer) AppendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, m.Session)
	b = binary.BigEndian.AppendUint16(b, uint16(m.Flags))
	b = binary.BigEndian.AppendUint32(b, m.BlockSize)
	b = binary.BigEndian.AppendUint32(b, m.Entries)
	b = binary.BigEndian.AppendUint32(b, m.Index)
	b = binary.BigEndian.AppendUint32(b, m.Count)
	b = binary.BigEndian.AppendUint32(b, m.First)
	b = append(b, byte(len(m.Targets)))
	for _, t := range m.Targets {
		b = binary.BigEndian.AppendUint64(b, uint64(t))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Excludes)))
	for _, x := range m.Excludes {
		b = appendStr16(b, x)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Items)))
	for i := range m.Items {
		b = m.Items[i].append(b)
	}
	return b
}

// HeaderLen is the encoded size of m without its items.
func (m *Offer) HeaderLen() int {
	items := m.Items
	m.Items = nil
	n := len(m.AppendPayload(nil))
	m.Items = items
	return n
}

func parseOffer(p []byte) (*Offer, error) {
	r := &reader{b: p}
	m := &Offer{
		Session:   r.u64(),
		Flags:     SessionFlags(r.u16()),
		BlockSize: r.u32(),
		Entries:   r.u32(),
		Index:     r.u32(),
		Count:     r.u32(),
		First:     r.u32(),
	}
	nt := int(r.u8())
	if nt > MaxTargets {
		r.fail("%d targets", nt)
	}
	for range nt {
		if r.err != nil {
			break
		}
		m.Targets = append(m.Targets, NodeID(r.u64()))
	}
	nx := int(r.u16())
	for range nx {
		if r.err != nil {
			break
		}
		m.Excludes = append(m.Excludes, r.str16())
	}
	ni := int(r.u16())
	// Sized once: receivers keep the items of every offer for the whole
	// session, and append's doubling would leave up to half of it unused.
	// The datagram bounds the count, whatever ni claims.
	m.Items = make([]Entry, 0, min(ni, len(r.b)/minEntryLen))
	for range ni {
		if r.err != nil {
			break
		}
		var e Entry
		e.read(r)
		m.Items = append(m.Items, e)
	}
	switch {
	case r.err != nil:
	case m.BlockSize < MinBlockSize || m.BlockSize > MaxBlockSize:
		r.fail("block size %d", m.BlockSize)
	case m.Entries > MaxEntries:
		r.fail("%d entries, more than %d", m.Entries, MaxEntries)
	case m.Count == 0 || m.Index >= m.Count:
		r.fail("offer %d of %d", m.Index, m.Count)
	case uint64(m.First)+uint64(len(m.Items)) > uint64(m.Entries):
		r.fail("entries %d+%d past %d", m.First, len(m.Items), m.Entries)
	}
	if r.err != nil {
		return nil, fmt.Errorf("offer: %w", r.err)
	}
	return m, nil
}
