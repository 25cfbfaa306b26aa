package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/stage"
)

const mib = 1 << 20

// push runs msync on h and fails the test unless it exits with want.
func push(t *testing.T, h *Host, want int, args ...string) string {
	t.Helper()
	start := time.Now()
	out, errOut, code := h.Msync(args...)
	if code != want {
		t.Fatalf("msync %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errOut)
	}
	t.Logf("msync %s (%.2fs): %s", strings.Join(args, " "), time.Since(start).Seconds(), lastLine(out))
	return out
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// TestTransferTree: one sender and three receivers; a tree with every file
// type, 2,000 small files and a 200 MiB file arrives byte-identical with
// modes, owners, mtimes, link targets and hard-link groups.
func TestTransferTree(t *testing.T) {
	transferTree(t, NewLab(t, 4), treeSpec{smallFiles: 2000, bigSize: 200 * mib})
}

// transferTree is TestTransferTree's body, with a tree of spec, on any
// lab of 4 hosts (TestIPv6 runs it on the IPv6 group).
func transferTree(t *testing.T, lab *Lab, spec treeSpec) {
	t.Helper()
	lab.StartAll()
	h := lab.Hosts
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == 4 }, "members did not join")
	makeTree(t, h[0].Base, spec)
	want := treeSnapshot(t, h[0].Base)

	out := push(t, h[0], 0, "-r")
	if !strings.Contains(out, "3 members") || !strings.Contains(out, " 0 failed") {
		t.Fatalf("summary: %s", out)
	}
	for _, r := range h[1:] {
		sameTree(t, r.Name, want, r.Base)
	}
	// Nothing changed: nothing to do, nothing sent.
	out = push(t, h[0], 0, "-r")
	if !strings.Contains(out, ": 0 changed") {
		t.Fatalf("no-change resync changed something:\n%s", out)
	}
}

// TestTransferLoss: 5% random loss on every receiver and 20% on one.
func TestTransferLoss(t *testing.T) {
	transferLoss(t, NewLab(t, 4), treeSpec{smallFiles: 2000, bigSize: 200 * mib}, map[int]int{2: 5, 3: 5, 4: 20})
}

// transferLoss is TestTransferLoss's body: a tree of spec pushed with
// loss percent on host I (by lab.sh's numbering) for each I, loss.
func transferLoss(t *testing.T, lab *Lab, spec treeSpec, loss map[int]int) {
	t.Helper()
	lab.StartAll()
	h := lab.Hosts
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == len(h) }, "members did not join")
	makeTree(t, h[0].Base, spec)
	want := treeSnapshot(t, h[0].Base)
	for i, pct := range loss {
		lab.script("loss", lab.name, fmt.Sprint(i), fmt.Sprint(pct))
	}

	push(t, h[0], 0, "-r")
	for _, r := range h[1:] {
		sameTree(t, r.Name, want, r.Base)
	}
}

// TestReceiverKilled: a receiver SIGKILLed in the middle of a 200 MiB
// transfer does not hold up the others; msync reports it failed; after a
// restart no temp file remains and msync -r completes it.
func TestReceiverKilled(t *testing.T) {
	receiverKilled(t, NewLab(t, 4), 200*mib, 400) // ~4 s of transfer: time to kill one
}

// receiverKilled is TestReceiverKilled's body, on any lab of 4 hosts: the
// file is size bytes, and the sender sends at most mbit.
func receiverKilled(t *testing.T, lab *Lab, size int64, mbit int) {
	t.Helper()
	lab.StartAll("--session-timeout", "2s")
	h := lab.Hosts
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == 4 }, "members did not join")
	writeRandom(t, filepath.Join(h[0].Base, "big.bin"), size, 3)
	lab.script("shape", lab.name, "1", fmt.Sprint(mbit))

	type result struct {
		out  string
		code int
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		out, _, code := h[0].Msync("big.bin")
		done <- result{out, code}
	}()
	// Kill h4 once it has started receiving.
	eventually(t, 10*time.Second, func() bool { return tempFiles(h[3].Base) > 0 }, "h4 never started receiving")
	h[3].Signal(syscall.SIGKILL)
	h[3].Wait(5 * time.Second)
	killed := time.Since(start)
	var res result
	select {
	case res = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("msync did not finish after a receiver was killed")
	}
	t.Logf("figure: push finished %.2fs after start, %.2fs after the kill", time.Since(start).Seconds(), (time.Since(start) - killed).Seconds())
	if res.code != 1 || !strings.Contains(res.out, "FAILED  member h4") {
		t.Fatalf("msync: exit %d, want 1 with h4 failed:\n%s", res.code, res.out)
	}
	want := fileSum(t, filepath.Join(h[0].Base, "big.bin"))
	for _, r := range h[1:3] {
		if got := fileSum(t, filepath.Join(r.Base, "big.bin")); got != want {
			t.Fatalf("%s: content differs", r.Name)
		}
	}
	if tempFiles(h[3].Base) == 0 {
		t.Fatal("the kill left no temp file: the test did not interrupt the transfer")
	}
	h[3].Start("--session-timeout", "2s")
	// Asked of h4 itself: the others may still list its killed daemon
	// (a short push ends before it expires). The restarted one hears them
	// only once it runs, after its sweep of stale temp files.
	eventually(t, 5*time.Second, func() bool { return len(h[3].Members()) == 4 }, "h4 did not rejoin")
	if n := tempFiles(h[3].Base); n != 0 {
		t.Fatalf("%d temp files remain on h4 after restart", n)
	}
	lab.script("shape", lab.name, "1", "0")
	out := push(t, h[0], 0, "-r")
	if !strings.Contains(out, "big.bin  h4") {
		t.Fatalf("resync did not send big.bin to h4 only:\n%s", out)
	}
	if got := fileSum(t, filepath.Join(h[3].Base, "big.bin")); got != want {
		t.Fatal("h4: content differs after resync")
	}
}

