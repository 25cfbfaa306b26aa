package stage

import (
	"fmt"
	"io/fs"
	"sync"

	"golang.org/x/sys/unix"
)

// flushEvery is how much of a temp file is handed to the disk (see
// writebackEvery) between two background flushes of it.
//
// Writeback alone leaves the data in the disk's volatile cache (and on a
// virtual disk in the host's page cache) and the new blocks' allocation in
// the journal: the sync before the rename then waits for a cache flush of
// the whole file, long after its last byte arrived. A large file flushed
// in the background while it comes in (fdatasync on a duplicate of its
// descriptor, one at a time) leaves that sync a few megabytes to flush.
const flushEvery = 32 << 20

// flusher runs a temp file's background flushes. The zero value is ready.
type flusher struct {
	mu     sync.Mutex
	handed int64         // bytes handed to writeback so far
	at     int64         // handed when the latest flush started
	done   chan struct{} // closed when the latest flush ends; nil before the first
	err    error         // the first flush's error, reported by wait
}

// handedOver starts a flush of fd once flushEvery more bytes have been
// handed to writeback since the latest one, unless that one still runs:
// then it flushes again when done if that many more were handed over
// meanwhile. flush is the Dir's (fdatasync). A descriptor that cannot be
// duplicated starts nothing: the sync before the rename still flushes it
// all.
func (f *flusher) handedOver(fd int, n int64, flush func(int) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handed += n
	if flush == nil || f.handed-f.at < flushEvery {
		return
	}
	if f.done != nil {
		select {
		case <-f.done:
		default:
			return // the flush in flight goes on with these bytes
		}
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return
	}
	f.at = f.handed
	done := make(chan struct{})
	f.done = done
	// The duplicate lets Park and Ready close the file's own descriptor
	// while the flush runs; wait joins it before the Temp is finished.
	go func() {
		defer close(done)
		defer unix.Close(dup)
		for {
			err := flush(dup)
			f.mu.Lock()
			if err != nil && f.err == nil {
				f.err = err
			}
			again := err == nil && f.handed-f.at >= flushEvery
			if again {
				f.at = f.handed
			}
			f.mu.Unlock()
			if !again {
				return
			}
		}
	}()
}

// wait waits for the flush in flight, if any, and returns the first
// flush's error.
func (f *flusher) wait() error {
	f.mu.Lock()
	done := f.done
	f.mu.Unlock()
	if done != nil {
		<-done
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// waitFlush waits for t's background flush in flight, if any. A failed
// flush means the file's data may not be on disk (the kernel reports a
// writeback error to one sync of a descriptor only), so a temp file whose
// flush failed is not renamed into place.
func (t *Temp) waitFlush() error {
	if err := t.flush.wait(); err != nil {
		return &fs.PathError{Op: "flush", Path: t.path(), Err: fmt.Errorf("background fdatasync: %w", err)}
	}
	return nil
}
