package watcher

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/makuo/makuo/exclude"
)

// These tests use real files and the real inotify backend of fsnotify.

func TestNewValidates(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeFile(t, file, "x")
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"empty base", func(c *Config) { c.Base = "" }, "Base is empty"},
		{"missing base", func(c *Config) { c.Base = filepath.Join(dir, "nope") }, "no such file"},
		{"base is a file", func(c *Config) { c.Base = file }, "not a directory"},
		{"zero quiet", func(c *Config) { c.Quiet = 0 }, "Quiet"},
		{"max delay below quiet", func(c *Config) { c.MaxDelay = c.Quiet / 2 }, "MaxDelay"},
		{"zero per dir", func(c *Config) { c.MaxPathsPerDir = 0 }, "MaxPathsPerDir"},
		{"zero pending", func(c *Config) { c.MaxPending = 0 }, "MaxPending"},
		{"zero rescan interval", func(c *Config) { c.RescanInterval = 0 }, "RescanInterval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Base = dir
			tt.edit(&cfg)
			_, err := New(cfg)
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want ErrInvalidConfig mentioning %q", err, tt.want)
			}
		})
	}
}

func TestNewResolvesSymlinkedBase(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, link)
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.EvalSymlinks(real)
	if w.Base() != want {
		t.Errorf("Base() = %q, want %q", w.Base(), want)
	}
	h := start(t, w)
	writeFile(t, filepath.Join(link, "f"), "x")
	h.waitFor(t, false, "f")
}

func TestRunMisuse(t *testing.T) {
	w, err := New(testConfig(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(t.Context(), nil); err == nil {
		t.Error("Run with a nil channel succeeded")
	}
	start(t, w)
	if err := w.Run(t.Context(), make(chan Batch)); err == nil {
		t.Error("second Run succeeded")
	}
}

func TestFileLifecycle(t *testing.T) {
	h := newStarted(t, testConfig(t, t.TempDir()))
	f := filepath.Join(h.base, "f.txt")

	writeFile(t, f, "one")
	h.waitFor(t, false, "f.txt")

	if err := os.WriteFile(f, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, false, "f.txt")

	if err := os.Chmod(f, 0o600); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, false, "f.txt")

	if err := os.Remove(f); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, false, "f.txt")

	// Counters are updated by the Run goroutine just after each send.
	waitStat(t, h.w, "4 batches, 1 watch, nothing pending", func(s Stats) bool {
		return s.Events >= 4 && s.Batches >= 4 && s.WatchesInUse == 1 && s.Pending == 0
	})
}

func TestRenameFile(t *testing.T) {
	base := t.TempDir()
	writeFile(t, filepath.Join(base, "old"), "x")
	h := newStarted(t, testConfig(t, base))
	if err := os.Rename(filepath.Join(base, "old"), filepath.Join(base, "new")); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, false, "old", "new")
}

func TestRenameDir(t *testing.T) {
	base := t.TempDir()
	writeFile(t, filepath.Join(base, "d", "sub", "f"), "x")
	writeFile(t, filepath.Join(base, "d", "g"), "x")
	h := newStarted(t, testConfig(t, base))

	if err := os.Rename(filepath.Join(base, "d"), filepath.Join(base, "e")); err != nil {
		t.Fatal(err)
	}
	// Old name gone; new tree reported in full (it was moved in).
	h.waitFor(t, false, "d", "e", "e/g", "e/sub", "e/sub/f")

	// The watches follow the move: changes are reported under the new name.
	writeFile(t, filepath.Join(base, "e", "sub", "later"), "x")
	got := h.waitFor(t, false, "e/sub/later")
	for p := range got {
		if strings.HasPrefix(p, "d/") {
			t.Errorf("change reported under the old name: %s", p)
		}
	}
	if n := h.w.Stats().WatchesInUse; n != 3 {
		t.Errorf("WatchesInUse = %d, want 3 (., e, e/sub)", n)
	}

	// Moving it out of the tree drops its watches.
	if err := os.Rename(filepath.Join(base, "e"), filepath.Join(t.TempDir(), "e")); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, false, "e")
	waitStat(t, h.w, "WatchesInUse == 1", func(s Stats) bool { return s.WatchesInUse == 1 })
}

