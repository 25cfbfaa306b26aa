package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/makuo/makuo/replicator/chunk"
)

// Errors returned by this package, wrapped with context. Callers branch on
// them with errors.Is. Errors of the operating system (fs.ErrNotExist,
// fs.ErrPermission, ...) stay testable through the wrapping.
var (
	// ErrBadPath: a path argument is absolute, leaves the base directory
	// or holds a NUL byte.
	ErrBadPath = errors.New("tree: bad path")
	// ErrBaseGone: the base directory behind the os.Root was removed. The
	// index is left as it was instead of recording every entry as deleted.
	ErrBaseGone = errors.New("tree: base directory was removed")
	// ErrNotFile: Chunks was asked for something other than a regular file.
	ErrNotFile = errors.New("tree: not a regular file")
	// ErrCorrupt: Load found a file that is not a valid index (bad magic,
	// truncated, checksum mismatch, a field out of range). Rebuild with Scan.
	ErrCorrupt = errors.New("tree: index file corrupt")
	// ErrVersion: Load found an index file of a format version this code
	// does not read. Rebuild with Scan.
	ErrVersion = errors.New("tree: unsupported index file version")
	// ErrWrongBase: Load found an index recorded for another base directory
	// (the base's device and inode differ). Rebuild with Scan.
	ErrWrongBase = errors.New("tree: index file belongs to another base directory")
)

// Kind is the type of an entry. The values are persisted in index files
// and hashed into Merkle roots: never renumber them.
type Kind uint8

// Kinds of entries. Unix sockets and other special files are not indexed.
const (
	KindFile     Kind = 1 // regular file
	KindDir      Kind = 2 // directory
	KindSymlink  Kind = 3 // symbolic link, never followed
	KindFifo     Kind = 4 // named pipe
	KindCharDev  Kind = 5 // character device
	KindBlockDev Kind = 6 // block device
)

