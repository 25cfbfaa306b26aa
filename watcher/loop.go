package watcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// state is everything the Run goroutine owns.
type state struct {
	w      *Watcher
	cfg    Config
	log    *slog.Logger
	n      notifier
	prefix string // cfg.Base with a trailing '/'

	tree      dirTree
	unwatched map[string]struct{} // roots whose watch failed on the watch limit
	skipped   map[string]struct{} // excluded directories seen, so that their later events are known to be directories
	ticker    *time.Ticker        // periodic rescans while unwatched is not empty
	deb       *debouncer
	out       outbox
}

func newState(w *Watcher, n notifier) *state {
	prefix := w.cfg.Base
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &state{
		w:         w,
		cfg:       w.cfg,
		log:       w.log,
		n:         n,
		prefix:    prefix,
		tree:      newDirTree(),
		unwatched: make(map[string]struct{}),
		skipped:   make(map[string]struct{}),
		deb:       newDebouncer(w.cfg.Quiet, w.cfg.MaxDelay, w.cfg.MaxPathsPerDir, w.cfg.MaxPending),
		out:       newOutbox(),
	}
}

// run is the body of Run after the event source is open.
func (s *state) run(ctx context.Context, src source, out chan<- Batch) error {
	defer func() {
		if s.ticker != nil {
			s.ticker.Stop()
		}
	}()
	start := time.Now()
	if err := s.addTree(ctx, ".", false, start); err != nil {
		if canceled(ctx, err) {
			return nil
		}
		return fmt.Errorf("watcher: watch %s: %w", s.cfg.Base, err)
	}
	if !s.tree.has(".") && len(s.unwatched) == 0 {
		return fmt.Errorf("watcher: could not watch base directory %s", s.cfg.Base)
	}
	s.log.Info("watching", "base", s.cfg.Base, "dirs", s.tree.len(),
		"unwatched", len(s.unwatched), "took", time.Since(start).Round(time.Millisecond))
	if s.cfg.InitialRescan {
		s.out.add(nil, []string{"."})
	}
	close(s.w.ready)

	for {
		s.w.pending.Store(int64(s.deb.len() + s.out.len()))
		var send chan<- Batch
		var b Batch
		if !s.out.empty() {
			send, b = out, s.out.batch()
		}
		var tick <-chan time.Time
		if s.ticker != nil {
			tick = s.ticker.C
		}
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-src.events:
			if !ok {
				return errors.New("watcher: inotify event channel closed")
			}
			if err := s.handle(ctx, ev, time.Now()); err != nil {
				if canceled(ctx, err) {
					return nil
				}
				return err
			}
		case err, ok := <-src.errors:
			if !ok {
				return errors.New("watcher: inotify error channel closed")
			}
			if err := s.handleError(ctx, err, time.Now()); err != nil {
				if canceled(ctx, err) {
					return nil
				}
				return err
			}
		case <-s.deb.C():
			s.flush(time.Now())
		case <-tick:
			if err := s.periodic(ctx, time.Now()); err != nil {
				if canceled(ctx, err) {
					return nil
				}
				return err
			}
		case send <- b:
			s.out.reset()
			s.w.batches.Add(1)
			s.w.rescans.Add(uint64(len(b.Rescan)))
		}
	}
}

// canceled reports whether err is only ctx ending, which is a clean stop.
func canceled(ctx context.Context, err error) bool {
	return ctx.Err() != nil && errors.Is(err, ctx.Err())
}

