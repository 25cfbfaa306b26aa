package watcher

import (
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// emission is what one pop returned and when, in virtual time since start.
type emission struct {
	at      time.Duration
	paths   []string
	rescans []string
}

// drain waits for the debouncer's timer until nothing is pending and returns
// every pop that produced something. It must run inside a synctest bubble.
func drain(d *debouncer, start time.Time) []emission {
	var got []emission
	for d.len() > 0 {
		<-d.C()
		p, r := d.pop(time.Now())
		if len(p) > 0 || len(r) > 0 {
			got = append(got, emission{time.Since(start), p, r})
		}
	}
	return got
}

func TestDebounceQuiet(t *testing.T) {
	const quiet, maxDelay = 100 * time.Millisecond, time.Second
	tests := []struct {
		name string
		// events at offsets from start, per path
		events map[string][]time.Duration
		want   []emission
	}{
		{
			name:   "single event emitted after quiet",
			events: map[string][]time.Duration{"a": {0}},
			want:   []emission{{at: quiet, paths: []string{"a"}}},
		},
		{
			name:   "second event restarts quiet period",
			events: map[string][]time.Duration{"a": {0, 50 * time.Millisecond}},
			want:   []emission{{at: 150 * time.Millisecond, paths: []string{"a"}}},
		},
		{
			name:   "fifty writes coalesce into one entry",
			events: map[string][]time.Duration{"f": seq(50, time.Millisecond)},
			want:   []emission{{at: 49*time.Millisecond + quiet, paths: []string{"f"}}},
		},
		{
			name:   "independent paths emitted independently",
			events: map[string][]time.Duration{"a": {0}, "b": {60 * time.Millisecond}},
			want: []emission{
				{at: quiet, paths: []string{"a"}},
				{at: 160 * time.Millisecond, paths: []string{"b"}},
			},
		},
		{
			name:   "paths due together come out sorted in one pop",
			events: map[string][]time.Duration{"z": {0}, "a": {0}, "m/x": {0}},
			want:   []emission{{at: quiet, paths: []string{"a", "m/x", "z"}}},
		},
		{
			name:   "event after emission starts a new period",
			events: map[string][]time.Duration{"a": {0, 300 * time.Millisecond}},
			want: []emission{
				{at: quiet, paths: []string{"a"}},
				{at: 400 * time.Millisecond, paths: []string{"a"}},
			},
		},
		{
			name: "noisy path forced out at MaxDelay, then again after it settles",
			// An event every 50ms for 1.5s: never quiet for 100ms.
			events: map[string][]time.Duration{"log": seq(31, 50*time.Millisecond)},
			want: []emission{
				{at: maxDelay, paths: []string{"log"}},
				{at: 1500*time.Millisecond + quiet, paths: []string{"log"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d := newDebouncer(quiet, maxDelay, 1000, 100000)
				defer d.stop()
				start := time.Now()
				got := replay(d, start, tt.events)
				got = append(got, drain(d, start)...)
				checkEmissions(t, got, tt.want)
			})
		})
	}
}

func TestDebounceCollapsePerDir(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const quiet = 100 * time.Millisecond
		d := newDebouncer(quiet, time.Second, 10, 100000)
		defer d.stop()
		start := time.Now()
		d.addPath("other/file", start)
		for i := range 11 { // one more than MaxPathsPerDir
			d.addPath(fmt.Sprintf("big/f%02d", i), start)
		}
		d.addPath("big/sub/deep", start) // inside the collapsed dir: absorbed
		if got := d.len(); got != 2 {
			t.Fatalf("pending = %d after collapse, want 2 (other/file, rescan big)", got)
		}
		got := drain(d, start)
		checkEmissions(t, got, []emission{{at: quiet, paths: []string{"other/file"}, rescans: []string{"big"}}})
	})
}

func TestDebounceCollapseTotal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const quiet = 100 * time.Millisecond
		d := newDebouncer(quiet, time.Second, 1000, 5)
		defer d.stop()
		start := time.Now()
		for i := range 6 {
			d.addPath(fmt.Sprintf("d%d/f", i), start)
		}
		got := drain(d, start)
		checkEmissions(t, got, []emission{{at: quiet, rescans: []string{"."}}})
	})
}

