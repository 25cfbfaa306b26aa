package source

import (
	"path"

	"github.com/makuo/makuo/replicator/tree"
	"github.com/makuo/makuo/replicator/wire"
)

// Digest returns the directories among the scan's entries with their
// Merkle hashes (EntryDigest), for a digest round: receivers answer which
// differ, and the subtrees that match everywhere need not be offered.
func (sc *Scan) Digest(ix *tree.Index) []wire.Entry {
	var dirs []wire.Entry
	for _, e := range sc.Entries {
		if e.Kind != wire.KindDir {
			continue
		}
		if h, ok := ix.DirHash(e.Path); ok {
			d := e
			d.Flags, d.Hash = wire.EntryDigest, h
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// Predigest returns the directories under roots with the Merkle hashes
// the index holds before Build refreshes it, so that the digest round can
// run while the sender scans: receivers refresh their own trees meanwhile
// instead of after. A directory the scan changed has another hash by
// then, and Same leaves it offered. It returns nil when the index knows
// no root as a directory (before the first scan).
func Predigest(ix *tree.Index, roots []string) []wire.Entry {
	var dirs []wire.Entry
	seen := map[string]bool{}
	for _, r := range roots {
		_ = ix.Walk(r, func(e tree.Entry) error {
			if e.Kind == tree.KindDir && !seen[e.Path] {
				seen[e.Path] = true
				dirs = append(dirs, wire.Entry{Kind: wire.KindDir, Path: e.Path, Mode: e.Mode, Uid: e.Uid, Gid: e.Gid, Mtime: e.Mtime, Flags: wire.EntryDigest})
			}
			return nil
		})
	}
	// DirHash refreshes cached hashes under the index's write lock, which
	// Walk's callback must not take.
	out := dirs[:0]
	for _, d := range dirs {
		if h, ok := ix.DirHash(d.Path); ok {
			d.Hash = h
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Same returns the directories of a digest round that may be pruned:
// those every member reported the same (same(i) for dirs[i]) and whose
// hash in the refreshed index is still the one offered, which a round
// run on Predigest's hashes needs and a round on Digest's has anyway.
func (sc *Scan) Same(ix *tree.Index, dirs []wire.Entry, same func(i int) bool) map[string]bool {
	out := map[string]bool{}
	for i, d := range dirs {
		if !same(i) {
			continue
		}
		if h, ok := ix.DirHash(d.Path); ok && h == d.Hash {
			out[d.Path] = true
		}
	}
	return out
}

// Prune drops the entries below directories that matched everywhere,
// marking those directories EntrySame. A hard link whose first name would
// be dropped keeps that name, and LinkTo indexes are renumbered.
func (sc *Scan) Prune(same map[string]bool) {
	if len(same) == 0 {
		return
	}
	entries := sc.Entries
	keep := make([]bool, len(entries))
	for i, e := range entries {
		keep[i] = !underSame(e.Path, same)
	}
	for i, e := range entries {
		if keep[i] && e.Kind == wire.KindHardlink && int(e.LinkTo) < len(entries) {
			keep[e.LinkTo] = true
		}
	}
	index := make([]uint32, len(entries))
	kept := 0
	for _, k := range keep {
		if k {
			kept++
		}
	}
	out := make([]wire.Entry, 0, kept)
	ids := make([]fileID, 0, kept)
	for i, e := range entries {
		if !keep[i] {
			continue
		}
		index[i] = uint32(len(out))
		if e.Kind == wire.KindDir && same[e.Path] {
			e.Flags |= wire.EntrySame
		}
		if e.Kind == wire.KindHardlink {
			e.LinkTo = index[e.LinkTo]
		}
		out = append(out, e)
		ids = append(ids, sc.ids[i])
	}
	sc.Entries, sc.ids = out, ids
}

// underSame reports whether some ancestor of p (not p itself) is in same.
func underSame(p string, same map[string]bool) bool {
	for p != "." && p != "" {
		p = path.Dir(p)
		if same[p] {
			return true
		}
	}
	return false
}
