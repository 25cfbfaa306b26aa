package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestVXLANScript: vxlan.sh refuses every bad argument with a clear error
// (exit 2) before it changes anything, and refuses to touch a device it
// did not make (exit 1); up and down are idempotent, sync adds and removes
// peers, and the makuosan flags it prints follow the underlay's MTU.
func TestVXLANScript(t *testing.T) {
	requireOverlay(t)
	lab := NewLab(t, 2)
	h, other := lab.Hosts[0], lab.Hosts[1]
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, []byte(content), 0o644))
		return p
	}
	members := file("members", "# both hosts\n10.77.0.11\n  10.77.0.12   # h2\n\n")
	noSelf := file("noself", "10.77.0.12\n")
	badLine := file("badline", "10.77.0.11\n# ok\n10.77.0.300\n")
	twice := file("twice", "10.77.0.11\n10.77.0.12\n10.77.0.12 # again\n")
	inOverlay := file("inoverlay", "10.77.0.11\n10.108.0.5\n")
	up := func(extra ...string) []string {
		return append([]string{"up", "--dev", overlayDev, "--vni", overlayVNI, "--local", h.Addr, "--addr", "10.108.0.11/24"}, extra...)
	}
	set := func(args []string, flag, value string) []string {
		args = slices.Clone(args)
		i := slices.Index(args, flag)
		if value == "" {
			return slices.Delete(args, i, i+2)
		}
		args[i+1] = value
		return args
	}
	withMembers := up("--peers-file", members)
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "usage: vxlan.sh up|sync|show|down"},
		{[]string{"start"}, "usage: vxlan.sh up|sync|show|down"},
		{[]string{"up"}, "--dev is required"},
		{set(withMembers, "--dev", "bad name"), "--dev: 'bad name' is not an interface name"},
		{set(withMembers, "--dev", "a-name-of-16-chr"), "is not an interface name"},
		{slices.Concat(withMembers, []string{"--color"}), "unknown argument '--color'"},
		{slices.Concat(withMembers, []string{"--vni"}), "--vni needs a value"},
		{slices.Concat(withMembers, []string{"--vni", "7"}), "--vni given twice"},
		{set(withMembers, "--vni", ""), "--vni is required"},
		{set(withMembers, "--vni", "0"), "--vni must be a number from 1 to 16777215: '0'"},
		{set(withMembers, "--vni", "16777216"), "--vni must be a number from 1 to 16777215"},
		{set(withMembers, "--vni", "0x10"), "--vni must be a number"},
		{slices.Concat(withMembers, []string{"--port", "70000"}), "--port must be a number from 1 to 65535"},
		{set(withMembers, "--local", ""), "--local is required"},
		{set(withMembers, "--local", "10.77.0.256"), "--local: not an IPv4 address: '10.77.0.256'"},
		{set(withMembers, "--local", "10.77.0.011"), "--local: not an IPv4 address"},
		{set(withMembers, "--local", "239.192.0.108"), "--local: 239.192.0.108 is not a unicast host address"},
		{set(withMembers, "--local", "10.77.0.99"), "--local: 10.77.0.99 is not an address of this host"},
		{set(withMembers, "--addr", ""), "--addr is required"},
		{set(withMembers, "--addr", "10.108.0.11"), "--addr: want IP/LEN"},
		{set(withMembers, "--addr", "10.108.0.11/31"), "--addr: prefix length must be 8 to 30"},
		{set(withMembers, "--addr", "10.108.0.0/24"), "is the subnet's network or broadcast address"},
		{set(withMembers, "--addr", "10.108.0.255/24"), "is the subnet's network or broadcast address"},
		{set(withMembers, "--addr", "10.77.0.50/24"), "--local 10.77.0.11 lies in the overlay subnet"},
		{up(), "give the members: --peers-file FILE or --peer IP"},
		{up("--peers-file", members, "--peer", "10.77.0.12"), "give --peers-file or --peer, not both"},
		{up("--peers-file", filepath.Join(dir, "missing")), "--peers-file: cannot read"},
		{up("--peers-file", badLine), badLine + ":3: not an IPv4 address: '10.77.0.300'"},
		{up("--peers-file", twice), twice + ":3: 10.77.0.12 listed twice"},
		{up("--peers-file", inOverlay), inOverlay + ":2: 10.108.0.5 lies in the overlay subnet"},
		{up("--peers-file", noSelf), "--local 10.77.0.11 is not in " + noSelf},
		{up("--peer", "10.77.0.12", "--peer", "0.1.2.3"), "--peer: 0.1.2.3 is not a unicast host address"},
		{slices.Concat(withMembers, []string{"--mtu", "1451"}), "--mtu must be a number from 540 to 1450"},
		{slices.Concat(withMembers, []string{"--mtu", "539"}), "--mtu must be a number from 540 to 1450"},
		{[]string{"down", "--dev", overlayDev, "--vni", "1"}, "down takes no --vni"},
		{[]string{"sync", "--dev", overlayDev, "--addr", "10.108.0.11/24", "--peers-file", members}, "sync takes no --addr"},
		{[]string{"show", "--dev", overlayDev, "--peer", "10.77.0.12"}, "show takes no member list"},
	} {
		out, errOut, code := h.Overlay(c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("vxlan.sh %s: exit %d, stderr %q; want exit 2 and %q\n%s", strings.Join(c.args, " "), code, errOut, c.want, out)
		}
	}
	if out, _, _ := h.Run(t.Context(), "ip", "link", "show", "dev", overlayDev); out != "" {
		t.Fatalf("a refused vxlan.sh left %s behind:\n%s", overlayDev, out)
	}

	run := func(x *Host, code int, args ...string) (string, string) {
		t.Helper()
		out, errOut, got := x.Overlay(args...)
		if got != code {
			t.Fatalf("%s: vxlan.sh %s: exit %d, want %d\n%s%s", x.Name, strings.Join(args, " "), got, code, out, errOut)
		}
		return out, errOut
	}
	sync := []string{"sync", "--dev", overlayDev}
	run(h, 1, append(sync, "--peers-file", members)...)
	if out, _ := run(h, 0, "down", "--dev", overlayDev); out != "vxlan0: not there, nothing to do\n" {
		t.Errorf("down without a device: %q", out)
	}

	// up, and up again: the same device, peers and flags.
	out, _ := run(h, 0, up("--peer", "10.77.0.12", "--peer", h.Addr)...)
	for _, want := range []string{
		"vxlan0: vni 108, local 10.77.0.11, port 4789, address 10.108.0.11/24, mtu 1450 (underlay 1500)\n",
		"vxlan0: 1 peers (added 1: 10.77.0.12; removed 0)\n",
		"makuosan flags: -i vxlan0 --datagram-size 1422\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("vxlan.sh up printed:\n%s\nwant a line %q", out, want)
		}
	}
	fdb, _, _ := h.Run(t.Context(), "bridge", "fdb", "show", "dev", overlayDev)
	for _, want := range []string{"00:00:00:00:00:00 dst 10.77.0.12 ", "02:4d:0a:4d:00:0c dst 10.77.0.12 "} {
		if !strings.Contains(fdb, want) {
			t.Errorf("fdb after up lacks %q:\n%s", want, fdb)
		}
	}
	if out, _ := run(h, 0, up("--peers-file", members)...); !strings.Contains(out, "1 peers (added 0; removed 0)") {
		t.Errorf("up again changed the peers:\n%s", out)
	}
	if fdb2, _, _ := h.Run(t.Context(), "bridge", "fdb", "show", "dev", overlayDev); fdb2 != fdb {
		t.Errorf("up again changed the fdb:\n%s\nwas:\n%s", fdb2, fdb)
	}
	link, _, _ := h.Run(t.Context(), "ip", "-d", "link", "show", "dev", overlayDev)
	for _, want := range []string{"mtu 1450 ", "link/ether 02:4d:0a:4d:00:0b ", "vxlan id 108 local 10.77.0.11 ", "dstport 4789 ", "nolearning "} {
		if !strings.Contains(link, want) {
			t.Errorf("vxlan0 lacks %q:\n%s", want, link)
		}
	}
	if out, errOut := run(h, 1, set(up("--peers-file", members), "--vni", "109")...); out != "" ||
		!strings.Contains(errOut, "vxlan0 exists with vni 108, local 10.77.0.11, port 4789 (not 109, 10.77.0.11, 4789): vxlan.sh down --dev vxlan0 first") {
		t.Errorf("up with another VNI: %q, stderr %q", out, errOut)
	}

	// sync: a longer list adds, a shorter one removes, off the list floods
	// to no one.
	more := file("more", "10.77.0.11\n10.77.0.12\n192.0.2.7\n")
	if out, _ := run(h, 0, append(sync, "--peers-file", more)...); out != "vxlan0: 2 peers (added 1: 192.0.2.7; removed 0)\n" {
		t.Errorf("sync to a longer list: %q", out)
	}
	if got := h.overlayPeers(t); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"10.77.0.12", "192.0.2.7"}) {
		t.Errorf("show after the sync: %v", got)
	}
	if out, _ := run(h, 0, append(sync, "--peer", "192.0.2.7")...); out != "vxlan0: 1 peers (added 0; removed 1: 10.77.0.12)\n" {
		t.Errorf("sync to a shorter list: %q", out)
	}
	fdb, _, _ = h.Run(t.Context(), "bridge", "fdb", "show", "dev", overlayDev)
	if strings.Contains(fdb, "10.77.0.12") {
		t.Errorf("fdb still has the removed peer:\n%s", fdb)
	}
	out, errOut := run(h, 0, append(sync, "--peers-file", noSelf)...)
	if out != "vxlan0: 0 peers (added 0; removed 1: 192.0.2.7)\n" || !strings.Contains(errOut, "10.77.0.11 is not in "+noSelf+": this host is no longer a member") {
		t.Errorf("sync off the list: %q, stderr %q", out, errOut)
	}

	// down, twice; a device vxlan.sh did not make stays.
	if out, _ := run(h, 0, "down", "--dev", overlayDev); out != "vxlan0: removed\n" {
		t.Errorf("down: %q", out)
	}
	run(h, 0, "down", "--dev", overlayDev)
	if out, _, code := h.Run(t.Context(), "ip", "link", "add", "foreign0", "type", "vxlan", "id", "5", "dstport", "4789", "local", h.Addr); code != 0 {
		t.Fatalf("add foreign0: %s", out)
	}
	if _, errOut := run(h, 1, "down", "--dev", "foreign0"); !strings.Contains(errOut, "foreign0 is a VXLAN device vxlan.sh did not make: leaving it alone") {
		t.Errorf("down of a foreign device: %q", errOut)
	}
	if _, errOut := run(h, 1, "up", "--dev", "lo", "--vni", "1", "--local", h.Addr, "--addr", "10.108.0.11/24", "--peer", other.Addr); !strings.Contains(errOut, "lo exists and is not a VXLAN device") {
		t.Errorf("up over lo: %q", errOut)
	}

	// A jumbo-frame underlay: the default datagram fits.
	if out, _, code := h.Run(t.Context(), "ip", "link", "set", "dev", "eth0", "mtu", "9000"); code != 0 {
		t.Fatalf("eth0 mtu 9000: %s", out)
	}
	out, _ = run(h, 0, up("--peer", other.Addr)...)
	if !strings.Contains(out, "mtu 8950 (underlay 9000)") || !strings.Contains(out, "makuosan flags: -i vxlan0 (the default --datagram-size 1472 fits; up to 8922 does)") {
		t.Errorf("up on a 9000-byte underlay:\n%s", out)
	}
	run(h, 0, "down", "--dev", overlayDev)
	out, _ = run(h, 0, up("--peer", other.Addr, "--mtu", "1400")...)
	if !strings.Contains(out, "mtu 1400 (underlay 9000)") || !strings.Contains(out, "--datagram-size 1372") {
		t.Errorf("up with --mtu 1400:\n%s", out)
	}
}
