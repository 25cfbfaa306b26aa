package stage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrShortSource: CopyFrom's source ends before the range to copy.
var ErrShortSource = errors.New("stage: copy source shorter than the range")

// CopyStats tells how CopyFrom moved the bytes of a range.
type CopyStats struct {
	Cloned   int64 // shared with the source (FICLONERANGE): no data written
	InKernel int64 // copied by copy_file_range (which may share blocks too)
	Written  int64 // read and written back: neither call works here
}

// Add adds o to s.
func (s *CopyStats) Add(o CopyStats) {
	s.Cloned += o.Cloned
	s.InKernel += o.InKernel
	s.Written += o.Written
}

// rwBufSize bounds the buffer of the read-and-write fallback.
const rwBufSize = 256 << 10

// CopyFrom copies n bytes of src, from offset srcOff, into the temp file
// at off, without reading them into the process where the kernel can:
//
//   - where src and the temp file share a filesystem with shared extents
//     (XFS made with reflink=1, btrfs) and srcOff and off lie equally far
//     from a block boundary, the whole blocks of the range are cloned
//     (FICLONERANGE): the temp file shares them with src and no data is
//     written; the unaligned head and tail are copied;
//   - what is not cloned goes through copy_file_range, an in-kernel copy
//     (on XFS and btrfs it may share blocks too);
//   - where neither call works (an old kernel, a filesystem without
//     them), read and write.
//
// A call that fails as unsupported between two filesystems is not tried
// again between them for the life of the Dir, so such a filesystem costs
// one failed call, not one per range. src must be a regular file open for
// reading (Dir.Open); if it ends before srcOff+n, CopyFrom fails with
// ErrShortSource and the temp file's range holds part of the bytes. The
// copy is not synced: Commit and CommitAll make it durable as they do
// written bytes (cloned blocks are flushed and logged by the filesystem on
// fsync and syncfs like any other). What the range held before is
// replaced.
func (t *Temp) CopyFrom(src *os.File, srcOff, off, n int64) (CopyStats, error) {
	var cs CopyStats
	if srcOff < 0 || off < 0 || n < 0 {
		return cs, opErr("copy", t.rel, fmt.Errorf("bad range %d+%d to %d", srcOff, n, off))
	}
	if n == 0 {
		return cs, nil
	}
	fd, err := t.file()
	if err != nil {
		return cs, err
	}
	defer runtime.KeepAlive(src)
	// The kernel's copies change the file behind WriteAt's size
	// bookkeeping, so Truncate must not trust it any longer.
	t.exact.Store(false)
	c := copier{src: src, dst: t, sfd: int(src.Fd()), dfd: fd, caps: &t.d.copyCaps}
	if err := c.run(srcOff, off, n, &cs); err != nil {
		return cs, opErr("copy", t.rel, err)
	}
	if cs.InKernel+cs.Written >= writebackEvery {
		// Copied bytes are new dirty pages, as written ones are: have
		// the disk take a large copy's while the rest of the file comes
		// in, not all at the commit's sync (cloned ones share blocks on
		// disk; small ones wait for the batch's sync). In the
		// background: handing a range this large to writeback at once
		// blocks until the disk's queue took most of it, and the next
		// copy would wait for that instead of running meanwhile. It
		// counts as at least flushEvery: a copy this large starts a
		// flush at once.
		t.flush.handedOver(fd, max(n, flushEvery), t.d.flush)
	}
	return cs, nil
}

// copyCaps remembers, per pair of filesystems (source, destination
// device), which copy calls failed as unsupported. The zero value is
// ready.
type copyCaps struct {
	mu sync.Mutex
	m  map[devPair]copyWays
}

type devPair struct{ src, dst uint64 }

// copyWays is what is known of copying between two filesystems.
type copyWays struct {
	bsize   int64 // the destination's block size: clones are aligned to it
	noClone bool  // FICLONERANGE is unsupported
	noRange bool  // copy_file_range is unsupported
}

func (c *copyCaps) get(k devPair) (copyWays, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.m[k]
	return w, ok
}

// update applies f to the entry of k (the zero copyWays if none).
func (c *copyCaps) update(k devPair, f func(*copyWays)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[devPair]copyWays{}
	}
	w := c.m[k]
	f(&w)
	c.m[k] = w
}

// copier is one CopyFrom call.
type copier struct {
	src      *os.File
	dst      *Temp
	sfd, dfd int
	caps     *copyCaps
	key      devPair
	ways     copyWays
}

