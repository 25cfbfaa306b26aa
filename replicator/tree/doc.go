// Package tree is a daemon's index of its base directory: one entry per
// path (kind, permissions, owner, times, size, content hash, link target,
// device number), content-defined chunk lists of large files on demand, and
// a Merkle hash per directory whose root summarizes the whole tree, so that
// members can compare trees by exchanging one number and find differences
// by descending into the subtrees whose hashes differ.
//
// # Guarantees
//
//   - Confinement: every read goes through the os.Root given to New and
//     descriptors opened from it one path element at a time with
//     O_NOFOLLOW. A symbolic link is recorded as a link (its target, as
//     stored) and never followed, whether it points inside or outside the
//     base; nothing outside the base is ever opened, read or stat'ed.
//   - Cheap rescans: a file whose cache key (Dev, Ino, Size, Mtime, Ctime)
//     is unchanged keeps its hash and chunk list without being read, also
//     across restarts (Save, Load). Only two exceptions re-read a file with
//     an unchanged key: it changed while being read (Entry.Unstable), or its
//     ctime and mtime were both within Options.RacyWindow of the read, so
//     that a later write in the same timestamp tick would not have changed
//     the key. A file with an older mtime (such as one a receiver applied,
//     which keeps the sender's mtime) is not racy: a later write changes
//     its mtime, unless it also sets it back, as git's index assumes.
//   - Cheap re-reads: a file that had a chunk list is chunked again
//     following it (chunk.Chunker.Follow): the chunks it still holds are
//     hashed, not rolled over, so re-reading a racy file or one with a
//     small edit costs little more than hashing it. A writer that verified
//     a file's chunks gives them with its content (UpdateWritten).
//   - Torn reads are detected: the key is taken before and after reading; a
//     file that changed meanwhile is read again once, and if it changed
//     again it is recorded with Entry.Unstable and reported in
//     Stats.Unstable.
//   - Every entry in the index is something that was observed on disk;
//     an entry is only as fresh as the last Scan, UpdateTree or Update that
//     covered it. The index never writes to the base directory. A base
//     directory removed from under the os.Root (which then lists as empty)
//     fails with ErrBaseGone instead of being recorded as emptied.
//   - The package does not log and starts no goroutines. Every call reports
//     what it did (Stats) and fails with wrapped errors.
//
// # Concurrency
//
// An Index is safe for concurrent use. Mutators are serialized in small
// units of work (one directory listing, or one path with its file read),
// so an Update issued during a long Scan waits for at most one file read,
// and the later unit always observes the disk afresh: a unit never records
// an observation older than one already recorded. Readers (Lookup, Walk,
// Len, Root, DirHash, Save) take a lock that mutators hold only to record
// results, never during file I/O.
//
// # Merkle hashes
//
// The hash of a directory is the xxhash64 of the concatenated records of
// its entries, in byte order of their names. All integers are little
// endian; a record is:
//
//	u32 len(name) | name | u8 kind | u32 mode | u32 uid | u32 gid |
//	  directory:      u64 hash of the directory
//	  other kinds:    i64 size | i64 mtime (unix ns) | kind-specific:
//	    file:         u64 xxhash64 of the content
//	    symlink:      u32 len(target) | target
//	    char/block:   u64 rdev
//	    fifo:         nothing
//
// mode is the 07777 permission bits (0 for symbolic links, whose
// permissions Linux ignores); size is 0 except for files. A directory's own
// times, size, link count, inode and device never enter: they differ
// harmlessly between members. The root is the hash of the base directory,
// whose own metadata does not enter either. The hash of an empty directory
// is xxhash64 of nothing (0xef46db3751d8e999); an index that has observed
// nothing has root 0. This definition is shared by every member: changing
// it is a protocol change (TestMerkleGolden pins it).
//
// Directory hashes are cached. A change marks its directory and the
// directories above it dirty; Root and DirHash rehash only dirty
// directories, so after an Update of one file in a 100,000-entry tree Root
// costs the records of the file's directory and of its ancestors.
//
// # Index file
//
// Save writes, and Load reads, a compact binary file (little endian;
// uvarint/varint are encoding/binary's, and must be minimal):
//
//	"MAKUOIDX" | u16 version (1) | uvarint entry count | entries | u64 xxhash64 of all before it
//
// Entries come in depth-first order, a directory before its contents and
// siblings in byte order of their names. The first entry is the base
// directory; every other one starts with its parent's position, as a
// distance back from its own, and its name:
//
//	[uvarint parent distance | uvarint len(name) | name]   (not for the base)
//	u8 kind | u8 flags | uvarint mode | uvarint uid | uvarint gid |
//	uvarint nlink | varint mtime | varint ctime | uvarint dev | uvarint ino |
//	  file:       uvarint size | u64 hash |
//	              [if flags&0x80: uvarint n | n × (uvarint size | u64 hash)]
//	  symlink:    uvarint len(target) | target
//	  char/block: uvarint rdev
//
// Flags: 0x01 unstable, 0x02 racy, 0x80 chunk list follows (files only).
// Chunk offsets are the running sum of the sizes. The decoder checks the
// checksum, every length against the bytes left, every field's range, the
// order of entries and names, and that a chunk list is one the chunker
// could have made; it accepts nothing but the canonical encoding, so a
// file that loads saves back byte for byte. A file that fails any check is
// refused with ErrCorrupt, an unknown version with ErrVersion, and an index
// saved for another base directory (other device or inode) with
// ErrWrongBase; the caller then scans from scratch. Directory hashes are
// not saved; they are recomputed on the first Root after Load.
//
// # Not covered
//
// Unix sockets are not indexed. Hard links are indexed as independent
// files (Nlink, Dev and Ino let a caller group them). Excluded paths and
// names (Options) are left out with their whole subtree.
package tree
