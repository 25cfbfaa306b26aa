package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The msync options end to end: a lab of one sender (h1) and three
// receivers (h2, h3, h4); every test checks the trees on every receiver,
// msync's exit code and its output lines.

const allRcv = "h2,h3,h4"

// optionsLab starts the standard 1 + 3 lab on lab (4 hosts).
func optionsLab(t *testing.T, lab *Lab) (sender *Host, receivers []*Host) {
	t.Helper()
	startLabOn(t, lab)
	return lab.Hosts[0], lab.Hosts[1:]
}

// TestMsyncRecursiveDelete: msync -r sends a tree; msync -r --delete DIR
// then deletes on the receivers what DIR no longer holds on the sender,
// leaves everything outside DIR alone, and spares excluded paths.
func TestMsyncRecursiveDelete(t *testing.T) {
	msyncRecursiveDelete(t, NewLab(t, 4))
}

// msyncRecursiveDelete is TestMsyncRecursiveDelete's body,
// on any lab of 4 hosts.
func msyncRecursiveDelete(t *testing.T, lab *Lab) {
	t.Helper()
	h1, rcv := optionsLab(t, lab)
	writeTreeFiles(t, h1.Base, map[string]string{
		"site/a.txt":     "alpha",
		"site/b.txt":     "bravo",
		"site/sub/c.txt": "charlie",
		"site/empty/":    "",
		"other/o.txt":    "oscar",
	})
	out := parseMsyncOutput(t, stdoutOf(runMsync(t, h1, 0, "-r", "site", "other")))
	expectPathLines(t, out, map[string]string{
		"update site": allRcv, "update site/empty": allRcv, "update site/sub": allRcv, "update other": allRcv,
		"send site/a.txt": allRcv, "send site/b.txt": allRcv, "send site/sub/c.txt": allRcv, "send other/o.txt": allRcv,
	})
	if !strings.HasPrefix(out.summary, "3 members, 8 paths: 8 changed, 0 failed, 0 deleted;") {
		t.Errorf("summary %q", out.summary)
	}
	expectSameTree(t, h1, rcv, "after msync -r")
	// A second push finds nothing to do.
	out = parseMsyncOutput(t, stdoutOf(runMsync(t, h1, 0, "-r", "site", "other")))
	expectPathLines(t, out, map[string]string{})
	if !strings.HasPrefix(out.summary, "3 members, 8 paths: 0 changed, 0 failed, 0 deleted;") {
		t.Errorf("summary of a push with nothing to do: %q", out.summary)
	}

	// Receivers gain paths of their own, inside and outside site; the sender
	// loses some inside and outside site.
	for _, h := range rcv {
		writeTreeFiles(t, h.Base, map[string]string{
			"site/stray.txt":       "only on " + h.Name,
			"site/straydir/x.txt":  "only on " + h.Name,
			"site/mine.keep":       "kept on " + h.Name,
			"site/sub/nested.keep": "kept on " + h.Name,
			"top.txt":              "outside site on " + h.Name,
		})
	}
	removePaths(t, h1.Base, "site/b.txt", "site/sub", "other/o.txt")
	before := map[string]map[string]string{}
	for _, h := range rcv {
		before[h.Name] = describeTree(t, h.Base)
	}

	out = parseMsyncOutput(t, stdoutOf(runMsync(t, h1, 0, "-r", "--delete", "--exclude", "*.keep", "site")))
	expectPathLines(t, out, map[string]string{
		"delete site/b.txt":     allRcv,
		"delete site/stray.txt": allRcv,
		"delete site/straydir":  allRcv,
		// The mirror walks into a directory the sender lacks, so that
		// excluded paths in it survive; every deleted path is listed.
		"delete site/straydir/x.txt": allRcv,
		"delete site/sub/c.txt":      allRcv,
	})
	if !strings.HasPrefix(out.summary, "3 members, ") || !strings.Contains(out.summary, " 0 failed, 15 deleted;") {
		t.Errorf("summary %q", out.summary)
	}
	for _, h := range rcv {
		// Everything the sender has under site, everything outside site as
		// it was, and the excluded files, with the directory that holds one.
		want := subtreeOf(describeTree(t, h1.Base), "site")
		for p, v := range before[h.Name] {
			if p != "site" && !strings.HasPrefix(p, "site/") {
				want[p] = v
			}
		}
		want["site/mine.keep"] = before[h.Name]["site/mine.keep"]
		want["site/sub"] = "dir"
		want["site/sub/nested.keep"] = before[h.Name]["site/sub/nested.keep"]
		expectTree(t, h, want, "after msync -r --delete --exclude '*.keep' site")
		if _, ok := describeTree(t, h.Base)["other/o.txt"]; !ok {
			t.Errorf("%s: other/o.txt, outside the pushed directory, was deleted", h.Name)
		}
	}

	// The whole base: what the sender lacks goes everywhere, excluded
	// files stay.
	out = parseMsyncOutput(t, stdoutOf(runMsync(t, h1, 0, "-r", "--delete", "--exclude", "*.keep")))
	expectPathLines(t, out, map[string]string{"delete other/o.txt": allRcv, "delete top.txt": allRcv})
	for _, h := range rcv {
		want := describeTree(t, h1.Base)
		want["site/mine.keep"] = before[h.Name]["site/mine.keep"]
		want["site/sub"] = "dir"
		want["site/sub/nested.keep"] = before[h.Name]["site/sub/nested.keep"]
		expectTree(t, h, want, "after msync -r --delete --exclude '*.keep'")
	}
}

