// Package source is the sending side's filesystem: it turns a push's
// paths into the entries a session offers (Build, from the tree index:
// parents before children, hard links after their first name, renames
// named as a basis the receivers can copy from), narrows a recursive push
// to the subtrees a digest round found different (Digest, Prune), supplies
// the chunk lists of deltas (ChunkLists), and reads the content blocks a
// session sends (Reader).
//
// Guarantees: nothing is read through a symbolic link or blocks on a
// FIFO: the index never follows links, and Reader opens each file with
// O_NOFOLLOW|O_NONBLOCK and checks that it is still the regular file the
// scan saw (device, inode). A file that changed or cannot be read is sent
// as zeros, so the receivers' hash check fails that file alone and the
// session goes on. The package does not log and starts no goroutines.
package source
