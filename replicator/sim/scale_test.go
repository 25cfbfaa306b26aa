package sim

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/source"
)

// TestScaleSmallFiles pushes 5,000 files (500 under the race detector) of 4 KiB over a 100 Mbit/s
// segment to 2 and to 16 receivers and reports each push's virtual time
// and round trips (polls): one multicast stream serves every member, so
// neither may grow with the member count. The figures are virtual time
// of the protocol alone (no disk, no CPU), deterministic for the seed.
func TestScaleSmallFiles(t *testing.T) {
	files := 5000
	// A member's look-up of each offered path, about what one costs on
	// the lab's hosts: the last answers come a decision round after the
	// first.
	const decideCost = 25 * time.Microsecond
	if raceBuild {
		files = 500 // the same comparison, ten times smaller for the race detector
	}
	type figure struct {
		virtual time.Duration
		polls   uint64
		bytes   uint64
		early   uint64 // blocks sent before every offer was answered
	}
	run := func(receivers int) figure {
		dir, err := os.MkdirTemp(simTempRoot(), "makuo-scale-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		c, err := New(Config{Seed: 9, Receivers: receivers, Rate: 100e6, Dir: dir, DecideCost: decideCost})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		content := make([]byte, 4096)
		for i := range files {
			p := filepath.Join(c.Sender().Base, fmt.Sprintf("d%02d", i%50), fmt.Sprintf("f%04d", i))
			if i < 50 {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			content[0], content[1] = byte(i), byte(i>>8)
			if err := os.WriteFile(p, content, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		before := c.Stats()
		res, err := c.Run(Push{Roots: []string{"."}, Options: source.Options{Recursive: true}})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range res.Outcomes {
			if o.Failed != "" || o.Result == nil || o.Result.Failed != 0 {
				t.Fatalf("%d receivers: %v: %q %+v", receivers, o.ID, o.Failed, o.Result)
			}
		}
		return figure{res.Virtual, res.Polls, c.Stats().Bytes - before.Bytes, res.Stats.EarlyBlocks}
	}
	two, sixteen := run(2), run(16)
	t.Logf("figure: %d x 4 KiB at 100 Mbit/s: 2 receivers %v, %d polls, %d blocks before the last answer; 16 receivers %v, %d polls, %d early (%.2fx the time)",
		files, two.virtual.Round(time.Millisecond), two.polls, two.early, sixteen.virtual.Round(time.Millisecond), sixteen.polls, sixteen.early,
		float64(sixteen.virtual)/float64(two.virtual))
	for _, f := range []figure{two, sixteen} {
		if f.early == 0 {
			t.Errorf("no content went out before the last offer was answered: the data waited for a round of decisions over the whole push")
		}
	}
	if sixteen.polls > two.polls || sixteen.virtual > two.virtual+two.virtual/20 {
		t.Errorf("16 receivers took %v and %d polls, 2 took %v and %d: the push grows with the member count",
			sixteen.virtual, sixteen.polls, two.virtual, two.polls)
	}
}
