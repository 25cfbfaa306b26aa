// Package apply is the receiving side's filesystem policy. An Applier
// serves the sessions of one sending node: it steps their messages
// through a session.Inbox and carries out the effects they ask for.
//
//	decide   what the member needs of each offered entry: compare with the
//	         local path (content hash from the index, metadata), pick a
//	         basis for deltas (the old copy, or a renamed file's old name),
//	         apply the watcher's conflict rule, and put offered directories
//	         in place before anything is staged below them
//	write    stage blocks into a temp file, hash the received prefix as it
//	         grows, verify the whole file, keep a losing local edit as a
//	         conflict copy, and rename verified files in batches (two
//	         filesystem syncs per batch, not per file)
//	plan     build a delta from the chunks the local basis holds
//	commit   directories, links, device nodes, metadata, deletions and the
//	         mirror's deletes, then the directories' times, deepest first
//
// Provenance is the one record of where a path's version came from: what
// this member applied (so its watcher does not echo it back), what every
// member is known to hold (so an unreplicated local edit is protected by
// the conflict rule), and which member a version came from (the rule's
// tie-break).
//
// Guarantees: every write goes through package stage, which never follows
// a symbolic link and stages each file in the directory of its target
// (readers see the old or the new file, never a partial one); a file
// replaces a directory only when the sender's tree says so and the
// directory holds no unreplicated edit under the conflict rule; a mirror
// deletes neither what the sender's excludes nor what this member's own
// excludes match; every failure is reported to the sender per entry,
// counted (apply errors by reason, settled conflicts apart) and never
// fails another entry.
package apply
