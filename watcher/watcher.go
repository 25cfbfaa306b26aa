package watcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"github.com/makuo/makuo/exclude"
)

// Config configures a Watcher. Start from DefaultConfig and set Base.
type Config struct {
	// Base is the directory to watch recursively. Required. It is made
	// absolute and symlinks in it are resolved once, in New, so that a base
	// given as a symlink (/var/www → /data/www) is watched at its target.
	Base string

	// Quiet is how long a path must go without events before it is emitted.
	// Default 100ms: long enough to fold the burst of events one save makes
	// (create, several writes, chmod, rename) into one entry, short enough
	// that replication feels immediate.
	Quiet time.Duration

	// MaxDelay bounds how long a path that keeps changing is held back: it is
	// emitted at most MaxDelay after its first pending event even if events
	// keep arriving, and a new pending period starts with its next event.
	// Default 1s: a file written continuously (a log, a large copy) is
	// replicated at least once a second and again once it settles. Must be
	// at least Quiet.
	MaxDelay time.Duration

	// MaxPathsPerDir is how many pending paths one directory may hold before
	// they are collapsed into a rescan of that directory (Batch.Rescan).
	// Default 1000: beyond that a directory listing is cheaper than tracking
	// and sending every name, e.g. when a tarball is unpacked.
	MaxPathsPerDir int

	// MaxPending bounds the number of pending paths and rescan roots in all;
	// past it everything collapses into a rescan of the whole base directory.
	// Default 100000 (about 10 MB of memory): it keeps memory bounded when
	// millions of files change at once.
	MaxPending int

	// Exclude lists the paths that are neither watched nor reported. An
	// excluded directory gets no watch, so nothing below it costs anything.
	// Nil excludes nothing; the daemon normally passes exclude.New of
	// exclude.DefaultPatterns plus the operator's patterns, so that editor
	// swap files and makuo's own staging files are never reported.
	Exclude *exclude.Set

	// Ignore, when not nil, reports paths the node itself is applying
	// (received from another member), so that they are not echoed back. It
	// is consulted when an event arrives and again when the path is about to
	// be emitted, and must be safe to call from the Run goroutine while other
	// goroutines change what it answers. Watches are still managed for
	// ignored directories, and Rescan roots are never filtered. Default nil:
	// ignore nothing.
	Ignore func(rel string) bool

	// RescanInterval is the period of the fallback full rescans of the
	// directories that could not be watched (inotify watch limit reached).
	// Those are only used while some directory is unwatched. Default 1m: a
	// bounded delay for changes there, without rereading a big tree too
	// often.
	RescanInterval time.Duration

	// InitialRescan, when true, makes Run emit a Batch with Rescan ["."] as
	// soon as its watches are in place, for a consumer that wants its
	// start-up scan ordered after the watches (so that no change can fall
	// between the two). Default false: the replicator runs its own start-up
	// scan, and Run emits nothing for files that already exist.
	InitialRescan bool

	// Logger receives the watcher's log lines (with component=watcher).
	// Default nil: discard. Level policy: Warn for lost events and
	// unwatchable directories (each with the sysctl to raise), Info for
	// start-up and recovery, Debug for per-directory details.
	Logger *slog.Logger
}

// DefaultConfig returns the recommended configuration; set Base before New.
func DefaultConfig() Config {
	return Config{
		Quiet:          100 * time.Millisecond,
		MaxDelay:       time.Second,
		MaxPathsPerDir: 1000,
		MaxPending:     100_000,
		RescanInterval: time.Minute,
	}
}

// Batch is one set of changes, sent on the channel given to Run.
type Batch struct {
	// Paths are the changed paths: relative to Base, slash-separated,
	// sorted, without duplicates. Each may now be a file, a directory, a
	// symlink or nothing at all (it was deleted or moved away); the consumer
	// lstat's it. A directory listed here stands for its own entry, not its
	// contents. No path lies inside a root listed in Rescan.
	Paths []string

	// Rescan are subtree roots whose whole contents must be rescanned because
	// changes there may have been missed (event queue overflow, watch limit,
	// collapsed bursts): relative, sorted, none inside another; "." is the
	// whole base directory and then the only entry.
	Rescan []string
}

// Stats is a snapshot of a Watcher's counters, for the metrics package to
// read at scrape time.
type Stats struct {
	Events       uint64 // fsnotify events received
	Batches      uint64 // batches delivered
	Overflows    uint64 // kernel event queue overflows (fs.inotify.max_queued_events)
	Rescans      uint64 // rescan roots delivered, whatever the cause
	WatchErrors  uint64 // failed watch adds (including the watch limit) and other inotify errors
	WatchesInUse int64  // directories watched now
	Pending      int64  // paths and rescan roots waiting to be delivered
}

var (
	// ErrInvalidConfig is wrapped by New's errors for a bad Config.
	ErrInvalidConfig = errors.New("watcher: invalid config")

	// ErrBaseGone is wrapped by Run's error when the base directory itself
	// is deleted or moved away: nothing under the configured path can be
	// watched any more, and a restart (which rescans) is the right response.
	ErrBaseGone = errors.New("watcher: base directory deleted or moved")
)

