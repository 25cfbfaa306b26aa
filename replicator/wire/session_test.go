package wire

import (
	"encoding/hex"
	"errors"
	"reflect"
	"testing"
)

func sessionMessages() []Message {
	return []Message{
		&Offer{Session: 0xabcdef, Flags: SessionDryRun, BlockSize: 1400, Entries: 8, Index: 0, Count: 1, First: 0,
			Targets: []NodeID{1, 2}, Excludes: []string{"*.log"},
			Items: []Entry{
				{Kind: KindDir, Flags: EntryMirror, Path: "d", Mode: 0o755, Uid: 1, Gid: 2, Mtime: 1e18},
				{Kind: KindFile, Path: "d/f", Mode: 0o4644, Mtime: -5, Size: 1 << 33, Hash: 0x1122334455667788},
				{Kind: KindFile, Flags: EntryBasis, Path: "d/renamed", Mode: 0o644, Size: 5, Hash: 9, Basis: "old/name"},
				{Kind: KindSymlink, Path: "d/l", Mode: 0o777, Target: "../x"},
				{Kind: KindHardlink, Path: "d/h", Mode: 0o644, LinkTo: 1},
				{Kind: KindCharDev, Path: "d/c", Mode: 0o600, Rdev: 0x0501},
				{Kind: KindAbsent, Path: "gone"},
				{Kind: KindDir, Flags: EntryDigest | EntrySame, Path: "dg", Mode: 0o755, Hash: 0xdeadbeef},
			}},
		&Need{Session: 7, Offer: 2, N: 9, Change: []byte{0xff, 0x01}, Data: []byte{0x0f, 0x00}, Basis: []byte{0x01, 0x00}},
		&Need{Session: 7, Offer: 3, N: 2, Change: []byte{0x03}, Data: []byte{0x01}, Basis: []byte{0x00},
			Items: []ItemFlags{ItemContent | ItemMtime, ItemNew}},
		&Chunks{Session: 7, Entry: 3, First: 100, Total: 300, Refs: []ChunkRef{{Size: 65536, Hash: 1}, {Size: 17, Hash: 2}}},
		&ChunkNeed{Session: 7, Entry: 3, First: 100, N: 10, Need: []byte{0x81, 0x02}},
		&Data{Session: 7, Block: 123456, Bytes: []byte("hello")},
		&Poll{Session: 7, Round: 3, Watermark: 99, Final: true},
		&Nack{Session: 7, Round: 3, Flags: NackTruncated, Missing: 500, WindowLost: 3, WindowSize: 512, Ranges: []Range{{1, 2}, {10, 100}}},
		&Nack{Session: 7, Round: 4, Flags: NackDelivery, WindowSize: 512, Delivered: 752128, Span: 12034},
		&Commit{Session: 7},
		&Abort{Session: 7},
		&Busy{Session: 7},
		&Result{Session: 7, Flags: ResultTruncated, Applied: 5, Failed: 1, DeleteCount: 2,
			Failures: []Failure{{Entry: 3, Code: FailNoSpace, Msg: "disk full"}}, Deleted: []string{"a", "b/c"}},
	}
}

func TestSessionRoundTrip(t *testing.T) {
	for _, m := range sessionMessages() {
		t.Run(m.Type().String(), func(t *testing.T) {
			b := Append(nil, Header{Node: 1, Seq: 2}, m)
			_, got, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("round trip\n got %+v\nwant %+v", got, m)
			}
		})
	}
}

func TestSessionGolden(t *testing.T) {
	tests := []struct {
		m    Message
		want string
	}{
		{&Data{Session: 7, Block: 258, Bytes: []byte{0xaa}}, "0000000000000007" + "0000000000000102" + "aa"},
		{&Poll{Session: 7, Round: 3, Watermark: 99, Final: true}, "0000000000000007" + "00000003" + "0000000000000063" + "01"},
		{&Need{Session: 7, Offer: 1, N: 2, Change: []byte{3}, Data: []byte{1}, Basis: []byte{0}, Items: []ItemFlags{ItemContent, ItemMode | ItemOwner}},
			"0000000000000007" + "00000001" + "0002" + "03" + "01" + "00" + "04" + "18"},
		{&Nack{Session: 1, Round: 2, Missing: 3, Ranges: []Range{{Start: 4, Count: 5}}},
			"0000000000000001" + "00000002" + "00" + "0000000000000003" + "00000000" + "00000000" + "0001" + "0000000000000004" + "00000005"},
		{&Nack{Session: 1, Round: 2, Flags: NackDelivery, Delivered: 0x10000, Span: 300},
			"0000000000000001" + "00000002" + "02" + "0000000000000000" + "00000000" + "00000000" + "0000" + "00010000" + "0000012c"},
		{&Offer{Session: 1, BlockSize: 1024, Entries: 1, Count: 1, Items: []Entry{{Kind: KindFile, Path: "a", Mode: 0o644, Mtime: 2, Size: 3, Hash: 4}}},
			"0000000000000001" + "0000" + "00000400" + "00000001" + "00000000" + "00000001" + "00000000" + "00" + "0000" + "0001" +
				"0100" + "000161" + "000001a4" + "00000000" + "00000000" + "0000000000000002" + "0000000000000003" + "0000000000000004"},
	}
	for _, tt := range tests {
		if got := hex.EncodeToString(tt.m.AppendPayload(nil)); got != tt.want {
			t.Errorf("%v:\n got %s\nwant %s", tt.m.Type(), got, tt.want)
		}
	}
}

