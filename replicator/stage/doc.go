// Package stage is the only code that writes into the base directory on a
// receiver. It applies received entries (regular files, directories,
// symbolic links, hard links, FIFOs, device nodes) atomically and confines
// every access to the base directory, never following a symbolic link in
// it. It knows files, not the network, and does not log: every failure is
// returned as an error.
//
// # Paths
//
// Every path argument is relative to the base directory, slash-separated,
// and must pass CheckPath: not empty, not absolute, clean (no "", "." or
// ".." elements), no NUL byte, elements of at most 255 bytes, at most 4095
// bytes in all, and no element matching the temp-file name pattern. Any
// other byte is allowed (spaces, newlines, non-UTF-8). The base directory
// itself cannot be named.
//
// # Confinement
//
// No path below the base is ever resolved through a symbolic link, in any
// element, wherever the link leads, inside the base or out. The directory
// holding an entry is opened from the base directory's descriptor one
// element at a time with O_NOFOLLOW|O_DIRECTORY (or in one openat2 call
// with RESOLVE_NO_SYMLINKS|RESOLVE_BENEATH where the kernel has it, which
// for CreateTemp also creates the temp file), and missing directories are
// made with mkdirat on the descriptor of the one above, never through a
// path string. A symbolic link (or a
// non-directory) where a directory is needed makes the operation fail,
// before anything is created, with ErrSymlinkInPath (or ErrNotDir): the
// entry the path names does not exist here, a link stands in its place.
// This holds for every method, Lstat and the listings (ReadDir, WalkDir)
// included, and again each time a Temp's directory is resolved (reopen
// after Park, Commit, CommitAll), so a directory replaced by a link while
// a file is staged is not followed either. Only a LstatCache, which reads
// and never writes, keeps a directory it resolved for the paths asked for
// next in it.
//
// The last element is then handled with *at system calls on that
// directory's descriptor and is never followed: replacing a symbolic link
// replaces the link itself, metadata changes (chown, chmod, utimes) apply
// to the entry itself, RemoveAll removes a link it meets instead of
// entering it, and the target of a symbolic link is stored exactly as
// given and never resolved when writing. Nothing is written outside the
// base, and nothing inside it through a link.
//
// Filesystems mounted below the base are part of it; their mount points
// are directories and resolved as such.
//
// # Atomicity and durability
//
// Every non-directory entry is created under a temp name in the directory
// of its target and renamed over the target:
//
//	.makuo-<16 lower-case hex digits>.tmp     (27 bytes; see IsTempName)
//
// For a regular file (CreateTemp, then Commit) the sequence is: write the
// temp file, set owner, mode and times on it, fsync it, rename it over the
// target, fsync the directory. Hence:
//
//   - the target path never disappears while it is replaced, and a reader
//     opening it sees the old or the new complete content, never a mix or a
//     partial file;
//   - once Commit returns nil the new file, with its metadata, survives a
//     crash (directories created on the way are fsynced into their parents);
//   - a crash before that leaves the old file and possibly a temp file,
//     which CleanStale removes at the next start.
//
// Symlink, Link and Mknod follow the same pattern (create under a temp name,
// set metadata, rename, fsync the directory). Mkdir, Remove and RemoveAll
// fsync the parent directory after changing it.
//
// # Copies from an older version
//
// Temp.CopyFrom fills a range of a temp file from another file (a
// receiver's older copy of the target) without reading it into the
// process: where the filesystem shares extents (XFS with reflink, btrfs)
// the whole blocks are cloned (FICLONERANGE), elsewhere copy_file_range
// copies in the kernel, and only where neither works are the bytes read
// and written. The Dir remembers, per pair of filesystems, the calls found
// unsupported. Cloned blocks are made durable by the same fsync or syncfs
// as written ones, before the rename.
//
// # Type changes
//
// A directory is never replaced implicitly. Commit, Symlink, Link and Mknod
// fail with ErrIsDir when the target is a directory, and Mkdir fails with
// ErrNotDir when the target exists and is not a directory. To change an
// entry's type across that line, call Remove or RemoveAll first: RemoveAll
// of a directory, then CreateTemp and Commit (or Symlink, Link, Mknod) of
// the same path, replaces it, a temp staged in the parent before included;
// RemoveAll never follows a link inside the removed tree. Between
// non-directory types (file, symlink, FIFO, device) the replacement is a
// plain atomic rename.
//
// # Concurrency
//
// A Dir may be used from several goroutines. Operations on distinct paths
// do not interfere; operations on the same path race like the system calls
// they make (the last rename wins). A Temp is owned by one goroutine, except
// that WriteAt and ReadAt may run concurrently with each other. CleanStale
// leaves alone the temp entries of operations in progress on the same Dir;
// a second process writing into the same base with this package is not
// supported.
package stage
