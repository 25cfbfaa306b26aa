package transporttest

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// payload is a datagram that names its sender and number.
func payload(from wire.NodeID, i int) []byte {
	return fmt.Appendf(nil, "%d/%d", from, i)
}

// drain takes every pending delivery.
func drain(n *Network) []Delivery {
	var out []Delivery
	for {
		d, ok := n.Next()
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

// scenario drives a five-member network through faults, a partition, a
// restart and interleaved sends and deliveries, and returns a hash of
// every delivery it saw and the final statistics.
func scenario(seed uint64) ([32]byte, map[Link]LinkStats) {
	n := NewNetwork(seed)
	for id := wire.NodeID(1); id <= 5; id++ {
		n.Attach(id)
	}
	n.SetDefault(Faults{Loss: 0.1, Duplicate: 0.05, Reorder: 0.1, Delay: time.Millisecond, Jitter: 2 * time.Millisecond})
	n.SetLink(1, 2, Faults{Loss: 0.5, Jitter: 5 * time.Millisecond})
	h := sha256.New()
	record := func(d Delivery) {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(d.At.UnixNano()))
		h.Write(b[:])
		fmt.Fprintf(h, "%v>%v@%v:%q;", d.From, d.To, d.FromAddr, d.Datagram)
	}
	now := t0
	for step := range 2000 {
		now = now.Add(100 * time.Microsecond)
		from := wire.NodeID(1 + step%5)
		switch {
		case step%7 == 3:
			n.SendTo(now, from, 1+(from%5), payload(from, step))
		default:
			n.Send(now, from, payload(from, step))
		}
		switch step {
		case 500:
			n.Partition([]wire.NodeID{1, 2}, []wire.NodeID{3})
		case 900:
			n.Heal()
		case 1200:
			n.Detach(4)
		case 1400:
			n.Attach(4)
		}
		// Take what is due, as a simulation's loop does.
		for {
			at, ok := n.Peek()
			if !ok || at.After(now) {
				break
			}
			d, _ := n.Next()
			record(d)
		}
	}
	for _, d := range drain(n) {
		record(d)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, n.Stats()
}

func TestNetworkDeterministic(t *testing.T) {
	a, sa := scenario(42)
	b, sb := scenario(42)
	if a != b {
		t.Fatal("the same seed gave different delivery sequences")
	}
	if !mapsEqual(sa, sb) {
		t.Fatalf("the same seed gave different statistics:\n%v\n%v", sa, sb)
	}
	if c, _ := scenario(43); c == a {
		t.Fatal("another seed gave the same delivery sequence")
	}
	checkAccounting(t, sa, nil)
}

func mapsEqual(a, b map[Link]LinkStats) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// checkAccounting checks that every copy of every link is accounted for,
// pending[k] copies still in flight.
func checkAccounting(t *testing.T, stats map[Link]LinkStats, pending map[Link]uint64) {
	t.Helper()
	for k, s := range stats {
		if s.Sent+s.Duplicated != s.Delivered+s.Lost+s.Overflow+pending[k] {
			t.Errorf("%v: %+v with %d in flight does not add up", k, s, pending[k])
		}
	}
}

// TestNetworkLinksIndependent: traffic elsewhere does not change what
// happens on a link.
func TestNetworkLinksIndependent(t *testing.T) {
	run := func(extra bool) []Delivery {
		n := NewNetwork(7)
		n.SetDefault(Faults{Loss: 0.3, Duplicate: 0.2, Reorder: 0.2, Jitter: time.Millisecond})
		n.Attach(1)
		n.Attach(2)
		if extra {
			n.Attach(3)
		}
		var got []Delivery
		for i := range 500 {
			now := t0.Add(time.Duration(i) * time.Microsecond)
			n.Send(now, 1, payload(1, i))
			if extra {
				n.Send(now, 3, payload(3, i))
			}
		}
		for _, d := range drain(n) {
			if d.From == 1 && d.To == 2 {
				got = append(got, d)
			}
		}
		return got
	}
	alone, crowded := run(false), run(true)
	if len(alone) == 0 || !slices.EqualFunc(alone, crowded, func(a, b Delivery) bool {
		return a.At.Equal(b.At) && string(a.Datagram) == string(b.Datagram)
	}) {
		t.Fatalf("link 1>2 carried %d deliveries alone and %d with a third member, or not the same", len(alone), len(crowded))
	}
}

// TestNetworkLoss: the loss rate over 100,000 datagrams is within five
// standard deviations of the binomial mean (a fixed seed: this cannot
// flake, but a biased draw would show).
func TestNetworkLoss(t *testing.T) {
	const sends, p = 100_000, 0.1
	n := NewNetwork(1)
	n.Attach(1)
	n.Attach(2)
	n.SetDefault(Faults{Loss: p})
	got := 0
	for i := range sends {
		n.Send(t0, 1, []byte{byte(i)})
		got += len(drain(n))
	}
	mean, sd := sends*(1-p), math.Sqrt(sends*p*(1-p))
	if math.Abs(float64(got)-mean) > 5*sd {
		t.Fatalf("%d of %d delivered, want %.0f ± %.0f", got, sends, mean, 5*sd)
	}
	s := n.Stats()[Link{1, 2}]
	if s.Sent != sends || s.Delivered != uint64(got) || s.Lost != uint64(sends-got) {
		t.Fatalf("stats %+v after %d delivered", s, got)
	}
}

func TestNetworkPartition(t *testing.T) {
	n := NewNetwork(1)
	for id := wire.NodeID(1); id <= 5; id++ {
		n.Attach(id)
	}
	links := func() map[Link]bool {
		for id := wire.NodeID(1); id <= 5; id++ {
			n.Send(t0, id, payload(id, 0))
		}
		got := make(map[Link]bool)
		for _, d := range drain(n) {
			got[Link{d.From, d.To}] = true
		}
		return got
	}
	// 5 is named in no group: it joins 4, the rest of the members.
	n.Partition([]wire.NodeID{1, 2}, []wire.NodeID{3})
	want := map[Link]bool{{1, 2}: true, {2, 1}: true, {4, 5}: true, {5, 4}: true}
	if got := links(); !mapsEqualBool(got, want) {
		t.Fatalf("partitioned: delivered over %v, want %v", got, want)
	}
	if s := n.Stats()[Link{1, 3}]; s.Sent != 1 || s.Lost != 1 {
		t.Fatalf("cross link 1>3: %+v", s)
	}
	n.Heal()
	if got := links(); len(got) != 20 {
		t.Fatalf("healed: delivered over %d links, want 20", len(got))
	}
}

func mapsEqualBool(a, b map[Link]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// order sends count datagrams 1 > 2, spacing apart, and returns their
// numbers in delivery order, with the deliveries.
func order(t *testing.T, f Faults, count int, spacing time.Duration) ([]int, []Delivery) {
	t.Helper()
	n := NewNetwork(3)
	n.Attach(1)
	n.Attach(2)
	n.SetLink(1, 2, f)
	for i := range count {
		n.Send(t0.Add(time.Duration(i)*spacing), 1, binary.BigEndian.AppendUint32(nil, uint32(i)))
	}
	ds := drain(n)
	var seq []int
	for _, d := range ds {
		seq = append(seq, int(binary.BigEndian.Uint32(d.Datagram)))
	}
	return seq, ds
}

func inversions(seq []int) int {
	n := 0
	for i := 1; i < len(seq); i++ {
		if seq[i] < seq[i-1] {
			n++
		}
	}
	return n
}

func TestNetworkReorder(t *testing.T) {
	const count = 1000
	// Ties in arrival time keep the order of sending.
	if seq, _ := order(t, Faults{}, count, 0); len(seq) != count || inversions(seq) != 0 {
		t.Fatalf("clean link: %d delivered with %d inversions", len(seq), inversions(seq))
	}
	f := Faults{Reorder: 0.2, Delay: time.Millisecond, ReorderDelay: 5 * time.Millisecond}
	seq, ds := order(t, f, count, time.Microsecond)
	if len(seq) != count || inversions(seq) < count/20 {
		t.Fatalf("reordering link: %d delivered with %d inversions", len(seq), inversions(seq))
	}
	for _, d := range ds {
		i := int(binary.BigEndian.Uint32(d.Datagram))
		if late := d.At.Sub(t0.Add(time.Duration(i) * time.Microsecond)); late < f.Delay || late > f.Delay+f.ReorderDelay {
			t.Fatalf("datagram %d arrived %v after sending, outside [%v, %v]", i, late, f.Delay, f.Delay+f.ReorderDelay)
		}
	}
}

func TestNetworkDuplicate(t *testing.T) {
	n := NewNetwork(1)
	n.Attach(1)
	n.Attach(2)
	n.SetDefault(Faults{Duplicate: 1})
	buf := []byte("original")
	n.Send(t0, 1, buf)
	copy(buf, "CHANGED!") // the sender may reuse its buffer
	ds := drain(n)
	if len(ds) != 2 || string(ds[0].Datagram) != "original" || string(ds[1].Datagram) != "original" {
		t.Fatalf("deliveries %q", ds)
	}
	ds[0].Datagram[0] = 'X' // each delivery owns its copy
	if ds[1].Datagram[0] != 'o' {
		t.Fatal("two deliveries share one buffer")
	}
	if s := n.Stats()[Link{1, 2}]; s.Sent != 1 || s.Duplicated != 1 || s.Delivered != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestNetworkDelay(t *testing.T) {
	const delay, jitter = 5 * time.Millisecond, 3 * time.Millisecond
	n := NewNetwork(9)
	for id := wire.NodeID(1); id <= 3; id++ {
		n.Attach(id)
	}
	n.SetDefault(Faults{Delay: delay, Jitter: jitter})
	sent := make(map[string]time.Time)
	var last time.Time
	for i := range 300 {
		now := t0.Add(time.Duration(i) * 100 * time.Microsecond)
		p := payload(wire.NodeID(1+i%3), i)
		sent[string(p)] = now
		n.Send(now, wire.NodeID(1+i%3), p)
		// Take what is due, as a simulation does, so that sends and
		// deliveries mix.
		for {
			at, ok := n.Peek()
			if !ok || at.After(now) {
				break
			}
			d, _ := n.Next()
			if !at.Equal(d.At) {
				t.Fatalf("Peek said %v, Next gave %v", at, d.At)
			}
			last = checkDelay(t, d, sent, last, delay, jitter)
		}
	}
	for _, d := range drain(n) {
		last = checkDelay(t, d, sent, last, delay, jitter)
	}
}

func checkDelay(t *testing.T, d Delivery, sent map[string]time.Time, last time.Time, delay, jitter time.Duration) time.Time {
	t.Helper()
	if d.At.Before(last) {
		t.Fatalf("delivery at %v after one at %v", d.At, last)
	}
	if late := d.At.Sub(sent[string(d.Datagram)]); late < delay || late >= delay+jitter {
		t.Fatalf("%q arrived %v after sending, outside [%v, %v)", d.Datagram, late, delay, delay+jitter)
	}
	return d.At
}

func TestNetworkNeverToSender(t *testing.T) {
	n := NewNetwork(1)
	addrs := make(map[wire.NodeID]netip.AddrPort)
	for id := wire.NodeID(10); id <= 12; id++ {
		addrs[id] = n.Attach(id)
	}
	if want := netip.MustParseAddrPort("10.0.0.3:5000"); addrs[12] != want {
		t.Fatalf("third member at %v, want %v", addrs[12], want)
	}
	n.Send(t0, 11, []byte("m"))
	n.SendTo(t0, 11, 11, []byte("self"))
	n.SendTo(t0, 11, 12, []byte("u"))
	var got []string
	for _, d := range drain(n) {
		if d.FromAddr != addrs[11] || d.From != 11 {
			t.Fatalf("delivery from %v at %v", d.From, d.FromAddr)
		}
		got = append(got, fmt.Sprintf("%d:%s", uint64(d.To), d.Datagram))
	}
	if want := []string{"10:m", "12:m", "12:u"}; !slices.Equal(got, want) {
		t.Fatalf("deliveries %v, want %v", got, want)
	}
}

func TestNetworkDetach(t *testing.T) {
	n := NewNetwork(1)
	addr := n.Attach(1)
	n.Attach(2)
	n.Attach(3)
	n.SetDefault(Faults{Delay: time.Second})
	n.Send(t0, 1, []byte("in flight"))
	n.Send(t0, 2, []byte("from the dying"))
	n.Detach(2)
	if n.Pending() != 3 {
		t.Fatalf("%d pending after detaching, want 3 (1>3, 2>1, 2>3)", n.Pending())
	}
	n.Send(t0, 2, []byte("from the dead"))
	n.SendTo(t0, 1, 2, []byte("to the dead"))
	if n.Pending() != 3 {
		t.Fatalf("%d pending after sends by and to a dead member, want 3", n.Pending())
	}
	if s := n.Stats()[Link{1, 2}]; s.Sent != 2 || s.Lost != 2 {
		t.Fatalf("link to the dead member: %+v", s)
	}
	if again := n.Attach(1); again != addr {
		t.Fatalf("attaching a live member moved it from %v to %v", addr, again)
	}
	n.Detach(1)
	if again := n.Attach(1); again != addr {
		t.Fatalf("restarted member at %v, was at %v", again, addr)
	}
	checkAccounting(t, n.Stats(), map[Link]uint64{{1, 3}: 1, {2, 3}: 1})
}

func TestNetworkBounds(t *testing.T) {
	n := NewNetwork(1)
	n.Attach(1)
	n.Attach(2)
	for range MaxPending + 10 {
		n.Send(t0, 1, []byte("x"))
	}
	if n.Pending() != MaxPending {
		t.Fatalf("%d pending, want the bound %d", n.Pending(), MaxPending)
	}
	if s := n.Stats()[Link{1, 2}]; s.Overflow != 10 {
		t.Fatalf("stats %+v, want 10 overflowed", s)
	}
	if got := len(drain(n)); got != MaxPending {
		t.Fatalf("%d delivered", got)
	}

	n.SetLimits(0, 100)
	for range 4 {
		n.Send(t0, 1, make([]byte, 30))
	}
	if n.Pending() != 3 {
		t.Fatalf("%d pending, want 3 of 30 bytes under a bound of 100", n.Pending())
	}
	drain(n)
	// Taking deliveries frees their bytes.
	n.Send(t0, 1, make([]byte, 100))
	if n.Pending() != 1 {
		t.Fatalf("%d pending after draining", n.Pending())
	}
	checkAccounting(t, n.Stats(), map[Link]uint64{{1, 2}: 1})
}

// BenchmarkScenario: one seeded run of a five-member scenario (2,000
// sends, about 8,000 deliveries) per op.
func BenchmarkScenario(b *testing.B) {
	for i := range b.N {
		scenario(uint64(i))
	}
}

// TestUplink: a member's datagrams leave its uplink at the uplink's rate,
// each multicast once for every receiver, and those that find its queue
// full are dropped for every receiver alike.
func TestUplink(t *testing.T) {
	n := NewNetwork(1)
	n.Attach(1)
	n.Attach(2)
	n.Attach(3)
	// 8 Mbit/s: a 1000-byte datagram takes 1 ms; the queue holds 3.
	n.SetUplink(1, Uplink{Rate: 8e6, Queue: 3000})
	t0 := time.Unix(0, 0)
	b := make([]byte, 1000)
	for range 5 {
		n.Send(t0, 1, b)
	}
	var at []time.Duration
	for {
		d, ok := n.Next()
		if !ok {
			break
		}
		if d.To == 2 {
			at = append(at, d.At.Sub(t0))
		}
	}
	// The first leaves at 1 ms, two more queue behind it; the queue is
	// then full (3000 bytes still to send) until the first has left.
	want := []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond}
	if !slices.Equal(at, want) {
		t.Fatalf("arrivals %v, want %v", at, want)
	}
	if got := n.UplinkDrops(1); got != 2 {
		t.Errorf("uplink drops %d, want 2", got)
	}
	st := n.Stats()[Link{1, 3}]
	if st.Sent != 5 || st.Delivered != 3 || st.Overflow != 2 {
		t.Errorf("link 1->3: %+v", st)
	}
	// Once the queue has drained, datagrams leave at once again.
	n.Send(t0.Add(10*time.Millisecond), 1, b)
	d, _ := n.Next()
	if got := d.At.Sub(t0); got != 11*time.Millisecond {
		t.Errorf("after the queue drained: arrival at %v, want 11ms", got)
	}
}
