package watcher

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

// These tests drive the Run loop with a fake event source inside a synctest
// bubble: virtual time makes Quiet, MaxDelay and RescanInterval exact.

// runFake starts w on a fake source inside the current bubble and returns
// the source, the output channel and a stop function returning Run's error.
func runFake(t *testing.T, w *Watcher) (*fakeSource, chan Batch, func() error) {
	t.Helper()
	fake := newFakeSource()
	w.newSource = fake.open
	return runOn(t, w, fake)
}

// runOn starts w (whose newSource opens fake) in the current bubble.
func runOn(t *testing.T, w *Watcher, fake *fakeSource) (*fakeSource, chan Batch, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan Batch)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, out) }()
	select {
	case <-w.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run returned before ready: %v", err)
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return fake, out, stop
}

func newFakeWatcher(t *testing.T, base string, edit func(*Config)) *Watcher {
	t.Helper()
	cfg := testConfig(t, base)
	if edit != nil {
		edit(&cfg)
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// recvAt receives one batch and the virtual time it took.
func recvAt(t *testing.T, out <-chan Batch, start time.Time) (Batch, time.Duration) {
	t.Helper()
	select {
	case b := <-out:
		checkBatchInvariants(t, b)
		return b, time.Since(start)
	case <-time.After(24 * time.Hour):
		t.Fatal("no batch within a virtual day")
		return Batch{}, 0
	}
}

// expectNone fails if a batch arrives within d of virtual time.
func expectNone(t *testing.T, out <-chan Batch, d time.Duration) {
	t.Helper()
	select {
	case b := <-out:
		t.Fatalf("unexpected batch %+v", b)
	case <-time.After(d):
	}
}

func TestLoopOverflowEmitsRescan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := t.TempDir()
		writeFile(t, filepath.Join(base, "d", "f"), "x")
		w := newFakeWatcher(t, base, nil)
		fake, out, _ := runFake(t, w)
		addedAtStart, _ := fake.lists()

		start := time.Now()
		fake.errors <- fsnotify.ErrEventOverflow
		b, at := recvAt(t, out, start)
		if !slices.Equal(b.Rescan, []string{"."}) || len(b.Paths) != 0 {
			t.Errorf("batch after overflow = %+v, want Rescan [.]", b)
		}
		if at != w.cfg.Quiet {
			t.Errorf("rescan emitted after %v, want Quiet (%v)", at, w.cfg.Quiet)
		}
		// The watches were re-synchronised with the tree.
		added, _ := fake.lists()
		if len(added) < 2*len(addedAtStart) {
			t.Errorf("watches not re-added after overflow: %q", added)
		}
		synctest.Wait()
		st := w.Stats()
		if st.Overflows != 1 || st.Rescans != 1 || st.Batches != 1 {
			t.Errorf("stats = %+v, want 1 overflow, 1 rescan, 1 batch", st)
		}
	})
}

func TestLoopOtherErrorEmitsRescan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newFakeWatcher(t, t.TempDir(), nil)
		fake, out, _ := runFake(t, w)
		fake.errors <- errors.New("some read error")
		b, _ := recvAt(t, out, time.Now())
		if !slices.Equal(b.Rescan, []string{"."}) {
			t.Errorf("batch = %+v, want Rescan [.]", b)
		}
		synctest.Wait()
		if st := w.Stats(); st.WatchErrors != 1 || st.Overflows != 0 {
			t.Errorf("stats = %+v", st)
		}
	})
}

func TestLoopWatchLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := t.TempDir()
		writeFile(t, filepath.Join(base, "a", "f"), "x")
		writeFile(t, filepath.Join(base, "b", "c", "f"), "x")
		var limited sync.Mutex // held while the watch limit is "reached"
		limit := true
		w := newFakeWatcher(t, base, nil)
		full := func(name string) error {
			limited.Lock()
			defer limited.Unlock()
			if limit && strings.HasSuffix(name, "/b") {
				return unix.ENOSPC
			}
			return nil
		}
		fk, out, _ := runFakeWith(t, w, full)

		start := time.Now()
		b, at := recvAt(t, out, start)
		if !slices.Equal(b.Rescan, []string{"b"}) || at != w.cfg.Quiet {
			t.Errorf("first batch = %+v at %v, want Rescan [b] at Quiet", b, at)
		}
		added, _ := fk.lists()
		for _, a := range added {
			if strings.HasPrefix(a, filepath.Join(base, "b")) {
				t.Errorf("watch added below the unwatched root: %s", a)
			}
		}
		synctest.Wait()
		if st := w.Stats(); st.WatchErrors != 1 || st.WatchesInUse != 2 {
			t.Errorf("stats = %+v, want 1 watch error and 2 watches (., a)", st)
		}

		// Still no room: rescanned again every RescanInterval.
		b, at = recvAt(t, out, start)
		if !slices.Equal(b.Rescan, []string{"b"}) || at != w.cfg.RescanInterval+w.cfg.Quiet {
			t.Errorf("periodic batch = %+v at %v, want Rescan [b] at %v", b, at, w.cfg.RescanInterval+w.cfg.Quiet)
		}

		// Room again: the next tick adds the watches, rescans once more and
		// stops the periodic rescans.
		limited.Lock()
		limit = false
		limited.Unlock()
		b, at = recvAt(t, out, start)
		if !slices.Equal(b.Rescan, []string{"b"}) || at != 2*w.cfg.RescanInterval+w.cfg.Quiet {
			t.Errorf("last periodic batch = %+v at %v", b, at)
		}
		expectNone(t, out, 10*w.cfg.RescanInterval)
		synctest.Wait()
		if st := w.Stats(); st.WatchesInUse != 4 || st.Rescans != 3 {
			t.Errorf("stats = %+v, want 4 watches (., a, b, b/c) and 3 rescans", st)
		}
	})
}