// tempFiles counts staging files under dir.
func tempFiles(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && stage.IsTempName(d.Name()) {
			n++
		}
		return nil
	})
	return n
}

// TestAtomicReplace: a reader hashing the file in a loop on a receiver
// while it is replaced again and again only ever sees a complete version.
func TestAtomicReplace(t *testing.T) {
	atomicReplace(t, NewLab(t, 2))
}

// atomicReplace is TestAtomicReplace's body, on any lab of 2 hosts.
func atomicReplace(t *testing.T, lab *Lab) {
	t.Helper()
	lab.StartAll()
	h := lab.Hosts
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == 2 }, "members did not join")
	src := filepath.Join(h[0].Base, "f.bin")
	dst := filepath.Join(h[1].Base, "f.bin")
	valid := map[string]bool{}
	var mu sync.Mutex
	writeVersion := func(i int) {
		writeRandom(t, src, 8*mib+int64(i)*4096, uint64(100+i))
		mu.Lock()
		valid[fileSum(t, src)] = true
		mu.Unlock()
	}
	writeVersion(0)
	push(t, h[0], 0, "f.bin")

	var stop atomic.Bool
	var reads, torn atomic.Int64
	var bad atomic.Value
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			b, err := os.ReadFile(dst)
			if err != nil {
				bad.Store("read failed: " + err.Error())
				torn.Add(1)
				continue
			}
			sum := fileSum(t, writeTemp(t, b))
			mu.Lock()
			ok := valid[sum]
			mu.Unlock()
			reads.Add(1)
			if !ok {
				torn.Add(1)
				bad.Store("content matching no version")
			}
		}
	})
	for i := 1; i <= 8; i++ {
		writeVersion(i)
		push(t, h[0], 0, "f.bin")
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("reader made %d reads during 8 replaces", reads.Load())
	if torn.Load() > 0 {
		t.Fatalf("%d of %d reads saw a torn or missing file (%v)", torn.Load(), reads.Load(), bad.Load())
	}
	if reads.Load() < 8 {
		t.Fatalf("only %d reads: the reader did not overlap the replaces", reads.Load())
	}
	if !bytes.Equal(mustRead(t, src), mustRead(t, dst)) {
		t.Fatal("final content differs")
	}
}

func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "copy")
	must(t, os.WriteFile(p, b, 0o600))
	return p
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOffloadFallback: datagrams larger than the 1500-byte MTU cannot be
// sent with segmentation offload (the kernel refuses, EINVAL); the sender
// says so once and goes on datagram by datagram (IP-fragmented here), and
// the file arrives intact.
func TestOffloadFallback(t *testing.T) {
	offloadFallback(t, NewLab(t, 3))
}

// offloadFallback is TestOffloadFallback's body, on any lab of 3 hosts
// with a 1500-byte MTU (unicast mode sends each peer's copy through the
// same segmented path).
func offloadFallback(t *testing.T, lab *Lab) {
	t.Helper()
	lab.StartAll("--datagram-size", "8972")
	h := lab.Hosts
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sender log:\n%s\nreceiver log:\n%s", h[0].Log(), h[1].Log())
		}
	})
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == 3 }, "members did not join")
	writeRandom(t, filepath.Join(h[0].Base, "f.bin"), 8*mib, 7)
	want := treeSnapshot(t, h[0].Base)
	push(t, h[0], 0, "f.bin")
	for _, r := range h[1:] {
		sameTree(t, r.Name, want, r.Base)
	}
	if !strings.Contains(h[0].Log(), "UDP segmentation offload refused") {
		t.Fatalf("the sender did not report the refused offload:\n%s", h[0].Log())
	}
}
