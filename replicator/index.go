package replicator

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/makuo/makuo/replicator/tree"
)

// indexFile names the persisted index in the state directory.
const indexFile = "index"

// indexSaveEvery is how often a changed index is saved; a crash loses at
// most this much of the cache, never correctness (unchanged keys only
// spare a re-read).
const indexSaveEvery = time.Minute

// Root returns this member's tree root hash, 0 until the first scan ends.
func (n *Node) Root() uint64 {
	if !n.indexReady.Load() {
		return 0
	}
	return n.index.Root()
}

// Ready reports whether the member serves the group with a meaningful
// tree root: the multicast socket is up (New bound it, Run reads it) and
// the first scan of the base directory finished.
func (n *Node) Ready() bool { return n.indexReady.Load() }

// maintainIndex loads the saved index, scans the base directory (reading
// only files whose size, mtime, inode or ctime changed), then rescans every
// RescanInterval and saves the index when its root moved, until ctx ends.
func (n *Node) maintainIndex(ctx context.Context) {
	path := filepath.Join(n.cfg.StateDir, indexFile)
	loaded := true
	if err := n.index.Load(path); err != nil {
		loaded = false
		if !errors.Is(err, fs.ErrNotExist) {
			n.log.Info("index not loaded; rebuilding it", "err", err)
		}
	}
	start := time.Now()
	st, err := n.index.Scan(ctx)
	if err != nil {
		if ctx.Err() == nil {
			n.log.Error("scanning the base directory failed", "err", err)
		}
		return
	}
	n.indexReady.Store(true)
	if loaded {
		// What did not change since the last stop was in sync then (as
		// far as this member knows); what changed is a local edit.
		changed := map[string]bool{}
		for _, p := range st.Changed {
			changed[p] = true
		}
		_ = n.index.Walk(".", func(e tree.Entry) error {
			if e.Kind == tree.KindFile && !changed[e.Path] {
				n.prov.Known(e.Path, e.Size, e.Mtime, e.Ino)
			}
			return nil
		})
		if len(st.Changed) > 0 {
			n.startChanges <- st.Changed
		}
	}
	n.log.Info("base directory indexed", "entries", st.Entries, "files_read", st.FilesHashed,
		"bytes_read", st.BytesRead, "seconds", time.Since(start).Seconds(), "root", fmt.Sprintf("%016x", n.index.Root()))
	saved := uint64(0)
	save := func() {
		if r := n.index.Root(); r != saved {
			if err := n.index.Save(path); err != nil {
				n.log.Warn("saving the index failed", "err", err)
				return
			}
			saved = r
		}
	}
	save()
	defer save()
	rescan := time.NewTicker(n.cfg.RescanInterval)
	defer rescan.Stop()
	persist := time.NewTicker(indexSaveEvery)
	defer persist.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-persist.C:
			save()
		case <-rescan.C:
			if st, err := n.index.Scan(ctx); err != nil {
				if ctx.Err() == nil {
					n.log.Warn("rescan failed", "err", err)
				}
			} else if len(st.Changed) > 0 {
				n.log.Info("rescan found changes made without the watcher", "changed", len(st.Changed))
			}
		}
	}
}
