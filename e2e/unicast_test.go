package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// NewNoMcastLab is NewLab whose bridge drops every multicast frame
// (LAB_NOMCAST=1: lab.sh nomcast), as a cloud's network or a container
// bridge without multicast does.
func NewNoMcastLab(t *testing.T, n int) *Lab {
	t.Helper()
	requireLab(t)
	l := newLabEnv(t, []string{"LAB_NOMCAST=1"}, "up", fmt.Sprint(n))
	for i := 1; i <= n; i++ {
		l.addHost(fmt.Sprintf("h%d", i), fmt.Sprintf("10.77.0.%d", 10+i))
	}
	return l
}

// UseUnicastRing makes the lab's daemons run in unicast mode, each told
// of the next host only (the last of the first): the others it must learn
// from them.
func (l *Lab) UseUnicastRing() {
	l.flags = func(h *Host) []string {
		next := l.Hosts[h.I%len(l.Hosts)]
		return []string{"-i", h.Addr, "--peer", next.Addr}
	}
	l.copies = len(l.Hosts) - 1
}

// droppedMulticast is how many multicast frames the lab's bridges dropped.
func (l *Lab) droppedMulticast() int {
	l.t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(l.script("nomcast", l.name, "count")))
	if err != nil {
		l.t.Fatal(err)
	}
	return n
}

// TestUnicast: where no multicast passes (the bridge drops it: a
// multicast-mode pair never meets there), daemons in unicast mode, each
// given one --peer, find every member by gossip; a tree, a push under
// loss, a delta and a killed receiver behave as over multicast, with one
// copy per receiver on the sender's uplink; a peers file and a DNS name
// list peers, the file changed at run time; bad peers stop the start-up
// with one line; mixed mode multicasts inside a segment and unicasts
// across a router without multicast routing.
func TestUnicast(t *testing.T) {
	start := time.Now()
	t.Cleanup(func() { t.Logf("figure: TestUnicast took %.1fs", time.Since(start).Seconds()) })
	spec := treeSpec{smallFiles: 300, bigSize: 8 * mib}
	t.Run("MulticastBlocked", unicastMulticastBlocked)
	t.Run("Members", unicastMembers)
	t.Run("TransferTree", func(t *testing.T) {
		lab := NewNoMcastLab(t, 4)
		lab.UseUnicastRing()
		transferTree(t, lab, spec)
	})
	t.Run("TransferLoss", func(t *testing.T) {
		lab := NewNoMcastLab(t, 4)
		lab.UseUnicastRing()
		transferLoss(t, lab, spec, map[int]int{2: 5, 4: 10})
	})
	t.Run("DeltaEdits", func(t *testing.T) {
		lab := NewNoMcastLab(t, 4)
		lab.UseUnicastRing()
		deltaEdits(t, lab, 16*mib)
	})
	t.Run("ReceiverKilled", func(t *testing.T) {
		lab := NewNoMcastLab(t, 4)
		lab.UseUnicastRing()
		// Three copies share the shaped uplink: a third of the rate each.
		receiverKilled(t, lab, 24*mib, 300)
	})
	t.Run("UnroutablePeer", unicastUnroutablePeer)
	t.Run("PeersFile", unicastPeersFile)
	t.Run("DNSName", unicastDNSName)
	t.Run("StartupErrors", unicastStartupErrors)
	t.Run("Mixed", unicastMixed)
}

