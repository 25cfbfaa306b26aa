package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRouted: a cluster across three segments joined by a multicast router
// (smcrouted, static (*,G) routes), on an administratively scoped group
// with a TTL above 1. Every member lists the eight others, a push from
// segment 1 reaches all nine byte for byte, and the router is what carries
// it: stopped, each segment sees only its own members; started again, all
// nine rejoin.
func TestRouted(t *testing.T) {
	lab := NewRoutedLab(t, 3, 3)
	// Quick heartbeats, so that the partition below shows within a second
	// or two; 8 missed keeps a loaded machine from expiring a live member.
	lab.StartAll("-m", routedGroup, "--ttl", "8", "--heartbeat", "250ms", "--missed-heartbeats", "8")
	var all []string
	for _, h := range lab.Hosts {
		all = append(all, h.Name)
	}
	slices.Sort(all)
	d := eventually(t, 10*time.Second, func() bool { return allSee(lab.Hosts, all) }, "not every member lists all 9 across the router")
	t.Logf("figure: routed join: every member lists all 9 after %v", d.Round(time.Millisecond))
	for _, h := range lab.Hosts {
		out, errOut, code := h.Msync("--members")
		if code != 0 || !strings.HasSuffix(out, "Total: 8 members\n") {
			t.Fatalf("%s: msync --members: exit %d\n%s%s", h.Name, code, out, errOut)
		}
		for _, name := range all {
			if !strings.Contains(out, name+" ") {
				t.Fatalf("%s: msync --members lacks %s:\n%s", h.Name, name, out)
			}
		}
	}

	src := lab.Segments[0][0]
	writeTreeFiles(t, src.Base, map[string]string{
		"site/index.html":     "<h1>routed</h1>\n",
		"site/css/style.css":  "body { margin: 0 }\n",
		"site/empty/":         "",
		"etc/app.conf":        "listen = 8080\n",
		"site/img/.keep":      "",
		"site/js/app.min.js":  strings.Repeat("x", 5000),
		"site/robots.txt":     "User-agent: *\n",
		"etc/deep/er/path.md": "deep",
	})
	writeRandom(t, filepath.Join(src.Base, "site", "blob.bin"), mib, 3)
	want := treeSnapshot(t, src.Base)
	// Segment 3 sits behind a slower link, as a remote site would.
	lab.ShapeLink(3, 50)
	out := push(t, src, 0, "-r")
	if !strings.Contains(out, "8 members") || !strings.Contains(out, " 0 failed") {
		t.Fatalf("push summary: %s", out)
	}
	for _, h := range lab.Hosts[1:] {
		sameTree(t, h.Name, want, h.Base)
	}

	// Without the router each segment is on its own: the members of the
	// other segments expire, those of one's own stay.
	lab.Mroute(false)
	d = eventually(t, 10*time.Second, func() bool {
		for _, seg := range lab.Segments {
			var names []string
			for _, h := range seg {
				names = append(names, h.Name)
			}
			if !allSee(seg, names) {
				return false
			}
		}
		return true
	}, "with the router stopped, members still list other segments")
	t.Logf("figure: router stopped: other segments expired after %v", d.Round(time.Millisecond))
	must(t, os.WriteFile(filepath.Join(src.Base, "site", "local.txt"), []byte("segment 1 only"), 0o644))
	if out := push(t, src, 0, "site/local.txt"); !strings.Contains(out, "2 members") {
		t.Fatalf("push with the router stopped reached other than segment 1's 2 others: %s", out)
	}
	for _, h := range lab.Hosts[1:] {
		if got, inSeg1 := lexists(filepath.Join(h.Base, "site", "local.txt")), slices.Contains(lab.Segments[0], h); got != inSeg1 {
			t.Errorf("%s: site/local.txt there: %v, want %v (router stopped)", h.Name, got, inSeg1)
		}
	}

	lab.Mroute(true)
	d = eventually(t, 10*time.Second, func() bool { return allSee(lab.Hosts, all) }, "with the router back, not every member lists all 9")
	t.Logf("figure: router restarted: all 9 listed again after %v", d.Round(time.Millisecond))
}
