package main

import (
	"slices"
	"testing"
)

// TestRelayFlags: --relay-peer (repeatable) and --relay-peers make a
// relay candidate of the --segment; without a segment, with unicast
// mode, or with a bad name they are refused with one line saying why.
func TestRelayFlags(t *testing.T) {
	for _, tt := range []struct {
		name    string
		args    []string
		segment string
		relays  []string
		relay   bool
		err     string
	}{
		{"no relay", nil, "", nil, false, ""},
		{"segment alone", []string{"--segment", "dc1"}, "dc1", nil, false, ""},
		{"relay peers", []string{"--segment", "dc1", "--relay-peer", "10.2.0.5", "--relay-peer", "relay.dc3:6000"},
			"dc1", []string{"10.2.0.5", "relay.dc3:6000"}, true, ""},
		{"relay peers file", []string{"--segment", "dc1", "--relay-peers", "/etc/makuosan/relays"}, "dc1", nil, true, ""},
		{"no segment", []string{"--relay-peer", "10.2.0.5"}, "", nil, false,
			"--relay-peer and --relay-peers need --segment NAME: relays elect one of each segment"},
		{"bad segment", []string{"--segment", "dc 1"}, "", nil, false,
			`--segment: segment name "dc 1" has a byte 0x20 outside printable ASCII`},
		{"with unicast", []string{"--segment", "a", "--relay-peer", "10.2.0.5", "--peer", "10.0.0.2"}, "", nil, false,
			"--relay-peer and --relay-peers relay a segment's multicast group; they do not go with --peer or --peers-file"},
		{"bad relay peer", []string{"--segment", "a", "--relay-peer", "h:0"}, "", nil, false,
			`--relay-peer: peer "h:0": port "0" is not a number in 1-65535`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := parseValid(t, tt.args, tt.err)
			if o == nil {
				return
			}
			if o.node.Segment != tt.segment || !slices.Equal(o.node.RelayPeers, tt.relays) || o.node.Relay() != tt.relay {
				t.Fatalf("segment %q relays %q relay %v, want %q %q %v", o.node.Segment, o.node.RelayPeers, o.node.Relay(), tt.segment, tt.relays, tt.relay)
			}
		})
	}
}
