package replicator

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestOpenFilesBounded: a session reading many files keeps at most
// maxOpenFiles of them open, reopens an evicted one on demand, and closes
// all at the end.
func TestOpenFilesBounded(t *testing.T) {
	dir := t.TempDir()
	const n = 3 * maxOpenFiles
	opened := map[int]int{}
	var all []*os.File
	o := openFiles{files: map[int]*os.File{}}
	open := func(i int) func() (*os.File, error) {
		return func() (*os.File, error) {
			opened[i]++
			f, err := os.Create(filepath.Join(dir, "f"))
			all = append(all, f)
			return f, err
		}
	}
	for i := range n {
		if _, err := o.get(i, open(i)); err != nil {
			t.Fatal(err)
		}
		if _, err := o.get(i, open(i)); err != nil { // a second block of the same file
			t.Fatal(err)
		}
	}
	if len(o.files) != maxOpenFiles {
		t.Fatalf("%d files open, want %d", len(o.files), maxOpenFiles)
	}
	if _, err := o.get(0, open(0)); err != nil { // a repair of an evicted file
		t.Fatal(err)
	}
	if opened[0] != 2 || opened[n-1] != 1 {
		t.Fatalf("opens: file 0 %d times, last file %d times", opened[0], opened[n-1])
	}
	o.closeAll()
	for _, f := range all {
		if err := f.Close(); err == nil {
			t.Fatal("a file was still open after closeAll")
		}
	}
}

// TestEchoGuardSweepsRarely: past echoSweepAt entries, the expired ones are
// swept out once per echoTTL/10, not at every note (which made a push of
// 100,000 files quadratic), and old entries do go.
func TestEchoGuardSweepsRarely(t *testing.T) {
	g := newEchoGuard()
	old := time.Now().Add(-2 * echoTTL)
	g.m["old"] = applied{at: old.UnixNano()}
	for i := range echoSweepAt + 10 {
		g.note(fmt.Sprintf("f%d", i), nil, fs.ErrNotExist, 1)
	}
	first := g.nextExpire
	if first.IsZero() {
		t.Fatal("no sweep past echoSweepAt entries")
	}
	if _, ok := g.m["old"]; ok {
		t.Fatal("an expired entry survived the sweep")
	}
	for i := range 1000 {
		g.note(fmt.Sprintf("g%d", i), nil, fs.ErrNotExist, 1)
	}
	if g.nextExpire != first {
		t.Fatal("swept again within echoTTL/10")
	}
	if len(g.m) != echoSweepAt+10+1000 {
		t.Fatalf("%d entries, want every recent one kept", len(g.m))
	}
}

// TestBacklogCountsPolls: the sender slows down when a member that keeps
// talking leaves more than maxBacklog polls unanswered, however far apart
// the polls' block numbers are (a delta push skips most of them), and not
// for a member that went silent.
func TestBacklogCountsPolls(t *testing.T) {
	tests := []struct {
		name     string
		behind   uint32 // polls sent after the latest one answered
		silent   bool
		wantSlow bool
	}{
		{"within the backlog", maxBacklog, false, false},
		{"past the backlog", maxBacklog + 1, false, true},
		{"silent member", maxBacklog + 5, true, false},
	}
	for _, tt := range tests {
		heard := time.Now()
		if tt.silent {
			heard = heard.Add(-time.Second)
		}
		p := &peer{needsData: true, heard: heard, answeredRound: 3}
		s := &sendSession{n: &Node{log: slog.New(slog.DiscardHandler)}, peers: []*peer{p}, rate: 100e6}
		// Polls 1-3 went out at block 512, 40,000 and 80,000: sparse sends.
		s.pollAt = map[uint32]uint64{1: 512, 2: 40000, 3: 80000}
		s.round = 3 + tt.behind
		s.checkBacklog()
		if slowed := s.rate < 100e6; slowed != tt.wantSlow {
			t.Errorf("%s: rate %.0f Mbit/s, slowed=%v, want %v", tt.name, s.rate/1e6, slowed, tt.wantSlow)
		}
	}
}

// TestPruneRepaired: past repairedPruneAt entries, repairs older than
// every active member's latest answer are forgotten; newer ones, which a
// Nack in flight may still name, are kept.
func TestPruneRepaired(t *testing.T) {
	s := &sendSession{round: 9, repaired: map[uint64]uint32{},
		peers: []*peer{{answeredRound: 5}, {answeredRound: 7}, {answeredRound: 1, failed: "dropped"}}}
	for b := range uint64(repairedPruneAt) {
		s.repaired[b] = uint32(b % 9) // rounds 0-8
	}
	s.pruneRepaired()
	for b, r := range s.repaired {
		if r < 5 {
			t.Fatalf("block %d repaired in round %d kept; members answered round 5 and later", b, r)
		}
	}
	want := 0
	for b := range uint64(repairedPruneAt) {
		if b%9 >= 5 {
			want++
		}
	}
	if len(s.repaired) != want {
		t.Fatalf("%d repairs kept, want %d (rounds 5-8)", len(s.repaired), want)
	}
	// No member answered anything newer: the next batch skips the walk
	// (the map is past repairedPruneAt again, with recent repairs).
	for b := uint64(1 << 32); len(s.repaired) < repairedPruneAt; b++ {
		s.repaired[b] = 9
	}
	s.repaired[1<<40] = 2
	s.pruneRepaired()
	if _, ok := s.repaired[1<<40]; !ok {
		t.Fatal("swept again although no member had answered a newer poll")
	}
	s.peers[0].answeredRound, s.peers[1].answeredRound = 8, 8
	s.pruneRepaired()
	for b, r := range s.repaired {
		if r < 8 {
			t.Fatalf("block %d repaired in round %d kept; members answered round 8", b, r)
		}
	}
}
