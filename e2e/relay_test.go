package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRelay: three segments behind a router that forwards no multicast;
// every member multicasts inside its segment (sealed, -k) and is a relay
// candidate of it (--segment, --relay-peer naming the other segments' members). One
// relay per segment is elected; every member lists all six; a push from
// segment 1 reaches every member, and the router's link into each other
// segment carries it once, not once per member there. During the relayed
// pushes the router passes only the relays' traffic between segments, so
// every member's answers must cross through the relays.
func TestRelay(t *testing.T) {
	lab := NewUnicastLab(t, 3, 2)
	segs := lab.Segments
	// Sealed, as across segments it should be: the relays forward the
	// origin's sealed bytes and seal their envelopes.
	keyFile := filepath.Join(t.TempDir(), "key")
	must(t, os.WriteFile(keyFile, []byte("relay lab key 0123456789 abcdefghij\n"), 0o600))
	for s, seg := range segs {
		// Room for the relay's envelope in a 1500-byte MTU.
		args := []string{"-m", routedGroup, "-k", keyFile, "--segment", fmt.Sprintf("seg%d", s+1), "--datagram-size", "1400",
			"--heartbeat", "250ms", "--missed-heartbeats", "8"}
		args = append(args, otherSegments(segs, s, "--relay-peer")...)
		for _, x := range seg {
			x.Start(args...)
		}
	}
	all := hostNames(lab.Hosts)
	d := eventually(t, 15*time.Second, func() bool { return allSee(lab.Hosts, all) }, "relayed members did not all meet")
	t.Logf("figure: relays: every member lists all 6 after %v", d.Round(time.Millisecond))
	eventually(t, 10*time.Second, func() bool { return oneActiveEach(t, segs) }, "not one active relay per segment")
	checkSegmentsListed(t, segs)
	// Between segments only the relays' sockets talk: a member's answer
	// straight to the origin would be dropped, so the pushes below
	// succeed only if every answer went through the relays.
	lab.relaysOnly(t, true)

	src := segs[0][0]
	writeRandom(t, filepath.Join(src.Base, "big.bin"), 8*mib, 7)
	var before [3]int64
	for s := range segs {
		before[s] = lab.routerTx(t, s+1)
	}
	out := push(t, src, 0, "--expect", "5", "big.bin")
	for _, x := range lab.Hosts[1:] {
		if !strings.Contains(out, x.Name) {
			t.Errorf("msync lists no result of %s:\n%s", x.Name, out)
		}
	}
	want := fileSum(t, filepath.Join(src.Base, "big.bin"))
	for _, x := range lab.Hosts[1:] {
		if got := fileSum(t, filepath.Join(x.Base, "big.bin")); got != want {
			t.Errorf("%s: content differs", x.Name)
		}
	}
	var relayLink int64
	for s := 1; s < len(segs); s++ {
		link := lab.routerTx(t, s+1) - before[s]
		relayLink = max(relayLink, link)
		t.Logf("figure: relays, 8 MiB from segment 1 to 5 members: %.2f MiB on the router's link into segment %d (2 members)", float64(link)/mib, s+1)
		// One copy and the envelopes' and headers' overhead; two copies
		// would be one per member.
		if link < 8*mib || link > 8*mib*5/4 {
			t.Errorf("the link into segment %d carried %d bytes, want about one copy of 8 MiB", s+1, link)
		}
	}
	for name, c := range dropCounters(t, lab.Hosts) {
		// Nothing a relay or a member sent in good faith is refused, and
		// with one active relay per segment throughout, nothing arrives
		// twice nor falls behind the replay window.
		if n := c["dropped_relay_refused"]; n != 0 {
			t.Errorf("%s: %d datagrams refused as relay_refused", name, n)
		}
		if n := c["dropped_replay"]; n != 0 {
			t.Errorf("%s: %d datagrams refused as replays; relay roles:\n%s", name, n, roleChanges(lab.Hosts))
		}
		if n := c["dropped_relay_queue_full"] + c["dropped_queue_full"]; n > 0 {
			t.Logf("figure: relays: %s dropped %d relay_queue_full, %d queue_full", name,
				c["dropped_relay_queue_full"], c["dropped_queue_full"])
		}
	}
	var relayedOut float64
	for _, x := range segs[0] {
		relayedOut += relayedTotal(t, x, "out")
	}
	if relayedOut == 0 {
		t.Error("segment 1's relays forwarded nothing: the push did not go through them")
	}
	checkAnswersRelayed(t, segs)

	// Segment 2's active relay dies: the other member takes over within
	// the missed heartbeats, and the next push reaches it.
	dead := activeOf(t, segs[1])
	dead.Kill()
	alive := segs[1][0]
	if alive == dead {
		alive = segs[1][1]
	}
	d = eventually(t, 15*time.Second, func() bool {
		st, err := alive.Status()
		return err == nil && st.Relay == "active"
	}, "%s did not take over from the killed relay %s", alive.Name, dead.Name)
	t.Logf("figure: relays: the standby took over %v after the active relay was killed", d.Round(time.Millisecond))
	writeRandom(t, filepath.Join(src.Base, "after.bin"), mib, 8)
	eventually(t, 15*time.Second, func() bool { return len(src.Hostnames()) == 5 }, "the killed relay did not leave the members: %q", src.Hostnames())
	push(t, src, 0, "--expect", "4", "after.bin")
	if got, want := fileSum(t, filepath.Join(alive.Base, "after.bin")), fileSum(t, filepath.Join(src.Base, "after.bin")); got != want {
		t.Errorf("%s: after.bin differs after the take-over", alive.Name)
	}

	t.Logf("figure: relays: %d datagrams between segments dropped for not being the relays'", lab.relaysOnlyDropped(t))

	// The same push in mixed mode, for comparison: a unicast copy per
	// member of the other segments, from the sender itself.
	lab.relaysOnly(t, false)
	for _, x := range lab.Hosts {
		x.Kill()
	}
	for s, seg := range segs {
		args := []string{"-m", routedGroup, "-k", keyFile, "--mixed", "--heartbeat", "250ms", "--missed-heartbeats", "8"}
		args = append(args, otherSegments(segs, s, "--peer")...)
		for _, x := range seg {
			x.Start(args...)
		}
	}
	eventually(t, 15*time.Second, func() bool { return allSee(lab.Hosts, all) }, "mixed-mode members did not all meet")
	writeRandom(t, filepath.Join(src.Base, "mixed.bin"), 8*mib, 9)
	b2 := lab.routerTx(t, 2)
	push(t, src, 0, "mixed.bin")
	mixedLink := lab.routerTx(t, 2) - b2
	t.Logf("figure: mixed mode (no relay), 8 MiB from segment 1 to 5 members: %.2f MiB on the router's link into segment 2 (2 members)",
		float64(mixedLink)/mib)
	if relayLink*3/2 > mixedLink {
		t.Errorf("relays put %d bytes on a link, mixed mode %d: relays should carry one copy where mixed mode carries one per member", relayLink, mixedLink)
	}
}

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
