package wire

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func sampleAnswers() *RelayAnswers {
	return &RelayAnswers{Answers: []Answer{
		{From: netip.MustParseAddrPort("10.0.2.11:40001"), To: netip.MustParseAddrPort("10.0.1.11:40000"),
			Inner: Append(nil, Header{Node: 9, Seq: 1}, &Busy{Session: 5})},
		{From: netip.MustParseAddrPort("[fd00::2]:40002"), To: netip.MustParseAddrPort("[fd00::1]:40000"),
			Inner: Append(nil, Header{Node: 10, Seq: 2}, &Goodbye{})},
	}}
}

// TestRelayAnswersGolden pins the encoding: count, then per answer from,
// to, length and the datagram untouched.
func TestRelayAnswersGolden(t *testing.T) {
	m := &RelayAnswers{Answers: []Answer{{From: netip.MustParseAddrPort("10.0.2.11:40001"),
		To: netip.MustParseAddrPort("10.0.1.11:40000"), Inner: Append(nil, Header{Node: 9, Seq: 1}, &Goodbye{})}}}
	inner := "4d6b010200000000" + "0000000000000009" + "0000000000000000" + "0000000000000001"
	want := "4d6b011100000000" + "0102030405060708" + "1112131415161718" + "000000000000002a" +
		"0001" + "04" + "0a00020b" + "9c41" + "04" + "0a00010b" + "9c40" + "0020" + inner
	b := Append(nil, Header{Node: 0x0102030405060708, Incarnation: 0x1112131415161718, Seq: 42}, m)
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("encoding\n got %s\nwant %s", got, want)
	}
	_, got, err := Parse(b)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("Parse: %+v %v", got, err)
	}
	if n := AnswerSize(&m.Answers[0]); n != len(b)-HeaderLen-2 {
		t.Errorf("AnswerSize %d, the answer took %d", n, len(b)-HeaderLen-2)
	}
	if n := AnswerSize(&sampleAnswers().Answers[1]); n != 2*19+2+HeaderLen {
		t.Errorf("AnswerSize of an IPv6 answer %d, want %d", n, 2*19+2+HeaderLen)
	}
}

func TestRelayAnswersRoundTrip(t *testing.T) {
	m := sampleAnswers()
	got, err := ParsePayload(TypeRelayAnswers, m.AppendPayload(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("got %+v\nwant %+v", got, m)
	}
}

func TestRelayAnswersRefused(t *testing.T) {
	good := sampleAnswers().AppendPayload(nil)
	one := (&RelayAnswers{Answers: sampleAnswers().Answers[:1]}).AppendPayload(nil)
	count := func(n uint16) string { return string(binary.BigEndian.AppendUint16(nil, n)) }
	addrs := "\x04\x0a\x00\x00\x01\x00\x01" + "\x04\x0a\x00\x00\x02\x00\x02"
	inner := strings.Repeat("x", HeaderLen)
	for _, tc := range []struct {
		name string
		p    string
		want error
	}{
		{"empty", "", ErrShort},
		{"no answers", count(0), ErrMalformed},
		{"too many answers", count(MaxAnswers+1) + string(good[2:]), ErrMalformed},
		{"count past the answers", count(3) + string(good[2:]), ErrShort},
		{"count short of the answers", count(1) + string(good[2:]), ErrMalformed},
		{"trailing byte", string(one) + "x", ErrMalformed},
		{"bad from family", count(1) + "\x05" + addrs[1:] + "\x00\x20" + inner, ErrMalformed},
		{"short to", count(1) + addrs[:10], ErrShort},
		{"no length", count(1) + addrs, ErrShort},
		{"inner shorter than a header", count(1) + addrs + "\x00\x1f" + inner[:31], ErrMalformed},
		{"inner past the end", count(1) + addrs + "\x00\x21" + inner, ErrShort},
	} {
		if _, err := ParsePayload(TypeRelayAnswers, []byte(tc.p)); !errors.Is(err, tc.want) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.want)
		}
	}
}

// FuzzRelayAnswers: no payload panics the batch decoder, and what it
// takes re-encodes to the same bytes, within its bounds.
func FuzzRelayAnswers(f *testing.F) {
	f.Add(sampleAnswers().AppendPayload(nil))
	f.Add((&RelayAnswers{Answers: sampleAnswers().Answers[:1]}).AppendPayload(nil))
	f.Add([]byte("\x00\x01\x04\x0a\x00\x00\x01\x00\x01\x04\x0a\x00\x00\x02\x00\x02\x00\x20"))
	f.Add([]byte("\xff\xff"))
	f.Fuzz(func(t *testing.T, p []byte) {
		m, err := parseRelayAnswers(p)
		if err != nil {
			return
		}
		if len(m.Answers) == 0 || len(m.Answers) > MaxAnswers {
			t.Fatalf("%d answers accepted", len(m.Answers))
		}
		size := 2
		for i := range m.Answers {
			if len(m.Answers[i].Inner) < HeaderLen {
				t.Fatalf("answer %d of %d bytes accepted", i, len(m.Answers[i].Inner))
			}
			size += AnswerSize(&m.Answers[i])
		}
		if got := m.AppendPayload(nil); string(got) != string(p) || size != len(p) {
			t.Fatalf("re-encoded to %d bytes (sizes %d), from %d", len(got), size, len(p))
		}
	})
}
