// Package stage is the only code that writes into the base directory on a
// receiver. It applies received entries (regular files, directories,
// symbolic links, hard links, FIFOs, device nodes) atomically and confines
// every access to the base directory with Go's os.Root. It knows files, not
// the network, and does not log: every failure is returned as an error.
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
// The directory that holds an entry is opened through an os.Root. The root
// follows symbolic links in parent elements only while they stay inside the
// base: a parent element that is a symlink to an absolute path or leads
// outside the base makes the operation fail before anything is created.
// The last element is then handled with *at system calls on that directory
// descriptor and is never followed: replacing a symbolic link replaces the
// link itself, metadata changes (chown, chmod, utimes) apply to the entry
// itself, and the target of a symbolic link is stored exactly as given and
// never resolved when writing. Nothing is written outside the base.
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
// # Type changes
//
// A directory is never replaced implicitly. Commit, Symlink, Link and Mknod
// fail with ErrIsDir when the target is a directory, and Mkdir fails with
// ErrNotDir when the target exists and is not a directory. To change an
// entry's type across that line, call Remove or RemoveAll first. Between
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