func (c *copier) run(srcOff, off, n int64, cs *CopyStats) error {
	var sst, dst unix.Stat_t
	if err := unix.Fstat(c.sfd, &sst); err != nil {
		return err
	}
	if err := unix.Fstat(c.dfd, &dst); err != nil {
		return err
	}
	if sst.Size < srcOff+n {
		return ErrShortSource
	}
	c.key = devPair{uint64(sst.Dev), uint64(dst.Dev)}
	w, ok := c.caps.get(c.key)
	if !ok {
		var sfs unix.Statfs_t
		if err := unix.Fstatfs(c.dfd, &sfs); err != nil {
			return err
		}
		w.bsize = sfs.Bsize
		c.caps.update(c.key, func(cw *copyWays) { cw.bsize = w.bsize })
	}
	c.ways = w
	bs := w.bsize
	if w.noClone || bs <= 0 || srcOff%bs != off%bs {
		return c.copyRange(srcOff, off, n, cs)
	}
	head := (bs - off%bs) % bs
	if n-head < bs {
		return c.copyRange(srcOff, off, n, cs)
	}
	mid := (n - head) / bs * bs
	cloned, err := c.clone(srcOff+head, off+head, mid)
	if err != nil {
		return err
	}
	if !cloned {
		return c.copyRange(srcOff, off, n, cs)
	}
	cs.Cloned += mid
	if err := c.copyRange(srcOff, off, head, cs); err != nil {
		return err
	}
	return c.copyRange(srcOff+head+mid, off+head+mid, n-head-mid, cs)
}

// clone shares n bytes (whole blocks) of the source at srcOff with the
// destination at off. It reports false, and remembers it, where the
// filesystems cannot.
func (c *copier) clone(srcOff, off, n int64) (bool, error) {
	for {
		err := unix.IoctlFileCloneRange(c.dfd, &unix.FileCloneRange{
			Src_fd: int64(c.sfd), Src_offset: uint64(srcOff), Src_length: uint64(n), Dest_offset: uint64(off),
		})
		switch {
		case err == nil:
			return true, nil
		case err == unix.EINTR:
			continue
		case err == unix.EINVAL && c.shrunk(srcOff+n):
			// Not a limit of the filesystem: the source was cut meanwhile.
			return false, ErrShortSource
		case unsupported(err):
			c.caps.update(c.key, func(w *copyWays) { w.noClone = true })
			return false, nil
		}
		return false, fmt.Errorf("clone range: %w", err)
	}
}

// copyRange copies n bytes in the kernel, falling back to read and write
// where copy_file_range is unsupported.
func (c *copier) copyRange(srcOff, off, n int64, cs *CopyStats) error {
	for n > 0 && !c.ways.noRange {
		so, do := srcOff, off
		k, err := unix.CopyFileRange(c.sfd, &so, c.dfd, &do, int(min(n, 1<<30)), 0)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil && unsupported(err) && !(err == unix.EINVAL && c.shrunk(srcOff+n)):
			c.ways.noRange = true
			c.caps.update(c.key, func(w *copyWays) { w.noRange = true })
		case err != nil:
			return fmt.Errorf("copy_file_range: %w", err)
		case k == 0:
			return ErrShortSource
		default:
			srcOff, off, n = srcOff+int64(k), off+int64(k), n-int64(k)
			cs.InKernel += int64(k)
		}
	}
	if n == 0 {
		return nil
	}
	buf := make([]byte, min(n, rwBufSize))
	for n > 0 {
		b := buf[:min(n, int64(len(buf)))]
		k, err := c.src.ReadAt(b, srcOff)
		if err == io.EOF && k < len(b) {
			return ErrShortSource
		}
		if err != nil && err != io.EOF {
			return err
		}
		if _, err := c.dst.WriteAt(b[:k], off); err != nil {
			return err
		}
		srcOff, off, n = srcOff+int64(k), off+int64(k), n-int64(k)
		cs.Written += int64(k)
	}
	return nil
}

// shrunk reports whether the source now ends before end.
func (c *copier) shrunk(end int64) bool {
	var st unix.Stat_t
	return unix.Fstat(c.sfd, &st) == nil && st.Size < end
}

// unsupported reports whether err says a copy call cannot work between
// these files at all (not this range only): no such call, no support in
// the filesystem, two filesystems, or arguments the filesystem refuses.
func unsupported(err error) bool {
	switch err {
	case unix.EOPNOTSUPP, unix.ENOTTY, unix.ENOSYS, unix.EXDEV, unix.EINVAL, unix.EPERM:
		return true
	}
	return false
}
