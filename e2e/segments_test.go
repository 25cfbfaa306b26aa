package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// segmentsLinkMbit is the rate of the router's egress into each segment
// of TestSegments' lab: the links between segments, slower than the
// segments themselves.
const segmentsLinkMbit = 200

// TestSegments: three segments of three members behind a router that
// forwards no multicast, its link into each segment shaped to 200 Mbit/s;
// every member multicasts inside its segment (sealed, -k) and is a relay
// candidate of it. One lab carries, in sequence: a push from segment 1 to
// all nine, each link between segments carrying it once; segment 2's
// active relay killed in the middle of a push; segment 3 cut off for 60 s
// during a push and converging by itself once healed; and mixed mode's
// copy per member, for comparison.
func TestSegments(t *testing.T) {
	lab := NewUnicastLab(t, 3, 3)
	for s := range lab.Segments {
		lab.ShapeLink(s+1, segmentsLinkMbit)
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	must(t, os.WriteFile(keyFile, []byte("segments lab key 0123456789 abcdefghij\n"), 0o600))
	startRelayed(lab, keyFile)
	segs := lab.Segments
	all := hostNames(lab.Hosts)
	d := eventually(t, 20*time.Second, func() bool { return allSee(lab.Hosts, all) }, "relayed members did not all meet")
	t.Logf("figure: relays: every member lists all 9 after %v", d.Round(time.Millisecond))
	eventually(t, 10*time.Second, func() bool { return oneActiveEach(t, segs) }, "not one active relay per segment")

	var relayLink int64
	steps := []struct {
		name string
		f    func(t *testing.T)
	}{
		{"push", func(t *testing.T) { relayLink = segmentsPush(t, lab) }},
		{"relay-killed", func(t *testing.T) { segmentsRelayKilled(t, lab, keyFile) }},
		{"partition", func(t *testing.T) { segmentsPartition(t, lab) }},
		{"mixed", func(t *testing.T) { segmentsMixed(t, lab, keyFile, relayLink) }},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.f) {
			return // the later steps build on this one's state
		}
	}
}

// startRelayed starts every host of lab as a relay candidate of its
// segment. The source, s1h1, watches, so that it leads catch-up and its
// own new files are never "caught up" away by another watcher while they
// wait for their push; its watcher waits an hour for quiet, so that every
// push of the test is msync's, with its result.
func startRelayed(lab *Lab, keyFile string) {
	for s := range lab.Segments {
		for _, x := range lab.Segments[s] {
			startRelayedHost(lab, x, s, keyFile)
		}
	}
}

func startRelayedHost(lab *Lab, x *Host, s int, keyFile string) {
	// Room for the relay's envelope in a 1500-byte MTU.
	args := []string{"-m", routedGroup, "-k", keyFile, "--segment", fmt.Sprintf("seg%d", s+1), "--datagram-size", "1400",
		"--heartbeat", "250ms", "--missed-heartbeats", "8"}
	args = append(args, otherSegments(lab.Segments, s, "--relay-peer")...)
	if x == lab.Segments[0][0] {
		args = append(args, "-w", "--watch-quiet", "1h", "--watch-max-delay", "1h")
	}
	x.Start(args...)
}

// segmentsPush: a push from segment 1 reaches all nine members, the
// router's link into each other segment carries it once (not once per
// member there), nothing is refused, and msync --members and /metrics on
// the source list every member with its segment and its lag.
func segmentsPush(t *testing.T, lab *Lab) int64 {
	segs := lab.Segments
	src := segs[0][0]
	writeRandom(t, filepath.Join(src.Base, "big.bin"), 8*mib, 7)
	var before [3]int64
	for s := range segs {
		before[s] = lab.routerTx(t, s+1)
	}
	// Between segments only the relays' sockets talk during this push: a
	// member's answer straight to the origin would be dropped, so it
	// succeeds only if every answer went through the relays.
	lab.relaysOnly(t, true)
	start := time.Now()
	out := push(t, src, 0, "--expect", "8", "big.bin")
	for _, x := range lab.Hosts[1:] {
		if !strings.Contains(out, x.Name) {
			t.Errorf("msync lists no result of %s:\n%s", x.Name, out)
		}
	}
	t.Logf("figure: relays, 8 MiB from segment 1 to 8 members over 3 segments (links %d Mbit/s): %.2f s",
		segmentsLinkMbit, time.Since(start).Seconds())
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
		t.Logf("figure: relays, 8 MiB from segment 1 to 8 members: %.2f MiB on the router's link into segment %d (3 members)", float64(link)/mib, s+1)
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
	t.Logf("figure: relays: %d datagrams between segments dropped for not being the relays'", lab.relaysOnlyDropped(t))
	lab.relaysOnly(t, false)
	checkSegmentsListed(t, segs)
	eventually(t, 10*time.Second, func() bool { return membersLag(t, src, lab.Hosts) == "" },
		"the source does not list every member in sync with lag 0")
	return relayLink
}