// TestMsyncDeleteNeedsRecursive: --delete on a directory without -r offers
// the directory alone; it must not wipe what the receivers hold below it,
// least of all files the sender has too.
func TestMsyncDeleteNeedsRecursive(t *testing.T) {
	msyncDeleteNeedsRecursive(t, NewLab(t, 4))
}

// msyncDeleteNeedsRecursive is TestMsyncDeleteNeedsRecursive's body,
// on any lab of 4 hosts.
func msyncDeleteNeedsRecursive(t *testing.T, lab *Lab) {
	t.Helper()
	h1, rcv := optionsLab(t, lab)
	writeTreeFiles(t, h1.Base, map[string]string{"site/a.txt": "alpha", "site/sub/b.txt": "bravo"})
	runMsync(t, h1, 0, "-r", "site")
	sent := describeTree(t, h1.Base)
	for _, h := range rcv {
		expectTree(t, h, sent, "after msync -r site")
	}
	stdout, stderr, code := h1.Msync("--delete", "site")
	t.Logf("h1$ msync --delete site  (exit %d)\n%s%s", code, stdout, stderr)
	switch code {
	case 2: // refused as a usage error: fine
	case 0:
		if out := parseMsyncOutput(t, stdout); len(out.paths) > 0 {
			t.Errorf("msync --delete site without -r changed paths on the members: %v", out.paths)
		}
	default:
		t.Errorf("msync --delete site without -r: exit %d", code)
	}
	for _, h := range rcv {
		expectTree(t, h, sent, "after msync --delete site (no -r)")
	}
}

// TestMsyncSync: a path deleted on the sender is deleted on the members
// with --sync; without --sync it is an error.
func TestMsyncSync(t *testing.T) {
	msyncSync(t, NewLab(t, 4))
}

