package replicator

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/control"
	"github.com/makuo/makuo/replicator/transport/transporttest"
	"github.com/makuo/makuo/replicator/wire"
)

// TestStalledReceiverStaysInPush: a receiver whose receive loop is held
// up on a batch of the push's data for longer than the session timeout,
// outside the applier (which answers Busy itself while it decides and
// commits), stays in the push: its read loop answers the sender's polls
// with Busy, so the sender waits for it instead of dropping it as dead,
// and it ends with the files.
func TestStalledReceiverStaysInPush(t *testing.T) {
	hub := transporttest.NewHub(11, transporttest.Faults{})
	nodes := startHubNodes(t, hub, 3, nil)
	slow := nodes[2]
	// Well past the session timeout, yet short enough for a quick test.
	stallFor := slow.cfg.SessionTimeout + 1500*time.Millisecond
	if busy := slow.recv.apply.Busy; busy <= 0 || stallFor < 2*busy {
		t.Fatalf("busy interval %v leaves no room for Busy answers in a stall of %v", busy, stallFor)
	}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before the nodes stop: their loops must be free to end
	var once sync.Once
	var stalled bool // under once
	slow.recv.beforeBatch = func(items []recvItem) {
		if !slices.ContainsFunc(items, func(it recvItem) bool { _, ok := it.msg.(*wire.Data); return ok }) {
			return
		}
		once.Do(func() {
			stalled = true
			select {
			case <-time.After(stallFor):
			case <-release:
			}
		})
	}

	src := nodes[0].base
	want := map[string][]byte{}
	for i, size := range []int{10, 5000, 200_000} {
		name := "f" + string(rune('0'+i))
		content := bytes.Repeat([]byte{byte('a' + i)}, size)
		if err := os.WriteFile(filepath.Join(src, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
		want[name] = content
	}
	sum, fails := pushReq(t, nodes[0], control.PushRequest{Recursive: true})
	once.Do(func() {}) // waits out a stall the push left behind; orders the read of stalled
	if !stalled {
		t.Fatal("the slow receiver's loop never got a batch of data to stall on")
	}
	if len(fails) > 0 || sum == nil || len(sum.FailedMembers) > 0 || !sum.OK() {
		t.Fatalf("summary %+v, failures %+v", sum, fails)
	}
	if m := sum.Members; !slices.Contains(m, slow.cfg.Hostname) || !slices.Contains(m, nodes[1].cfg.Hostname) {
		t.Fatalf("push was for %v, want both receivers", m)
	}
	for _, x := range nodes[1:] {
		for name, content := range want {
			got, err := os.ReadFile(filepath.Join(x.base, name))
			if err != nil || !bytes.Equal(got, content) {
				t.Errorf("%s: %s: %d bytes, %v; want %d bytes of %q", x.cfg.Hostname, name, len(got), err, len(content), content[0])
			}
		}
	}
}