func TestSessionParseErrors(t *testing.T) {
	offer := func(f func(*Offer)) []byte {
		o := &Offer{Session: 1, BlockSize: 1024, Entries: 1, Count: 1, Items: []Entry{{Kind: KindFile, Path: "a"}}}
		f(o)
		return o.AppendPayload(nil)
	}
	tests := []struct {
		name string
		t    Type
		p    []byte
	}{
		{"offer tiny block", TypeOffer, offer(func(o *Offer) { o.BlockSize = 10 })},
		{"offer index past count", TypeOffer, offer(func(o *Offer) { o.Index = 1 })},
		{"offer entries past total", TypeOffer, offer(func(o *Offer) { o.First = 1 })},
		{"offer bad kind", TypeOffer, offer(func(o *Offer) { o.Items[0].Kind = 99 })},
		{"offer bad mode", TypeOffer, offer(func(o *Offer) { o.Items[0].Mode = 0o170000 })},
		{"offer digest on a file", TypeOffer, offer(func(o *Offer) { o.Items[0].Flags = EntryDigest })},
		{"offer basis on a dir", TypeOffer, offer(func(o *Offer) { o.Items[0].Kind = KindDir; o.Items[0].Flags = EntryBasis })},
		{"chunks past total", TypeChunks, (&Chunks{First: 5, Total: 5, Refs: []ChunkRef{{1, 1}}}).AppendPayload(nil)},
		{"chunks empty chunk", TypeChunks, (&Chunks{Total: 5, Refs: []ChunkRef{{0, 1}}}).AppendPayload(nil)},
		{"chunkneed short", TypeChunkNeed, (&ChunkNeed{N: 20, Need: []byte{1}}).AppendPayload(nil)},
		{"offer truncated", TypeOffer, offer(func(*Offer) {})[:40]},
		{"need short bitmap", TypeNeed, (&Need{Session: 1, N: 20, Change: []byte{1}, Data: []byte{1}, Basis: []byte{1}}).AppendPayload(nil)},
		{"data short", TypeData, []byte{1, 2, 3}},
		{"nack zero range", TypeNack, (&Nack{Ranges: []Range{{1, 0}}}).AppendPayload(nil)},
		{"nack wrapping range", TypeNack, (&Nack{Ranges: []Range{{^uint64(0), 5}}}).AppendPayload(nil)},
		{"nack window loss past size", TypeNack, (&Nack{WindowLost: 2, WindowSize: 1}).AppendPayload(nil)},
		{"nack count past end", TypeNack, (&Nack{Ranges: []Range{{1, 1}}}).AppendPayload(nil)[:NackHeaderLen+3]},
		{"nack delivery cut", TypeNack, (&Nack{Flags: NackDelivery, Span: 1}).AppendPayload(nil)[:NackHeaderLen+NackDeliveryLen-1]},
		{"commit short", TypeCommit, []byte{1}},
		{"result truncated", TypeResult, (&Result{Failures: []Failure{{Msg: "x"}}}).AppendPayload(nil)[:25]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePayload(tt.t, tt.p)
			if !errors.Is(err, ErrShort) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

// TestNackOlderAndNewer: a Nack of a receiver of before the delivery
// fields reads as one without them, and bytes past the fields a decoder
// knows (a newer revision's) are ignored, with or without the fields.
func TestNackOlderAndNewer(t *testing.T) {
	old := &Nack{Session: 7, Round: 3, Missing: 2, WindowLost: 1, WindowSize: 64, Ranges: []Range{{5, 2}}}
	withDelivery := &Nack{Session: 7, Round: 3, Flags: NackDelivery, Missing: 2, WindowSize: 64, Ranges: []Range{{5, 2}}, Delivered: 9000, Span: 700}
	tests := []struct {
		name string
		p    []byte
		want *Nack
	}{
		{"older receiver", old.AppendPayload(nil), old},
		{"older receiver, newer bytes", append(old.AppendPayload(nil), 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5), old},
		{"delivery", withDelivery.AppendPayload(nil), withDelivery},
		{"delivery, newer bytes", append(withDelivery.AppendPayload(nil), 0xff, 0xff), withDelivery},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePayload(TypeNack, tt.p)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
