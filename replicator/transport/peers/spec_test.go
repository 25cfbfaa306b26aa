package peers

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Spec
	}{
		{"10.0.0.1", Spec{"10.0.0.1", 5000}},
		{"10.0.0.1:6000", Spec{"10.0.0.1", 6000}},
		{"web1", Spec{"web1", 5000}},
		{"web1.example.com:6000", Spec{"web1.example.com", 6000}},
		{"web1.example.com.", Spec{"web1.example.com.", 5000}},
		{"makuo_peers.svc", Spec{"makuo_peers.svc", 5000}},
		{"fd00::1", Spec{"fd00::1", 5000}},
		{"[fd00::1]:6000", Spec{"fd00::1", 6000}},
		{"[fd00::1]", Spec{"fd00::1", 5000}},
		{"fe80::1%eth0", Spec{"fe80::1%eth0", 5000}},
		{"[fe80::1%eth0]:5001", Spec{"fe80::1%eth0", 5001}},
		// Without brackets the last group is part of the address.
		{"fd00::1:6000", Spec{"fd00::1:6000", 5000}},
	} {
		got, err := ParseSpec(tt.in, 5000)
		if err != nil || got != tt.want {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseSpecRefusals(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "no host"},
		{":5000", "no host"},
		{"web1:", "port"},
		{"web1:0", "port"},
		{"web1:65536", "port"},
		{"web1:+5", "port"},
		{"web1:05", "port"},
		{"web1:http", "port"},
		{"web1:5000:1", "want HOST"},
		{"[10.0.0.1]:5000", "brackets hold an IPv6"},
		{"[web1]", "brackets hold an IPv6"},
		{"[fd00::1", "want HOST"},
		{"10.0.0.256", "neither an IP address nor a host name"},
		{"10.0.0", "neither an IP address nor a host name"},
		{"010.0.0.1", "neither an IP address nor a host name"},
		{"224.0.0.108", "multicast"},
		{"ff02::108", "multicast"},
		{"0.0.0.0", "unspecified"},
		{"[::]:5000", "unspecified"},
		{"255.255.255.255", "broadcast"},
		{"0.1.2.3", "names no host"},
		{"240.0.0.1:5000", "reserved"},
		{"::ffff:10.0.0.1", "IPv4-mapped"},
		{"fd00::1%eth0", "zone"},
		{"fe80::1%]0", "not an interface name"},
		{"[fe80::1%eth0eth0eth0eth0]:5000", "not an interface name"},
		{"web1%eth0", "zone"},
		{"-web1", "starts or ends with '-'"},
		{"web1-.example", "starts or ends with '-'"},
		{"a..b", "1-63 characters"},
		{"web 1", "character"},
		{"wéb1", "character"},
		{"web1\x00", "character"},
		{strings.Repeat("a", 64) + ".example", "1-63 characters"},
		{strings.Repeat("abcdefg.", 32) + "com", "host name of"},
	} {
		_, err := ParseSpec(tt.in, 5000)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseSpec(%q): error %v, want one saying %q", tt.in, err, tt.want)
		}
	}
	if _, err := ParseSpec("web1", 0); err == nil {
		t.Error("default port 0 accepted")
	}
}

func TestParseList(t *testing.T) {
	in := "# the members of segment b\n" +
		"10.0.0.1\n" +
		"\n" +
		"   web2:6000   # the second\n" +
		"10.0.0.1\n" + // a repeat counts once
		"[fd00::3]:5001\n"
	got, err := ParseList(strings.NewReader(in), 5000)
	if err != nil {
		t.Fatal(err)
	}
	want := []Spec{{"10.0.0.1", 5000}, {"web2", 6000}, {"fd00::3", 5001}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
	if got, err := ParseList(strings.NewReader("# nothing yet\n\n"), 5000); err != nil || len(got) != 0 {
		t.Fatalf("empty list: %+v, %v", got, err)
	}
}

func TestParseListRefusals(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		fam      int
		line     int
		want     string
	}{
		{"garbage", "10.0.0.1\nweb2\n!!!\n", 0, 3, "character"},
		{"two on a line", "10.0.0.1 10.0.0.2\n", 0, 1, "one peer per line"},
		{"tab inside", "10.0.0.1\t10.0.0.2\n", 0, 1, "one peer per line"},
		{"bad port", "# x\n\nweb1:99999\n", 0, 3, "port"},
		{"other family", "10.0.0.1\nfd00::2\n", 4, 2, "is IPv6"},
		{"other family v6", "fd00::2\n10.0.0.1\n", 6, 2, "is IPv4"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseList(strings.NewReader(tt.in), 5000, tt.fam)
			le, ok := errors.AsType[*LineError](err)
			if !ok || le.Line != tt.line || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want line %d saying %q", err, tt.line, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Errorf("error %q does not start with its line", err)
			}
		})
	}
	big := strings.Repeat("10.0.0.1\n", MaxFileSize/9+1)
	if _, err := ParseList(strings.NewReader(big), 5000); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a %d-byte list: %v", len(big), err)
	}
}
