package transporttest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// testMulticast: each member's datagram reaches every other member once,
// and never its sender. Members take turns, and the first speaks again
// last, so that a datagram looped back to its sender would stand in the
// sender's queue before the next one it expects.
func testMulticast(t testing.TB, newConns NewConns) {
	peers := start(t, newConns, 3)
	for round, i := range []int{0, 1, 2, 0} {
		host := fmt.Sprintf("member%d-round%d", i, round)
		if err := peers[i].Send(&wire.Heartbeat{Roles: wire.RoleSend, Interval: time.Second, Hostname: host, Version: "suite"}); err != nil {
			t.Fatalf("member %d: Send: %v", i, err)
		}
		for j, r := range peers {
			if j == i {
				continue
			}
			p := recv(t, r)
			checkFrom(t, p, peers[i], wire.TypeHeartbeat)
			m, err := wire.ParsePayload(p.Header.Type, p.Payload)
			if err != nil {
				t.Fatalf("member %d: %v", j, err)
			}
			if got := m.(*wire.Heartbeat).Hostname; got != host {
				t.Fatalf("member %d got heartbeat %q, want %q", j, got, host)
			}
			p.Release()
		}
	}
	for _, p := range peers {
		for _, extra := range leftovers(t, p) {
			t.Errorf("member %v: extra datagram %v from %v", p.id, extra.Header.Type, extra.Header.Node)
		}
	}
}