func TestDebounceRescan(t *testing.T) {
	const quiet, maxDelay = 100 * time.Millisecond, time.Second
	t.Run("absorbs pending paths and roots below it and keeps their age", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			d := newDebouncer(quiet, maxDelay, 1000, 100000)
			defer d.stop()
			start := time.Now()
			d.addPath("a/b/old", start)
			d.addRescan("a/b/c", start)
			// Keep "a/..." busy so only MaxDelay can push it out; the rescan
			// must inherit the first event of "a/b/old" (t=0), not its own
			// (t=50ms).
			got := advance(d, start, 50*time.Millisecond)
			d.addRescan("a", time.Now())
			d.addPath("x", time.Now())
			for i := range 30 {
				got = append(got, advance(d, start, time.Duration(100+50*i)*time.Millisecond)...)
				d.addPath("a/noise", time.Now())
			}
			got = append(got, drain(d, start)...)
			checkEmissions(t, got, []emission{
				{at: 50*time.Millisecond + quiet, paths: []string{"x"}},
				{at: maxDelay, rescans: []string{"a"}},
				// After the rescan went out, later events are plain paths again.
				{at: 1550*time.Millisecond + quiet, paths: []string{"a/noise"}},
			})
		})
	})
	t.Run("root inside a pending root is folded into it", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			d := newDebouncer(quiet, maxDelay, 1000, 100000)
			defer d.stop()
			start := time.Now()
			d.addRescan(".", start)
			d.addRescan("a", start)
			d.addPath("b", start)
			got := drain(d, start)
			checkEmissions(t, got, []emission{{at: quiet, rescans: []string{"."}}})
		})
	})
}

func TestDebounceIdleTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDebouncer(100*time.Millisecond, time.Second, 1000, 100000)
		defer d.stop()
		d.addPath("a", time.Now())
		<-d.C()
		d.pop(time.Now())
		// Nothing pending: the timer must not fire again.
		select {
		case <-d.C():
			t.Fatal("timer fired with nothing pending")
		case <-time.After(time.Hour):
		}
	})
}

func TestWithin(t *testing.T) {
	tests := []struct {
		p, root string
		want    bool
	}{
		{"a", ".", true},
		{".", ".", true},
		{"a", "a", true},
		{"a/b", "a", true},
		{"ab", "a", false},
		{"a", "a/b", false},
		{"b/a", "a", false},
	}
	for _, tt := range tests {
		if got := within(tt.p, tt.root); got != tt.want {
			t.Errorf("within(%q, %q) = %v, want %v", tt.p, tt.root, got, tt.want)
		}
	}
}

// seq returns n offsets, step apart, starting at 0.
func seq(n int, step time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i) * step
	}
	return out
}

// replay feeds events at their virtual offsets, popping whenever the timer
// fires in between, and returns those pops.
func replay(d *debouncer, start time.Time, events map[string][]time.Duration) []emission {
	type ev struct {
		at   time.Duration
		path string
	}
	var all []ev
	for p, ats := range events {
		for _, at := range ats {
			all = append(all, ev{at, p})
		}
	}
	slices.SortFunc(all, func(a, b ev) int {
		if a.at != b.at {
			return int(a.at - b.at)
		}
		return cmpString(a.path, b.path)
	})
	var got []emission
	for _, e := range all {
		got = append(got, advance(d, start, e.at)...)
		d.addPath(e.path, time.Now())
	}
	return got
}

// advance lets virtual time run until offset at from start, popping whenever
// the debouncer's timer fires, and returns those pops.
func advance(d *debouncer, start time.Time, at time.Duration) []emission {
	var got []emission
	wake := time.NewTimer(at - time.Since(start))
	defer wake.Stop()
	for {
		select {
		case <-d.C():
			p, r := d.pop(time.Now())
			if len(p) > 0 || len(r) > 0 {
				got = append(got, emission{time.Since(start), p, r})
			}
		case <-wake.C:
			return got
		}
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func checkEmissions(t *testing.T, got, want []emission) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d emissions %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.at != w.at || !slices.Equal(g.paths, w.paths) || !slices.Equal(g.rescans, w.rescans) {
			t.Errorf("emission %d = %+v, want %+v", i, g, w)
		}
	}
}