// membersLag checks the source's view of every other host: msync
// --members --json and the member metrics name its segment and give its
// lag. It returns "" when all are in sync with lag 0 (and both agree),
// else what is not yet.
func membersLag(t *testing.T, src *Host, hosts []*Host) string {
	t.Helper()
	bySeg := map[string]string{}
	for _, x := range hosts {
		bySeg[x.Name] = "seg" + x.Name[1:2]
	}
	listed := map[string]bool{}
	var not []string
	for _, m := range src.Members() {
		if m.Self {
			continue
		}
		listed[m.Hostname] = true
		if m.Segment != bySeg[m.Hostname] {
			t.Errorf("msync --members --json: %s in segment %q, want %q", m.Hostname, m.Segment, bySeg[m.Hostname])
		}
		if !m.InSync || m.LagSeconds != 0 {
			not = append(not, fmt.Sprintf("%s: in_sync %v, lag %.1fs, root %s", m.Hostname, m.InSync, m.LagSeconds, m.Root))
		}
	}
	page := string(scrapeMetrics(t, src))
	for _, x := range hosts {
		if x == src {
			continue
		}
		if !listed[x.Name] {
			not = append(not, x.Name+": not listed")
			continue
		}
		for _, metric := range []string{"makuosan_member_lag_seconds", "makuosan_member_in_sync"} {
			re := regexp.MustCompile(`(?m)^` + metric + `\{hostname="` + x.Name + `",member="[0-9a-f]+",segment="` + bySeg[x.Name] + `"\} (\S+)$`)
			m := re.FindStringSubmatch(page)
			switch {
			case m == nil:
				not = append(not, fmt.Sprintf("%s: no %s with segment %s", x.Name, metric, bySeg[x.Name]))
			case metric == "makuosan_member_lag_seconds" && m[1] != "0":
				not = append(not, fmt.Sprintf("%s: %s %s", x.Name, metric, m[1]))
			case metric == "makuosan_member_in_sync" && m[1] != "1":
				not = append(not, fmt.Sprintf("%s: %s %s", x.Name, metric, m[1]))
			}
		}
	}
	return strings.Join(not, "; ")
}