// testMessageTypes: every message type arrives with its header (type,
// node, one incarnation, increasing seq) and payload intact, and SendN
// counts the header, the payload and a constant sealing overhead.
func testMessageTypes(t testing.TB, newConns NewConns) {
	peers := start(t, newConns, 2)
	s, r := peers[0], peers[1]
	msgs := everyMessage()
	overhead := -1
	for _, m := range msgs {
		n, err := s.SendN(m)
		if err != nil {
			t.Fatalf("SendN %v: %v", m.Type(), err)
		}
		o := n - wire.HeaderLen - len(m.AppendPayload(nil))
		if overhead == -1 {
			overhead = o
		}
		if o != overhead || o < 0 {
			t.Fatalf("SendN %v wrote %d bytes: %d past header and payload, %d for the first message", m.Type(), n, o, overhead)
		}
	}
	var incarnation, seq uint64
	for i, m := range msgs {
		p := recv(t, r)
		checkFrom(t, p, s, m.Type())
		if i > 0 && (p.Header.Incarnation != incarnation || p.Header.Seq <= seq) {
			t.Fatalf("%v: incarnation %d seq %d after incarnation %d seq %d", m.Type(), p.Header.Incarnation, p.Header.Seq, incarnation, seq)
		}
		incarnation, seq = p.Header.Incarnation, p.Header.Seq
		got, err := wire.ParsePayload(p.Header.Type, p.Payload)
		if err != nil {
			t.Fatalf("%v: %v", m.Type(), err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("%v arrived as\n%+v\nwant\n%+v", m.Type(), got, m)
		}
		p.Release()
	}
}

// testBatchOrder: SendBatch's datagrams, of full and short sizes, reach
// every other member whole and in order, and it counts their bytes.
func testBatchOrder(t testing.TB, newConns NewConns) {
	peers := start(t, newConns, 3)
	s := peers[0]
	n, err := s.SendN(&wire.Goodbye{})
	if err != nil {
		t.Fatal(err)
	}
	overhead := n - wire.HeaderLen
	// More than one batch, and a short datagram amid full ones.
	const count = 150
	full := s.MaxPayload() - wire.DataHeaderLen
	var msgs []wire.Message
	for i := range count {
		size := full
		if i == 100 {
			size = 7
		}
		msgs = append(msgs, &wire.Data{Session: 9, Block: uint64(i), Bytes: pattern(size, i)})
	}
	for i := 0; i < count; i += 64 {
		batch := msgs[i:min(i+64, count)]
		want := 0
		for _, m := range batch {
			want += wire.HeaderLen + len(m.AppendPayload(nil)) + overhead
		}
		got, err := s.SendBatch(batch)
		if err != nil {
			t.Fatalf("SendBatch: %v", err)
		}
		if got != want {
			t.Fatalf("SendBatch wrote %d bytes, want %d", got, want)
		}
	}
	for _, r := range peers[1:] {
		checkFrom(t, recv(t, r), s, wire.TypeGoodbye)
		for i, m := range msgs {
			p := recv(t, r)
			checkFrom(t, p, s, wire.TypeData)
			if got, err := wire.ParsePayload(p.Header.Type, p.Payload); err != nil || !reflect.DeepEqual(got, m) {
				t.Fatalf("member %v: datagram %d of the batch is not block %d whole (%v)", r.id, i, i, err)
			}
			p.Release()
		}
	}
}

// testMaxPayload: MaxPayload-sized messages go through Send and
// SendBatch; SendBatch refuses a batch with a larger message and sends none
// of it; Send takes one up to the wire limit (an IP-fragmented datagram)
// and refuses one past it.
func testMaxPayload(t testing.TB, newConns NewConns) {
	peers := start(t, newConns, 2)
	s, r := peers[0], peers[1]
	body := s.MaxPayload() - wire.DataHeaderLen
	data := func(block, size int) *wire.Data {
		return &wire.Data{Session: 1, Block: uint64(block), Bytes: pattern(size, block)}
	}
	if err := s.Send(data(0, body)); err != nil {
		t.Fatalf("Send of MaxPayload: %v", err)
	}
	if _, err := s.SendBatch([]wire.Message{data(1, body), data(2, body)}); err != nil {
		t.Fatalf("SendBatch of MaxPayload: %v", err)
	}
	if _, err := s.SendBatch([]wire.Message{data(3, 10), data(4, body+1)}); err == nil {
		t.Fatal("SendBatch took a message past MaxPayload")
	}
	if err := s.Send(data(5, 3*body)); err != nil {
		t.Fatalf("Send of 3 MaxPayload: %v", err)
	}
	if err := s.Send(data(6, wire.MaxDatagram-wire.HeaderLen-wire.DataHeaderLen+1)); err == nil {
		t.Fatal("Send took a message past wire.MaxDatagram")
	}
	if err := s.Send(&wire.Poll{Session: 1, Round: 7}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []wire.Message{data(0, body), data(1, body), data(2, body), data(5, 3*body), &wire.Poll{Session: 1, Round: 7}} {
		p := recv(t, r)
		checkFrom(t, p, s, want.Type())
		got, err := wire.ParsePayload(p.Header.Type, p.Payload)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("got %s (%v), want %s", describe(got), err, describe(want))
		}
		p.Release()
	}
}

// testQueueBound: a receiver that does not read keeps the last eighth of
// its queue for control messages: data stops at seven eighths and is
// dropped past it, control messages fill the rest, and nothing dropped
// turns up later.
func testQueueBound(t testing.TB, newConns NewConns) {
	peers := start(t, newConns, 2)
	s, r := peers[0], peers[1]
	size := cap(r.Packets())
	reserve := size / 8
	if reserve == 0 {
		t.Fatalf("queue of %d datagrams has no reserve", size)
	}
	data := func(i int) wire.Message { return &wire.Data{Session: 2, Block: uint64(i), Bytes: pattern(16, i)} }
	poll := func(i int) wire.Message { return &wire.Poll{Session: 2, Round: uint32(i)} }
	send := func(from, to int, msg func(int) wire.Message, pace bool) {
		t.Helper()
		for i := from; i < to; i += 64 {
			var batch []wire.Message
			for k := i; k < min(i+64, to); k++ {
				batch = append(batch, msg(k))
			}
			if _, err := s.SendBatch(batch); err != nil {
				t.Fatal(err)
			}
			// Paced by the receiver's queue, so that no socket buffer on
			// the way can overflow and make this a test of loss.
			if pace {
				waitQueued(t, r, i+len(batch))
			}
		}
	}
	send(0, size-reserve, data, true)
	send(size-reserve, size, data, false) // all dropped
	send(0, reserve, poll, false)
	waitQueued(t, r, size)
	for i := range size {
		want := data(i)
		if i >= size-reserve {
			want = poll(i - (size - reserve))
		}
		p := recv(t, r)
		got, err := wire.ParsePayload(p.Header.Type, p.Payload)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("queued datagram %d is %s (%v), want %s", i, describe(got), err, describe(want))
		}
		p.Release()
	}
	if err := s.Send(&wire.Goodbye{}); err != nil {
		t.Fatal(err)
	}
	if p := recv(t, r); p.Header.Type != wire.TypeGoodbye {
		t.Fatalf("a dropped datagram turned up: %v", p.Header.Type)
	}
}

