package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// requireRoutedLab is requireLab for NewRoutedLab, whose router also needs
// smcrouted.
func requireRoutedLab(t *testing.T) {
	t.Helper()
	requireLab(t)
	if _, err := exec.LookPath("smcrouted"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("routed lab test cannot run in CI: smcrouted not installed (make deps DEPS=test installs smcroute)")
		}
		t.Skip("smcrouted not installed (apt-get install smcroute)")
	}
	// A kernel built without multicast routing (CONFIG_IP_MROUTE, which
	// creates this file in every network namespace) has no router for
	// smcrouted to drive: no package can supply it, so even CI can only
	// say so and go on.
	if _, err := os.Stat("/proc/net/ip_mr_vif"); err != nil {
		t.Skip("this kernel has no IPv4 multicast routing (built without CONFIG_IP_MROUTE: no /proc/net/ip_mr_vif); the routed lab needs it")
	}
}

// NewRoutedLab creates segments segments of perSegment hosts each, joined by
// a router that forwards the group 239.192.0.108 (routedGroup) between
// every pair of segments (lab.sh routed-up), and removes them when the test
// ends. Host j of segment s is named sShj, at 10.77.s.(10+j); the lab's
// Hosts run segment by segment.
func NewRoutedLab(t *testing.T, segments, perSegment int) *Lab {
	t.Helper()
	requireRoutedLab(t)
	return newRoutedLab(t, nil, segments, perSegment)
}

// NewUnicastLab is NewRoutedLab with a router that forwards unicast only
// (LAB_MROUTE=off: smcrouted never runs), as a cloud's network or a
// campus without multicast routing does.
func NewUnicastLab(t *testing.T, segments, perSegment int) *Lab {
	t.Helper()
	requireLab(t)
	return newRoutedLab(t, []string{"LAB_MROUTE=off"}, segments, perSegment)
}

func newRoutedLab(t *testing.T, env []string, segments, perSegment int) *Lab {
	t.Helper()
	l := newLabEnv(t, env, "routed-up", fmt.Sprint(segments), fmt.Sprint(perSegment))
	for s := 1; s <= segments; s++ {
		var seg []*Host
		for j := 1; j <= perSegment; j++ {
			seg = append(seg, l.addHost(fmt.Sprintf("s%dh%d", s, j), fmt.Sprintf("10.77.%d.%d", s, 10+j)))
		}
		l.Segments = append(l.Segments, seg)
	}
	return l
}

// routedGroup is the group a routed lab's router forwards: administratively
// scoped (239.0.0.0/8), since routers never forward 224.0.0.0/24.
const routedGroup = "239.192.0.108"

// Mroute starts (on) or stops the routed lab's multicast router; stopped,
// no multicast crosses between segments.
func (l *Lab) Mroute(on bool) {
	l.t.Helper()
	mode := "off"
	if on {
		mode = "on"
	}
	l.script("mroute", l.name, mode)
}

// ShapeLink limits the router's egress into segment s (from 1) to mbit
// Mbit/s; 0 removes the limit.
func (l *Lab) ShapeLink(s, mbit int) {
	l.t.Helper()
	l.script("shape-link", l.name, fmt.Sprint(s), fmt.Sprint(mbit))
}

// CutSegment partitions segment s (from 1) from the others at the router
// (on: an nftables rule drops everything the router would forward into or
// out of it) or heals it (off). The segment's own bridge still carries its
// members' traffic to each other.
func (l *Lab) CutSegment(s int, on bool) {
	l.t.Helper()
	rt := l.name + "-rt"
	_ = exec.Command("ip", "netns", "exec", rt, "nft", "delete", "table", "inet", "labcut").Run()
	if !on {
		return
	}
	rules := fmt.Sprintf(`table inet labcut {
  chain forward {
    type filter hook forward priority 0; policy accept;
    iifname "eth%[1]d" counter drop
    oifname "eth%[1]d" counter drop
  }
}
`, s)
	cmd := exec.Command("ip", "netns", "exec", rt, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("cut segment %d: nft: %v\n%s", s, err, out)
	}
}
