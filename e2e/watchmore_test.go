package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/stage"
)

// startWatching starts a lab of n hosts, the first with --watch, and waits
// for the members.
func startWatching(t *testing.T, n int, extra ...string) *Lab {
	t.Helper()
	return startWatchingOn(t, NewLab(t, n), extra...)
}

// startWatchingOn is startWatching on a lab already built.
func startWatchingOn(t *testing.T, lab *Lab, extra ...string) *Lab {
	t.Helper()
	n := len(lab.Hosts)
	lab.Hosts[0].Start(append([]string{"-w"}, extra...)...)
	for _, h := range lab.Hosts[1:] {
		h.Start()
	}
	eventually(t, 3*time.Second, func() bool { return len(lab.Hosts[0].Members()) == n }, "members did not join")
	time.Sleep(200 * time.Millisecond) // watches in place
	return lab
}

// everywhere reports whether every host but the first has rel with content.
func everywhere(h []*Host, rel string, content []byte) bool {
	for _, x := range h[1:] {
		b, err := os.ReadFile(filepath.Join(x.Base, rel))
		if err != nil || string(b) != string(content) {
			return false
		}
	}
	return true
}

// TestWatchLatency measures write-to-applied-everywhere over 200 writes on
// a watching source with three members, and prints p50 and p99.
func TestWatchLatency(t *testing.T) {
	lab := startWatching(t, 4)
	h := lab.Hosts
	var lat []time.Duration
	for i := range 200 {
		rel := fmt.Sprintf("lat/f%03d.txt", i%20)
		content := []byte(fmt.Sprintf("write %d %s", i, strings.Repeat("x", i*13)))
		must(t, os.MkdirAll(filepath.Join(h[0].Base, "lat"), 0o755))
		start := time.Now()
		must(t, os.WriteFile(filepath.Join(h[0].Base, rel), content, 0o644))
		for !everywhere(h, rel, content) {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("write %d did not reach every member within 10s\n%s", i, labLogs(h, 20))
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	t.Logf("figure: write-to-applied-everywhere over %d writes, 3 members, default debounce: p50 %v, p99 %v, max %v",
		len(lat), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
}

// TestWatchEditorSaves: the save patterns of editors and tools each end
// with the final content on every member, and a reader on a member never
// sees a partial file.
func TestWatchEditorSaves(t *testing.T) {
	watchEditorSaves(t, NewLab(t, 3))
}

// watchEditorSaves is TestWatchEditorSaves's body, on any lab of 3 hosts.
func watchEditorSaves(t *testing.T, lab *Lab) {
	t.Helper()
	h := startWatchingOn(t, lab).Hosts
	patterns := []struct {
		name string
		save func(p string, content []byte)
	}{
		{"write temp then rename over", func(p string, content []byte) {
			must(t, os.WriteFile(p+".swp~", content, 0o644))
			must(t, os.Rename(p+".swp~", p))
		}},
		{"truncate and rewrite", func(p string, content []byte) {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			must(t, err)
			_, err = f.Write(content)
			must(t, err)
			must(t, f.Close())
		}},
		{"many small writes over 2 s", func(p string, content []byte) {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			must(t, err)
			for i := 0; i < len(content); i += len(content) / 20 {
				_, err = f.Write(content[i:min(i+len(content)/20, len(content))])
				must(t, err)
				time.Sleep(100 * time.Millisecond)
			}
			must(t, f.Close())
		}},
	}
	for i, pat := range patterns {
		t.Run(pat.name, func(t *testing.T) {
			rel := fmt.Sprintf("doc%d.txt", i)
			versions := map[string]bool{"": true}
			var mu sync.Mutex
			var bad atomic.Value
			var stop atomic.Bool
			var wg sync.WaitGroup
			for _, x := range h[1:] {
				wg.Go(func() {
					for !stop.Load() {
						b, err := os.ReadFile(filepath.Join(x.Base, rel))
						if err != nil {
							continue // not there yet
						}
						mu.Lock()
						ok := versions[string(b)]
						mu.Unlock()
						if !ok {
							bad.Store(fmt.Sprintf("%s read %d bytes matching no saved version", x.Name, len(b)))
						}
					}
				})
			}
			var final []byte
			for v := range 3 {
				content := []byte(strings.Repeat(fmt.Sprintf("version %d of %s\n", v, rel), 2000+v*500))
				mu.Lock()
				versions[string(content)] = true
				mu.Unlock()
				pat.save(filepath.Join(h[0].Base, rel), content)
				final = content
				time.Sleep(300 * time.Millisecond)
			}
			eventually(t, 10*time.Second, func() bool { return everywhere(h, rel, final) }, "final content did not reach every member")
			stop.Store(true)
			wg.Wait()
			if b := bad.Load(); b != nil {
				t.Fatal(b)
			}
		})
	}
}

// TestWatchBurst: 10,000 files created in 100 new directories (mkdir -p
// and filled at once) all arrive; then again with the kernel's event queue
// shrunk so that it overflows: the rescan still brings every file. A
// watcher that keeps up never overflows even a small queue, so in the
// overflow run the directories are made (and watched) first and the source
// is stopped while the files are written: their events cannot fit.
func TestWatchBurst(t *testing.T) {
	for _, overflow := range []bool{false, true} {
		t.Run(fmt.Sprintf("overflow=%v", overflow), func(t *testing.T) {
			const q = "/proc/sys/fs/inotify/max_queued_events"
			if overflow {
				old, err := os.ReadFile(q)
				must(t, err)
				must(t, os.WriteFile(q, []byte("64\n"), 0o644))
				t.Cleanup(func() { _ = os.WriteFile(q, old, 0o644) })
			}
			lab := startWatching(t, 3)
			h := lab.Hosts
			if overflow {
				// The source's inotify instance is made at start-up with the
				// small queue; others may have it back.
				must(t, os.WriteFile(q, []byte("16384\n"), 0o644))
			}
			dir := func(d int) string { return filepath.Join("burst", fmt.Sprintf("d%03d", d), "sub") }
			if overflow {
				for d := range 100 {
					must(t, os.MkdirAll(filepath.Join(h[0].Base, dir(d)), 0o755))
				}
				eventually(t, 30*time.Second, func() bool {
					_, err := os.Stat(filepath.Join(h[2].Base, dir(99)))
					return err == nil
				}, "the burst's directories did not arrive")
				h[0].Signal(syscall.SIGSTOP)
			}
			for d := range 100 {
				must(t, os.MkdirAll(filepath.Join(h[0].Base, dir(d)), 0o755))
				for f := range 100 {
					must(t, os.WriteFile(filepath.Join(h[0].Base, dir(d), fmt.Sprintf("f%03d", f)), []byte(fmt.Sprintf("%d/%d", d, f)), 0o644))
				}
			}
			if overflow {
				h[0].Signal(syscall.SIGCONT)
			}
			count := func(x *Host) int {
				n := 0
				_ = filepath.WalkDir(filepath.Join(x.Base, "burst"), func(_ string, d os.DirEntry, err error) error {
					if err == nil && d.Type().IsRegular() && !stage.IsTempName(d.Name()) {
						n++
					}
					return nil
				})
				return n
			}
			d := eventually(t, 60*time.Second, func() bool {
				for _, x := range h[1:] {
					if count(x) != 10000 {
						return false
					}
				}
				return true
			}, "not all 10,000 files arrived")
			t.Logf("figure: burst of 10,000 files in 100 new dirs (overflow=%v) on every member after %v", overflow, d.Round(time.Millisecond))
			if overflow {
				if !strings.Contains(h[0].Log(), "max_queued_events") {
					t.Fatalf("no overflow logged:\n%s", h[0].Log())
				}
				sum := fileSum(t, filepath.Join(h[0].Base, "burst", "d042", "sub", "f042"))
				if got := fileSum(t, filepath.Join(h[2].Base, "burst", "d042", "sub", "f042")); got != sum {
					t.Fatal("content differs")
				}
			}
		})
	}
}