// pushLog returns h's log lines about pushes, catch-up and dropped members.
func pushLog(h *Host) string {
	var b strings.Builder
	for _, l := range strings.Split(h.Log(), "\n") {
		if strings.Contains(l, "push finished") || strings.Contains(l, "catch") || strings.Contains(l, "dropped") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// pushAsync runs msync on h with args in the background; the returned
// function waits for it.
func pushAsync(h *Host, args ...string) func() (out string, code int, took time.Duration) {
	type res struct {
		out  string
		code int
		took time.Duration
	}
	done := make(chan res, 1)
	start := time.Now()
	go func() {
		out, errOut, code := h.Msync(args...)
		done <- res{out + errOut, code, time.Since(start)}
	}()
	return func() (string, int, time.Duration) {
		r := <-done
		return r.out, r.code, r.took
	}
}

// sessionTimeout is the daemons' --session-timeout (the default): how
// long a push waits for a silent member.
const sessionTimeout = 5 * time.Second

// segmentsRelayKilled: segment 2's active relay is SIGKILLed while a
// 48 MiB push crosses into segment 2. The push ends, within the session
// timeout and a push's time of the kill, reporting the dead relay lost;
// its segment's other members are not left half-applied: the result says
// of each that it applied the push (through the relay that took over) or
// was dropped, to be caught up, and those end with the file either way.
// The dead relay, restarted, is caught up too.
func segmentsRelayKilled(t *testing.T, lab *Lab, keyFile string) {
	segs := lab.Segments
	src := segs[0][0]
	writeRandom(t, filepath.Join(src.Base, "nokill.bin"), 48*mib, 11)
	start := time.Now()
	push(t, src, 0, "nokill.bin")
	noKill := time.Since(start)
	t.Logf("figure: relays, 48 MiB from segment 1 to 8 members over 3 segments, no relay killed: %.2f s", noKill.Seconds())

	dead := activeOf(t, segs[1])
	var alive []*Host
	for _, x := range segs[1] {
		if x != dead {
			alive = append(alive, x)
		}
	}
	// Written just before its push: the source's tree differs from the
	// others' only while it is pushed.
	writeRandom(t, filepath.Join(src.Base, "kill.bin"), 48*mib, 12)
	link0 := lab.routerTx(t, 2)
	wait := pushAsync(src, "kill.bin")
	start = time.Now()
	eventually(t, 20*time.Second, func() bool { return lab.routerTx(t, 2)-link0 > 8*mib }, "the push did not reach segment 2")
	dead.Kill()
	killedAt := time.Since(start)
	takeOver := eventually(t, 15*time.Second, func() bool {
		for _, x := range alive {
			if st, err := x.Status(); err == nil && st.Relay == "active" {
				return true
			}
		}
		return false
	}, "no member of segment 2 took over from the killed relay %s", dead.Name)
	t.Logf("figure: relays: %s killed %v into the push; a standby took over %v later", dead.Name,
		killedAt.Round(time.Millisecond), takeOver.Round(time.Millisecond))
	out, code, took := wait()
	t.Logf("msync kill.bin: exit %d after %v:\n%s\nrelay roles:\n%s", code, took.Round(time.Millisecond), out, roleChanges(lab.Hosts))
	t.Logf("figure: relays, 48 MiB from segment 1 to 8 members over 3 segments, segment 2's relay killed: %.2f s, %.2f MiB on the router's link into segment 2",
		took.Seconds(), float64(lab.routerTx(t, 2)-link0)/mib)
	if took <= killedAt {
		t.Fatalf("the push ended (%v) before the relay was killed (%v)", took, killedAt)
	}
	// Not stalled: what the kill adds is at most the session timeout and
	// the repairs of what segment 2 missed (a push's time, with room for
	// the lab's shared CPUs).
	if limit := killedAt + sessionTimeout + 3*noKill; took > limit {
		t.Errorf("the push took %v: stalled past the kill (%v), the session timeout and three times a push's time", took, killedAt)
	}
	if code != 1 {
		t.Errorf("msync kill.bin: exit %d, want 1 (the dead relay did not take it)", code)
	}
	fates := pushFates(out)
	if !strings.Contains(fates[dead.Name], "; lost: not heard since") {
		t.Errorf("the killed relay %s is reported %q, want lost", dead.Name, fates[dead.Name])
	}
	want := fileSum(t, filepath.Join(src.Base, "kill.bin"))
	var dropped []*Host
	for _, x := range alive {
		got := ""
		if _, err := os.Stat(filepath.Join(x.Base, "kill.bin")); err == nil {
			got = fileSum(t, filepath.Join(x.Base, "kill.bin"))
		}
		switch fate := fates[x.Name]; {
		case fate == "applied" && got == want:
		case strings.Contains(fate, "catch-up will bring it in line") && (got == "" || got == want):
			// Dropped: without the file, or with all of it (dropped
			// while it committed); never with part of it.
			dropped = append(dropped, x)
		default:
			// A member reported applied without the file, dropped with
			// part of it, or reported in any other way.
			t.Errorf("%s: reported %q, kill.bin's sum %q (want %q or none)", x.Name, fate, got, want)
		}
	}
	t.Logf("figure: relays: of segment 2's surviving members, %d applied the push through the new relay, %d were dropped to be caught up",
		len(alive)-len(dropped), len(dropped))

	// The dead relay comes back; catch-up brings it and the dropped
	// members in line, and the source lists every member in sync again.
	startRelayedHost(lab, dead, 1, keyFile)
	d := eventually(t, 60*time.Second, func() bool {
		for _, x := range append(dropped, dead) {
			if _, err := os.Stat(filepath.Join(x.Base, "kill.bin")); err != nil || fileSum(t, filepath.Join(x.Base, "kill.bin")) != want {
				return false
			}
		}
		return membersLag(t, src, lab.Hosts) == ""
	}, "segment 2 not caught up after the relay's death: %s; the source's pushes:\n%s",
		lazy(func() string { return membersLag(t, src, lab.Hosts) }), lazy(func() string { return pushLog(src) }))
	t.Logf("figure: relays: the restarted relay and the dropped members caught up %v after the restart", d.Round(time.Millisecond))
	for _, x := range segs[1] {
		sameTree(t, x.Name, treeSnapshot(t, src.Base), x.Base)
	}
}

// pushFates returns, from msync's output of a push of one path, each
// member's outcome: "applied" for a member the path's line lists, the
// reason of its FAILED line for one dropped.
func pushFates(out string) map[string]string {
	fates := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "FAILED  member "); ok {
			name, reason, _ := strings.Cut(rest, ": ")
			fates[name] = reason
			continue
		}
		f := strings.Fields(line)
		if len(f) == 3 && (f[0] == "send" || f[0] == "update") {
			for _, name := range strings.Split(f[2], ",") {
				fates[name] = "applied"
			}
		}
	}
	return fates
}