// unicastMulticastBlocked: on the lab's bridge multicast is really gone
// (two multicast-mode daemons never meet, and the bridge counts what it
// dropped), while the same two in unicast mode do.
func unicastMulticastBlocked(t *testing.T) {
	lab := NewNoMcastLab(t, 2)
	h := lab.Hosts
	lab.StartAll()
	for _, x := range h {
		eventually(t, 3*time.Second, func() bool { return len(x.Members()) == 1 }, "%s does not serve", x.Name)
	}
	before := lab.droppedMulticast()
	// Three missed heartbeats expire a member; five intervals without one
	// joining is a member that cannot be heard.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, x := range h {
			if n := len(x.Members()); n != 1 {
				t.Fatalf("%s lists %d members in multicast mode: multicast is not blocked", x.Name, n)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	dropped := lab.droppedMulticast()
	if dropped <= before {
		t.Fatalf("the bridge dropped %d multicast frames, %d before: the daemons sent none?", dropped, before)
	}
	t.Logf("figure: the bridge dropped %d multicast frames of 2 daemons in 5 s", dropped-before)
	for _, x := range h {
		x.Signal(15)
		x.Wait(10 * time.Second)
	}
	lab.UseUnicastRing()
	lab.StartAll()
	for _, x := range h {
		eventually(t, 3*time.Second, func() bool { return len(x.Members()) == 2 }, "%s does not list both in unicast mode", x.Name)
	}
}

// unicastMembers: four members each given only the next one all list
// every other, at its address, in msync --members; the status says how
// they reach each other; a member's metrics count its listed and learned
// peers.
func unicastMembers(t *testing.T) {
	lab := NewNoMcastLab(t, 4)
	lab.UseUnicastRing()
	lab.StartAll()
	h := lab.Hosts
	all := []string{"h1", "h2", "h3", "h4"}
	took := eventually(t, 5*time.Second, func() bool { return allSee(h, all) }, "members did not find each other")
	t.Logf("figure: 4 unicast members, each given one peer, listed each other %.1fs after the last start", took.Seconds())
	out := push(t, h[0], 0, "--members")
	for _, x := range h {
		if !regexp.MustCompile(`(?m)^` + x.Name + `\s+` + regexp.QuoteMeta(x.Addr) + `\s`).MatchString(out) {
			t.Errorf("msync --members does not list %s at %s:\n%s", x.Name, x.Addr, out)
		}
	}
	if !strings.Contains(out, "Total: 3 members") {
		t.Errorf("msync --members total:\n%s", out)
	}
	st, err := h[0].Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Group != "unicast peers, port 5000" {
		t.Errorf("status group %q", st.Group)
	}
	b := scrapeMetrics(t, h[0])
	for series, want := range map[string]string{
		`makuosan_transport_peers{kind="listed"}`:                         "1",
		`makuosan_transport_peers{kind="learned"}`:                        "2",
		`makuosan_transport_datagrams_dropped_total{reason="peer_limit"}`: "0",
	} {
		if m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b); m == nil || string(m[1]) != want {
			t.Errorf("%s = %q, want %s", series, m, want)
		}
	}
}

// unicastUnroutablePeer: a listed peer the kernel cannot send to (no
// route in the lab) costs a counted error per copy, and the other peers
// get theirs: membership and a push go on.
func unicastUnroutablePeer(t *testing.T) {
	lab := NewNoMcastLab(t, 2)
	h := lab.Hosts
	h[0].Start("--peer", "10.99.0.1", "--peer", h[1].Addr)
	h[1].Start("--peer", h[0].Addr)
	eventually(t, 3*time.Second, func() bool { return allSee(h, []string{"h1", "h2"}) }, "members did not meet")
	writeRandom(t, filepath.Join(h[0].Base, "f.bin"), 4*mib, 9)
	push(t, h[0], 0, "f.bin")
	if fileSum(t, filepath.Join(h[1].Base, "f.bin")) != fileSum(t, filepath.Join(h[0].Base, "f.bin")) {
		t.Fatal("h2: content differs")
	}
	m := regexp.MustCompile(`(?m)^makuosan_transport_peer_send_errors_total (\S+)$`).FindSubmatch(scrapeMetrics(t, h[0]))
	if m == nil {
		t.Fatal("no makuosan_transport_peer_send_errors_total")
	}
	if n, err := strconv.ParseFloat(string(m[1]), 64); err != nil || n < 100 {
		t.Fatalf("%s copies refused for the unroutable peer, want one per datagram of the push (hundreds)", m[1])
	}
	if !strings.Contains(h[0].Log(), "a peer's copy not sent") {
		t.Errorf("no log line about the refused copies:\n%s", lastLines(h[0].Log(), 10))
	}
}

// scrapeMetrics returns the /metrics page of h's daemon.
func scrapeMetrics(t *testing.T, h *Host) []byte {
	t.Helper()
	c := nsHTTPClient(h)
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://" + h.Addr + ":9758/metrics")
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	return b
}

