package wire

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

// FuzzParse checks that no input panics the decoder and that whatever it
// accepts re-encodes to a datagram that decodes to the same thing.
func FuzzParse(f *testing.F) {
	f.Add(Append(nil, Header{Node: 7, Seq: 1}, &Heartbeat{Roles: RoleRecv, Interval: time.Second, Hostname: "h1", Version: "v"}))
	f.Add(Append(nil, Header{Node: 7, Seq: 2}, &Goodbye{}))
	f.Add([]byte("Mk\x01"))
	f.Add(Append(nil, Header{Node: 7, Seq: 3}, &Peers{Peers: []Peer{
		{Node: 1, Addr: netip.MustParseAddrPort("10.0.0.1:5000")}, {Node: 2, Addr: netip.MustParseAddrPort("[fd00::2]:5000")}}}))
	for _, m := range sessionMessages() {
		f.Add(Append(nil, Header{Node: 3, Seq: 9}, m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, m, err := Parse(b)
		if err != nil {
			return
		}
		again := Append(nil, h, m)
		h2, m2, err := Parse(again)
		if err != nil {
			t.Fatalf("re-encoded datagram does not parse: %v", err)
		}
		if h2 != h {
			t.Fatalf("header changed: %+v -> %+v", h, h2)
		}
		if !bytes.Equal(Append(nil, h2, m2), again) {
			t.Fatal("encoding not stable")
		}
	})
}
