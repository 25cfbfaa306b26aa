package tree

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/cespare/xxhash/v2"

	"github.com/makuo/makuo/replicator/chunk"
)

// The index file format; see the package doc for the layout.
const (
	fileMagic   = "MAKUOIDX"
	fileVersion = 1

	headerLen  = len(fileMagic) + 2
	trailerLen = 8

	// fileChunks marks a file entry followed by its chunk list. It shares
	// the flags byte with the node flags.
	fileChunks = 1 << 7
	nodeFlags  = flagUnstable | flagRacy

	// minEntryLen is the fewest bytes any entry takes (a directory with
	// one-byte varints and a one-byte name), which bounds the entry count
	// a file of a given length can claim.
	minEntryLen = 13

	maxNameLen   = 255
	maxTargetLen = 4095
)

// Save writes the index to the file name atomically: into a temp file in
// the same directory, fsynced, renamed over name, and the directory
// fsynced. Readers of name see the old or the new index, never a mix.
func (x *Index) Save(name string) error {
	x.mu.RLock()
	b := appendIndex(make([]byte, 0, 64*x.count+64), x.top, x.count)
	x.mu.RUnlock()
	if err := writeAtomic(name, b); err != nil {
		return fmt.Errorf("tree: save %s: %w", name, err)
	}
	return nil
}

// Load replaces the contents of the index with those saved in the file
// name, so that the next Scan reads only the files whose key changed
// since. It fails, leaving the index as it was, with ErrCorrupt,
// ErrVersion or ErrWrongBase if the file cannot be used, or with an
// fs.ErrNotExist error if there is none; the caller then scans from
// scratch.
func (x *Index) Load(name string) error {
	b, err := os.ReadFile(name)
	if err != nil {
		return fmt.Errorf("tree: load: %w", err)
	}
	top, count, err := decodeIndex(b)
	if err != nil {
		return fmt.Errorf("load %s: %w", name, err) // err says "tree: ..."
	}
	if top != nil {
		fi, err := x.fsys.Stat(".")
		if err != nil {
			return fmt.Errorf("tree: load %s: %w", name, err)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || uint64(st.Dev) != top.dev || st.Ino != top.ino {
			return fmt.Errorf("load %s: %w", name, ErrWrongBase)
		}
	}
	x.wmu.Lock()
	defer x.wmu.Unlock()
	x.mu.Lock()
	defer x.mu.Unlock()
	x.top, x.count = top, count
	return nil
}

// writeAtomic writes b to name through a temp file and a rename.
func writeAtomic(name string, b []byte) (err error) {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(b); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), name); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// appendIndex appends the index file of the tree top, which holds count
// entries, to b.
func appendIndex(b []byte, top *node, count int) []byte {
	b = append(b, fileMagic...)
	b = binary.LittleEndian.AppendUint16(b, fileVersion)
	b = binary.AppendUvarint(b, uint64(count))
	if top != nil {
		next := 0
		var enc func(n *node, parent int)
		enc = func(n *node, parent int) {
			me := next
			next++
			if me > 0 {
				b = binary.AppendUvarint(b, uint64(me-parent))
				b = binary.AppendUvarint(b, uint64(len(n.name)))
				b = append(b, n.name...)
			}
			b = appendEntry(b, n)
			if n.dir != nil {
				for _, k := range n.dir.kids {
					enc(k, me)
				}
			}
		}
		enc(top, 0)
	}
	return binary.LittleEndian.AppendUint64(b, xxhash.Sum64(b))
}