// runFakeWith is runFake with an Add hook installed before Run starts.
func runFakeWith(t *testing.T, w *Watcher, addErr func(string) error) (*fakeSource, chan Batch, func() error) {
	t.Helper()
	fake := newFakeSource()
	fake.addErr = addErr
	w.newSource = fake.open
	return runOn(t, w, fake)
}

func TestLoopIgnore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := t.TempDir()
		var mu sync.Mutex
		applying := map[string]bool{"echo": true}
		w := newFakeWatcher(t, base, func(c *Config) {
			c.Ignore = func(rel string) bool {
				mu.Lock()
				defer mu.Unlock()
				return applying[rel]
			}
		})
		fake, out, _ := runFake(t, w)
		start := time.Now()
		send := func(rel string, op fsnotify.Op) {
			fake.events <- fsnotify.Event{Name: filepath.Join(base, rel), Op: op}
		}
		send("echo", fsnotify.Write) // ignored on arrival
		send("late", fsnotify.Write) // ignored by the time it is flushed
		send("kept", fsnotify.Write)
		mu.Lock()
		applying["late"] = true
		mu.Unlock()
		b, _ := recvAt(t, out, start)
		if !slices.Equal(b.Paths, []string{"kept"}) {
			t.Errorf("batch = %+v, want only [kept]", b)
		}
		expectNone(t, out, time.Hour)
	})
}

func TestLoopNewDirIsWalked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := t.TempDir()
		w := newFakeWatcher(t, base, func(c *Config) {
			var err error
			c.Exclude, err = excludeSet("*.swp", "skip/")
			if err != nil {
				t.Fatal(err)
			}
		})
		fake, out, _ := runFake(t, w)
		// Files created before the watch on n/m exists send no event: the
		// walk triggered by "Create n" must find them.
		writeFile(t, filepath.Join(base, "n", "m", "f1"), "x")
		writeFile(t, filepath.Join(base, "n", "m", "f2.swp"), "x")
		writeFile(t, filepath.Join(base, "n", "skip", "f3"), "x")
		start := time.Now()
		fake.events <- fsnotify.Event{Name: filepath.Join(base, "n"), Op: fsnotify.Create}
		b, at := recvAt(t, out, start)
		want := []string{"n", "n/m", "n/m/f1"}
		if !slices.Equal(b.Paths, want) || at != w.cfg.Quiet {
			t.Errorf("batch = %+v at %v, want %q at Quiet", b, at, want)
		}
		added, _ := fake.lists()
		for _, d := range []string{"n", "n/m"} {
			if !slices.Contains(added, filepath.Join(base, d)) {
				t.Errorf("no watch on %s; added %q", d, added)
			}
		}
		if slices.Contains(added, filepath.Join(base, "n", "skip")) {
			t.Error("excluded directory watched")
		}
	})
}

func TestLoopMovedAwayDirDropsWatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := t.TempDir()
		writeFile(t, filepath.Join(base, "d", "sub", "f"), "x")
		writeFile(t, filepath.Join(base, "keep", "f"), "x")
		w := newFakeWatcher(t, base, nil)
		fake, out, _ := runFake(t, w)
		fake.events <- fsnotify.Event{Name: filepath.Join(base, "d"), Op: fsnotify.Rename}
		b, _ := recvAt(t, out, time.Now())
		if !slices.Equal(b.Paths, []string{"d"}) {
			t.Errorf("batch = %+v, want [d]", b)
		}
		_, removed := fake.lists()
		slices.Sort(removed)
		want := []string{filepath.Join(base, "d"), filepath.Join(base, "d", "sub")}
		if !slices.Equal(removed, want) {
			t.Errorf("removed watches %q, want %q", removed, want)
		}
		synctest.Wait()
		if st := w.Stats(); st.WatchesInUse != 2 {
			t.Errorf("WatchesInUse = %d, want 2 (., keep)", st.WatchesInUse)
		}
	})
}

