package sim

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/makuo/makuo/replicator/source"
	"github.com/makuo/makuo/replicator/wire"
)

// TestSimulationRegressions replays seeds that once found a bug:
//   - 63: a member restarted into a session kept the temp files of what it
//     could not complete after the commit;
//   - 158: a symbolic link with the right target but another mtime was
//     left alone, so the member's tree never matched.
func TestSimulationRegressions(t *testing.T) {
	for _, seed := range []uint64{63, 158} {
		if err := runSeed(t, seed); err != nil {
			t.Errorf("seed %d: %v", seed, err)
		}
	}
}

// oneReceiver is a cluster of a sender and one receiver on a clean
// network.
func oneReceiver(t *testing.T, cfg Config) (*Cluster, *Node, *Node) {
	t.Helper()
	cfg.Receivers, cfg.Dir = 1, t.TempDir()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, c.Sender(), c.Receivers()[0]
}

func write(t *testing.T, base, rel, content string) {
	t.Helper()
	p := filepath.Join(base, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, c *Cluster, p Push) *Result {
	t.Helper()
	res, err := c.Run(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Settle(time.Second); err != nil {
		t.Fatal(err)
	}
	return res
}

var resync = Push{Roots: []string{"."}, Options: source.Options{Recursive: true, Mirror: true, Sync: true}}

// TestPlantedSymlinkNotFollowed: a receiver whose a is a symbolic link to
// another directory of the base gets the sender's directory a, and
// nothing is written through the link (issue 12, defect 3).
func TestPlantedSymlinkNotFollowed(t *testing.T) {
	c, snd, rcv := oneReceiver(t, Config{Seed: 1})
	write(t, snd.Base, "a/f", "new")
	write(t, rcv.Base, "htdocs/f", "keep me")
	if err := os.Symlink("htdocs", filepath.Join(rcv.Base, "a")); err != nil {
		t.Fatal(err)
	}
	if err := rcv.Reindex(); err != nil {
		t.Fatal(err)
	}
	res := run(t, c, Push{Roots: []string{"a"}, Options: source.Options{Recursive: true}})
	if b, err := os.ReadFile(filepath.Join(rcv.Base, "htdocs/f")); err != nil || string(b) != "keep me" {
		t.Fatalf("htdocs/f = %q, %v: written through the planted link", b, err)
	}
	if fi, err := os.Lstat(filepath.Join(rcv.Base, "a")); err != nil || !fi.IsDir() {
		t.Fatalf("a is not a directory: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(filepath.Join(rcv.Base, "a/f")); string(b) != "new" {
		t.Fatalf("a/f = %q", b)
	}
	if o := res.Outcomes[0]; o.Result == nil || o.Result.Failed != 0 {
		t.Fatalf("outcome %+v", o)
	}
}

// TestFileReplacesDirectory: a file the sender has where a receiver has a
// directory replaces it, so the trees converge (issue 12, defect 9).
func TestFileReplacesDirectory(t *testing.T) {
	c, snd, rcv := oneReceiver(t, Config{Seed: 2})
	write(t, snd.Base, "x", "a file")
	write(t, rcv.Base, "x/inside", "old")
	if err := rcv.Reindex(); err != nil {
		t.Fatal(err)
	}
	res := run(t, c, resync)
	if b, err := os.ReadFile(filepath.Join(rcv.Base, "x")); err != nil || string(b) != "a file" {
		t.Fatalf("x = %q, %v (outcome %+v)", b, err, res.Outcomes[0].Result)
	}
}

// TestMirrorSparesLocalExcludes: a mirror push that does not repeat a
// receiver's own excludes does not delete what they match (issue 12,
// defect 7).
func TestMirrorSparesLocalExcludes(t *testing.T) {
	c, snd, rcv := oneReceiver(t, Config{Seed: 3, Excludes: []string{"cache/", "*.swp"}})
	write(t, snd.Base, "index.html", "hi")
	write(t, rcv.Base, "cache/page", "cached")
	write(t, rcv.Base, ".index.html.swp", "editor")
	write(t, rcv.Base, "stale.html", "gone on the sender")
	if err := rcv.Reindex(); err != nil {
		t.Fatal(err)
	}
	run(t, c, resync)
	for _, kept := range []string{"cache/page", ".index.html.swp"} {
		if _, err := os.Stat(filepath.Join(rcv.Base, kept)); err != nil {
			t.Errorf("%s was deleted: %v", kept, err)
		}
	}
	if _, err := os.Stat(filepath.Join(rcv.Base, "stale.html")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale.html was not deleted: %v", err)
	}
}

// TestWatcherDeleteKeepsLocalEdit: in a watcher session, a directory
// deleted on the sender is kept on a member while it holds an edit that
// member has not replicated yet; that is a settled conflict (kept_local),
// not an apply error (issue 12, defect 8).
func TestWatcherDeleteKeepsLocalEdit(t *testing.T) {
	c, _, rcv := oneReceiver(t, Config{Seed: 4, Watch: true})
	write(t, rcv.Base, "d/mine", "a local edit")
	if err := rcv.Reindex(); err != nil {
		t.Fatal(err)
	}
	res := run(t, c, Push{Roots: []string{"d"}, Options: source.Options{Sync: true}, Flags: wire.SessionNewerWins})
	if _, err := os.Stat(filepath.Join(rcv.Base, "d/mine")); err != nil {
		t.Fatalf("the local edit went with its directory: %v", err)
	}
	r := res.Outcomes[0].Result
	if r == nil || len(r.Failures) != 1 || r.Failures[0].Code != wire.FailKeptLocal {
		t.Fatalf("result %+v", r)
	}
	m := c.Metrics()
	if got := testutil.ToFloat64(m.Conflicts.WithLabelValues("kept_local")); got != 1 {
		t.Fatalf("kept_local conflicts %v", got)
	}
	for _, reason := range []string{"type_conflict", "other", "io"} {
		if got := testutil.ToFloat64(m.ApplyErrors.WithLabelValues(reason)); got != 0 {
			t.Fatalf("apply errors %s = %v for a settled conflict", reason, got)
		}
	}
	// Once nothing in it is a local edit, the delete goes through.
	if err := os.Remove(filepath.Join(rcv.Base, "d/mine")); err != nil {
		t.Fatal(err)
	}
	run(t, c, Push{Roots: []string{"d"}, Options: source.Options{Sync: true}, Flags: wire.SessionNewerWins})
	if _, err := os.Stat(filepath.Join(rcv.Base, "d")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("d survived a delete with nothing to protect: %v", err)
	}
}
