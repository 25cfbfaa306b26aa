package e2e

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestIPv6: the transfer-critical checks of the IPv4 tests, with the same
// bodies, on labs whose daemons meet on the link-local IPv6 group
// (-m ff02::108 -i eth0): members know each other by link-local
// addresses with a zone, pushes go out to the group and every answer
// comes back by unicast to such an address.
func TestIPv6(t *testing.T) {
	start := time.Now()
	t.Cleanup(func() { t.Logf("figure: TestIPv6 took %.1fs", time.Since(start).Seconds()) })
	t.Run("Members", func(t *testing.T) { ipv6Members(t, NewLabIPv6(t, 4)) })
	t.Run("TransferTree", func(t *testing.T) {
		transferTree(t, NewLabIPv6(t, 4), treeSpec{smallFiles: 300, bigSize: 4 * mib})
	})
	t.Run("TransferLoss", func(t *testing.T) {
		transferLoss(t, NewLabIPv6(t, 4), treeSpec{smallFiles: 300, bigSize: 4 * mib}, map[int]int{3: 2})
	})
	t.Run("DeltaEdits", func(t *testing.T) { deltaEdits(t, NewLabIPv6(t, 4), 8*mib) })
	t.Run("ReceiverKilled", func(t *testing.T) { receiverKilled(t, NewLabIPv6(t, 4), 24*mib, 100) })
	t.Run("CatchUpLate", func(t *testing.T) { catchUpLate(t, NewLabIPv6(t, 4)) })
}

// ipv6Members: every member lists every other at its link-local address
// with the zone eth0, the same address it lists itself at, and msync
// prints them so; the status names the group as an address with a port.
func ipv6Members(t *testing.T, lab *Lab) {
	lab.StartAll()
	h := lab.Hosts
	for _, x := range h {
		eventually(t, 3*time.Second, func() bool { return len(x.Members()) == len(h) }, "%s does not list every member", x.Name)
	}
	self := map[string]string{}
	for _, x := range h {
		for _, m := range x.Members() {
			if m.Self {
				self[x.Name] = m.Addr
			}
		}
	}
	for _, x := range h {
		for _, m := range x.Members() {
			a, err := netip.ParseAddr(m.Addr)
			if err != nil || !a.Is6() || !a.IsLinkLocalUnicast() || a.Zone() != "eth0" {
				t.Errorf("%s lists %s at %q, want a link-local IPv6 address with zone eth0", x.Name, m.Hostname, m.Addr)
			}
			if m.Addr != self[m.Hostname] {
				t.Errorf("%s lists %s at %s, which lists itself at %s", x.Name, m.Hostname, m.Addr, self[m.Hostname])
			}
		}
	}
	out := push(t, h[0], 0, "--members")
	for name, a := range self {
		if !strings.Contains(out, a) {
			t.Errorf("msync --members does not print %s's address %s:\n%s", name, a, out)
		}
	}
	st, err := h[0].Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Group != "[ff02::108]:5000" {
		t.Errorf("status group %q, want [ff02::108]:5000", st.Group)
	}
}

// catchUpLate: a receiver started only after a push converges by itself,
// by the watching source's catch-up.
func catchUpLate(t *testing.T, lab *Lab) {
	h := lab.Hosts
	h[0].Start("-w")
	for _, x := range h[1:3] {
		x.Start()
	}
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == 3 }, "members did not join")
	makeTree(t, h[0].Base, treeSpec{smallFiles: 300, bigSize: 4 * mib})
	push(t, h[0], 0, "-r")
	want := treeSnapshot(t, h[0].Base)
	for _, x := range h[1:3] {
		sameTree(t, x.Name, want, x.Base)
	}
	late := time.Now()
	h[3].Start()
	for len(treeDiffs(want, treeSnapshot(t, h[3].Base))) != 0 {
		if time.Since(late) > 45*time.Second {
			t.Fatalf("%s started late did not converge by itself within 45s; source log:\n%s", h[3].Name, lastLines(h[0].Log(), 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("figure: a receiver started late converged %.1fs after its start", time.Since(late).Seconds())
	eventually(t, 10*time.Second, func() bool { return inSyncEverywhere(h[0]) }, "roots still differ after the catch-up")
}