// segmentsPartition: segment 3 cut off at the router for 60 s; a push
// during the cut ends, reporting segment 3's members as not reached; once
// healed, segment 3 converges by itself (catch-up) and the source lists
// its members in sync again.
func segmentsPartition(t *testing.T, lab *Lab) {
	segs := lab.Segments
	src := segs[0][0]
	const away = 60 * time.Second
	lab.CutSegment(3, true)
	cut := time.Now()
	must(t, os.WriteFile(filepath.Join(src.Base, "during-cut.txt"), []byte("pushed while segment 3 was cut off\n"), 0o644))
	writeRandom(t, filepath.Join(src.Base, "during-cut.bin"), mib, 13)
	out, code, took := pushAsync(src, "during-cut.txt", "during-cut.bin")()
	t.Logf("msync during the cut: exit %d after %v:\n%s", code, took.Round(time.Millisecond), out)
	if code != 1 {
		t.Errorf("msync during the cut: exit %d, want 1 (segment 3 was not reached)", code)
	}
	fates := pushFates(out)
	for _, x := range lab.Hosts[1:] {
		reached := !slices.Contains(segs[2], x)
		if got := fates[x.Name] == "applied"; got != reached {
			t.Errorf("%s: reported %q by the push during the cut", x.Name, fates[x.Name])
		}
		if !reached && !strings.Contains(fates[x.Name], "catch-up brings it in line") && !strings.Contains(fates[x.Name], "catch-up will bring it in line") {
			t.Errorf("%s: reported %q: not said to be caught up", x.Name, fates[x.Name])
		}
	}
	eventually(t, 10*time.Second, func() bool { return len(src.Hostnames()) == 6 }, "segment 3's members still listed during the cut: %q", src.Hostnames())
	time.Sleep(time.Until(cut.Add(away)))
	catchUps := strings.Count(src.Log(), "catching up members whose tree differs")
	lab.CutSegment(3, false)
	var seen []string // what the source showed of segment 3 on the way
	d := eventually(t, 60*time.Second, func() bool {
		not := membersLag(t, src, lab.Hosts)
		if not != "" && (len(seen) == 0 || seen[len(seen)-1] != not) {
			seen = append(seen, not)
		}
		return not == ""
	}, "segment 3 did not converge after the partition healed: %s; relay roles:\n%s",
		lazy(func() string { return membersLag(t, src, lab.Hosts) }), lazy(func() string { return roleChanges(lab.Hosts) }))
	t.Logf("figure: partition: segment 3, cut off for %v, in sync with lag 0 again %v after the heal, without a push; on the way: %s",
		away, d.Round(time.Millisecond), strings.Join(seen, " | "))
	if strings.Count(src.Log(), "catching up members whose tree differs") == catchUps {
		t.Error("segment 3 converged without a catch-up push from the source")
	}
	want := treeSnapshot(t, src.Base)
	for _, x := range segs[2] {
		sameTree(t, x.Name, want, x.Base)
	}
}

// segmentsMixed: the same 8 MiB in mixed mode, for comparison: a unicast
// copy per member of the other segments, from the sender itself.
func segmentsMixed(t *testing.T, lab *Lab, keyFile string, relayLink int64) {
	segs := lab.Segments
	src := segs[0][0]
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
	eventually(t, 20*time.Second, func() bool { return allSee(lab.Hosts, hostNames(lab.Hosts)) }, "mixed-mode members did not all meet")
	writeRandom(t, filepath.Join(src.Base, "mixed.bin"), 8*mib, 9)
	b2 := lab.routerTx(t, 2)
	push(t, src, 0, "mixed.bin")
	mixedLink := lab.routerTx(t, 2) - b2
	t.Logf("figure: mixed mode (no relay), 8 MiB from segment 1 to 8 members: %.2f MiB on the router's link into segment 2 (3 members)",
		float64(mixedLink)/mib)
	if relayLink*2 > mixedLink {
		t.Errorf("relays put %d bytes on a link, mixed mode %d: relays should carry one copy where mixed mode carries one per member", relayLink, mixedLink)
	}
}
