package sim

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/makuo/makuo/replicator/source"
	"github.com/makuo/makuo/replicator/transport/transporttest"
	"github.com/makuo/makuo/replicator/wire"
)

var (
	seeds    = flag.Int("sim.seeds", 0, "number of seeded runs of TestSimulation (0: 200, or 20 with the race detector)")
	seedFrom = flag.Uint64("sim.seed", 1, "first seed of TestSimulation")
	verbose  = flag.Bool("sim.trace", false, "trace every event of the runs")
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSimulation runs whole pushes under seeded faults and checks DESIGN's
// guarantees after each (see CheckMirror). A failing seed prints the
// command that replays it alone.
func TestSimulation(t *testing.T) {
	n := *seeds
	if n == 0 {
		n = 200
		if raceBuild {
			n = 20
		}
	}
	// Seeds are independent: run them on every CPU, each on its own
	// goroutine, deterministic within itself.
	work := make(chan uint64)
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for seed := range work {
				if err := runSeed(t, seed); err != nil {
					failed.Add(1)
					t.Errorf("seed %d: %v\nreplay: go test ./replicator/sim -run 'TestSimulation$' -sim.seed=%d -sim.seeds=1 -sim.trace", seed, err, seed)
				}
			}
		})
	}
	for seed := *seedFrom; seed < *seedFrom+uint64(n); seed++ {
		if testing.Short() && failed.Load() > 0 {
			break
		}
		work <- seed
	}
	close(work)
	wg.Wait()
	t.Logf("%d seeds from %d: %d failed", n, *seedFrom, failed.Load())
}

// simTempRoot is where the runs' base directories go: a tmpfs where there
// is one (thousands of runs create and remove millions of files, which a
// disk's journal makes several times slower), else the default.
func simTempRoot() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return ""
}

// scenario is what one seed draws.
type scenario struct {
	receivers int
	faults    transporttest.Faults
	crash     bool // a receiver dies mid-push and comes back
	partition bool // a receiver is cut off for a while
	files     int  // in the first push; later pushes change a few
	decide    time.Duration
}

func drawScenario(seed uint64) scenario {
	r := rand.New(rand.NewPCG(seed, 0x5ce))
	sc := scenario{receivers: 1 + r.IntN(4), files: 3 + r.IntN(25)}
	if r.IntN(5) == 0 {
		sc.receivers = 5 + r.IntN(12)
	}
	if r.IntN(3) > 0 {
		sc.faults = transporttest.Faults{
			Loss:      []float64{0, 0.01, 0.05, 0.2}[r.IntN(4)],
			Duplicate: []float64{0, 0.02, 0.1}[r.IntN(3)],
			Reorder:   []float64{0, 0.05, 0.2}[r.IntN(3)],
			Delay:     time.Duration(r.IntN(3)) * time.Millisecond,
			Jitter:    time.Duration(r.IntN(2)) * time.Millisecond,
		}
	}
	sc.crash = r.IntN(6) == 0
	sc.partition = r.IntN(6) == 0
	if r.IntN(6) == 0 {
		// Enough entries for many offers: content flows while later
		// offers are still being answered.
		sc.files = 60 + r.IntN(140)
	}
	if r.IntN(2) == 0 {
		sc.decide = 20 * time.Microsecond // answers to later offers come later
	}
	return sc
}

