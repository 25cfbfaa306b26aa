package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRenames: renaming a 200 MiB file and a directory of 1,000 files
// costs less than 1 MiB on the wire: members rebuild from their own copy.
func TestRenames(t *testing.T) {
	renames(t, NewLab(t, 4), 200*mib, 1000)
}

// renames is TestRenames's body, for a file of size bytes and a directory
// of files files, on any lab of 4 hosts; the wire budget is 1 MiB per copy
// the sender's uplink carries (one by multicast, one per receiver by
// unicast).
func renames(t *testing.T, lab *Lab, size int64, files int) {
	t.Helper()
	lab.StartAll()
	h := lab.Hosts
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == 4 }, "members did not join")
	budget := int64(max(lab.copies, 1)) * mib
	writeRandom(t, filepath.Join(h[0].Base, "big.bin"), size, 21)
	for i := range files {
		p := filepath.Join(h[0].Base, "dir", fmt.Sprintf("sub%d", i%10), fmt.Sprintf("f%04d", i))
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(strings.Repeat(fmt.Sprint(i), 100+i)), 0o644))
	}
	push(t, h[0], 0, "-r")

	must(t, os.Rename(filepath.Join(h[0].Base, "big.bin"), filepath.Join(h[0].Base, "moved.bin")))
	wire := pushCounted(t, h[0], "-r", "--delete")
	t.Logf("figure: rename of a %d MiB file: %d bytes on the wire (%.2f MiB)", size/mib, wire, float64(wire)/mib)
	if wire > budget {
		t.Errorf("rename of a %d MiB file cost %d bytes, want under %d", size/mib, wire, budget)
	}

	must(t, os.Rename(filepath.Join(h[0].Base, "dir"), filepath.Join(h[0].Base, "renamed-dir")))
	wire = pushCounted(t, h[0], "-r", "--delete")
	t.Logf("figure: rename of a directory of %d files: %d bytes on the wire (%.2f MiB)", files, wire, float64(wire)/mib)
	if wire > budget {
		t.Errorf("rename of a directory of %d files cost %d bytes, want under %d", files, wire, budget)
	}
	want := treeSnapshot(t, h[0].Base)
	for _, r := range h[1:] {
		sameTree(t, r.Name, want, r.Base)
	}
}

// inSyncEverywhere reports whether h sees every other member in sync.
func inSyncEverywhere(h *Host) bool {
	for _, m := range h.Members() {
		if !m.Self && !m.InSync {
			return false
		}
	}
	return true
}

// TestMerkleRoots: after a push every member's root equals the sender's;
// while one member is stopped and the sender changes a file, the others
// show it differing, and it is equal again once it caught up.
func TestMerkleRoots(t *testing.T) {
	merkleRoots(t, NewLab(t, 4))
}

// merkleRoots is TestMerkleRoots's body, on any lab of 4 hosts.
func merkleRoots(t *testing.T, lab *Lab) {
	t.Helper()
	lab.StartAll()
	h := lab.Hosts
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == 4 }, "members did not join")
	makeTree(t, h[0].Base, treeSpec{smallFiles: 200})
	push(t, h[0], 0, "-r")
	eventually(t, 5*time.Second, func() bool { return inSyncEverywhere(h[0]) }, "roots differ after a push")
	out, _, _ := h[0].Msync("--members")
	t.Logf("after the push:\n%s", out)

	h[3].Signal(syscall.SIGTERM)
	h[3].Wait(5 * time.Second)
	must(t, os.WriteFile(filepath.Join(h[0].Base, "small", "d01", "f0001.txt"), []byte("changed while h4 was away"), 0o644))
	push(t, h[0], 0, "-r")
	h[3].Start()
	eventually(t, 5*time.Second, func() bool {
		for _, m := range h[0].Members() {
			if m.Hostname == "h4" {
				return m.Root != "" && !m.InSync
			}
		}
		return false
	}, "h4 came back with an older tree but is not shown as differing")
	out, _, _ = h[0].Msync("--members")
	t.Logf("with h4 behind:\n%s", out)
	if !strings.Contains(out, "differs") {
		t.Fatalf("msync --members does not show h4 differing:\n%s", out)
	}
	push(t, h[0], 0, "-r")
	eventually(t, 5*time.Second, func() bool { return inSyncEverywhere(h[0]) }, "h4 still differs after catching up")
}
