package main

import (
	"io"
	"slices"
	"testing"
)

// TestUnicastFlags: --peer (repeatable), --peers-file and --mixed set
// unicast mode; a peer that cannot be one, --mixed alone, and the group's
// settings without --mixed are refused with one line saying why.
func TestUnicastFlags(t *testing.T) {
	for _, tt := range []struct {
		name    string
		args    []string
		peers   []string
		mixed   bool
		unicast bool
		err     string
	}{
		{"multicast", nil, nil, false, false, ""},
		{"peers", []string{"--peer", "10.0.0.2", "--peer", "web3:6000", "--peer", "[fd00::4]:5000"},
			[]string{"10.0.0.2", "web3:6000", "[fd00::4]:5000"}, false, true, ""},
		{"peers file", []string{"--peers-file", "/etc/makuosan/peers"}, nil, false, true, ""},
		{"mixed", []string{"--peer", "10.1.0.2", "--mixed", "-m", "239.192.0.108", "--ttl", "2"}, []string{"10.1.0.2"}, true, true, ""},
		{"mixed alone", []string{"--mixed"}, nil, false, false, "--mixed needs --peer or --peers-file: the peers on other segments"},
		{"bad peer", []string{"--peer", "web1:99999"}, nil, false, false, `--peer: peer "web1:99999": port "99999" is not a number in 1-65535`},
		{"group peer", []string{"--peer", "224.0.0.108"}, nil, false, false,
			`--peer: peer "224.0.0.108": 224.0.0.108 is a multicast address: a peer is one member (for a group use -m without --peer)`},
		{"empty peer", []string{"--peer", ""}, nil, false, false, `--peer: peer "": no host`},
		{"-m without --mixed", []string{"--peer", "10.0.0.2", "-m", "239.192.0.108"}, nil, false, false,
			"--mcast: unicast mode (--peer, --peers-file) sends to no group; add --mixed to multicast inside the segment as well"},
		{"--ttl without --mixed", []string{"--peers-file", "f", "--ttl", "3"}, nil, false, false,
			"--ttl: unicast mode (--peer, --peers-file) sends to no group; add --mixed to multicast inside the segment as well"},
		{"--multicast-replies without --mixed", []string{"--peer", "h", "--multicast-replies"}, nil, false, false,
			"--multicast-replies: unicast mode (--peer, --peers-file) sends to no group; add --mixed to multicast inside the segment as well"},
		// The group is not checked when there is none.
		{"bound address", []string{"--peer", "10.0.0.2", "-i", "10.0.0.1"}, []string{"10.0.0.2"}, false, true, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-b", t.TempDir(), "--state-dir", t.TempDir()}, tt.args...)
			o, err := parseFlags(args, nil, io.Discard)
			if err == nil {
				err = o.node.Validate()
			}
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(o.node.Peers, tt.peers) || o.node.Mixed != tt.mixed || o.node.Unicast() != tt.unicast {
				t.Fatalf("peers %q mixed %v unicast %v, want %q %v %v", o.node.Peers, o.node.Mixed, o.node.Unicast(), tt.peers, tt.mixed, tt.unicast)
			}
		})
	}
}
