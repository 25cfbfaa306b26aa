package peers

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// settleDelay lets a burst of changes to a watched file (an editor's
// write, rename and chmod) settle into one reload.
const settleDelay = 100 * time.Millisecond

// FileWatch tells when a file may have changed: an inotify watch of its
// directory (editors and configuration tools rename another file over
// it, which a watch of the file itself would not follow), once a burst
// of changes settled, and a poll every so often besides (a network
// filesystem or a full watch table may deliver nothing). It says so on
// C, which holds one signal at most; the owner reads the file again
// there, so that its reloads run on its own goroutine.
type FileWatch struct {
	C    <-chan struct{}
	c    chan struct{}
	file string
	poll time.Duration
	log  *slog.Logger
	w    *fsnotify.Watcher
}

// NewFileWatch watches file, and polls it every poll. A directory that
// cannot be watched is logged, and polling alone goes on.
func NewFileWatch(file string, poll time.Duration, log *slog.Logger) *FileWatch {
	c := make(chan struct{}, 1)
	fw := &FileWatch{C: c, c: c, file: file, poll: poll, log: log}
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(filepath.Dir(file)); err != nil {
			w.Close()
		}
	}
	if err != nil {
		log.Warn("cannot watch the directory of a list of peers; checking it for changes by polling only", "file", file, "every", poll, "err", err)
		return fw
	}
	fw.w = w
	return fw
}

// Run signals changes until ctx ends, then closes the watch.
func (fw *FileWatch) Run(ctx context.Context) {
	poll := time.NewTicker(fw.poll)
	defer poll.Stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if fw.w != nil {
		defer fw.w.Close()
		events, errs = fw.w.Events, fw.w.Errors
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			fw.signal()
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if fw.concerns(ev.Name) {
				settle.Reset(settleDelay)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			fw.log.Debug("peers file watch", "file", fw.file, "err", err)
		case <-settle.C:
			fw.signal()
		}
	}
}

func (fw *FileWatch) signal() {
	select {
	case fw.c <- struct{}{}:
	default:
	}
}

// concerns reports whether a change of name may change the file: the
// file itself, or, as a Kubernetes ConfigMap volume swaps its files, a
// link it is reached through.
func (fw *FileWatch) concerns(name string) bool {
	base := filepath.Base(name)
	return base == filepath.Base(fw.file) || base == "..data"
}
