package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/source"
	"github.com/makuo/makuo/replicator/transport/transporttest"
	"github.com/makuo/makuo/replicator/wire"
)

// shapedFigures is what one push over a shaped link cost.
type shapedFigures struct {
	payload, ideal uint64 // content bytes, and the data datagrams that carry them once
	wire           uint64 // bytes the sender sent
	datagrams      uint64 // datagrams the sender sent
	drops          uint64 // of them, dropped by the full uplink queue
	virtual, link  time.Duration
	stats          Result
}

// TestShapedLink (issue 16): a sender whose uplink is shaped to 500
// Mbit/s with a 50 ms queue (tbf) and whose own ceiling is 10 Gbit/s must
// find the link from the receivers' delivery reports, not overrun it:
// little more than the payload on the wire, few datagrams dropped by the
// queue, and the push done in about the time the link takes to carry the
// payload. The figures are virtual time and counts of the deterministic
// simulation, the same for every run of the seed.
func TestShapedLink(t *testing.T) {
	const link = 500e6
	queue := int(link / 8 * 0.050)
	tests := []struct {
		name        string
		files, size int
	}{
		{"5000x4KiB", 5000, 4 << 10},
		{"64MiB", 1, 64 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := shapedPush(t, transporttest.Uplink{Rate: link, Queue: queue}, 10e9, tt.files, tt.size)
			wireRatio := float64(f.wire) / float64(f.ideal)
			dropRate := float64(f.drops) / float64(f.datagrams)
			timeRatio := float64(f.virtual) / float64(f.link)
			t.Logf("figure: %s over 500 Mbit/s (50 ms queue), ceiling 10 Gbit/s: wire %.3fx the payload's datagrams (%.3fx the payload), "+
				"%d of %d datagrams dropped (%.2f%%), %v for a link time of %v (%.2fx), final rate %.0f Mbit/s, %d caps, %d back-offs, %d repairs",
				tt.name, wireRatio, float64(f.wire)/float64(f.payload), f.drops, f.datagrams, 100*dropRate,
				f.virtual.Round(time.Millisecond), f.link.Round(time.Millisecond), timeRatio,
				f.stats.Stats.Rate/1e6, f.stats.Stats.Caps, f.stats.Stats.BackOffs, f.stats.Stats.Retransmits)
			if wireRatio > 1.1 {
				t.Errorf("the sender sent %.3fx the payload's datagrams: it overruns the link", wireRatio)
			}
			if dropRate > 0.02 {
				t.Errorf("the uplink queue dropped %.2f%% of the sender's datagrams", 100*dropRate)
			}
			if timeRatio > 1.2 {
				t.Errorf("the push took %.2fx the link time", timeRatio)
			}
			if f.stats.Stats.Rate > 1.2*link {
				t.Errorf("the rate ended at %.0f Mbit/s, far above the link", f.stats.Stats.Rate/1e6)
			}
		})
	}
}

// TestRandomLossKeepsSpeed (issue 16): random loss without a bottleneck
// costs repairs, not speed: with 1% and 5% of the datagrams lost on every
// link the sender stays at its ceiling and the delivery reports cap
// nothing, and with 1% the push takes little more than a clean one.
func TestRandomLossKeepsSpeed(t *testing.T) {
	const ceiling, size, receivers = 1e9, 32 << 20, 3
	clean := pushOver(t, transporttest.Uplink{}, transporttest.Faults{}, ceiling, 1, size)
	for _, loss := range []float64{0.01, 0.05} {
		f := pushOver(t, transporttest.Uplink{}, transporttest.Faults{Loss: loss}, ceiling, 1, size)
		st := f.stats.Stats
		t.Logf("figure: 32 MiB with %.0f%% loss at a 1 Gbit/s ceiling: %v (clean %v, %.2fx), final rate %.0f Mbit/s, %d caps, %d back-offs, %d repairs",
			100*loss, f.virtual.Round(time.Millisecond), clean.virtual.Round(time.Millisecond), float64(f.virtual)/float64(clean.virtual),
			st.Rate/1e6, st.Caps, st.BackOffs, st.Retransmits)
		if st.Caps != 0 || st.Rate < ceiling {
			t.Errorf("%.0f%% random loss: %d caps, rate %.0f Mbit/s: it slowed the sender", 100*loss, st.Caps, st.Rate/1e6)
		}
		// The blocks some member lost go out once more at the same rate,
		// the last ones a round trip later.
		repairs := 1 - math.Pow(1-loss, receivers)
		if allowed := time.Duration(float64(clean.virtual) * (1 + repairs + 0.05)); loss <= 0.01 && f.virtual > allowed {
			t.Errorf("%.0f%% random loss: %v, clean %v", 100*loss, f.virtual, clean.virtual)
		}
	}
}

// shapedPush pushes files of size bytes from a sender with uplink u and
// ceiling rate to 3 receivers and returns what it cost.
func shapedPush(t *testing.T, u transporttest.Uplink, rate float64, files, size int) shapedFigures {
	t.Helper()
	return pushOver(t, u, transporttest.Faults{}, rate, files, size)
}

// pushOver pushes files of size bytes from a sender with uplink u and
// ceiling rate to 3 receivers over links with faults, and returns what it
// cost.
func pushOver(t *testing.T, u transporttest.Uplink, faults transporttest.Faults, rate float64, files, size int) shapedFigures {
	t.Helper()
	dir, err := os.MkdirTemp(simTempRoot(), "makuo-shaped-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c, err := New(Config{Seed: 16, Receivers: 3, Rate: rate, Faults: faults, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Network().SetUplink(c.Sender().ID, u)
	var f shapedFigures
	bs := uint64(maxPayload - wire.DataHeaderLen)
	content := make([]byte, size)
	rng := rand.New(rand.NewPCG(16, 0))
	for i := range files {
		p := filepath.Join(c.Sender().Base, fmt.Sprintf("d%02d", i%50), fmt.Sprintf("f%04d", i))
		if i < 50 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for k := 0; k < len(content); k += 8 {
			v := rng.Uint64()
			for j := 0; j < 8 && k+j < len(content); j++ {
				content[k+j] = byte(v >> (8 * j))
			}
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		blocks := (uint64(size) + bs - 1) / bs
		f.payload += uint64(size)
		f.ideal += uint64(size) + blocks*(wire.HeaderLen+wire.DataHeaderLen)
	}
	before, drops := c.Stats(), c.Network().UplinkDrops(c.Sender().ID)
	res, err := c.Run(Push{Roots: []string{"."}, Options: source.Options{Recursive: true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range res.Outcomes {
		if o.Failed != "" || o.Result == nil || o.Result.Failed != 0 || o.Result.Applied == 0 {
			t.Fatalf("%v: %q %+v", o.ID, o.Failed, o.Result)
		}
	}
	after := c.Stats()
	f.wire = after.SenderBytes - before.SenderBytes
	f.datagrams = after.SenderDatagrams - before.SenderDatagrams
	f.drops = c.Network().UplinkDrops(c.Sender().ID) - drops
	f.virtual = res.Virtual
	if u.Rate > 0 {
		f.link = time.Duration(float64(f.ideal*8) / u.Rate * float64(time.Second))
	}
	f.stats = *res
	return f
}