// msyncSync is TestMsyncSync's body, on any lab of 4 hosts.
func msyncSync(t *testing.T, lab *Lab) {
	t.Helper()
	h1, rcv := optionsLab(t, lab)
	writeTreeFiles(t, h1.Base, map[string]string{
		"gone.txt":        "going",
		"gonedir/x.txt":   "x",
		"gonedir/y/z.txt": "z",
		"keep.txt":        "staying",
	})
	runMsync(t, h1, 0, "-r")
	full := describeTree(t, h1.Base)
	for _, h := range rcv {
		expectTree(t, h, full, "after msync -r")
	}
	removePaths(t, h1.Base, "gone.txt", "gonedir")

	_, stderr := runMsync(t, h1, 2, "gone.txt")
	if want := "msync: makuosan: gone.txt: no such file or directory (use --sync to delete it on the members)\n"; stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
	for _, h := range rcv {
		expectTree(t, h, full, "after a failed msync gone.txt")
	}

	out := parseMsyncOutput(t, stdoutOf(runMsync(t, h1, 0, "--sync", "gone.txt", "gonedir")))
	expectPathLines(t, out, map[string]string{"delete gone.txt": allRcv, "delete gonedir": allRcv})
	if !strings.HasPrefix(out.summary, "3 members, 2 paths: 2 changed, 0 failed, 0 deleted;") {
		t.Errorf("summary %q", out.summary)
	}
	left := describeTree(t, h1.Base)
	for _, h := range rcv {
		expectTree(t, h, left, "after msync --sync gone.txt gonedir")
	}

	// Again: nothing left to delete.
	out = parseMsyncOutput(t, stdoutOf(runMsync(t, h1, 0, "--sync", "gone.txt")))
	expectPathLines(t, out, map[string]string{})
	if !strings.HasPrefix(out.summary, "3 members, 1 path: 0 changed, 0 failed") {
		t.Errorf("summary %q", out.summary)
	}
	// --sync on a path that exists is an ordinary push.
	writeTreeFiles(t, h1.Base, map[string]string{"keep.txt": "changed"})
	out = parseMsyncOutput(t, stdoutOf(runMsync(t, h1, 0, "--sync", "keep.txt")))
	expectPathLines(t, out, map[string]string{"send keep.txt": allRcv})
	expectSameTree(t, h1, rcv, "after msync --sync keep.txt")
}

// TestMsyncCheck: --check compares content on every member, reports each
// differing path with the members it differs on, exits 1 if any, and
// changes nothing.
func TestMsyncCheck(t *testing.T) {
	msyncCheck(t, NewLab(t, 4))
}

