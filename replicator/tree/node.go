package tree

import (
	"slices"
	"strings"

	"github.com/makuo/makuo/replicator/chunk"
)

// node is one indexed entry. It stores its name, not its path: paths are
// rebuilt while walking, which keeps a 100k-entry index small (the struct
// is 104 bytes; see TestNodeSize).
type node struct {
	name   string
	parent *node
	dir    *dirData // non-nil exactly for directories
	ext    *extData // rarely used fields; nil when all are zero
	kind   Kind
	flags  uint8
	mode   uint16
	uid    uint32
	gid    uint32
	nlink  uint32
	mtime  int64
	size   int64
	hash   uint64
	dev    uint64
	ino    uint64
	ctime  int64
}

// Node flags. They are persisted (see persist.go).
const (
	flagUnstable uint8 = 1 << iota // changed while read; re-read next time
	flagRacy                       // ctime and mtime too close to the read; re-read next time
)

// dirData is what only directories have.
type dirData struct {
	kids  []*node // sorted by name, byte order
	hash  uint64  // Merkle hash, valid unless dirty
	dirty bool    // dirty implies the parent is dirty too
}

// extData holds the fields few entries need.
type extData struct {
	target string
	rdev   uint64
	chunks []chunk.Chunk
}

// obs is one observation of a path on disk, plus content for files.
type obs struct {
	kind   Kind
	flags  uint8
	mode   uint16
	uid    uint32
	gid    uint32
	nlink  uint32
	mtime  int64
	ctime  int64
	size   int64
	dev    uint64
	ino    uint64
	rdev   uint64
	target string
	hash   uint64
	chunks []chunk.Chunk
}

// kid returns the child called name, or nil.
func (n *node) kid(name string) *node {
	if n.dir == nil {
		return nil
	}
	if i, ok := n.find(name); ok {
		return n.dir.kids[i]
	}
	return nil
}

// find returns the position of name among n's children and whether it is
// there. n is a directory.
func (n *node) find(name string) (int, bool) {
	return slices.BinarySearchFunc(n.dir.kids, name, func(k *node, name string) int {
		return strings.Compare(k.name, name)
	})
}

// entry returns n as an Entry with path rel.
func (n *node) entry(rel string) Entry {
	e := Entry{
		Path: rel, Kind: n.kind, Mode: uint32(n.mode), Uid: n.uid, Gid: n.gid, Nlink: n.nlink,
		Mtime: n.mtime, Size: n.size, Hash: n.hash, Dev: n.dev, Ino: n.ino, Ctime: n.ctime,
		Unstable: n.flags&flagUnstable != 0, Racy: n.flags&flagRacy != 0,
	}
	if n.ext != nil {
		e.Target, e.Rdev, e.Chunks = n.ext.target, n.ext.rdev, n.ext.chunks
	}
	return e
}

// chunks returns n's cached chunk list, or nil.
func (n *node) chunks() []chunk.Chunk {
	if n.ext == nil {
		return nil
	}
	return n.ext.chunks
}

// target returns n's link target, or "".
func (n *node) target() string {
	if n.ext == nil {
		return ""
	}
	return n.ext.target
}

// rdev returns n's device number, or 0.
func (n *node) rdev() uint64 {
	if n.ext == nil {
		return 0
	}
	return n.ext.rdev
}

// newNode returns a node called name holding o. A directory starts dirty
// and empty.
func newNode(name string, o *obs) *node {
	n := &node{name: name, kind: o.kind}
	if o.kind == KindDir {
		n.dir = &dirData{dirty: true}
	}
	n.set(o)
	return n
}

// set stores o in n, whose kind must be o.kind, and reports whether n's
// Merkle record changed.
func (n *node) set(o *obs) (changed bool) {
	changed = n.mode != o.mode || n.uid != o.uid || n.gid != o.gid ||
		(n.kind != KindDir && (n.size != o.size || n.mtime != o.mtime)) ||
		(n.kind == KindFile && n.hash != o.hash) ||
		(n.kind == KindSymlink && n.target() != o.target) ||
		((n.kind == KindCharDev || n.kind == KindBlockDev) && n.rdev() != o.rdev)
	n.flags, n.mode, n.uid, n.gid, n.nlink = o.flags, o.mode, o.uid, o.gid, o.nlink
	n.mtime, n.ctime, n.size, n.hash, n.dev, n.ino = o.mtime, o.ctime, o.size, o.hash, o.dev, o.ino
	switch {
	case o.target == "" && o.rdev == 0 && o.chunks == nil:
		n.ext = nil
	case n.ext != nil && n.ext.target == o.target && n.ext.rdev == o.rdev && sameChunks(n.ext.chunks, o.chunks):
		// keep the shared ext and its chunk slice as they are
	default:
		// A new extData, never a write into the old one: Entries handed
		// out earlier share its chunk slice.
		n.ext = &extData{target: o.target, rdev: o.rdev, chunks: o.chunks}
	}
	return changed
}

// sameChunks reports whether a and b are the same slice (not merely equal
// lists: that is all set needs, and it costs nothing).
func sameChunks(a, b []chunk.Chunk) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// reusable reports whether the content of n, a cached file, may stand for
// the file observed as o without reading it.
func (n *node) reusable(o *obs) bool {
	return n != nil && n.kind == KindFile && o.kind == KindFile &&
		n.flags&(flagUnstable|flagRacy) == 0 &&
		n.dev == o.dev && n.ino == o.ino && n.size == o.size &&
		n.mtime == o.mtime && n.ctime == o.ctime
}

// markDirty marks directory d and its ancestors as needing a new hash.
func markDirty(d *node) {
	for ; d != nil && !d.dir.dirty; d = d.parent {
		d.dir.dirty = true
	}
}

// subtreeLen counts n and every entry below it.
func subtreeLen(n *node) int {
	c := 1
	if n.dir != nil {
		for _, k := range n.dir.kids {
			c += subtreeLen(k)
		}
	}
	return c
}
