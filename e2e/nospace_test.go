package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNoSpace: a member whose disk is too small reports the file failed
// with the reason (exit 1), the others apply it, and a retry once there is
// room completes it.
func TestNoSpace(t *testing.T) {
	noSpace(t, NewLab(t, 3))
}

// noSpace is TestNoSpace's body, on any lab of 3 hosts.
func noSpace(t *testing.T, lab *Lab) {
	t.Helper()
	h := lab.Hosts
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", h[1].Base).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", h[1].Base).Run() })
	lab.StartAll()
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == 3 }, "members did not join")
	writeRandom(t, filepath.Join(h[0].Base, "big.bin"), 4*mib, 31)
	out := push(t, h[0], 1, "big.bin")
	if !strings.Contains(out, "FAILED  big.bin  h2: no space left") {
		t.Fatalf("no-space failure not reported with its reason:\n%s", out)
	}
	if got, want := fileSum(t, filepath.Join(h[2].Base, "big.bin")), fileSum(t, filepath.Join(h[0].Base, "big.bin")); got != want {
		t.Fatal("h3 did not get the file")
	}
	if n := tempFiles(h[1].Base); n != 0 {
		t.Fatalf("%d temp files left on the full member", n)
	}
	if out, err := exec.Command("mount", "-o", "remount,size=8m", h[1].Base).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
	push(t, h[0], 0, "big.bin")
	if _, err := os.Stat(filepath.Join(h[1].Base, "big.bin")); err != nil {
		t.Fatalf("h2 still lacks big.bin after there is room: %v", err)
	}
}
