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

// TestResyncNoChange: a resync of 5,000 files with nothing changed costs
// a few datagrams (under 200 KiB), also after every daemon restarted (the
// index survived in the state directory: nothing is re-read); a change
// below one directory offers only that directory, and --delete leaves the
// matching rest alone.
func TestResyncNoChange(t *testing.T) {
	resyncNoChange(t, NewLab(t, 4), 50, 100)
}

// resyncNoChange is TestResyncNoChange's body, for a tree of dirs
// directories of files files each (at least 8 of each), on any lab of 4
// hosts; the wire budget is 200 KiB per copy the sender's uplink carries
// (one by multicast, one per receiver by unicast).
func resyncNoChange(t *testing.T, lab *Lab, dirs, files int) {
	t.Helper()
	lab.StartAll()
	h := lab.Hosts
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == 4 }, "members did not join")
	budget := int64(max(lab.copies, 1)) * 200 << 10
	for d := range dirs {
		dir := filepath.Join(h[0].Base, "tree", fmt.Sprintf("d%02d", d))
		must(t, os.MkdirAll(dir, 0o755))
		for f := range files {
			must(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", f)), []byte(strings.Repeat(fmt.Sprintf("%d.%d ", d, f), 600)), 0o644))
		}
	}
	push(t, h[0], 0, "-r")
	want := treeSnapshot(t, h[0].Base)
	// Files written within the index's racy window (2 s: a write in the
	// same timestamp tick would not change the cache key) are read once
	// more at their next observation; let it pass so that the next resync
	// settles every index for good.
	time.Sleep(2500 * time.Millisecond)

	resync := func(when string) {
		t.Helper()
		start := time.Now()
		wire := pushCounted(t, h[0], "-r", "--delete")
		t.Logf("figure: no-change resync of %d files %s: %.3fs, %d bytes on the wire", dirs*files, when, time.Since(start).Seconds(), wire)
		if wire > budget {
			t.Errorf("no-change resync %s cost %d bytes on the wire, want under %d", when, wire, budget)
		}
	}
	resync("")
	for _, x := range h {
		x.Signal(syscall.SIGTERM)
		x.Wait(10 * time.Second)
	}
	lab.StartAll()
	eventually(t, 5*time.Second, func() bool { return len(h[0].Members()) == 4 }, "members did not rejoin")
	for _, x := range h {
		eventually(t, 10*time.Second, func() bool { return strings.Contains(x.Log(), "base directory indexed") }, "%s did not index", x.Name)
		if !strings.Contains(x.Log(), "files_read=0") {
			t.Errorf("%s re-read files after a restart although its index was saved:\n%s", x.Name, x.Log())
		}
	}
	if out, _, _ := h[0].Msync("-n", "-r", "--delete"); !strings.Contains(out, ": 0 would change, 0 failed, 0 deleted") {
		t.Errorf("a dry run after the restart finds changes where the trees are equal:\n%.2000s", out)
	}
	resync("after every daemon restarted")
	for _, r := range h[1:] {
		sameTree(t, r.Name, want, r.Base)
	}

	must(t, os.WriteFile(filepath.Join(h[0].Base, "tree", "d07", "f007"), []byte("changed"), 0o644))
	out := push(t, h[0], 0, "-r", "--delete")
	if !strings.Contains(out, "tree/d07/f007  h2,h3,h4") || strings.Contains(out, "delete  ") {
		t.Fatalf("one changed file:\n%s", out)
	}
	want = treeSnapshot(t, h[0].Base)
	for _, r := range h[1:] {
		sameTree(t, r.Name, want, r.Base)
	}
}