// Watcher watches a directory tree and emits debounced batches of changed
// paths. Create it with New and start it with Run.
type Watcher struct {
	cfg     Config
	log     *slog.Logger
	ready   chan struct{}
	running atomic.Bool

	events, batches, overflows, rescans, watchErrors atomic.Uint64
	watches, pending                                 atomic.Int64

	// newSource opens the event source; tests replace it.
	newSource func() (source, error)
}

// New validates cfg and returns a Watcher. Base must be an existing
// directory.
func New(cfg Config) (*Watcher, error) {
	if cfg.Base == "" {
		return nil, fmt.Errorf("%w: Base is empty", ErrInvalidConfig)
	}
	if cfg.Quiet <= 0 {
		return nil, fmt.Errorf("%w: Quiet %v must be positive", ErrInvalidConfig, cfg.Quiet)
	}
	if cfg.MaxDelay < cfg.Quiet {
		return nil, fmt.Errorf("%w: MaxDelay %v must be at least Quiet %v", ErrInvalidConfig, cfg.MaxDelay, cfg.Quiet)
	}
	if cfg.MaxPathsPerDir < 1 {
		return nil, fmt.Errorf("%w: MaxPathsPerDir %d must be at least 1", ErrInvalidConfig, cfg.MaxPathsPerDir)
	}
	if cfg.MaxPending < 1 {
		return nil, fmt.Errorf("%w: MaxPending %d must be at least 1", ErrInvalidConfig, cfg.MaxPending)
	}
	if cfg.RescanInterval <= 0 {
		return nil, fmt.Errorf("%w: RescanInterval %v must be positive", ErrInvalidConfig, cfg.RescanInterval)
	}
	base, err := filepath.Abs(cfg.Base)
	if err != nil {
		return nil, fmt.Errorf("%w: Base %q: %w", ErrInvalidConfig, cfg.Base, err)
	}
	if base, err = filepath.EvalSymlinks(base); err != nil {
		return nil, fmt.Errorf("%w: Base %q: %w", ErrInvalidConfig, cfg.Base, err)
	}
	fi, err := os.Stat(base)
	if err != nil {
		return nil, fmt.Errorf("%w: Base %q: %w", ErrInvalidConfig, cfg.Base, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%w: Base %q is not a directory", ErrInvalidConfig, cfg.Base)
	}
	cfg.Base = base
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{
		cfg:       cfg,
		log:       log.With("component", "watcher"),
		ready:     make(chan struct{}),
		newSource: fsnotifySource,
	}, nil
}

// Run adds watches on the whole tree, then sends batches of changes on out
// until ctx ends; it then closes its inotify instance and returns nil. It
// keeps reading events while out is not being received from (pending
// changes accumulate, bounded by MaxPending). It returns an error if the
// base directory cannot be read or watched at start, if it is deleted or
// moved away (ErrBaseGone), or if called twice. Run does not close out.
func (w *Watcher) Run(ctx context.Context, out chan<- Batch) error {
	if out == nil {
		return errors.New("watcher: Run needs a non-nil channel")
	}
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("watcher: Run called twice")
	}
	src, err := w.newSource()
	if err != nil {
		if errors.Is(err, unix.EMFILE) {
			return fmt.Errorf("watcher: start inotify (raise the sysctl fs.inotify.max_user_instances, now %s): %w",
				sysctl("max_user_instances"), err)
		}
		return fmt.Errorf("watcher: start inotify: %w", err)
	}
	defer func() {
		if err := src.n.Close(); err != nil {
			w.log.Debug("closing inotify", "err", err)
		}
	}()
	s := newState(w, src.n)
	defer s.deb.stop()
	return s.run(ctx, src, out)
}

// Ready is closed once Run has put its initial watches in place: changes
// made after that are reported. If Run fails before, Ready is never closed.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Base returns the absolute, symlink-free base directory being watched.
func (w *Watcher) Base() string { return w.cfg.Base }

// Stats returns a snapshot of the counters. Safe for concurrent use.
func (w *Watcher) Stats() Stats {
	return Stats{
		Events:       w.events.Load(),
		Batches:      w.batches.Load(),
		Overflows:    w.overflows.Load(),
		Rescans:      w.rescans.Load(),
		WatchErrors:  w.watchErrors.Load(),
		WatchesInUse: w.watches.Load(),
		Pending:      w.pending.Load(),
	}
}

// source is an inotify instance: fsnotify's Watcher, or a fake in tests.
type source struct {
	n      notifier
	events <-chan fsnotify.Event
	errors <-chan error
}

// notifier adds and removes watches; *fsnotify.Watcher implements it.
type notifier interface {
	Add(name string) error
	Remove(name string) error
	Close() error
}

var _ notifier = (*fsnotify.Watcher)(nil)

func fsnotifySource() (source, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return source{}, err
	}
	return source{n: fw, events: fw.Events, errors: fw.Errors}, nil
}
