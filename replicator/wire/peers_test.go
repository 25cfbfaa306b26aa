package wire

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func TestPeersGolden(t *testing.T) {
	m := &Peers{Peers: []Peer{
		{Node: 0x0a0b0c0d0e0f1011, Addr: netip.MustParseAddrPort("10.77.0.11:5000")},
		{Node: 2, Addr: netip.MustParseAddrPort("[fd77::12]:5001")},
	}}
	want := "02" +
		"0a0b0c0d0e0f1011" + "04" + "0a4d000b" + "1388" +
		"0000000000000002" + "06" + "fd770000000000000000000000000012" + "1389"
	b := m.AppendPayload(nil)
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("encoding\n got %s\nwant %s", got, want)
	}
	got, err := ParsePayload(TypePeers, b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("decoded %+v, want %+v", got, m)
	}
	if TypePeers.String() != "peers" {
		t.Errorf("TypePeers is %q", TypePeers.String())
	}
}

// TestPeersEncodeEdges: a zone is not sent, an address that is none is
// sent as 0.0.0.0:0, and no more than MaxPeers entries go out.
func TestPeersEncodeEdges(t *testing.T) {
	m := &Peers{Peers: []Peer{
		{Node: 1, Addr: netip.AddrPortFrom(netip.MustParseAddr("fe80::1%eth0"), 5000)},
		{Node: 2},
	}}
	got, err := ParsePayload(TypePeers, m.AppendPayload(nil))
	if err != nil {
		t.Fatal(err)
	}
	ps := got.(*Peers).Peers
	if ps[0].Addr != netip.MustParseAddrPort("[fe80::1]:5000") {
		t.Errorf("link-local peer decoded as %v, want it without its zone", ps[0].Addr)
	}
	if ps[1].Addr != netip.AddrPortFrom(netip.IPv4Unspecified(), 0) {
		t.Errorf("invalid address decoded as %v, want 0.0.0.0:0", ps[1].Addr)
	}
	many := &Peers{Peers: make([]Peer, MaxPeers+10)}
	for i := range many.Peers {
		many.Peers[i] = Peer{Node: NodeID(i + 1), Addr: netip.MustParseAddrPort("10.0.0.1:1")}
	}
	b := many.AppendPayload(nil)
	if len(b) != 1+MaxPeers*peerMinLen {
		t.Fatalf("%d entries encoded in %d bytes, want %d entries", len(many.Peers), len(b), MaxPeers)
	}
}

func TestPeersParseErrors(t *testing.T) {
	one := (&Peers{Peers: []Peer{{Node: 1, Addr: netip.MustParseAddrPort("10.0.0.1:5000")}}}).AppendPayload(nil)
	six := (&Peers{Peers: []Peer{{Node: 1, Addr: netip.MustParseAddrPort("[fd00::1]:5000")}}}).AppendPayload(nil)
	for _, tt := range []struct {
		name string
		p    []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"count past the end", []byte{3}, ErrShort},
		{"node cut", one[:5], ErrShort},
		{"ipv4 cut", one[:len(one)-1], ErrShort},
		{"ipv6 cut", six[:len(six)-3], ErrShort},
		{"bad family", append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 5}, make([]byte, 20)...), ErrMalformed},
		{"claims 255, holds 1", append([]byte{255}, one[1:]...), ErrShort},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParsePayload(TypePeers, tt.p); !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
	// Later fields may follow the entries (see the package doc).
	if m, err := ParsePayload(TypePeers, append(one, "future"...)); err != nil || len(m.(*Peers).Peers) != 1 {
		t.Fatalf("trailing bytes: %v, %+v", err, m)
	}
}
