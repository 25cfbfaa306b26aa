package wire

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestRelayRoundTrip(t *testing.T) {
	inner := Append(nil, Header{Node: 9, Seq: 1}, &Goodbye{})
	for _, origin := range []string{"10.0.1.2:5000", "[fd00::2]:6000"} {
		m := &Relay{Origin: netip.MustParseAddrPort(origin), Inner: inner}
		got, err := ParsePayload(TypeRelay, m.AppendPayload(nil))
		if err != nil {
			t.Fatalf("%s: %v", origin, err)
		}
		r := got.(*Relay)
		if r.Origin != m.Origin || string(r.Inner) != string(inner) {
			t.Fatalf("%s: got %v %x", origin, r.Origin, r.Inner)
		}
	}
	h := &RelayHello{Segment: "dc-1", Hears: true}
	got, err := ParsePayload(TypeRelayHello, h.AppendPayload(nil))
	if err != nil || *got.(*RelayHello) != *h {
		t.Fatalf("hello: %+v %v", got, err)
	}
}

func TestRelayRefused(t *testing.T) {
	inner := string(Append(nil, Header{Node: 9, Seq: 1}, &Goodbye{}))
	for _, tc := range []struct {
		name string
		t    Type
		p    string
		want error
	}{
		{"empty relay", TypeRelay, "", ErrShort},
		{"bad family", TypeRelay, "\x05\x01\x02\x03\x04\x00\x01" + inner, ErrMalformed},
		{"short v4 origin", TypeRelay, "\x04\x01\x02\x03", ErrShort},
		{"short v6 origin", TypeRelay, "\x06\x01\x02\x03\x04\x05\x06\x07\x08", ErrShort},
		{"truncated inner", TypeRelay, "\x04\x01\x02\x03\x04\x00\x01" + inner[:HeaderLen-1], ErrShort},
		{"empty hello", TypeRelayHello, "\x00", ErrShort},
		{"unknown flag", TypeRelayHello, "\x04\x01a", ErrMalformed},
		{"length past end", TypeRelayHello, "\x00\x05ab", ErrMalformed},
		{"empty segment", TypeRelayHello, "\x00\x00", ErrMalformed},
		{"space in segment", TypeRelayHello, "\x00\x03a b", ErrMalformed},
		{"segment too long", TypeRelayHello, "\x00\x41" + strings.Repeat("a", 65), ErrMalformed},
	} {
		if _, err := ParsePayload(tc.t, []byte(tc.p)); !errors.Is(err, tc.want) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestHeartbeatSegment: a heartbeat carries its sender's segment as a
// trailing field; one without decodes as before, and trailing bytes that
// are no segment are a newer daemon's fields, ignored.
func TestHeartbeatSegment(t *testing.T) {
	for _, tt := range []struct {
		name  string
		hb    Heartbeat
		extra string
		want  string
	}{
		{"segment", Heartbeat{Hostname: "h", Version: "v", Segment: "dc-2"}, "", "dc-2"},
		{"none", Heartbeat{Hostname: "h", Version: "v"}, "", ""},
		{"segment then more", Heartbeat{Hostname: "h", Version: "v", Segment: "a"}, "later", "a"},
		{"no segment but more", Heartbeat{Hostname: "h", Version: "v"}, "\x03a b", ""},
	} {
		b := append(Append(nil, Header{}, &tt.hb), tt.extra...)
		_, m, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if hb := m.(*Heartbeat); hb.Segment != tt.want || hb.Hostname != "h" || hb.Version != "v" {
			t.Errorf("%s: got %+v, want segment %q", tt.name, hb, tt.want)
		}
	}
}
