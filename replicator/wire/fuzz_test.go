package wire

import (
	"bytes"
	"net/netip"
	"reflect"
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
	f.Add(Append(nil, Header{Node: 7, Seq: 4}, &RelayHello{Segment: "rack-a", Hears: true, Active: true}))
	f.Add(Append(nil, Header{Node: 7, Seq: 5}, &Relay{Origin: netip.MustParseAddrPort("10.0.1.2:5000"),
		Inner: Append(nil, Header{Node: 9, Seq: 1}, &Goodbye{})}))
	f.Add(Append(nil, Header{Node: 7, Seq: 6}, &Relay{Origin: netip.MustParseAddrPort("[fd00::2]:5000"),
		Inner: Append(nil, Header{Node: 9, Seq: 2}, &Goodbye{})}))
	f.Add(Append(nil, Header{Node: 7, Seq: 7}, sampleAnswers()))
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

// FuzzNackTrailer: whatever follows the fields a Nack decoder knows, a
// Nack reads the same as without it, so receivers of a newer revision may
// append fields; and a Nack of a receiver of before the delivery fields
// reads with none.
func FuzzNackTrailer(f *testing.F) {
	f.Add(uint8(0), uint32(0), uint32(0), []byte{})
	f.Add(uint8(NackDelivery), uint32(752128), uint32(12034), []byte{1, 2, 3})
	f.Add(uint8(NackTruncated), uint32(5), uint32(6), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, flags uint8, delivered, span uint32, tail []byte) {
		m := &Nack{Session: 7, Round: 3, Flags: NackFlags(flags), Missing: 9, WindowLost: 1, WindowSize: 64,
			Ranges: []Range{{5, 2}, {40, 7}}, Delivered: delivered, Span: span}
		if m.Flags&NackDelivery == 0 {
			m.Delivered, m.Span = 0, 0
		}
		got, err := ParsePayload(TypeNack, append(m.AppendPayload(nil), tail...))
		if err != nil {
			t.Fatalf("a Nack with %d bytes after it does not parse: %v", len(tail), err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("got %+v\nwant %+v", got, m)
		}
	})
}