// appendEntry appends the fields of n after its name.
func appendEntry(b []byte, n *node) []byte {
	flags := n.flags
	chunks := n.chunks()
	if chunks != nil {
		flags |= fileChunks
	}
	b = append(b, byte(n.kind), flags)
	b = binary.AppendUvarint(b, uint64(n.mode))
	b = binary.AppendUvarint(b, uint64(n.uid))
	b = binary.AppendUvarint(b, uint64(n.gid))
	b = binary.AppendUvarint(b, uint64(n.nlink))
	b = binary.AppendVarint(b, n.mtime)
	b = binary.AppendVarint(b, n.ctime)
	b = binary.AppendUvarint(b, n.dev)
	b = binary.AppendUvarint(b, n.ino)
	switch n.kind {
	case KindFile:
		b = binary.AppendUvarint(b, uint64(n.size))
		b = binary.LittleEndian.AppendUint64(b, n.hash)
		if chunks != nil {
			b = binary.AppendUvarint(b, uint64(len(chunks)))
			for _, c := range chunks {
				b = binary.AppendUvarint(b, uint64(c.Size))
				b = binary.LittleEndian.AppendUint64(b, c.Hash)
			}
		}
	case KindSymlink:
		t := n.target()
		b = binary.AppendUvarint(b, uint64(len(t)))
		b = append(b, t...)
	case KindCharDev, KindBlockDev:
		b = binary.AppendUvarint(b, n.rdev())
	}
	return b
}

// decodeIndex parses an index file. Every field is checked, and only the
// canonical encoding is accepted (minimal varints, depth-first order,
// sorted names), so appendIndex gives back exactly the same bytes.
func decodeIndex(b []byte) (*node, int, error) {
	if len(b) < headerLen+1+trailerLen {
		return nil, 0, fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(b))
	}
	if string(b[:len(fileMagic)]) != fileMagic {
		return nil, 0, fmt.Errorf("%w: not an index file (bad magic)", ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint16(b[len(fileMagic):]); v != fileVersion {
		return nil, 0, fmt.Errorf("%w: version %d, want %d", ErrVersion, v, fileVersion)
	}
	body := b[:len(b)-trailerLen]
	if sum := binary.LittleEndian.Uint64(b[len(body):]); sum != xxhash.Sum64(body) {
		return nil, 0, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	d := &decoder{b: body, off: headerLen}
	top, count := d.tree()
	if d.err != nil {
		return nil, 0, d.err
	}
	return top, count, nil
}

// decoder reads the body of an index file. The first failure sticks in
// err; later reads return zero values.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d", ErrCorrupt, fmt.Sprintf(format, args...), d.off)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	var tmp [binary.MaxVarintLen64]byte
	if binary.PutUvarint(tmp[:], v) != n {
		d.fail("non-minimal varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	var tmp [binary.MaxVarintLen64]byte
	if binary.PutVarint(tmp[:], v) != n {
		d.fail("non-minimal varint")
		return 0
	}
	d.off += n
	return v
}

// small reads a uvarint that must not exceed limit.
func (d *decoder) small(what string, limit uint64) uint64 {
	v := d.uvarint()
	if v > limit {
		d.fail("%s %d out of range", what, v)
		return 0
	}
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail("truncated")
		return 0
	}
	d.off++
	return d.b[d.off-1]
}

func (d *decoder) u64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b)-d.off < 8 {
		d.fail("truncated")
		return 0
	}
	d.off += 8
	return binary.LittleEndian.Uint64(d.b[d.off-8:])
}

func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)-d.off) < n {
		d.fail("truncated")
		return nil
	}
	d.off += int(n)
	return d.b[d.off-int(n) : d.off]
}

