package stage

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Ready applies meta (owner, mode, times) to a fully written temp file and
// closes it without syncing; the file is then renamed into place by
// Dir.CommitAll together with others. It is Commit split in two, so that
// many small files cost two syncs per filesystem in all instead of two
// fsyncs each.
func (t *Temp) Ready(meta Meta) error {
	// A flush in flight ends first, whatever happens next: its error
	// fails the file as the sync's would.
	ferr := t.waitFlush()
	fd, err := t.file()
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return opErr("ready", t.rel, ErrClosed)
		}
		t.done = true
		t.abortParked()
		return err
	}
	err = ferr
	if err == nil {
		err = meta.checkType("ready", 0)
	}
	if err == nil {
		err = applyMetaFd(fd, meta)
	}
	if cerr := t.closeFd(); err == nil {
		err = cerr
	}
	t.done, t.ready = true, true
	if err != nil {
		t.abortReady()
		return opErr("ready", t.rel, err)
	}
	return nil
}

// CommitAll renames every ready temp over its target with the guarantees of
// Commit: one syncfs per filesystem the temps are on (the base's, and any
// mounted below it) makes all their contents durable before any rename (a
// crash leaves each target old or complete new, never partial), a second
// one per filesystem makes the renames durable before CommitAll returns.
// errs[i] is the error of ts[i]; a failed temp is removed.
func (d *Dir) CommitAll(ts []*Temp) (errs []error) {
	errs = make([]error, len(ts))
	fss := d.syncTemps(ts, errs)
	defer fss.close()
	devs := make([]uint64, len(ts)) // filesystem of each rename
	// Temps grouped by directory: each directory is resolved once for its
	// renames, not once per file.
	order := make([]int, 0, len(ts))
	for i := range ts {
		if errs[i] == nil {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(ts[a].dir, ts[b].dir) })
	for len(order) > 0 {
		n := 1
		for n < len(order) && ts[order[n]].dir == ts[order[0]].dir {
			n++
		}
		group := order[:n]
		order = order[n:]
		d.renameGroup(ts, group, errs, devs, fss)
	}
	for _, fsys := range fss.list {
		if !fsys.renamed {
			continue
		}
		if err := d.syncfs(fsys.fd); err != nil {
			for i, t := range ts {
				if errs[i] == nil && devs[i] == fsys.dev {
					errs[i] = opErr("commit", t.rel, fmt.Errorf("syncfs: %w", err))
				}
			}
		}
	}
	return errs
}

// renameGroup renames the temps ts[i], i in group, which share a
// directory, resolved once for them all.
func (d *Dir) renameGroup(ts []*Temp, group []int, errs []error, devs []uint64, fss *filesystems) {
	err := d.inDir(ts[group[0]].dir, dirPath, func(dirfd int) error {
		// The directory is resolved again: refuse one that is now on a
		// filesystem not flushed above.
		var st unix.Stat_t
		if err := unix.Fstat(dirfd, &st); err != nil {
			return err
		}
		fsys := fss.find(st.Dev)
		if fsys == nil {
			return errors.New("directory moved to a filesystem not synced")
		}
		for _, i := range group {
			t := ts[i]
			err := unix.Renameat(dirfd, t.tmp, dirfd, t.name)
			if errors.Is(err, unix.EISDIR) {
				err = ErrIsDir
			}
			if err != nil {
				errs[i] = opErr("commit", t.rel, err)
				t.abortReady()
				continue
			}
			devs[i] = st.Dev
			t.ready = false
			d.release(t.tmp)
			fsys.renamed = true
		}
		return nil
	})
	if err != nil {
		for _, i := range group {
			if errs[i] == nil && ts[i].ready {
				errs[i] = opErr("commit", ts[i].rel, err)
				ts[i].abortReady()
			}
		}
	}
}

// syncTemps resolves the directory of every ready temp in ts, flushes
// each filesystem they are on once and returns them. A temp that fails,
// or is not ready, gets its error in errs and is removed.
func (d *Dir) syncTemps(ts []*Temp, errs []error) *filesystems {
	fss := &filesystems{}
	dirs := make(map[string]uint64) // temps' directories: device number
	failed := make(map[uint64]error)
	for i, t := range ts {
		if !t.ready {
			errs[i] = opErr("commit", t.rel, ErrClosed)
			continue
		}
		dev, ok := dirs[t.dir]
		if !ok {
			err := d.inDir(t.dir, dirRead, func(dirfd int) error {
				var st unix.Stat_t
				if err := unix.Fstat(dirfd, &st); err != nil {
					return err
				}
				dev = st.Dev
				if fss.find(dev) != nil || failed[dev] != nil {
					return nil
				}
				if err := d.syncfs(dirfd); err != nil {
					failed[dev] = fmt.Errorf("syncfs: %w", err)
					return nil
				}
				return fss.add(dev, dirfd)
			})
			if err != nil {
				errs[i] = opErr("commit", t.rel, err)
				t.abortReady()
				continue
			}
			dirs[t.dir] = dev
		}
		if err := failed[dev]; err != nil {
			errs[i] = opErr("commit", t.rel, err)
			t.abortReady()
		}
	}
	return fss
}

// filesystems are those a CommitAll flushed, each with a descriptor open
// on it, in the order first met. A batch meets few, so a slice will do.
type filesystems struct {
	list []*filesystem
}

type filesystem struct {
	dev     uint64
	fd      int
	renamed bool // a rename happened on it since its first syncfs
}

// add keeps a duplicate of fd for the filesystem dev.
func (f *filesystems) add(dev uint64, fd int) error {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f.list = append(f.list, &filesystem{dev: dev, fd: dup})
	return nil
}

// find returns the filesystem dev, or nil.
func (f *filesystems) find(dev uint64) *filesystem {
	for _, fsys := range f.list {
		if fsys.dev == dev {
			return fsys
		}
	}
	return nil
}

func (f *filesystems) close() {
	for _, fsys := range f.list {
		unix.Close(fsys.fd)
	}
}

// AbortReady removes a ready temp that will not be committed.
func (t *Temp) AbortReady() { t.abortReady() }

func (t *Temp) abortReady() {
	if !t.ready {
		return
	}
	t.ready = false
	_ = t.d.inDir(t.dir, dirPath, func(dirfd int) error {
		return unix.Unlinkat(dirfd, t.tmp, 0)
	})
	t.d.release(t.tmp)
}
