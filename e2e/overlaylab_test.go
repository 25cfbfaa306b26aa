package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The lab side of deploy/overlay/vxlan.sh: build a VXLAN overlay on every
// host of a lab (usually a NewUnicastLab) and read the counters that show
// what it costs.

const (
	overlayDev = "vxlan0"
	overlayVNI = "108"
)

// requireOverlay is requireLab for tests that run vxlan.sh, which also
// needs iproute2's bridge tool.
func requireOverlay(t *testing.T) {
	t.Helper()
	requireLab(t)
	if _, err := exec.LookPath("bridge"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("overlay test cannot run in CI: bridge not installed (apt-get install iproute2)")
		}
		t.Skip("bridge not installed (apt-get install iproute2)")
	}
}

// overlayScript is deploy/overlay/vxlan.sh, beside the lab's script.
func overlayScript() string {
	return filepath.Join(filepath.Dir(labScript), "..", "overlay", "vxlan.sh")
}

// OverlayAddr is the host's address on the overlay: 10.108.0.(10+I), in
// the one subnet every host of the lab shares there.
func (h *Host) OverlayAddr() string { return fmt.Sprintf("10.108.0.%d", 10+h.I) }

// Overlay runs vxlan.sh with args in the host's namespace.
func (h *Host) Overlay(args ...string) (stdout, stderr string, code int) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return h.Run(ctx, overlayScript(), args...)
}

// overlayUpArgs are the arguments of vxlan.sh up for h with the member
// list in file members.
func (h *Host) overlayUpArgs(members string) []string {
	return []string{"up", "--dev", overlayDev, "--vni", overlayVNI, "--local", h.Addr,
		"--addr", h.OverlayAddr() + "/24", "--peers-file", members}
}

// writeMembers writes a member list for vxlan.sh: the underlay address of
// each of hosts, one a line, after a comment.
func writeMembers(t *testing.T, hosts []*Host) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# makuo overlay: every member's underlay address\n")
	for _, h := range hosts {
		fmt.Fprintf(&b, "%s  # %s\n", h.Addr, h.Name)
	}
	p := filepath.Join(t.TempDir(), "members")
	must(t, os.WriteFile(p, []byte(b.String()), 0o644))
	return p
}

// OverlayUp builds the overlay on every host of the lab from the member
// list in file members, and returns the makuosan flags vxlan.sh says the
// overlay needs (the same on every host, or the test fails).
func (l *Lab) OverlayUp(members string) []string {
	t := l.t
	t.Helper()
	var flags string
	for _, h := range l.Hosts {
		out, errOut, code := h.Overlay(h.overlayUpArgs(members)...)
		if code != 0 {
			t.Fatalf("%s: vxlan.sh up: exit %d\n%s%s", h.Name, code, out, errOut)
		}
		_, f, ok := strings.Cut(out, "makuosan flags: ")
		if !ok {
			t.Fatalf("%s: vxlan.sh up printed no makuosan flags:\n%s", h.Name, out)
		}
		f, _, _ = strings.Cut(f, "\n")
		if flags != "" && f != flags {
			t.Fatalf("%s: vxlan.sh up wants makuosan flags %q, another host %q", h.Name, f, flags)
		}
		flags = f
	}
	flags, _, _ = strings.Cut(flags, " (")
	return strings.Fields(flags)
}

// OverlaySync runs vxlan.sh sync against the member list in file members
// on every host of the lab, and returns what each printed on stderr.
func (l *Lab) OverlaySync(members string) []string {
	t := l.t
	t.Helper()
	var notes []string
	for _, h := range l.Hosts {
		out, errOut, code := h.Overlay("sync", "--dev", overlayDev, "--peers-file", members)
		if code != 0 {
			t.Fatalf("%s: vxlan.sh sync: exit %d\n%s%s", h.Name, code, out, errOut)
		}
		notes = append(notes, errOut)
	}
	return notes
}

// overlayPeers returns the underlay addresses h's overlay floods to.
func (h *Host) overlayPeers(t *testing.T) []string {
	t.Helper()
	out, errOut, code := h.Overlay("show", "--dev", overlayDev)
	if code != 0 {
		t.Fatalf("%s: vxlan.sh show: exit %d\n%s", h.Name, code, errOut)
	}
	return strings.Fields(out)
}

// nsCounter reads interface dev's statistics counter stat (tx_bytes, …)
// in network namespace ns.
func nsCounter(t *testing.T, ns, dev, stat string) int64 {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "ip", "netns", "exec", ns,
		"cat", "/sys/class/net/"+dev+"/statistics/"+stat).Output()
	if err != nil {
		t.Fatalf("%s: read %s %s: %v", ns, dev, stat, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %s %s: %v", ns, dev, stat, err)
	}
	return n
}

// routerTx reads the routed lab's router's transmit bytes into segment s
// (from 1): what it forwarded there, every header included.
func (l *Lab) routerTx(t *testing.T, s int) int64 {
	t.Helper()
	return nsCounter(t, l.name+"-rt", fmt.Sprintf("eth%d", s), "tx_bytes")
}

// lossDropped returns how many datagrams lab.sh loss has dropped on h.
func (h *Host) lossDropped(t *testing.T) int64 {
	t.Helper()
	out, errOut, code := h.Run(t.Context(), "nft", "list", "table", "inet", "lablossy")
	if code != 0 {
		t.Fatalf("%s: nft list table inet lablossy: exit %d: %s", h.Name, code, errOut)
	}
	_, rest, ok := strings.Cut(out, "counter packets ")
	if !ok {
		t.Fatalf("%s: no loss counter in:\n%s", h.Name, out)
	}
	n, err := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
	if err != nil {
		t.Fatalf("%s: loss counter: %v", h.Name, err)
	}
	return n
}