func TestDeleteDirTree(t *testing.T) {
	base := t.TempDir()
	writeFile(t, filepath.Join(base, "d", "a", "b", "f"), "x")
	h := newStarted(t, testConfig(t, base))
	if err := os.RemoveAll(filepath.Join(base, "d")); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, false, "d")
	waitStat(t, h.w, "WatchesInUse == 1", func(s Stats) bool { return s.WatchesInUse == 1 })
}

func TestMkdirPImmediateFill(t *testing.T) {
	h := newStarted(t, testConfig(t, t.TempDir()))
	// Ten nested directories created at once, then 100 files in each right
	// away: most are written before the watcher has a watch on their
	// directory, so only the walk of the new directories can find them.
	var want []string
	dir := ""
	for i := range 10 {
		dir = filepath.Join(dir, fmt.Sprintf("d%d", i))
		want = append(want, filepath.ToSlash(dir))
	}
	if err := os.MkdirAll(filepath.Join(h.base, dir), 0o755); err != nil {
		t.Fatal(err)
	}
	dir = ""
	for i := range 10 {
		dir = filepath.Join(dir, fmt.Sprintf("d%d", i))
		for j := range 100 {
			rel := filepath.Join(dir, fmt.Sprintf("f%03d", j))
			if err := os.WriteFile(filepath.Join(h.base, rel), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			want = append(want, filepath.ToSlash(rel))
		}
	}
	h.waitFor(t, false, want...)
	for _, b := range h.seen {
		if len(b.Rescan) > 0 {
			t.Errorf("unexpected rescan %q", b.Rescan)
		}
	}
	if n := h.w.Stats().WatchesInUse; n != 11 {
		t.Errorf("WatchesInUse = %d, want 11", n)
	}
}

func TestExcludes(t *testing.T) {
	base := t.TempDir()
	writeFile(t, filepath.Join(base, "cache", "old"), "x")
	writeFile(t, filepath.Join(base, "www", "index.html"), "x")
	cfg := testConfig(t, base)
	var err error
	cfg.Exclude, err = excludeSet(append([]string{"cache/"}, defaultPatterns()...)...)
	if err != nil {
		t.Fatal(err)
	}
	h := newStarted(t, cfg)
	if n := h.w.Stats().WatchesInUse; n != 2 {
		t.Errorf("WatchesInUse = %d, want 2 (., www): excluded dir watched", n)
	}

	// An editor session: swap file, backup, probe file; a new excluded dir.
	for _, name := range []string{"www/.index.html.swp", "www/index.html~", "www/4913", "www/.#index.html", "www/.makuo-1.tmp", "cache/new", "newcache/x"} {
		writeFile(t, filepath.Join(base, name), "x")
	}
	if err := os.Mkdir(filepath.Join(base, "www", "cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(base, "www", "cache", "y"), "x")
	if err := os.Remove(filepath.Join(base, "www", ".index.html.swp")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(base, "marker"), "x")
	// Everything above was written before the marker, so it would have been
	// reported no later than the marker.
	got := h.waitFor(t, false, "marker", "newcache", "newcache/x")
	for p := range got {
		fi, err := os.Lstat(filepath.Join(base, p))
		if cfg.Exclude.Match(p, err == nil && fi.IsDir()) {
			t.Errorf("excluded path reported: %s", p)
		}
	}

	// Changing or deleting an excluded directory is not reported either,
	// though inotify does not say that a deleted path was a directory.
	if err := os.Chmod(filepath.Join(base, "cache"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(base, "www", "cache")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(base, "marker2"), "x")
	got = h.waitFor(t, false, "marker2")
	for _, p := range []string{"cache", "www/cache"} {
		if got[p] > 0 {
			t.Errorf("excluded directory reported: %s", p)
		}
	}
	if n := h.w.Stats().WatchesInUse; n != 3 {
		t.Errorf("WatchesInUse = %d, want 3 (., www, newcache)", n)
	}
}

func TestIgnoreSuppressesEcho(t *testing.T) {
	base := t.TempDir()
	var mu sync.Mutex
	applying := map[string]bool{}
	cfg := testConfig(t, base)
	cfg.Ignore = func(rel string) bool {
		mu.Lock()
		defer mu.Unlock()
		return applying[rel]
	}
	h := newStarted(t, cfg)
	mu.Lock()
	applying["received.txt"] = true
	mu.Unlock()
	writeFile(t, filepath.Join(base, "received.txt"), "from another member")
	writeFile(t, filepath.Join(base, "local.txt"), "x")
	got := h.waitFor(t, false, "local.txt")
	if got["received.txt"] > 0 {
		t.Error("ignored path reported")
	}
}

func TestCoalesce(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	// A long MaxDelay so that a slow, loaded machine cannot split the burst.
	cfg.Quiet = 200 * time.Millisecond
	cfg.MaxDelay = time.Minute
	h := newStarted(t, cfg)
	f := filepath.Join(h.base, "busy")
	for i := range 50 {
		if err := os.WriteFile(f, []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(h.base, "marker"), "x")
	got := h.waitFor(t, false, "busy", "marker")
	if got["busy"] != 1 {
		t.Errorf("busy reported %d times, want 1", got["busy"])
	}
}

func TestNoReportOfExistingFiles(t *testing.T) {
	base := t.TempDir()
	writeFile(t, filepath.Join(base, "a", "existing"), "x")
	h := newStarted(t, testConfig(t, base))
	writeFile(t, filepath.Join(base, "marker"), "x")
	got := h.waitFor(t, false, "marker")
	if len(got) != 1 {
		t.Errorf("reported %v, want only the marker", got)
	}
}

func TestBaseRemovedEndsRun(t *testing.T) {
	base := filepath.Join(t.TempDir(), "base")
	if err := os.Mkdir(base, 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := New(testConfig(t, base))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(t.Context(), make(chan Batch)) }()
	<-w.Ready()
	if err := os.RemoveAll(base); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrBaseGone) {
			t.Errorf("Run = %v, want ErrBaseGone", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Run did not return after the base directory was removed")
	}
}

// TestOverflowRealKernel shrinks the kernel event queue for the watcher's
// own inotify instance and floods it. The sysctl is read by inotify_init
// only, so it is lowered just around fsnotify.NewWatcher and restored right
// after (and by t.Cleanup should anything fail in between).
func TestOverflowRealKernel(t *testing.T) {
	const knob = "/proc/sys/fs/inotify/max_queued_events"
	orig, err := os.ReadFile(knob)
	if err == nil {
		err = os.WriteFile(knob, orig, 0o644) // rewrite the same value: are we allowed?
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run as root with a writable %s: %v", knob, err)
		}
		t.Skipf("needs root and a writable %s: %v", knob, err)
	}
	restore := func() {
		if err := os.WriteFile(knob, orig, 0o644); err != nil {
			t.Errorf("restore %s: %v", knob, err)
		}
	}
	t.Cleanup(restore)

	w, err := New(testConfig(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	w.newSource = func() (source, error) {
		if err := os.WriteFile(knob, []byte("4\n"), 0o644); err != nil {
			return source{}, err
		}
		defer restore()
		return fsnotifySource()
	}
	h := start(t, w)

	deadline := time.Now().Add(waitLimit)
	for round := 0; w.Stats().Overflows == 0; round++ {
		if time.Now().After(deadline) {
			t.Fatal("no overflow from a 4-event queue")
		}
		for i := range 200 {
			writeFile(t, filepath.Join(h.base, fmt.Sprintf("r%d-f%d", round, i)), "x")
		}
		// Let the watcher drain, or notice the overflow.
		select {
		case b := <-h.out:
			h.seen = append(h.seen, b)
		case <-time.After(time.Second):
		}
	}
	for !slices.ContainsFunc(h.seen, func(b Batch) bool { return slices.Equal(b.Rescan, []string{"."}) }) {
		h.next(t)
	}
}

// waitStat polls the Watcher's stats until cond holds, failing after
// waitLimit. Stats are updated by the Run goroutine after each event.
func waitStat(t *testing.T, w *Watcher, what string, cond func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond(w.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never held; stats %+v", what, w.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func defaultPatterns() []string { return exclude.DefaultPatterns() }
