package e2e

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Helpers of the relay tests (TestSegments).

// activeOf returns the active relay of seg.
func activeOf(t *testing.T, seg []*Host) *Host {
	t.Helper()
	for _, x := range seg {
		if st, err := x.Status(); err == nil && st.Relay == "active" {
			return x
		}
	}
	t.Fatal("no active relay in the segment")
	return nil
}

// oneActiveEach reports whether each segment has exactly one active relay
// and every member's status names its segment.
func oneActiveEach(t *testing.T, segs [][]*Host) bool {
	t.Helper()
	for s, seg := range segs {
		active := 0
		for _, x := range seg {
			st, err := x.Status()
			if err != nil {
				t.Fatal(err)
			}
			if st.Segment != fmt.Sprintf("seg%d", s+1) {
				t.Fatalf("%s: status segment %q", x.Name, st.Segment)
			}
			if st.Relay == "active" {
				active++
			}
		}
		if active != 1 {
			return false
		}
	}
	return true
}

func relayedTotal(t *testing.T, h *Host, way string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^makuosan_transport_relayed_total\{way="` + way + `"\} (\S+)$`)
	m := re.FindSubmatch(scrapeMetrics(t, h))
	if m == nil {
		t.Fatalf("%s: no makuosan_transport_relayed_total{way=%q}", h.Name, way)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// checkSegmentsListed checks that segment 1's first member lists every
// member with its segment, in msync --members and as the segment label of
// the member metrics.
func checkSegmentsListed(t *testing.T, segs [][]*Host) {
	t.Helper()
	src := segs[0][0]
	out, errOut, code := src.Msync("--members")
	if code != 0 {
		t.Fatalf("msync --members: exit %d: %s", code, errOut)
	}
	page := string(scrapeMetrics(t, src))
	for s, seg := range segs {
		name := fmt.Sprintf("seg%d", s+1)
		for _, x := range seg {
			line := regexp.MustCompile(`(?m)^` + x.Name + ` .* ` + name + `$`)
			if !line.MatchString(out) {
				t.Errorf("msync --members lists %s without its segment %s:\n%s", x.Name, name, out)
			}
			if x != src && !strings.Contains(page, `hostname="`+x.Name+`",member=`) {
				t.Errorf("/metrics has no member series of %s", x.Name)
			}
		}
		if s > 0 && !strings.Contains(page, `segment="`+name+`"`) {
			t.Errorf("/metrics labels no member with segment %s", name)
		}
	}
}

// roleChanges returns the hosts' log lines about relay roles.
func roleChanges(hosts []*Host) string {
	var b strings.Builder
	for _, x := range hosts {
		for _, l := range strings.Split(x.Log(), "\n") {
			if strings.Contains(l, "relay role changed") {
				fmt.Fprintf(&b, "%s: %s\n", x.Name, l)
			}
		}
	}
	return b.String()
}

// otherSegments returns flag ADDR for every member of the segments but
// segs[s].
func otherSegments(segs [][]*Host, s int, flag string) []string {
	var args []string
	for o, other := range segs {
		if o != s {
			for _, x := range other {
				args = append(args, flag, x.Addr)
			}
		}
	}
	return args
}

// checkAnswersRelayed checks that the other segments' relays carried
// their members' answers to segment 1's relay, which delivered them.
func checkAnswersRelayed(t *testing.T, segs [][]*Host) {
	t.Helper()
	var out, in float64
	for s, seg := range segs {
		for _, x := range seg {
			if s == 0 {
				in += relayedTotal(t, x, "answers_in")
			} else {
				out += relayedTotal(t, x, "answers_out")
			}
		}
	}
	t.Logf("figure: relays: answers carried out of segments 2 and 3: %.0f, delivered in segment 1: %.0f", out, in)
	if out == 0 || in == 0 {
		t.Errorf("answers relayed: %v out of segments 2 and 3, %v delivered in segment 1; want both above 0", out, in)
	}
}

// relaysOnly makes the lab's router forward, between segments, UDP from
// and to the group's port only (the relays' sockets), or everything
// again.
func (l *Lab) relaysOnly(t *testing.T, on bool) {
	t.Helper()
	rule := "delete table inet relaysonly"
	if on {
		rule = "table inet relaysonly {\n chain forward {\n type filter hook forward priority 0; policy accept;\n" +
			" udp sport 5000 udp dport 5000 accept\n meta l4proto udp counter drop\n }\n}"
	}
	cmd := exec.CommandContext(t.Context(), "ip", "netns", "exec", l.name+"-rt", "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rule + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("router: nft %q: %v\n%s", rule, err, out)
	}
}

// relaysOnlyDropped returns what relaysOnly's rule dropped.
func (l *Lab) relaysOnlyDropped(t *testing.T) int64 {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "ip", "netns", "exec", l.name+"-rt", "nft", "list", "table", "inet", "relaysonly").Output()
	if err != nil {
		t.Fatalf("router: nft list table inet relaysonly: %v", err)
	}
	_, rest, ok := strings.Cut(string(out), "counter packets ")
	if !ok {
		t.Fatalf("router: no counter in:\n%s", out)
	}
	n, err := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
	if err != nil {
		t.Fatalf("router: counter: %v", err)
	}
	return n
}
