package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// udpSent reads how many UDP datagrams a host has sent (Udp OutDatagrams
// of its namespace): the kernel's own traffic on eth0 (IPv6 router
// solicitations and listener reports in the first seconds of a link) is
// not the daemons'.
func (h *Host) udpSent(t *testing.T) int {
	t.Helper()
	out, _, code := h.Run(t.Context(), "cat", "/proc/net/snmp")
	if code != 0 {
		t.Fatalf("%s: read /proc/net/snmp: exit %d", h.Name, code)
	}
	// Two "Udp:" lines: the field names, then the values.
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == "OutDatagrams" && i < len(f) {
				n, err := strconv.Atoi(f[i])
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
		}
	}
	t.Fatalf("%s: no Udp OutDatagrams in /proc/net/snmp", h.Name)
	return 0
}

// TestWatchTwoWay: every member runs --watch; a change on any member
// reaches all the others, deletes too, and the wire goes back to
// heartbeats only (no echo loop).
func TestWatchTwoWay(t *testing.T) {
	watchTwoWay(t, NewLab(t, 4))
}

// watchTwoWay is TestWatchTwoWay's body, on any lab of 4 hosts.
func watchTwoWay(t *testing.T, lab *Lab) {
	t.Helper()
	lab.StartAll("-w")
	h := lab.Hosts
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == 4 }, "members did not join")
	time.Sleep(200 * time.Millisecond) // watches in place

	has := func(rel, content string) func() bool {
		return func() bool {
			for _, x := range h {
				b, err := os.ReadFile(filepath.Join(x.Base, rel))
				if err != nil || string(b) != content {
					return false
				}
			}
			return true
		}
	}
	for i, x := range h {
		rel := filepath.Join("from", x.Name, "file.txt")
		must(t, os.MkdirAll(filepath.Join(x.Base, "from", x.Name), 0o755))
		content := strings.Repeat(x.Name, 1000+i)
		must(t, os.WriteFile(filepath.Join(x.Base, rel), []byte(content), 0o644))
		d := eventually(t, 5*time.Second, has(rel, content), "a write on %s did not reach every member", x.Name)
		t.Logf("write on %s applied everywhere after %v", x.Name, d.Round(time.Millisecond))
	}
	must(t, os.Remove(filepath.Join(h[2].Base, "from", "h1", "file.txt")))
	eventually(t, 5*time.Second, func() bool {
		for _, x := range h {
			if _, err := os.Lstat(filepath.Join(x.Base, "from", "h1", "file.txt")); err == nil {
				return false
			}
		}
		return true
	}, "a delete on h3 did not reach every member")

	// Idle: within 2 s only heartbeats (about one datagram per member per
	// second) are left on the wire.
	time.Sleep(2 * time.Second)
	before := 0
	for _, x := range h {
		before += x.udpSent(t)
	}
	time.Sleep(3 * time.Second)
	after := 0
	for _, x := range h {
		after += x.udpSent(t)
	}
	// 4 members × 3 s × 1 heartbeat/s, plus slack for jitter; in unicast
	// mode each is one datagram per peer, and each member's peer list
	// (every 10 s) may fall in the window too.
	copies, gossip := max(lab.copies, 1), 0
	if copies > 1 {
		gossip = 4 * copies
	}
	if sent := after - before; sent > (4*3+6)*copies+gossip {
		t.Fatalf("%d datagrams in 3 s of idle: an echo loop keeps the cluster busy", sent)
	} else {
		t.Logf("idle: %d datagrams in 3 s from 4 members, budget %d", sent, (4*3+6)*copies+gossip)
	}
}

// TestWatchConflict: two members write the same path at once; every
// member ends with the newer version (by mtime) and the older one is kept
// as a conflict copy.
func TestWatchConflict(t *testing.T) {
	watchConflict(t, NewLab(t, 3))
}

// watchConflict is TestWatchConflict's body, on any lab of 3 hosts.
func watchConflict(t *testing.T, lab *Lab) {
	t.Helper()
	lab.StartAll("-w", "--watch-quiet", "500ms") // both writes within one quiet period, even on a loaded machine
	h := lab.Hosts
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == 3 }, "members did not join")
	time.Sleep(200 * time.Millisecond)
	older := time.Now().Add(-time.Minute)
	newer := time.Now()
	write := func(x *Host, content string, mtime time.Time) {
		p := filepath.Join(x.Base, "shared.txt")
		must(t, os.WriteFile(p+".tmpw", []byte(content), 0o644))
		must(t, os.Chtimes(p+".tmpw", mtime, mtime))
		must(t, os.Rename(p+".tmpw", p))
	}
	// Both within one debounce period, so neither has seen the other's.
	write(h[1], "older version from h2", older)
	write(h[2], "newer version from h3", newer)
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		done := true
		for _, x := range h {
			b, err := os.ReadFile(filepath.Join(x.Base, "shared.txt"))
			if err != nil || string(b) != "newer version from h3" {
				done = false
			}
		}
		if done {
			break
		}
		if time.Since(start) > 10*time.Second {
			var state []string
			for _, x := range h {
				b, _ := os.ReadFile(filepath.Join(x.Base, "shared.txt"))
				state = append(state, fmt.Sprintf("%s has %q\n%s", x.Name, b, lastLines(x.Log(), 8)))
			}
			t.Fatalf("members did not converge on the newer version:\n%s", strings.Join(state, "\n"))
		}
	}
	// The losing edit is kept, as a conflict copy, and that copy replicates.
	eventually(t, 10*time.Second, func() bool {
		for _, x := range h {
			found := false
			matches, _ := filepath.Glob(filepath.Join(x.Base, "shared.txt.conflict-*"))
			for _, m := range matches {
				if b, err := os.ReadFile(m); err == nil && string(b) == "older version from h2" {
					found = true
				}
			}
			if !found {
				return false
			}
		}
		return true
	}, "the losing version was not kept as a conflict copy on every member")
}
