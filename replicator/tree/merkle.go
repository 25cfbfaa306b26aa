package tree

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// Root returns the Merkle root of the index: the hash of the base
// directory, as defined in the package doc. Two members whose bases hold
// the same names, kinds, permissions, owners, file contents and times,
// link targets and device numbers have the same root, whatever their inode
// numbers and directory times. Root is 0 before the first observation.
//
// Only directories changed since the last call are rehashed, from the
// changed entries up to the base.
func (x *Index) Root() uint64 {
	h, _ := x.DirHash(".")
	return h
}

// DirHash returns the Merkle hash of the directory rel, for comparing
// subtrees between members. It returns false if rel is not an indexed
// directory.
func (x *Index) DirHash(rel string) (uint64, bool) {
	rel, err := cleanRel(rel)
	if err != nil {
		return 0, false
	}
	x.mu.RLock()
	n := x.nodeAt(rel)
	if n == nil || n.dir == nil {
		x.mu.RUnlock()
		return 0, false
	}
	if !n.dir.dirty {
		h := n.dir.hash
		x.mu.RUnlock()
		return h, true
	}
	x.mu.RUnlock()

	x.mu.Lock()
	defer x.mu.Unlock()
	n = x.nodeAt(rel)
	if n == nil || n.dir == nil {
		return 0, false
	}
	return x.hashDir(n), true
}

// mflush is how many record bytes hashDir gathers before feeding them to
// the digest.
const mflush = 32 << 10

// hashDir returns the hash of directory d, first rehashing its dirty
// subdirectories. The caller holds mu exclusively.
func (x *Index) hashDir(d *node) uint64 {
	if !d.dir.dirty {
		return d.dir.hash
	}
	for _, k := range d.dir.kids {
		if k.dir != nil && k.dir.dirty {
			x.hashDir(k)
		}
	}
	// The subdirectories are done: one digest and buffer serve this level.
	dg := xxhash.New()
	b := x.mbuf[:0]
	for _, k := range d.dir.kids {
		b = appendRecord(b, k)
		if len(b) >= mflush {
			_, _ = dg.Write(b) // never fails
			b = b[:0]
		}
	}
	_, _ = dg.Write(b)
	x.mbuf = b[:0]
	d.dir.hash = dg.Sum64()
	d.dir.dirty = false
	return d.dir.hash
}

// appendRecord appends the Merkle record of n (see the package doc) to b.
// For a directory it uses n.dir.hash, which must be current.
func appendRecord(b []byte, n *node) []byte {
	le := binary.LittleEndian
	b = le.AppendUint32(b, uint32(len(n.name)))
	b = append(b, n.name...)
	b = append(b, byte(n.kind))
	mode := uint32(n.mode)
	if n.kind == KindSymlink {
		mode = 0 // Linux ignores, and stage does not apply, symlink permissions
	}
	b = le.AppendUint32(b, mode)
	b = le.AppendUint32(b, n.uid)
	b = le.AppendUint32(b, n.gid)
	if n.kind == KindDir {
		return le.AppendUint64(b, n.dir.hash)
	}
	b = le.AppendUint64(b, uint64(n.size))
	b = le.AppendUint64(b, uint64(n.mtime))
	switch n.kind {
	case KindFile:
		b = le.AppendUint64(b, n.hash)
	case KindSymlink:
		t := n.target()
		b = le.AppendUint32(b, uint32(len(t)))
		b = append(b, t...)
	case KindCharDev, KindBlockDev:
		b = le.AppendUint64(b, n.rdev())
	}
	return b
}