func runSeed(t *testing.T, seed uint64) error {
	sc := drawScenario(seed)
	dir, err := os.MkdirTemp(simTempRoot(), "makuo-sim-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c, err := New(Config{Seed: seed, Receivers: sc.receivers, Faults: sc.faults, Rate: 1e9, Dir: dir, DecideCost: sc.decide})
	if err != nil {
		return err
	}
	defer c.Close()
	if *verbose {
		c.Trace = t.Logf
	}
	g := NewGen(seed)
	if err := g.Populate(c.Sender().Base, sc.files); err != nil {
		return err
	}
	hist := History{}
	for i, n := range c.Receivers() {
		if i%2 == 1 { // some members start with a tree of their own
			if err := g.Populate(n.Base, 1+sc.files/3); err != nil {
				return err
			}
			if err := n.Reindex(); err != nil {
				return err
			}
		}
		st, err := n.Snapshot()
		if err != nil {
			return err
		}
		hist.Add(st)
	}
	mirror := Push{Roots: []string{"."}, Options: source.Options{Recursive: true, Mirror: true, Sync: true}}
	for round := range 3 {
		if round > 0 {
			if err := g.Mutate(c.Sender().Base, 1+g.rng.IntN(6)); err != nil {
				return err
			}
		}
		st, err := c.Sender().Snapshot()
		if err != nil {
			return err
		}
		hist.Add(st)
		p := mirror
		var victim *Node
		if round < 2 {
			p.During, victim = faultsDuring(c, sc, seed+uint64(round))
		} else {
			// The last push runs on a healed cluster: everyone must
			// converge (nothing lost for members reachable long enough).
			c.Network().Heal()
			c.Network().SetDefault(transporttest.Faults{})
			for _, n := range c.Receivers() {
				if n.Down {
					if err := c.Restart(n); err != nil {
						return err
					}
				}
			}
		}
		members := c.members(nil)
		res, err := c.Run(p)
		if err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
		if err := c.Settle(3 * time.Minute); err != nil {
			return err
		}
		if errs := c.CheckMirror(res, members, hist); len(errs) > 0 {
			return fmt.Errorf("round %d: %w", round, errors.Join(errs...))
		}
		// Loss, duplication, reordering and delay cost repairs, not a
		// member: every member but the one crashed or cut off applies
		// everything, and after the heal every member does. Only under
		// heavy loss may a member that stayed silent for the session
		// timeout (every answer lost, again and again) be dropped.
		for _, o := range res.Outcomes {
			if victim != nil && o.ID == victim.ID {
				continue
			}
			if o.Dropped && c.cfg.Faults.Loss >= 0.1 && round < 2 {
				continue
			}
			if o.Failed != "" || o.Result == nil || o.Result.Failed != 0 {
				return fmt.Errorf("round %d: %v did not apply everything: %q %+v", round, o.ID, o.Failed, o.Result)
			}
		}
		for _, n := range c.Receivers() {
			if !n.Down {
				st, err := n.Snapshot()
				if err != nil {
					return err
				}
				hist.Add(st)
			}
		}
	}
	return nil
}

// faultsDuring returns the During hook that crashes or partitions a
// receiver at a random moment of the push, and that receiver.
func faultsDuring(c *Cluster, sc scenario, seed uint64) (func(*Cluster), *Node) {
	if !sc.crash && !sc.partition {
		return nil, nil
	}
	r := rand.New(rand.NewPCG(seed, 0xfa17))
	victim := c.Receivers()[r.IntN(len(c.Receivers()))]
	start := c.Now().Add(time.Duration(r.IntN(200)) * time.Millisecond)
	back := start.Add(time.Duration(1+r.IntN(8)) * time.Second)
	var hit, healed bool
	return func(c *Cluster) {
		switch {
		case !hit && !c.Now().Before(start):
			hit = true
			if sc.crash && !victim.Down {
				c.Crash(victim)
			} else {
				c.Network().Partition([]wire.NodeID{victim.ID})
			}
		case hit && !healed && !c.Now().Before(back):
			healed = true
			if victim.Down {
				_ = c.Restart(victim)
			}
			c.Network().Heal()
		}
	}, victim
}

// TestSimulationDeterministic: the same seed gives the same run, datagram
// for datagram.
func TestSimulationDeterministic(t *testing.T) {
	run := func() (Stats, time.Duration) {
		dir := t.TempDir()
		c, err := New(Config{Seed: 42, Receivers: 3, Faults: transporttest.Faults{Loss: 0.05, Reorder: 0.1, Duplicate: 0.05}, Rate: 1e9, Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := NewGen(42).Populate(c.Sender().Base, 20); err != nil {
			t.Fatal(err)
		}
		res, err := c.Run(Push{Roots: []string{"."}, Options: source.Options{Recursive: true, Mirror: true, Sync: true}})
		if err != nil {
			t.Fatal(err)
		}
		return c.Stats(), res.Virtual
	}
	a, va := run()
	b, vb := run()
	if a != b || va != vb {
		t.Fatalf("same seed, different runs: %+v in %v vs %+v in %v", a, va, b, vb)
	}
	if a.Datagrams == 0 {
		t.Fatal("nothing was sent")
	}
}