// handle applies one fsnotify event.
func (s *state) handle(ctx context.Context, ev fsnotify.Event, now time.Time) error {
	s.w.events.Add(1)
	rel, ok := s.rel(ev.Name)
	if !ok {
		return nil
	}
	gone := ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)
	if rel == "." {
		if gone {
			return fmt.Errorf("%w: %s", ErrBaseGone, s.cfg.Base)
		}
		return nil // the base directory's own attributes are not replicated
	}
	switch {
	case gone:
		wasDir := s.isDir(rel)
		if wasDir {
			s.forget(rel)
		}
		delete(s.skipped, rel)
		if !s.cfg.Exclude.Match(rel, wasDir) {
			s.report(rel, now)
		}
	case ev.Has(fsnotify.Create):
		fi, err := os.Lstat(ev.Name)
		isDir := err == nil && fi.IsDir()
		if s.excluded(rel, isDir) {
			return nil
		}
		if !isDir {
			s.report(rel, now)
			return nil
		}
		// A new or moved-in directory: watch it and report what it holds.
		return s.addTree(ctx, rel, true, now)
	default: // Write, Chmod
		if !s.cfg.Exclude.Match(rel, s.isDir(rel)) {
			s.report(rel, now)
		}
	}
	return nil
}

// handleError applies one error from fsnotify.
func (s *state) handleError(ctx context.Context, err error, now time.Time) error {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		s.w.overflows.Add(1)
		s.log.Warn("inotify event queue overflowed, changes were lost; rescanning the whole base directory",
			"sysctl", "fs.inotify.max_queued_events", "limit", sysctl("max_queued_events"),
			"hint", "raise the sysctl, e.g. sysctl -w fs.inotify.max_queued_events=65536")
		// A lost Create of a directory means a missing watch: restore them.
		if err := s.resync(ctx, now); err != nil {
			return fmt.Errorf("watcher: rewatch %s: %w", s.cfg.Base, err)
		}
		s.deb.addRescan(".", now)
		return nil
	}
	s.w.watchErrors.Add(1)
	s.log.Warn("inotify error, changes may have been lost; rescanning the whole base directory", "err", err)
	s.deb.addRescan(".", now)
	return nil
}

// watchLimit handles ENOSPC from adding a watch on rel.
func (s *state) watchLimit(rel string, now time.Time) {
	s.w.watchErrors.Add(1)
	if s.ticker == nil { // entering periodic-rescan mode
		s.log.Warn("inotify watch limit reached; unwatched directories are rescanned periodically instead",
			"path", rel, "watches", s.tree.len(),
			"sysctl", "fs.inotify.max_user_watches", "limit", sysctl("max_user_watches"),
			"rescan_interval", s.cfg.RescanInterval,
			"hint", "raise the sysctl, e.g. sysctl -w fs.inotify.max_user_watches=1048576")
	} else {
		s.log.Debug("inotify watch limit reached", "path", rel)
	}
	s.unwatched[rel] = struct{}{}
	s.deb.addRescan(rel, now)
	if s.ticker == nil {
		s.ticker = time.NewTicker(s.cfg.RescanInterval)
	}
}

// periodic retries the watches that failed on the watch limit and asks for a
// rescan of each of those subtrees, since changes there are not seen.
func (s *state) periodic(ctx context.Context, now time.Time) error {
	roots := make([]string, 0, len(s.unwatched))
	for r := range s.unwatched {
		roots = append(roots, r)
	}
	slices.Sort(roots)
	for _, r := range roots {
		delete(s.unwatched, r)
		if err := s.addTree(ctx, r, false, now); err != nil {
			return err
		}
		s.deb.addRescan(r, now)
	}
	if len(s.unwatched) == 0 {
		s.ticker.Stop()
		s.ticker = nil
		s.log.Info("all directories are watched again; periodic rescans stopped", "watches", s.tree.len())
	}
	return nil
}

// flush moves the due entries to the outgoing batch.
func (s *state) flush(now time.Time) {
	paths, rescans := s.deb.pop(now)
	if s.cfg.Ignore != nil {
		paths = slices.DeleteFunc(paths, s.cfg.Ignore)
	}
	s.out.add(paths, rescans)
	if s.out.len() > s.cfg.MaxPending {
		// The consumer has not kept up for a while: one full rescan is
		// cheaper than an ever-growing list.
		s.log.Debug("undelivered changes collapsed into a rescan of the whole base directory", "pending", s.out.len())
		s.out.reset()
		s.out.add(nil, []string{"."})
	}
}

