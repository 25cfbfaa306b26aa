package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCatchUp: a member away (stopped, or partitioned by an nftables rule)
// while 500 files change, 50 are deleted and a directory is renamed on a
// watching source converges by itself once back, with bytes on the wire
// close to the changed bytes.
func TestCatchUp(t *testing.T) {
	for _, how := range []string{"stopped", "partitioned"} {
		t.Run(how, func(t *testing.T) {
			catchUp(t, NewLab(t, 4), how, 1000, 30*time.Second) // away for 30 s, as an operator would see it
		})
	}
}

// catchUp is TestCatchUp's body, on any lab of 4 hosts: h4 is away (how:
// stopped or partitioned) for away while half of a tree of files files
// changes, a twentieth is deleted and a directory is renamed.
func catchUp(t *testing.T, lab *Lab, how string, files int, away time.Duration) {
	t.Helper()
	h := lab.Hosts
	h[0].Start("-w")
	for _, x := range h[1:] {
		x.Start()
	}
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == 4 }, "members did not join")
	page := func(i int) string {
		return filepath.Join(h[0].Base, "site", fmt.Sprintf("d%02d", i%20), fmt.Sprintf("f%04d.html", i))
	}
	for i := range files {
		must(t, os.MkdirAll(filepath.Dir(page(i)), 0o755))
		must(t, os.WriteFile(page(i), []byte(strings.Repeat(fmt.Sprintf("page %d ", i), 300)), 0o644))
	}
	push(t, h[0], 0, "-r")
	eventually(t, 10*time.Second, func() bool { return inSyncEverywhere(h[0]) }, "not in sync after the initial push")

	left := time.Now()
	if how == "stopped" {
		h[3].Signal(syscall.SIGTERM)
		h[3].Wait(5 * time.Second)
	} else {
		lab.script("cut", lab.name, "4", "on")
	}
	changed := 0
	for i := 0; i < files/2; i++ {
		b := []byte(fmt.Sprintf("changed while h4 was away: %d", i))
		must(t, os.WriteFile(page(i), b, 0o644))
		changed += len(b)
	}
	for i := files / 2; i < files/2+files/20; i++ {
		must(t, os.Remove(page(i)))
	}
	must(t, os.Rename(filepath.Join(h[0].Base, "site", "d19"), filepath.Join(h[0].Base, "site", "renamed")))
	// The others follow through the watcher.
	eventually(t, 20*time.Second, func() bool {
		for _, x := range h[1:3] {
			if _, err := os.Stat(filepath.Join(x.Base, "site", "renamed")); err != nil {
				return false
			}
		}
		return true
	}, "the watching source's changes did not reach the present members")
	time.Sleep(time.Until(left.Add(away)))

	before := h[0].txBytes(t)
	start := time.Now()
	if how == "stopped" {
		h[3].Start()
	} else {
		lab.script("cut", lab.name, "4", "off")
	}
	want := treeSnapshot(t, h[0].Base)
	converged := false
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if len(treeDiffs(want, treeSnapshot(t, h[3].Base))) == 0 {
			converged = true
			break
		}
	}
	if !converged {
		diffs := treeDiffs(want, treeSnapshot(t, h[3].Base))
		out, _, _ := h[0].Msync("--members")
		t.Fatalf("h4 did not converge by itself within 60s: %d differences, first %v\nmembers:\n%s\nsource log:\n%s",
			len(diffs), diffs[:min(3, len(diffs))], out, lastLines(h[0].Log(), 30))
	}
	d := time.Since(start)
	wire := h[0].txBytes(t) - before
	t.Logf("figure: catch-up after being %s: converged %.1fs after coming back, %d bytes sent by the source (%d content bytes changed)",
		how, d.Seconds(), wire, changed)
	eventually(t, 10*time.Second, func() bool { return inSyncEverywhere(h[0]) }, "roots still differ after the catch-up")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// labLogs returns the last n lines of every host's log, the source's
// first: a change that does not arrive shows on the member that did not
// apply it (a conflict kept, a failure) as often as on the source.
func labLogs(h []*Host, n int) string {
	var b strings.Builder
	for _, x := range h {
		fmt.Fprintf(&b, "%s log:\n%s\n", x.Name, lastLines(x.Log(), n))
	}
	return b.String()
}

// TestSourceRestart: files changed and deleted while the watching source
// was stopped reach the members once it is back (its saved index tells
// what changed).
func TestSourceRestart(t *testing.T) {
	sourceRestart(t, NewLab(t, 3))
}

// sourceRestart is TestSourceRestart's body, on any lab of 3 hosts.
func sourceRestart(t *testing.T, lab *Lab) {
	t.Helper()
	h := lab.Hosts
	h[0].Start("-w")
	for _, x := range h[1:] {
		x.Start()
	}
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == 3 }, "members did not join")
	for i := range 20 {
		must(t, os.WriteFile(filepath.Join(h[0].Base, fmt.Sprintf("f%02d", i)), []byte(fmt.Sprint("v1 ", i)), 0o644))
	}
	push(t, h[0], 0, "-r")
	time.Sleep(2500 * time.Millisecond) // past the index's racy window
	h[0].Signal(syscall.SIGTERM)
	h[0].Wait(10 * time.Second)
	must(t, os.WriteFile(filepath.Join(h[0].Base, "f03"), []byte("changed while stopped"), 0o644))
	must(t, os.WriteFile(filepath.Join(h[0].Base, "new"), []byte("created while stopped"), 0o644))
	must(t, os.Remove(filepath.Join(h[0].Base, "f07")))
	h[0].Start("-w")
	want := treeSnapshot(t, h[0].Base)
	start := time.Now()
	for !func() bool {
		for _, x := range h[1:] {
			if len(treeDiffs(want, treeSnapshot(t, x.Base))) != 0 {
				return false
			}
		}
		return true
	}() {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("changes made while the source was stopped did not reach the members; source log:\n%s", lastLines(h[0].Log(), 15))
		}
		time.Sleep(100 * time.Millisecond)
	}
	d := time.Since(start)
	t.Logf("figure: changes made while the source was stopped reached every member %v after its restart", d.Round(time.Millisecond))
}