// msyncCheck is TestMsyncCheck's body, on any lab of 4 hosts.
func msyncCheck(t *testing.T, lab *Lab) {
	t.Helper()
	h1, rcv := optionsLab(t, lab)
	h2, h3, h4 := rcv[0], rcv[1], rcv[2]
	writeTreeFiles(t, h1.Base, map[string]string{
		"site/a.txt":     "hello world",
		"site/b.txt":     "0123456789",
		"site/sub/c.txt": "charlie",
	})
	runMsync(t, h1, 0, "-r")
	expectSameTree(t, h1, rcv, "after msync -r")

	// Equal content, but h2's copy of a.txt has another mtime: a check
	// compares content, not metadata.
	touched := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(h2.Base, "site/a.txt"), touched, touched); err != nil {
		t.Fatal(err)
	}
	before := map[string]map[string]string{}
	for _, h := range rcv {
		before[h.Name] = describeTree(t, h.Base)
	}
	out := parseMsyncOutput(t, stdoutOf(runMsync(t, h1, 0, "-r", "--check")))
	expectPathLines(t, out, map[string]string{})
	if !strings.HasPrefix(out.summary, "3 members, 6 paths: 0 differ, 0 failed, 0 deleted;") {
		t.Errorf("summary %q", out.summary)
	}
	for _, h := range rcv {
		expectTree(t, h, before[h.Name], "after msync -r --check (all equal)")
	}

	// Behind the daemons' backs: h3's b.txt gets other bytes of the same
	// size and its old mtime back; h4 loses sub/c.txt.
	b3 := filepath.Join(h3.Base, "site/b.txt")
	fi, err := os.Stat(b3)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b3, []byte("9876543210"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(b3, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	removePaths(t, h4.Base, "site/sub/c.txt")
	for _, h := range rcv {
		before[h.Name] = describeTree(t, h.Base)
	}
	out = parseMsyncOutput(t, stdoutOf(runMsync(t, h1, 1, "-r", "--check")))
	expectPathLines(t, out, map[string]string{"differs site/b.txt": "h3", "differs site/sub/c.txt": "h4"})
	if !strings.HasPrefix(out.summary, "3 members, 6 paths: 2 differ, 0 failed, 0 deleted;") {
		t.Errorf("summary %q", out.summary)
	}
	if !strings.Contains(out.summary, "; 0 B sent") {
		t.Errorf("--check sent content: %q", out.summary)
	}
	for _, h := range rcv {
		expectTree(t, h, before[h.Name], "after msync -r --check (h3, h4 differ)")
	}
	// Checking one path only reports that path.
	out = parseMsyncOutput(t, stdoutOf(runMsync(t, h1, 1, "--check", "site/b.txt")))
	expectPathLines(t, out, map[string]string{"differs site/b.txt": "h3"})
	out = parseMsyncOutput(t, stdoutOf(runMsync(t, h1, 0, "--check", "site/a.txt")))
	expectPathLines(t, out, map[string]string{})
	for _, h := range rcv {
		expectTree(t, h, before[h.Name], "after single-path checks")
	}
}

// TestMsyncDryRun: -n prints what would change on which member and
// changes nothing anywhere.
func TestMsyncDryRun(t *testing.T) {
	msyncDryRun(t, NewLab(t, 4))
}

// msyncDryRun is TestMsyncDryRun's body, on any lab of 4 hosts.
func msyncDryRun(t *testing.T, lab *Lab) {
	t.Helper()
	h1, rcv := optionsLab(t, lab)
	h2 := rcv[0]
	writeTreeFiles(t, h1.Base, map[string]string{
		"site/a.txt":   "alpha",
		"site/b.txt":   "bravo",
		"site/old.txt": "old",
	})
	runMsync(t, h1, 0, "-r", "site")

	// On the sender: a.txt changes, b.txt is only touched, new.txt
	// appears, old.txt goes. h2 already has new.txt, identical.
	writeTreeFiles(t, h1.Base, map[string]string{"site/a.txt": "alpha, longer", "site/new.txt": "new"})
	touched := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(filepath.Join(h1.Base, "site/b.txt"), touched, touched); err != nil {
		t.Fatal(err)
	}
	removePaths(t, h1.Base, "site/old.txt")
	fi, err := os.Stat(filepath.Join(h1.Base, "site/new.txt"))
	if err != nil {
		t.Fatal(err)
	}
	writeTreeFiles(t, h2.Base, map[string]string{"site/new.txt": "new"})
	if err := os.Chtimes(filepath.Join(h2.Base, "site/new.txt"), fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	before := map[string]map[string]string{}
	for _, h := range rcv {
		before[h.Name] = describeTree(t, h.Base)
	}

	out := parseMsyncOutput(t, stdoutOf(runMsync(t, h1, 0, "-n", "-r", "--delete", "site")))
	expectPathLines(t, out, map[string]string{
		"send site/a.txt":     allRcv,
		"update site/b.txt":   allRcv,
		"send site/new.txt":   "h3,h4",
		"delete site/old.txt": allRcv,
	})
	if !strings.HasPrefix(out.summary, "3 members, 4 paths: 3 would change, 0 failed, 3 deleted;") ||
		!strings.Contains(out.summary, "; 0 B sent") {
		t.Errorf("summary %q", out.summary)
	}
	for _, h := range rcv {
		expectTree(t, h, before[h.Name], "after msync -n")
	}

	// The real push does what the dry run announced.
	out = parseMsyncOutput(t, stdoutOf(runMsync(t, h1, 0, "-r", "--delete", "site")))
	expectPathLines(t, out, map[string]string{
		"send site/a.txt": allRcv, "update site/b.txt": allRcv, "send site/new.txt": "h3,h4", "delete site/old.txt": allRcv,
	})
	expectSameTree(t, h1, rcv, "after msync -r --delete site")
}

// TestMsyncTargets: -t narrows a push to the named members (by hostname or
// address, repeatable); an unknown member is an error that changes nothing.
func TestMsyncTargets(t *testing.T) {
	msyncTargets(t, NewLab(t, 4))
}

// msyncTargets is TestMsyncTargets's body, on any lab of 4 hosts.
func msyncTargets(t *testing.T, lab *Lab) {
	t.Helper()
	h1, rcv := optionsLab(t, lab)
	h2, h3, h4 := rcv[0], rcv[1], rcv[2]
	writeTreeFiles(t, h1.Base, map[string]string{"one.txt": "1", "two.txt": "2", "three.txt": "3", "none.txt": "0"})
	sent := describeTree(t, h1.Base)

	out := parseMsyncOutput(t, stdoutOf(runMsync(t, h1, 0, "-t", "h3", "one.txt")))
	expectPathLines(t, out, map[string]string{"send one.txt": "h3"})
	if !strings.HasPrefix(out.summary, "1 member, 1 path: 1 changed, 0 failed") {
		t.Errorf("summary %q", out.summary)
	}
	out = parseMsyncOutput(t, stdoutOf(runMsync(t, h1, 0, "-t", "h3", "-t", "h4", "two.txt")))
	expectPathLines(t, out, map[string]string{"send two.txt": "h3,h4"})
	out = parseMsyncOutput(t, stdoutOf(runMsync(t, h1, 0, "-t", h4.Addr, "three.txt")))
	expectPathLines(t, out, map[string]string{"send three.txt": "h4"})

	_, stderr := runMsync(t, h1, 2, "-t", "nosuch", "none.txt")
	if !strings.HasPrefix(stderr, "msync: ") || !strings.Contains(stderr, `"nosuch"`) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr %q: want one line naming the member \"nosuch\"", stderr)
	}
	_, stderr = runMsync(t, h1, 2, "-t", "h2", "-t", "nosuch", "none.txt")
	if !strings.Contains(stderr, `"nosuch"`) {
		t.Errorf("stderr %q: want it to name the member \"nosuch\"", stderr)
	}

	pick := func(paths ...string) map[string]string {
		m := map[string]string{}
		for _, p := range paths {
			m[p] = sent[p]
		}
		return m
	}
	expectTree(t, h2, pick(), "after targeted pushes")
	expectTree(t, h3, pick("one.txt", "two.txt"), "after targeted pushes")
	expectTree(t, h4, pick("two.txt", "three.txt"), "after targeted pushes")
}