// unicastPeersFile: a member whose peers file lists no one is alone;
// once the file names a peer (changed at run time, no restart) it joins;
// a change with a bad line is refused with the line number and changes
// nothing.
func unicastPeersFile(t *testing.T) {
	lab := NewNoMcastLab(t, 3)
	h := lab.Hosts
	file := filepath.Join(t.TempDir(), "peers")
	must(t, os.WriteFile(file, []byte("# filled in at run time\n"), 0o644))
	// Started with -i ADDR (the lab's flags) and these.
	h[0].Start("--peers-file", file)
	h[1].Start("--peer", h[2].Addr)
	h[2].Start("--peer", h[1].Addr)
	eventually(t, 3*time.Second, func() bool { return allSee(h[1:], []string{"h2", "h3"}) }, "h2 and h3 did not meet")
	time.Sleep(2 * time.Second) // heartbeats: none reaches h1
	if n := len(h[0].Members()); n != 1 {
		t.Fatalf("h1 with an empty peers file lists %d members", n)
	}
	// As configuration tools write it: a new file renamed over the old.
	replace := func(content string) {
		t.Helper()
		must(t, os.WriteFile(file+".new", []byte(content), 0o644))
		must(t, os.Rename(file+".new", file))
	}
	replace("# segment b\n" + h[1].Addr + "\n")
	took := eventually(t, 5*time.Second, func() bool { return allSee(h, []string{"h1", "h2", "h3"}) }, "the changed peers file did not make h1 join")
	t.Logf("figure: a peers file changed at run time: every member listed h1 %.1fs later", took.Seconds())
	replace(h[1].Addr + "\n" + h[2].Addr + "\nnot a peer!\n")
	eventually(t, 5*time.Second, func() bool {
		return strings.Contains(h[0].Log(), "peers file refused") && strings.Contains(h[0].Log(), "line 3")
	}, "h1 did not refuse the bad peers file with its line:\n%s", lastLines(h[0].Log(), 10))
	if n := len(h[0].Members()); n != 3 {
		t.Fatalf("h1 lists %d members after a refused change, want 3", n)
	}
}

// unicastDNSName: every member is given one name that resolves to every
// member's address, itself included (a headless service, a round-robin
// record): they all meet, and none sends to itself (its own address is
// found from its first datagram).
func unicastDNSName(t *testing.T) {
	lab := NewNoMcastLab(t, 4)
	h := lab.Hosts
	var hosts strings.Builder
	for _, x := range h {
		fmt.Fprintf(&hosts, "%s makuo-peers.lab\n", x.Addr)
	}
	for _, x := range h {
		x.SetNames(hosts.String())
	}
	for _, x := range h {
		x.Start("--peer", "makuo-peers.lab")
	}
	eventually(t, 5*time.Second, func() bool { return allSee(h, []string{"h1", "h2", "h3", "h4"}) }, "members given one name did not meet")
	for _, x := range h {
		b := scrapeMetrics(t, x)
		if !regexp.MustCompile(`(?m)^makuosan_transport_peers\{kind="listed"\} 4$`).Match(b) {
			t.Errorf("%s: the name did not list 4 addresses", x.Name)
		}
	}
	writeRandom(t, filepath.Join(h[0].Base, "f.bin"), 2*mib, 7)
	out := push(t, h[0], 0, "f.bin")
	if !strings.Contains(out, "3 members") {
		t.Fatalf("push over a name: %s", out)
	}
	want := fileSum(t, filepath.Join(h[0].Base, "f.bin"))
	for _, x := range h[1:] {
		if got := fileSum(t, filepath.Join(x.Base, "f.bin")); got != want {
			t.Errorf("%s: content differs", x.Name)
		}
	}
}