func TestLoopBaseGone(t *testing.T) {
	for _, op := range []fsnotify.Op{fsnotify.Remove, fsnotify.Rename} {
		t.Run(op.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := t.TempDir()
				w := newFakeWatcher(t, base, nil)
				fake, _, stop := runFake(t, w)
				fake.events <- fsnotify.Event{Name: w.Base(), Op: op}
				if err := stop(); !errors.Is(err, ErrBaseGone) {
					t.Errorf("Run = %v, want ErrBaseGone", err)
				}
			})
		})
	}
}

func TestLoopSlowConsumerGetsMergedBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := t.TempDir()
		w := newFakeWatcher(t, base, func(c *Config) { c.MaxPending = 3 })
		fake, out, _ := runFake(t, w)
		send := func(rel string) {
			fake.events <- fsnotify.Event{Name: filepath.Join(base, rel), Op: fsnotify.Write}
		}
		send("a")
		time.Sleep(time.Second) // nobody receives: "a" waits in the outbox
		send("b")
		time.Sleep(time.Second)
		synctest.Wait()
		if p := w.Stats().Pending; p != 2 {
			t.Errorf("Pending = %d, want 2", p)
		}
		b, _ := recvAt(t, out, time.Now())
		if !slices.Equal(b.Paths, []string{"a", "b"}) {
			t.Errorf("merged batch = %+v, want [a b]", b)
		}
		// Past MaxPending undelivered entries collapse into a full rescan.
		for _, p := range []string{"c", "d", "e", "f"} {
			send(p)
			time.Sleep(time.Second)
		}
		b, _ = recvAt(t, out, time.Now())
		if !slices.Equal(b.Rescan, []string{"."}) || len(b.Paths) != 0 {
			t.Errorf("batch = %+v, want Rescan [.]", b)
		}
	})
}

func TestLoopStopsWhileBlockedOnOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := t.TempDir()
		w := newFakeWatcher(t, base, nil)
		fake, _, stop := runFake(t, w)
		fake.events <- fsnotify.Event{Name: filepath.Join(base, "a"), Op: fsnotify.Create}
		time.Sleep(time.Minute) // batch ready, nobody receiving
		if err := stop(); err != nil {
			t.Errorf("Run = %v", err)
		}
		fake.mu.Lock()
		closed := fake.closed
		fake.mu.Unlock()
		if !closed {
			t.Error("event source not closed")
		}
	})
}

func TestLoopInitialRescan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := t.TempDir()
		writeFile(t, filepath.Join(base, "existing"), "x")
		w := newFakeWatcher(t, base, func(c *Config) { c.InitialRescan = true })
		_, out, _ := runFake(t, w)
		b, at := recvAt(t, out, time.Now())
		if !slices.Equal(b.Rescan, []string{"."}) || len(b.Paths) != 0 || at != 0 {
			t.Errorf("first batch = %+v at %v, want Rescan [.] at once", b, at)
		}
		expectNone(t, out, time.Hour)
	})
}

func TestLoopNoStartupReport(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := t.TempDir()
		writeFile(t, filepath.Join(base, "d", "existing"), "x")
		w := newFakeWatcher(t, base, nil)
		_, out, _ := runFake(t, w)
		expectNone(t, out, time.Hour)
	})
}

func TestLoopUnwatchableDirIsLoggedNotRescanned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := t.TempDir()
		writeFile(t, filepath.Join(base, "locked", "f"), "x")
		w := newFakeWatcher(t, base, nil)
		_, out, _ := runFakeWith(t, w, func(name string) error {
			if strings.HasSuffix(name, "/locked") {
				return unix.EACCES
			}
			return nil
		})
		synctest.Wait()
		if st := w.Stats(); st.WatchErrors != 1 || st.WatchesInUse != 1 {
			t.Errorf("stats = %+v, want 1 watch error, 1 watch", st)
		}
		// Not a watch-limit problem: no periodic rescans.
		expectNone(t, out, 10*w.cfg.RescanInterval)
	})
}

func TestLoopCreateOfVanishedPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := t.TempDir()
		w := newFakeWatcher(t, base, nil)
		fake, out, _ := runFake(t, w)
		// Created and deleted before the event is handled: still reported,
		// the consumer finds nothing and treats it as a deletion.
		fake.events <- fsnotify.Event{Name: filepath.Join(base, "gone"), Op: fsnotify.Create}
		fake.events <- fsnotify.Event{Name: "/elsewhere/x", Op: fsnotify.Create} // outside base: dropped
		b, _ := recvAt(t, out, time.Now())
		if !slices.Equal(b.Paths, []string{"gone"}) {
			t.Errorf("batch = %+v, want [gone]", b)
		}
	})
}