// String returns the kind's lower-case name.
func (k Kind) String() string {
	switch k {
	case KindFile:
		return "file"
	case KindDir:
		return "dir"
	case KindSymlink:
		return "symlink"
	case KindFifo:
		return "fifo"
	case KindCharDev:
		return "chardev"
	case KindBlockDev:
		return "blockdev"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Entry is the indexed state of one path. Fields that do not apply to a
// kind are zero.
type Entry struct {
	Path   string // slash-separated, relative to the base; "." is the base itself
	Kind   Kind
	Mode   uint32 // permission bits with setuid, setgid and sticky (07777)
	Uid    uint32
	Gid    uint32
	Nlink  uint32 // link count, for hard-link detection; not part of any hash
	Mtime  int64  // modification time, unix ns
	Size   int64  // content length (files only)
	Hash   uint64 // xxhash64 of the whole content (files only)
	Target string // link target exactly as stored (symlinks only)
	Rdev   uint64 // device number (character and block devices only)

	// Dev, Ino and Ctime (unix ns) complete the cache key (Dev, Ino, Size,
	// Mtime, Ctime): while it is unchanged, Hash and Chunks are reused
	// without reading the file.
	Dev   uint64
	Ino   uint64
	Ctime int64

	// Chunks is the file's content-defined chunk list, set only for files
	// larger than chunk.MinSize once Index.Chunks computed it. It is shared
	// with the index and with other callers: do not modify it.
	Chunks []chunk.Chunk

	// Unstable is set when the file kept changing while it was read twice:
	// Hash is then the hash of one of those reads, not necessarily of any
	// version that ever existed whole. The next observation re-reads it.
	Unstable bool

	// Racy is set when the file's ctime and mtime were both within
	// Options.RacyWindow of the moment its content was read (or recorded
	// by UpdateWritten): a write in the same timestamp tick would not have
	// changed the key, so the key does not prove Hash and Chunks. The next
	// observation re-reads it.
	Racy bool
}

// Options adjust what an Index covers. The zero value indexes everything.
type Options struct {
	// Exclude, if set, is asked about every path below the base (slash
	// separated, relative); a true result leaves the path out of the index,
	// and for a directory its whole subtree, which is then never read.
	Exclude func(rel string, isDir bool) bool

	// ExcludeListed, if set, is asked instead of Exclude about the names
	// of a directory listing, name in the directory dir ("." for the
	// base): it decides dir/name alone, since the scan reached the
	// directory through parents that are not excluded (exclude's
	// MatchListed to Exclude's Match).
	ExcludeListed func(dir, name string, isDir bool) bool

	// SkipName, if set, is asked about every name (last path element); a
	// true result leaves the entry out, as Exclude does. It is meant for
	// makuo's own temp files.
	SkipName func(name string) bool

	// RacyWindow guards against writes that do not change the cache key
	// because they land within the file system's timestamp granularity: a
	// file whose ctime and mtime are both less than RacyWindow before the
	// moment its read began is re-read at its next observation even if
	// its key is unchanged. Zero means DefaultRacyWindow; a negative value
	// turns the guard off (tests and benchmarks that build files and scan
	// at once).
	RacyWindow time.Duration
}

// DefaultRacyWindow covers timestamp granularities up to 2 s (FAT, some
// network file systems). Local Linux file systems need only a few ms; the
// cost is one extra read of a file modified within 2 s of being hashed.
const DefaultRacyWindow = 2 * time.Second

// Stats counts what one Scan, UpdateTree, Update, Remove or Chunks call
// did. A path is changed when its kind or any field hashed into the Merkle
// record (see the package doc) differs; a new inode or ctime alone, or a
// directory's mtime, is no change.
type Stats struct {
	Entries     int   // entries in the index afterwards, the base included
	FilesHashed int   // files whose content was read (re-reads included)
	BytesRead   int64 // content bytes read
	Added       int   // entries added
	Modified    int   // entries changed in place or replaced by another kind
	Removed     int   // entries removed, a removed directory's contents included

	// Changed lists the paths added, modified or removed, in walk order
	// ("." when the base is first recorded); a removed directory is listed
	// once, not its contents. Directories met on the way to a path given
	// to Update are listed when they were added or changed too.
	Changed []string

	// Unstable lists the files that changed while being read twice; they
	// are indexed with Entry.Unstable set.
	Unstable []string

	// Gone lists the files whose entries were removed (a removed
	// directory's included, and a file replaced by another kind), with
	// the content they had: a sender looks among them for the old name of
	// a renamed file.
	Gone []Gone
}

// Gone is a file entry removed from the index, and what it held.
type Gone struct {
	Path string
	Size int64
	Hash uint64
}

// Index is the in-memory index of one base directory. It is safe for
// concurrent use. Mutating calls (Scan, UpdateTree, Update, Remove, Chunks,
// Load) are serialized in small units (one directory listing, one file
// read), so reads (Lookup, Walk, Len, Root, DirHash, Save) are never held
// up by file I/O, and an Update issued during a long Scan waits for at most
// one file read.
type Index struct {
	fsys *os.Root
	opt  Options

	// wmu serializes mutators. A mutator holds it for one unit: observe a
	// few paths on disk, then apply what it saw under mu. The tree's
	// structure and node fields are written only with both wmu and mu held,
	// so a holder of wmu reads them without mu.
	wmu sync.Mutex
	io  ioState // read buffers, guarded by wmu

	// mu guards the tree. Readers take it shared; Root and DirHash take it
	// exclusively because they refresh cached directory hashes.
	mu    sync.RWMutex
	top   *node // the base directory; nil until the first observation or Load
	count int   // entries, top included
	mbuf  []byte
}

// New returns an empty Index of the directory fsys. Every read goes
// through fsys and descriptors opened from it, one path element at a time,
// never following a symbolic link. fsys must stay open while the Index is
// used; the Index does not close it.
func New(fsys *os.Root, opt Options) (*Index, error) {
	if fsys == nil {
		return nil, errors.New("tree: nil root")
	}
	if opt.RacyWindow == 0 {
		opt.RacyWindow = DefaultRacyWindow
	}
	if opt.ExcludeListed == nil && opt.Exclude != nil {
		exclude := opt.Exclude
		opt.ExcludeListed = func(dir, name string, isDir bool) bool { return exclude(joinRel(dir, name), isDir) }
	}
	return &Index{fsys: fsys, opt: opt}, nil
}

// Len returns the number of entries, the base directory included (0 before
// the first Scan, Update or Load).
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.count
}

// Lookup returns the entry of rel ("." for the base).
func (x *Index) Lookup(rel string) (Entry, bool) {
	rel, err := cleanRel(rel)
	if err != nil {
		return Entry{}, false
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := x.nodeAt(rel)
	if n == nil {
		return Entry{}, false
	}
	return n.entry(rel), true
}

// CachedHash returns the content hash the index holds for the regular
// file rel when fi, a fresh Lstat of rel made by the caller, shows the
// cache key the hash was taken under and the entry is neither unstable nor
// racy: exactly when Update would reuse the hash without reading. ok is
// false otherwise, and the caller falls back to Update. It spares a
// caller that has just stat'ed a path the second walk and stat of Update.
func (x *Index) CachedHash(rel string, fi fs.FileInfo) (hash uint64, ok bool) {
	st, isStat := fi.Sys().(*syscall.Stat_t)
	if !isStat || !fi.Mode().IsRegular() {
		return 0, false
	}
	rel, err := cleanRel(rel)
	if err != nil {
		return 0, false
	}
	o := obs{kind: KindFile, size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(), dev: uint64(st.Dev), ino: st.Ino}
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := x.nodeAt(rel)
	if !n.reusable(&o) {
		return 0, false
	}
	return n.hash, true
}

// Count returns the number of entries Walk(prefix) would visit, without
// building their paths.
func (x *Index) Count(prefix string) int {
	rel, err := cleanRel(prefix)
	if err != nil {
		return 0
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	if n := x.nodeAt(rel); n != nil {
		return subtreeLen(n)
	}
	return 0
}

// Walk calls fn for the entry prefix and, if it is a directory, every
// entry below it, depth first: a directory before its contents, siblings
// in byte order of their names. An empty prefix or "." walks the whole
// index. If fn returns fs.SkipDir for a directory its contents are
// skipped; any other error stops the walk and is returned. A prefix not in
// the index walks nothing.
//
// fn runs under the index's read lock: mutators wait until Walk returns,
// and fn must not call methods of the Index.
func (x *Index) Walk(prefix string, fn func(Entry) error) error {
	rel, err := cleanRel(prefix)
	if err != nil {
		return err
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := x.nodeAt(rel)
	if n == nil {
		return nil
	}
	buf := []byte(rel)
	if rel == "." {
		buf = buf[:0]
	}
	err = walkNode(n, buf, fn)
	if errors.Is(err, fs.SkipDir) {
		return nil
	}
	return err
}

// walkNode visits n, whose path is p ("" for the base), and its subtree.
func walkNode(n *node, p []byte, fn func(Entry) error) error {
	rel := string(p)
	if rel == "" {
		rel = "."
	}
	if err := fn(n.entry(rel)); err != nil {
		if err == fs.SkipDir && n.dir != nil {
			return nil
		}
		return err
	}
	if n.dir == nil {
		return nil
	}
	if len(p) > 0 {
		p = append(p, '/')
	}
	for _, k := range n.dir.kids {
		if err := walkNode(k, append(p, k.name...), fn); err != nil {
			return err
		}
	}
	return nil
}

// nodeAt returns the node of the clean path rel, or nil. The caller holds
// mu or wmu.
func (x *Index) nodeAt(rel string) *node {
	n := x.top
	if n == nil || rel == "." {
		return n
	}
	for rest := rel; n != nil; {
		var name string
		name, rest, _ = strings.Cut(rest, "/")
		n = n.kid(name)
		if rest == "" {
			return n
		}
	}
	return nil
}

// cleanRel returns the clean form of a path relative to the base ("." for
// the base) or ErrBadPath.
func cleanRel(rel string) (string, error) {
	if strings.IndexByte(rel, 0) >= 0 || strings.HasPrefix(rel, "/") {
		return "", fmt.Errorf("%w: %q", ErrBadPath, rel)
	}
	if rel == "" {
		return ".", nil
	}
	c := path.Clean(rel)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%w: %q", ErrBadPath, rel)
	}
	return c, nil
}

// splitRel splits the clean path rel (not ".") into its parent ("." at the
// top) and its last element.
func splitRel(rel string) (dir, name string) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return ".", rel
	}
	return rel[:i], rel[i+1:]
}

// joinRel returns the path of name inside the directory dir.
func joinRel(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}