// report queues rel as changed unless the node itself is applying it.
func (s *state) report(rel string, now time.Time) {
	if !s.ignored(rel) {
		s.deb.addPath(rel, now)
	}
}

// excluded reports whether rel is excluded, remembering excluded
// directories: inotify does not say whether a deleted path was a directory,
// and a pattern with a trailing '/' needs to know.
func (s *state) excluded(rel string, isDir bool) bool {
	if !s.cfg.Exclude.Match(rel, isDir) {
		return false
	}
	if isDir {
		s.skipped[rel] = struct{}{}
	}
	return true
}

// isDir reports whether rel is known to be a directory (watched or excluded).
func (s *state) isDir(rel string) bool {
	if s.tree.has(rel) {
		return true
	}
	_, ok := s.skipped[rel]
	return ok
}

func (s *state) ignored(rel string) bool {
	return s.cfg.Ignore != nil && s.cfg.Ignore(rel)
}

// rel maps an absolute name from fsnotify to a slash-separated path relative
// to the base directory, "." for the base itself.
func (s *state) rel(name string) (string, bool) {
	if name == s.cfg.Base {
		return ".", true
	}
	r, ok := strings.CutPrefix(name, s.prefix)
	if !ok || r == "" {
		return "", false
	}
	return filepath.ToSlash(r), true
}

func (s *state) abs(rel string) string {
	if rel == "." {
		return s.cfg.Base
	}
	return s.prefix + filepath.FromSlash(rel)
}

// sysctl returns the value of /proc/sys/fs/inotify/name for log lines, or
// "unknown".
func sysctl(name string) string {
	b, err := os.ReadFile("/proc/sys/fs/inotify/" + name)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// outbox accumulates due entries until the consumer receives them, so that
// a slow consumer gets one merged batch instead of stalling the event loop.
type outbox struct {
	paths, rescans map[string]struct{}
	cached         *Batch
}

func newOutbox() outbox {
	return outbox{paths: make(map[string]struct{}), rescans: make(map[string]struct{})}
}

func (o *outbox) empty() bool { return len(o.paths) == 0 && len(o.rescans) == 0 }

func (o *outbox) len() int { return len(o.paths) + len(o.rescans) }

func (o *outbox) add(paths, rescans []string) {
	if len(paths) == 0 && len(rescans) == 0 {
		return
	}
	for _, p := range paths {
		o.paths[p] = struct{}{}
	}
	for _, r := range rescans {
		o.rescans[r] = struct{}{}
	}
	o.cached = nil
}

func (o *outbox) reset() {
	clear(o.paths)
	clear(o.rescans)
	o.cached = nil
}

// batch returns the normalised batch: sorted, no root inside another root,
// no path inside a root.
func (o *outbox) batch() Batch {
	if o.cached != nil {
		return *o.cached
	}
	var b Batch
	for r := range o.rescans {
		if !coveredBy(r, o.rescans, false) {
			b.Rescan = append(b.Rescan, r)
		}
	}
	for p := range o.paths {
		if !coveredBy(p, o.rescans, true) {
			b.Paths = append(b.Paths, p)
		}
	}
	slices.Sort(b.Rescan)
	slices.Sort(b.Paths)
	o.cached = &b
	return b
}

// coveredBy reports whether p, or one of its parents, is in roots; p itself
// counts only when self is true.
func coveredBy(p string, roots map[string]struct{}, self bool) bool {
	if _, ok := roots["."]; ok && p != "." {
		return true
	}
	for q := p; q != "." && q != "/"; q = path.Dir(q) {
		if q == p && !self {
			continue
		}
		if _, ok := roots[q]; ok {
			return true
		}
	}
	return false
}
