package replicator

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRelayPeersFileReload: the relay configuration's Reload reads
// --relay-peers again, with --relay-peer's peers, and refuses a file with
// a bad line by its number.
func TestRelayPeersFileReload(t *testing.T) {
	file := filepath.Join(t.TempDir(), "relays")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("10.0.2.1\n")
	cfg := &Config{Group: netip.MustParseAddr("239.192.0.108"), Port: 5000, Segment: "a",
		RelayPeers: []string{"10.0.3.1:6000"}, RelayPeersFile: file}
	rc, err := cfg.relayConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("10.0.3.1:6000"), netip.MustParseAddrPort("10.0.2.1:5000")}
	if !slices.Equal(rc.Peers, want) || rc.PeersFile != file || rc.Reload == nil {
		t.Fatalf("peers %v, file %q, reload %v", rc.Peers, rc.PeersFile, rc.Reload != nil)
	}
	write("10.0.2.1\n10.0.2.2:5001 # a new one\n")
	got, err := rc.Reload(context.Background())
	if want := append(want, netip.MustParseAddrPort("10.0.2.2:5001")); err != nil || !slices.Equal(got, want) {
		t.Fatalf("reloaded %v, %v; want %v", got, err, want)
	}
	write("10.0.2.1\nno such:host:x\n")
	if _, err := rc.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("a bad line: %v, want an error naming line 2", err)
	}
}
