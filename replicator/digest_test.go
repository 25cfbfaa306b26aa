package replicator

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/control"
	"github.com/makuo/makuo/replicator/transport/transporttest"
)

// TestResyncSeesEditsBehindIndex: the digest round runs on the hashes the
// sender's index held before its scan, so an edit made behind the
// daemon's back (no watcher; same size, an older mtime) is in the round's
// hashes as the old content, which every receiver still has. The push
// must offer it anyway, and a resync after it offers nothing.
func TestResyncSeesEditsBehindIndex(t *testing.T) {
	hub := transporttest.NewHub(3, transporttest.Faults{})
	nodes := startHubNodes(t, hub, 3, nil)
	src := nodes[0].base
	for _, p := range []string{"a/x", "a/deep/y", "b/z"} {
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if sum, fails := pushReq(t, nodes[0], control.PushRequest{Recursive: true}); len(fails) > 0 || sum.Changed == 0 {
		t.Fatalf("first push: summary %+v, failures %+v", sum, fails)
	}
	edit := filepath.Join(src, "a/deep/y")
	if err := os.WriteFile(edit, []byte("A/DEEP/Y"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(edit, old, old); err != nil {
		t.Fatal(err)
	}
	sum, fails := pushReq(t, nodes[0], control.PushRequest{Recursive: true})
	if len(fails) > 0 || sum.Changed != 1 {
		t.Fatalf("push after the edit: summary %+v, failures %+v, want 1 changed", sum, fails)
	}
	for _, x := range nodes[1:] {
		if b, err := os.ReadFile(filepath.Join(x.base, "a/deep/y")); err != nil || !bytes.Equal(b, []byte("A/DEEP/Y")) {
			t.Errorf("%s: a/deep/y = %q, %v; want the edit", x.cfg.Hostname, b, err)
		}
	}
	if sum, fails := pushReq(t, nodes[0], control.PushRequest{Recursive: true}); len(fails) > 0 || sum.Changed != 0 {
		t.Fatalf("resync: summary %+v, failures %+v, want nothing changed", sum, fails)
	}
}
