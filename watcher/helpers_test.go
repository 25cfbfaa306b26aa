package watcher

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/makuo/makuo/exclude"
)

// waitLimit bounds how long a real-inotify test waits for an expected batch.
// It is a failure guard, not a timing assertion: under -race on a loaded
// 2-core machine a batch normally arrives within Quiet plus milliseconds.
const waitLimit = 20 * time.Second

// testConfig is DefaultConfig for base with a logger writing to t.
func testConfig(t *testing.T, base string) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Base = base
	cfg.Logger = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return cfg
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// harness runs a Watcher until the test ends.
type harness struct {
	w    *Watcher
	base string
	out  chan Batch
	seen []Batch // every batch received so far
}

// start runs w in a goroutine, waits until its watches are in place and
// stops it (checking Run's error) when the test ends.
func start(t *testing.T, w *Watcher) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{w: w, base: w.Base(), out: make(chan Batch)}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, h.out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-w.Ready():
	case err := <-done:
		done <- err
		t.Fatalf("Run returned before ready: %v", err)
	}
	return h
}

// newStarted builds a Watcher from cfg and starts it.
func newStarted(t *testing.T, cfg Config) *harness {
	t.Helper()
	w, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return start(t, w)
}

// next receives one batch, failing the test after waitLimit.
func (h *harness) next(t *testing.T) Batch {
	t.Helper()
	select {
	case b := <-h.out:
		checkBatchInvariants(t, b)
		h.seen = append(h.seen, b)
		return b
	case <-time.After(waitLimit):
		t.Fatalf("no batch within %v; seen so far: %+v", waitLimit, h.seen)
		return Batch{}
	}
}

// waitFor receives batches until every path in want has been reported (in
// Paths, or under a Rescan root when coverOK) and returns the set of all
// paths reported so far by this call.
func (h *harness) waitFor(t *testing.T, coverOK bool, want ...string) map[string]int {
	t.Helper()
	got := make(map[string]int)
	var roots []string
	missing := func() []string {
		var m []string
		for _, p := range want {
			if got[p] > 0 {
				continue
			}
			if coverOK && slices.ContainsFunc(roots, func(r string) bool { return within(p, r) }) {
				continue
			}
			m = append(m, p)
		}
		return m
	}
	deadline := time.After(waitLimit)
	for len(missing()) > 0 {
		select {
		case b := <-h.out:
			checkBatchInvariants(t, b)
			h.seen = append(h.seen, b)
			for _, p := range b.Paths {
				got[p]++
			}
			roots = append(roots, b.Rescan...)
		case <-deadline:
			m := missing()
			if len(m) > 10 {
				m = append(m[:10], "...")
			}
			t.Fatalf("not reported within %v: %q; batches: %d", waitLimit, m, len(h.seen))
		}
	}
	return got
}

// checkBatchInvariants checks what Batch documents: sorted, unique,
// relative paths, none under a rescan root.
func checkBatchInvariants(t *testing.T, b Batch) {
	t.Helper()
	if len(b.Paths) == 0 && len(b.Rescan) == 0 {
		t.Errorf("empty batch sent")
	}
	for _, list := range [][]string{b.Paths, b.Rescan} {
		if !slices.IsSorted(list) {
			t.Errorf("batch list not sorted: %q", list)
		}
		if len(slices.Compact(slices.Clone(list))) != len(list) {
			t.Errorf("batch list has duplicates: %q", list)
		}
		for _, p := range list {
			if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "..") || filepath.Clean(p) != p {
				t.Errorf("bad path %q in batch", p)
			}
		}
	}
	for _, p := range b.Paths {
		for _, r := range b.Rescan {
			if within(p, r) {
				t.Errorf("path %q lies in rescan root %q", p, r)
			}
		}
	}
	for _, r := range b.Rescan {
		for _, o := range b.Rescan {
			if r != o && within(r, o) {
				t.Errorf("rescan root %q lies in %q", r, o)
			}
		}
	}
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakeSource stands in for fsnotify in loop tests: the test sends events
// and errors, and decides which Add calls fail.
type fakeSource struct {
	events chan fsnotify.Event
	errors chan error

	mu      sync.Mutex
	added   []string
	removed []string
	addErr  func(name string) error
	closed  bool
}

func newFakeSource() *fakeSource {
	return &fakeSource{events: make(chan fsnotify.Event), errors: make(chan error)}
}

func (f *fakeSource) open() (source, error) {
	return source{n: f, events: f.events, errors: f.errors}, nil
}

func (f *fakeSource) Add(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.addErr != nil {
		if err := f.addErr(name); err != nil {
			return err
		}
	}
	if _, err := os.Lstat(name); err != nil {
		return err
	}
	f.added = append(f.added, name)
	return nil
}

func (f *fakeSource) Remove(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, name)
	return nil
}

func (f *fakeSource) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errors.New("closed twice")
	}
	f.closed = true
	return nil
}

func (f *fakeSource) setAddErr(fn func(string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addErr = fn
}

func (f *fakeSource) lists() (added, removed []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.added), slices.Clone(f.removed)
}

func excludeSet(patterns ...string) (*exclude.Set, error) { return exclude.New(patterns) }
