// Package watcher watches a base directory recursively with inotify (through
// fsnotify) and turns the raw events into debounced batches of changed
// relative paths for the replicator. It knows nothing about networking and
// imports nothing from replicator or metrics: the daemon wires a Watcher's
// batches to the replicator and its Stats to the metrics package.
//
// # What a consumer gets
//
// Run sends [Batch] values. Batch.Paths are paths (relative, slash-separated,
// sorted, unique) that changed; the consumer lstat's each one and finds a
// file, a directory, a symlink, or nothing (a deletion, or the old name of a
// rename). Batch.Rescan are subtree roots ("." = everything) whose contents
// must be rescanned because individual changes there were not tracked.
//
// # Guarantees
//
//   - Every change under the base directory that inotify reports, outside
//     excluded paths and paths Ignore claims, is followed by an emission of
//     its path (or of a Rescan root containing it) that happens after the
//     change. In particular the last write to a file is always followed by
//     an emission, so the final content is always replicated.
//   - Quiet period and maximum latency: a path is emitted once it has had no
//     event for Config.Quiet, or Config.MaxDelay after its first pending
//     event, whichever comes first. A file still being written is therefore
//     held back while the writer keeps writing, and emitted at least every
//     MaxDelay; its next write starts a new pending period. Such an emission
//     may catch the file half-written: the consumer must re-check size and
//     mtime after reading it and rely on the next emission for the rest.
//     IN_CLOSE_WRITE would be a better "writer finished" signal, but
//     fsnotify v1.10 keeps it unexported, so it is not used.
//   - Bounded memory: more than Config.MaxPathsPerDir pending paths in one
//     directory collapse into a Rescan of that directory, and more than
//     Config.MaxPending in all into a Rescan of ".".
//   - Nothing is silently missed when the kernel drops events: an inotify
//     queue overflow (fsnotify.ErrEventOverflow) is logged with the sysctl
//     to raise (fs.inotify.max_queued_events), counted, the watches are
//     re-synchronised with the tree, and a Rescan of "." is emitted. Running
//     out of watches (ENOSPC, fs.inotify.max_user_watches) is logged,
//     counted, the affected subtree is emitted as a Rescan, and it is rescanned
//     again every Config.RescanInterval (retrying its watches) until watches
//     can be added again.
//   - New directories are watched as they appear (created or moved in), and
//     their contents, which may have been written before the watch existed,
//     are reported. Watches of directories deleted or moved away are removed.
//     A rename reports both the old path (gone) and the new one.
//   - Excluded directories (Config.Exclude) get no watch at all; excluded
//     paths are never reported. Paths for which Config.Ignore returns true,
//     when the event arrives or when the path is about to be emitted, are not
//     reported (echo suppression for changes the node applies itself).
//   - Run emits nothing for files that exist at start-up (the replicator
//     scans on its own), unless Config.InitialRescan asks for a Rescan of ".".
//   - Run keeps draining inotify while the consumer is slow, merging due
//     changes into one undelivered batch, so a slow consumer does not cause
//     a kernel queue overflow.
//   - Run owns every goroutine it starts (the one inside fsnotify included)
//     and returns them all before it returns.
//
// # Known limits
//
// inotify sees changes made through this machine's kernel only (not on NFS
// from other clients). Changes made and undone within one quiet period may
// produce no net change. If the base directory itself is deleted or moved
// away, Run returns ErrBaseGone. A change inside a directory renamed in the
// instant between its rename and the watcher dropping its old watches may be
// reported under the old name; the new name is walked and reported in full,
// so nothing is lost.
package watcher
