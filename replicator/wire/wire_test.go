package wire

import (
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestGolden(t *testing.T) {
	h := Header{Node: 0x0102030405060708, Incarnation: 0x1112131415161718, Seq: 42}
	tests := []struct {
		name string
		msg  Message
		want string
	}{
		{
			name: "heartbeat",
			msg:  &Heartbeat{Roles: RoleSend | RoleRecv, Interval: time.Second, Root: 0xaabbccddeeff0011, Hostname: "web1", Version: "0.1"},
			want: "4d6b010100000000" + "0102030405060708" + "1112131415161718" + "000000000000002a" +
				"03" + "000003e8" + "aabbccddeeff0011" + "04" + hex.EncodeToString([]byte("web1")) + "03" + hex.EncodeToString([]byte("0.1")),
		},
		{
			name: "goodbye",
			msg:  &Goodbye{},
			want: "4d6b010200000000" + "0102030405060708" + "1112131415161718" + "000000000000002a",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Append(nil, h, tt.msg)
			if got := hex.EncodeToString(b); got != tt.want {
				t.Fatalf("encoding\n got %s\nwant %s", got, tt.want)
			}
			gh, gm, err := Parse(b)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			wh := h
			wh.Type = tt.msg.Type()
			if gh != wh {
				t.Errorf("header = %+v, want %+v", gh, wh)
			}
			if !reflect.DeepEqual(gm, tt.msg) {
				t.Errorf("message = %+v, want %+v", gm, tt.msg)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	good := Append(nil, Header{Node: 1}, &Heartbeat{Hostname: "a"})
	mut := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"short header", good[:HeaderLen-1], ErrShort},
		{"bad magic", mut(func(b []byte) []byte { b[0] = 'X'; return b }), ErrBadMagic},
		{"future version", mut(func(b []byte) []byte { b[2] = 9; return b }), ErrVersion},
		{"unknown type", mut(func(b []byte) []byte { b[3] = 200; return b }), ErrUnknownType},
		{"unknown flag", mut(func(b []byte) []byte { b[4] = 0x80; return b }), ErrMalformed},
		{"sealed without key", mut(func(b []byte) []byte { b[4] = byte(FlagSealed); return b }), ErrMalformed},
		{"truncated heartbeat", good[:HeaderLen+5], ErrShort},
		{"string past end", good[:len(good)-1], ErrShort},
		{"empty hostname", Append(nil, Header{}, &Heartbeat{}), ErrMalformed},
		{"bad utf8 hostname", Append(nil, Header{}, &Heartbeat{Hostname: "\xff"}), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse(tt.b)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestTrailingBytesIgnored(t *testing.T) {
	b := Append(nil, Header{}, &Heartbeat{Hostname: "h", Version: "v"})
	b = append(b, "future fields"...)
	_, m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if hb := m.(*Heartbeat); hb.Hostname != "h" || hb.Version != "v" {
		t.Fatalf("got %+v", hb)
	}
}

func TestLongStringsCut(t *testing.T) {
	long := strings.Repeat("x", 300)
	_, m, err := Parse(Append(nil, Header{}, &Heartbeat{Hostname: long}))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.(*Heartbeat).Hostname; got != long[:MaxName] {
		t.Fatalf("hostname of %d bytes, want %d", len(got), MaxName)
	}
}
