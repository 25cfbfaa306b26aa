package replicator

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"github.com/cespare/xxhash/v2"
)

// fileKey identifies one version of a file cheaply: if none of these
// changed, the content is taken as unchanged (the rsync quick check, made
// stricter by the inode and ctime, which a writer cannot set back).
type fileKey struct {
	dev, ino    uint64
	size        int64
	mtime, ctim int64
}

func keyOf(fi fs.FileInfo) (fileKey, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, false
	}
	return fileKey{
		dev: st.Dev, ino: st.Ino, size: st.Size,
		mtime: st.Mtim.Sec*1e9 + st.Mtim.Nsec,
		ctim:  st.Ctim.Sec*1e9 + st.Ctim.Nsec,
	}, true
}

// hashCache remembers whole-file hashes by fileKey so that an unchanged
// file is read once per daemon lifetime, not once per push. It is safe for
// concurrent use.
type hashCache struct {
	mu sync.Mutex
	m  map[fileKey]uint64
}

// maxHashCache bounds the cache; past it the cache is cleared, which costs
// re-reading files, never correctness.
const maxHashCache = 1 << 20

func newHashCache() *hashCache { return &hashCache{m: make(map[fileKey]uint64)} }

// hash returns the xxhash64 of the file f, whose Lstat is fi. progress,
// when not nil, is called every few MiB read.
func (c *hashCache) hash(f *os.File, fi fs.FileInfo, progress func()) (uint64, error) {
	k, ok := keyOf(fi)
	if ok {
		c.mu.Lock()
		h, hit := c.m[k]
		c.mu.Unlock()
		if hit {
			return h, nil
		}
	}
	d := xxhash.New()
	var r io.Reader = f
	if progress != nil {
		r = &busyReader{r: f, f: progress}
	}
	if _, err := io.Copy(d, r); err != nil {
		return 0, fmt.Errorf("hash %s: %w", fi.Name(), err)
	}
	h := d.Sum64()
	// Only cache what is still the same version after reading it.
	if after, err := f.Stat(); ok && err == nil {
		if k2, ok2 := keyOf(after); ok2 && k2 == k {
			c.mu.Lock()
			if len(c.m) >= maxHashCache {
				clear(c.m)
			}
			c.m[k] = h
			c.mu.Unlock()
		}
	}
	return h, nil
}
