package stage

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Ready applies meta (owner, mode, times) to a fully written temp file and
// closes it without syncing; the file is then renamed into place by
// Dir.CommitAll together with others. It is Commit split in two, so that
// many small files cost two filesystem syncs in all instead of two each.
func (t *Temp) Ready(meta Meta) error {
	f, err := t.file()
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return opErr("ready", t.rel, ErrClosed)
		}
		t.done = true
		t.abortParked()
		return err
	}
	err = meta.checkType("ready", 0)
	if err == nil {
		err = applyMetaFd(int(f.Fd()), meta)
	}
	if cerr := f.Close(); err == nil {
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
// Commit: one syncfs makes all their contents durable before any rename (a
// crash leaves each target old or complete new, never partial), a second
// one makes the renames durable before CommitAll returns. errs[i] is the
// error of ts[i]; a failed temp is removed.
func (d *Dir) CommitAll(ts []*Temp) (errs []error) {
	errs = make([]error, len(ts))
	if len(ts) == 0 {
		return errs
	}
	if err := d.syncBase(); err != nil {
		for i, t := range ts {
			errs[i] = opErr("commit", t.rel, err)
			t.abortReady()
		}
		return errs
	}
	for i, t := range ts {
		if !t.ready {
			errs[i] = opErr("commit", t.rel, ErrClosed)
			continue
		}
		err := d.inDir(t.dir, dirPath, func(dirfd int) error {
			err := unix.Renameat(dirfd, t.tmp, dirfd, t.name)
			if errors.Is(err, unix.EISDIR) {
				return ErrIsDir
			}
			return err
		})
		if err != nil {
			errs[i] = opErr("commit", t.rel, err)
			t.abortReady()
			continue
		}
		t.ready = false
		d.release(t.tmp)
	}
	if err := d.syncBase(); err != nil {
		for i, t := range ts {
			if errs[i] == nil {
				errs[i] = opErr("commit", t.rel, err)
			}
		}
	}
	return errs
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

// syncBase flushes the filesystem holding the base directory.
func (d *Dir) syncBase() error {
	return d.withBase(func(basefd int) error { return d.syncfs(basefd) })
}