// unicastStartupErrors: bad peers stop the start-up with exit 2 and one
// line saying what: a peer that cannot be one, a name that resolves
// nowhere, a peers file that is missing or has a bad line, and flags
// unicast mode has no use for.
func unicastStartupErrors(t *testing.T) {
	lab := NewNoMcastLab(t, 1)
	h := lab.Hosts[0]
	h.SetNames("") // nosuch-peer.invalid fails at once, whatever the machine's resolver does
	bin := filepath.Join(binDir, "makuosan")
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	must(t, os.WriteFile(bad, []byte("10.77.0.12\n\n10.77.0.13:70000\n"), 0o644))
	misfit := filepath.Join(dir, "misfit")
	must(t, os.WriteFile(misfit, []byte("10.77.0.12\nfd77::13\n"), 0o644))
	base := []string{"-n", "-b", h.Base, "--state-dir", h.State, "-U", "", "--metrics-listen", "", "-i", h.Addr}
	// (Start below adds the lab's -i ADDR.)
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"bad port", []string{"--peer", "10.77.0.12:99999"}, `peer "10.77.0.12:99999": port "99999" is not a number`},
		{"multicast peer", []string{"--peer", "239.192.0.108"}, "is a multicast address"},
		{"not a host", []string{"--peer", "web 1"}, "has a character"},
		{"name nowhere", []string{"--peer", "nosuch-peer.invalid"}, "no peer resolves to an address: nosuch-peer.invalid"},
		{"missing file", []string{"--peers-file", filepath.Join(dir, "missing")}, "peers file: open"},
		{"bad line", []string{"--peers-file", bad}, "peers file " + bad + ": line 3: "},
		{"families mixed", []string{"--peers-file", misfit}, "line 2: [fd77::13]:5000 is IPv6"},
		{"mixed alone", []string{"--mixed"}, "--mixed needs --peer or --peers-file"},
		{"ttl", []string{"--peer", "10.77.0.12", "--ttl", "4"}, "--ttl: unicast mode"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, stderr, code := h.Run(ctx, bin, append(slices.Clone(base), tt.args...)...)
			checkStartupError(t, stderr, code, tt.want)
		})
	}
	// A name that does not resolve beside one that does: a warning, and
	// the daemon serves.
	h.Start("--peer", "nosuch-peer.invalid", "--peer", "10.77.0.12")
	eventually(t, 20*time.Second, func() bool { return strings.Contains(h.Log(), "peer does not resolve; retrying") },
		"no warning about the name that does not resolve:\n%s", lazy(func() string { return h.Log() }))
	eventually(t, 5*time.Second, func() bool { return len(h.Members()) == 1 }, "the daemon with one good peer does not serve:\n%s", lazy(func() string { return lastLines(h.Log(), 10) }))
}

// unicastMixed: two segments behind a router that forwards no multicast;
// each member multicasts inside its segment and is given the other
// segment's members: every member lists all four, a push from one
// segment reaches both, and the sender's uplink carries the push once
// for its segment plus once per member of the other.
func unicastMixed(t *testing.T) {
	lab := NewUnicastLab(t, 2, 2)
	segs := lab.Segments
	for s, seg := range segs {
		other := segs[1-s]
		for _, x := range seg {
			x.Start("-m", routedGroup, "--mixed", "--peer", other[0].Addr, "--peer", other[1].Addr)
		}
	}
	all := []string{"s1h1", "s1h2", "s2h1", "s2h2"}
	eventually(t, 5*time.Second, func() bool { return allSee(lab.Hosts, all) }, "mixed-mode members did not all meet")
	src := segs[0][0]
	st, err := src.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Group != routedGroup+":5000 and unicast peers" {
		t.Errorf("status group %q", st.Group)
	}
	writeRandom(t, filepath.Join(src.Base, "big.bin"), 8*mib, 5)
	wire := pushCounted(t, src, "big.bin")
	want := fileSum(t, filepath.Join(src.Base, "big.bin"))
	for _, x := range lab.Hosts[1:] {
		if got := fileSum(t, filepath.Join(x.Base, "big.bin")); got != want {
			t.Errorf("%s: content differs", x.Name)
		}
	}
	t.Logf("figure: mixed mode, 8 MiB to 1 member by multicast and 2 by unicast: %.1f MiB on the sender's uplink", float64(wire)/mib)
	// One multicast copy and two unicast ones: three, not four (the
	// segment's other member gets no unicast copy).
	if wire < 3*8*mib || wire > 3*8*mib*11/10 {
		t.Errorf("the push cost %d bytes on the uplink, want about 3 copies of 8 MiB", wire)
	}
}
