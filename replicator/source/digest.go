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