// tree reads the entry count and the entries.
func (d *decoder) tree() (*node, int) {
	count := d.small("entry count", uint64(len(d.b)/minEntryLen))
	if d.err != nil || count == 0 {
		if d.err == nil && d.off != len(d.b) {
			d.fail("trailing bytes")
		}
		return nil, 0
	}
	// stack holds the directories from the base down to the last entry's
	// parent, with their positions: an entry's parent must be on it.
	type open struct {
		n   *node
		pos uint64
	}
	var top *node
	var stack []open
	for i := uint64(0); i < count && d.err == nil; i++ {
		var parent *node
		var name string
		if i > 0 {
			delta := d.small("parent distance", i)
			if delta == 0 {
				d.fail("parent distance 0")
				break
			}
			for len(stack) > 0 && stack[len(stack)-1].pos > i-delta {
				stack = stack[:len(stack)-1]
			}
			if len(stack) == 0 || stack[len(stack)-1].pos != i-delta {
				d.fail("parent %d is not an open directory", i-delta)
				break
			}
			parent = stack[len(stack)-1].n
			name = string(d.bytes(d.small("name length", maxNameLen)))
			if d.err != nil {
				break
			}
			if !validName(name) {
				d.fail("bad name %q", name)
				break
			}
			if kids := parent.dir.kids; len(kids) > 0 && kids[len(kids)-1].name >= name {
				d.fail("name %q out of order", name)
				break
			}
		}
		n := d.entry(name)
		if d.err != nil {
			break
		}
		if parent == nil {
			if n.kind != KindDir {
				d.fail("base is a %s", n.kind)
				break
			}
			top = n
		} else {
			n.parent = parent
			parent.dir.kids = append(parent.dir.kids, n)
		}
		if n.dir != nil {
			stack = append(stack, open{n, i})
		}
	}
	if d.err == nil && d.off != len(d.b) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, 0
	}
	return top, int(count)
}

// entry reads the fields of one entry called name.
func (d *decoder) entry(name string) *node {
	var o obs
	o.kind = Kind(d.byte())
	flags := d.byte()
	if d.err != nil {
		return nil
	}
	if o.kind < KindFile || o.kind > KindBlockDev {
		d.fail("bad kind %d", o.kind)
		return nil
	}
	if flags&^(nodeFlags|fileChunks) != 0 || (o.kind != KindFile && flags != 0) {
		d.fail("bad flags %#x for a %s", flags, o.kind)
		return nil
	}
	o.flags = flags & nodeFlags
	o.mode = uint16(d.small("mode", 0o7777))
	o.uid = uint32(d.small("uid", math.MaxUint32))
	o.gid = uint32(d.small("gid", math.MaxUint32))
	o.nlink = uint32(d.small("link count", math.MaxUint32))
	o.mtime = d.varint()
	o.ctime = d.varint()
	o.dev = d.uvarint()
	o.ino = d.uvarint()
	switch o.kind {
	case KindFile:
		o.size = int64(d.small("size", math.MaxInt64))
		o.hash = d.u64()
		if flags&fileChunks != 0 {
			o.chunks = d.chunks(o.size)
		}
	case KindSymlink:
		t := d.bytes(d.small("target length", maxTargetLen))
		if d.err == nil && (len(t) == 0 || strings.IndexByte(string(t), 0) >= 0) {
			d.fail("bad link target")
		}
		o.target = string(t)
	case KindCharDev, KindBlockDev:
		o.rdev = d.uvarint()
	}
	if d.err != nil {
		return nil
	}
	return newNode(name, &o)
}

// chunks reads the chunk list of a file of size bytes and checks that it
// is one the chunker could have made: sizes within limits, only the last
// chunk below MinSize, adding up to the file size.
func (d *decoder) chunks(size int64) []chunk.Chunk {
	if size <= chunk.MinSize {
		d.fail("chunk list for a file of %d bytes", size)
		return nil
	}
	n := d.small("chunk count", uint64(len(d.b)-d.off)/9)
	if n == 0 {
		d.fail("empty chunk list")
		return nil
	}
	chunks := make([]chunk.Chunk, 0, n)
	var off int64
	for i := uint64(0); i < n && d.err == nil; i++ {
		c := chunk.Chunk{Offset: off, Size: uint32(d.small("chunk size", chunk.MaxSize))}
		c.Hash = d.u64()
		if d.err == nil && (c.Size == 0 || (i < n-1 && c.Size < chunk.MinSize)) {
			d.fail("bad chunk size %d", c.Size)
		}
		off += int64(c.Size)
		chunks = append(chunks, c)
	}
	if d.err == nil && off != size {
		d.fail("chunks add up to %d, not %d", off, size)
	}
	return chunks
}

// validName reports whether name can be one element of an indexed path.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}