// TestMsyncExclude: --exclude and --exclude-from keep matching paths from
// being sent; bad patterns and unreadable files are usage errors.
func TestMsyncExclude(t *testing.T) {
	msyncExclude(t, NewLab(t, 4))
}

// msyncExclude is TestMsyncExclude's body, on any lab of 4 hosts.
func msyncExclude(t *testing.T, lab *Lab) {
	t.Helper()
	h1, rcv := optionsLab(t, lab)
	writeTreeFiles(t, h1.Base, map[string]string{
		"www/index.html":     "<html>",
		"www/debug.log":      "log",
		"www/cache/c1.dat":   "cache",
		"www/img/a.png":      "png",
		"www/img/a.png.bak":  "backup",
		"www/tmp/t.txt":      "tmp",
		"www/deep/tmp/u.txt": "not anchored, sent",
	})
	from := filepath.Join(t.TempDir(), "excludes")
	if err := os.WriteFile(from, []byte("# editor and cache junk\ncache/\n\n*.bak\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := parseMsyncOutput(t, stdoutOf(runMsync(t, h1, 0, "-r", "--exclude", "*.log", "--exclude-from", from, "--exclude", "/www/tmp", "www")))
	expectPathLines(t, out, map[string]string{
		"update www": allRcv, "send www/index.html": allRcv, "update www/img": allRcv, "send www/img/a.png": allRcv,
		"update www/deep": allRcv, "update www/deep/tmp": allRcv, "send www/deep/tmp/u.txt": allRcv,
	})
	want := withoutPaths(describeTree(t, h1.Base), "www/debug.log", "www/cache", "www/cache/c1.dat",
		"www/img/a.png.bak", "www/tmp", "www/tmp/t.txt")
	for _, h := range rcv {
		expectTree(t, h, want, "after msync -r with excludes")
	}

	_, stderr := runMsync(t, h1, 2, "-r", "--exclude-from", "/nonexistent/excludes", "www")
	if !strings.HasPrefix(stderr, "msync: --exclude-from: ") || !strings.Contains(stderr, "/nonexistent/excludes") {
		t.Errorf("stderr %q", stderr)
	}
	_, stderr = runMsync(t, h1, 2, "-r", "--exclude", "[", "www")
	if !strings.HasPrefix(stderr, "msync: ") || !strings.Contains(stderr, "[") {
		t.Errorf("stderr %q", stderr)
	}
	for _, h := range rcv {
		expectTree(t, h, want, "after failed msync runs")
	}
}

// TestMsyncRoles: a member started with -r never receives (and is not a
// valid -t target); msync on a member started with -s is refused.
func TestMsyncRoles(t *testing.T) {
	msyncRoles(t, NewLab(t, 4))
}

// msyncRoles is TestMsyncRoles's body, on any lab of 4 hosts.
func msyncRoles(t *testing.T, lab *Lab) {
	t.Helper()
	startLabOn(t, lab, nil, nil, []string{"-s"}, []string{"-r"})
	h1, h2, h3, h4 := lab.Hosts[0], lab.Hosts[1], lab.Hosts[2], lab.Hosts[3]
	writeTreeFiles(t, h1.Base, map[string]string{"f.txt": "from h1", "d/g.txt": "from h1"})
	out := parseMsyncOutput(t, stdoutOf(runMsync(t, h1, 0, "-r")))
	expectPathLines(t, out, map[string]string{"send f.txt": "h2,h3", "update d": "h2,h3", "send d/g.txt": "h2,h3"})
	if !strings.HasPrefix(out.summary, "2 members, 4 paths: 3 changed, 0 failed") {
		t.Errorf("summary %q", out.summary)
	}
	sent := describeTree(t, h1.Base)
	expectTree(t, h2, sent, "after msync -r")
	expectTree(t, h3, sent, "after msync -r (h3 runs with -s: it still receives)")
	expectTree(t, h4, map[string]string{}, "after msync -r (h4 runs with -r)")

	_, stderr := runMsync(t, h1, 2, "-t", "h4", "f.txt")
	if !strings.Contains(stderr, `"h4"`) || !strings.Contains(stderr, "not a live receiving member") {
		t.Errorf("stderr %q", stderr)
	}
	expectTree(t, h4, map[string]string{}, "after msync -t h4")

	// h3 was started with -s: it refuses to push, whatever is asked.
	writeTreeFiles(t, h3.Base, map[string]string{"h3.txt": "from h3"})
	for _, args := range [][]string{{"h3.txt"}, {"-r"}, {"-n", "h3.txt"}} {
		_, stderr = runMsync(t, h3, 2, args...)
		if want := "msync: makuosan: this member was started with -s: it does not send\n"; stderr != want {
			t.Errorf("msync %v on h3: stderr %q, want %q", args, stderr, want)
		}
	}
	for _, h := range []*Host{h1, h2, h4} {
		if lexists(filepath.Join(h.Base, "h3.txt")) {
			t.Errorf("%s got h3.txt from a member started with -s", h.Name)
		}
	}

	// h4 (-r) still sends.
	writeTreeFiles(t, h4.Base, map[string]string{"h4.txt": "from h4"})
	out = parseMsyncOutput(t, stdoutOf(runMsync(t, h4, 0, "h4.txt")))
	expectPathLines(t, out, map[string]string{"send h4.txt": "h1,h2,h3"})
	for _, h := range []*Host{h1, h2, h3} {
		if b, err := os.ReadFile(filepath.Join(h.Base, "h4.txt")); err != nil || string(b) != "from h4" {
			t.Errorf("%s: h4.txt from the -r member: %q, %v", h.Name, b, err)
		}
	}
}

// first returns the first of two values (msync's stdout).
func stdoutOf(a, _ string) string { return a }
