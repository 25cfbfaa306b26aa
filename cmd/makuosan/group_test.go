package main

import (
	"io"
	"net/netip"
	"testing"
)

// TestGroupFlags: -m takes an IPv4 or an IPv6 group; a link-local IPv6
// group needs -i (by name or address, IPv6 included), which may also come
// as the group's zone; what cannot serve is refused with one line saying
// why and what to give instead.
func TestGroupFlags(t *testing.T) {
	for _, tt := range []struct {
		name  string
		args  []string
		group string // the group configured; "" when refused
		iface string
		err   string // the whole error message
	}{
		{"default", nil, "224.0.0.108", "", ""},
		{"ipv4 routed", []string{"-m", "239.192.0.108", "-i", "10.77.0.11"}, "239.192.0.108", "10.77.0.11", ""},
		{"ipv6 link-local", []string{"-m", "ff02::108", "-i", "eth0"}, "ff02::108", "eth0", ""},
		{"ipv6 link-local by address", []string{"-m", "ff02::108", "-i", "fe80::1%eth0"}, "ff02::108", "fe80::1%eth0", ""},
		{"ipv6 link-local, zone", []string{"-m", "ff02::108%eth0"}, "ff02::108", "eth0", ""},
		{"ipv6 link-local, zone and the same -i", []string{"-m", "ff02::108%eth0", "-i", "eth0"}, "ff02::108", "eth0", ""},
		{"ipv6 site-local", []string{"-m", "ff05::108"}, "ff05::108", "", ""},
		{"ipv6 organization-local by address", []string{"-m", "ff08::108", "-i", "fd77::11"}, "ff08::108", "fd77::11", ""},
		{"ipv6 global", []string{"-m", "ff0e::108"}, "ff0e::108", "", ""},
		{"ipv6 link-local without -i", []string{"-m", "ff02::108"}, "", "",
			"multicast group ff02::108 is link-local (ffx2::/16) and needs its interface: name it with -i (e.g. -i eth0)"},
		{"zone and another -i", []string{"-m", "ff02::108%eth1", "-i", "eth0"}, "", "",
			"multicast group ff02::108%eth1 names interface eth1, -i names eth0: give one"},
		{"ipv6 interface-local", []string{"-m", "ff01::108", "-i", "lo"}, "", "",
			"multicast group ff01::108 is interface-local (ffx1::/16): its datagrams never leave this host"},
		{"ipv6 reserved scope", []string{"-m", "ff00::108"}, "", "",
			"multicast group ff00::108 has a reserved scope (0): use ff02:: (link-local), ff05:: (site-local) or ff08:: (organization-local)"},
		{"ipv6 source-specific", []string{"-m", "ff3e::8000:108"}, "", "",
			"multicast group ff3e::8000:108 is source-specific (ff3x::/32): members join any-source groups, since every member sends"},
		{"ipv4-mapped", []string{"-m", "::ffff:239.192.0.108"}, "", "",
			"multicast group ::ffff:239.192.0.108 is an IPv4-mapped IPv6 address: give the IPv4 group itself (239.192.0.108)"},
		{"ipv6 unicast", []string{"-m", "fe80::1", "-i", "eth0"}, "", "",
			"multicast group fe80::1 is not a multicast address (224.0.0.0/4 or ff00::/8)"},
		{"ipv4 unicast", []string{"-m", "10.0.0.1"}, "", "",
			"multicast group 10.0.0.1 is not a multicast address (224.0.0.0/4 or ff00::/8)"},
		{"not an address", []string{"-m", "nope"}, "", "", `multicast group "nope" is not an IP address`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := parseValid(t, tt.args, tt.err)
			if o == nil {
				return
			}
			if o.node.Group != netip.MustParseAddr(tt.group) || o.node.Interface != tt.iface {
				t.Fatalf("group %v on %q, want %s on %q", o.node.Group, o.node.Interface, tt.group, tt.iface)
			}
		})
	}
}

// parseValid parses args after a fresh base and state directory and
// validates the node's configuration, as prepare does first, before it
// binds anything. With wantErr set the whole error message must be it,
// and parseValid returns nil; otherwise any error fails the test.
func parseValid(t *testing.T, args []string, wantErr string) *options {
	t.Helper()
	args = append([]string{"-b", t.TempDir(), "--state-dir", t.TempDir()}, args...)
	o, err := parseFlags(args, nil, io.Discard)
	if err == nil {
		err = o.node.Validate()
	}
	if wantErr != "" {
		if err == nil || err.Error() != wantErr {
			t.Fatalf("error %v, want %q", err, wantErr)
		}
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return o
}