// testCancelRun: Run returns nil when its context ends, Packets is then
// closed, Close is idempotent, and a send fails with net.ErrClosed.
func testCancelRun(t testing.TB, newConns NewConns) {
	conns, _ := open(t, newConns, 1)
	c := conns[0]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	cancel()
	if err := waitRun(done); err != nil {
		t.Fatal(err)
	}
	requireClosed(t, c)
	for range 2 {
		if err := c.Close(); err != nil {
			t.Fatalf("Close after Run: %v", err)
		}
	}
	if err := c.Send(&wire.Goodbye{}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Send after Close: %v, want net.ErrClosed", err)
	}
	if _, err := c.SendBatch([]wire.Message{&wire.Goodbye{}}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("SendBatch after Close: %v, want net.ErrClosed", err)
	}
}

// testCloseStopsRun: Close makes a running Run return nil and close
// Packets.
func testCloseStopsRun(t testing.TB, newConns NewConns) {
	conns, _ := open(t, newConns, 1)
	c := conns[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for range 2 {
		if err := c.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if err := waitRun(done); err != nil {
		t.Fatal(err)
	}
	requireClosed(t, c)
}

// testCloseBeforeRun: Run on a closed conn returns nil at once and closes
// Packets.
func testCloseBeforeRun(t testing.TB, newConns NewConns) {
	conns, _ := open(t, newConns, 1)
	c := conns[0]
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	if err := waitRun(done); err != nil {
		t.Fatal(err)
	}
	requireClosed(t, c)
}

// requireClosed checks that c's Packets is closed and empty; Run has
// returned, so it must be closed already.
func requireClosed(t testing.TB, c Conn) {
	t.Helper()
	select {
	case p, ok := <-c.Packets():
		if ok {
			t.Fatalf("Packets delivered %v after Run returned", p.Header.Type)
		}
	default:
		t.Fatal("Packets still open after Run returned")
	}
}

// describe names a message for a failure, without a data block's bytes.
func describe(m wire.Message) string {
	switch m := m.(type) {
	case nil:
		return "nothing"
	case *wire.Data:
		return fmt.Sprintf("data block %d of %d bytes", m.Block, len(m.Bytes))
	}
	return fmt.Sprintf("%v %+v", m.Type(), m)
}

// pattern returns size bytes that differ by seed and position.
func pattern(size, seed int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(seed*7 + i)
	}
	return b
}

// everyMessage returns one message of each wire type, with every field
// set that survives a round trip.
func everyMessage() []wire.Message {
	return []wire.Message{
		&wire.Heartbeat{Roles: wire.RoleSend | wire.RoleRecv | wire.RoleWatch, Interval: 1500 * time.Millisecond, Root: 0xfeedface, Hostname: "web1", Version: "suite"},
		&wire.Goodbye{},
		&wire.Offer{Session: 0xabcdef, Flags: wire.SessionNewerWins, BlockSize: 1400, Entries: 4, Count: 1,
			Targets: []wire.NodeID{1, 2}, Excludes: []string{"*.log"},
			Items: []wire.Entry{
				{Kind: wire.KindDir, Flags: wire.EntryMirror, Path: "d", Mode: 0o755, Uid: 1, Gid: 2, Mtime: 1e18},
				{Kind: wire.KindFile, Flags: wire.EntryBasis, Path: "d/f", Mode: 0o644, Mtime: -5, Size: 1 << 33, Hash: 7, Basis: "old"},
				{Kind: wire.KindSymlink, Path: "d/l", Mode: 0o777, Target: "../x"},
				{Kind: wire.KindAbsent, Path: "gone"},
			}},
		&wire.Need{Session: 7, Offer: 2, N: 9, Change: []byte{0xff, 0x01}, Data: []byte{0x0f, 0x00}, Basis: []byte{0x01, 0x00}},
		&wire.Data{Session: 7, Block: 123456, Bytes: []byte("hello")},
		&wire.Poll{Session: 7, Round: 3, Watermark: 99, Final: true},
		&wire.Nack{Session: 7, Round: 3, Flags: wire.NackTruncated | wire.NackDelivery, Missing: 500, WindowLost: 3, WindowSize: 512,
			Ranges: []wire.Range{{Start: 1, Count: 2}}, Delivered: 752128, Span: 12034},
		&wire.Commit{Session: 7},
		&wire.Result{Session: 7, Flags: wire.ResultTruncated, Applied: 5, Failed: 1, DeleteCount: 2,
			Failures: []wire.Failure{{Entry: 3, Code: wire.FailNoSpace, Msg: "disk full"}}, Deleted: []string{"a", "b/c"}},
		&wire.Abort{Session: 7},
		&wire.Chunks{Session: 7, Entry: 3, First: 100, Total: 300, Refs: []wire.ChunkRef{{Size: 65536, Hash: 1}, {Size: 17, Hash: 2}}},
		&wire.ChunkNeed{Session: 7, Entry: 3, First: 100, N: 10, Need: []byte{0x81, 0x02}},
		&wire.Busy{Session: 7},
	}
}

// testUnicast: an answer sent with SendTo to the From of a member's
// datagram reaches that member alone, whole and in order, and SendTo
// refuses an address that is not a member's.
func testUnicast(t testing.TB, newConns NewConns) {
	peers := start(t, newConns, 3)
	s := peers[0]
	if !s.UnicastReplies() {
		t.Fatal("UnicastReplies is false: peers could not answer this member by SendTo")
	}
	if err := s.Send(&wire.Offer{Session: 7, Entries: 1}); err != nil {
		t.Fatal(err)
	}
	var from netip.AddrPort
	for _, r := range peers[1:] {
		p := recv(t, r)
		checkFrom(t, p, s, wire.TypeOffer)
		from = p.From
		p.Release()
	}
	const answers = 50
	for i := range answers {
		if err := peers[1].SendTo(&wire.Nack{Session: 7, Round: uint32(i)}, from); err != nil {
			t.Fatalf("SendTo %v: %v", from, err)
		}
	}
	for i := range answers {
		p := recv(t, s)
		checkFrom(t, p, peers[1], wire.TypeNack)
		m, err := wire.ParsePayload(p.Header.Type, p.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.(*wire.Nack).Round; got != uint32(i) {
			t.Fatalf("answer %d arrived as round %d", i, got)
		}
		p.Release()
	}
	for _, bad := range []netip.AddrPort{{}, netip.MustParseAddrPort("239.1.2.3:5000"), netip.MustParseAddrPort("[ff02::1]:5000")} {
		if err := peers[1].SendTo(&wire.Nack{Session: 7}, bad); err == nil {
			t.Errorf("SendTo %v: no error", bad)
		}
	}
	for _, p := range peers[1:] {
		for _, extra := range leftovers(t, p) {
			t.Errorf("member %v: extra datagram %v from %v", p.id, extra.Header.Type, extra.Header.Node)
		}
	}
}
