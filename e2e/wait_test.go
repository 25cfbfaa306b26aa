package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWait: msync --wait returns once every receiving member holds the
// sender's tree, and exits 1 naming the members behind on timeout.
func TestWait(t *testing.T) {
	waitInSync(t, NewLab(t, 4))
}

// waitInSync is TestWait's body, on any lab of 4 hosts.
func waitInSync(t *testing.T, lab *Lab) {
	t.Helper()
	lab.StartAll()
	h := lab.Hosts
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == 4 }, "members did not join")
	must(t, os.WriteFile(filepath.Join(h[0].Base, "release.txt"), []byte("v1"), 0o644))
	out := push(t, h[0], 0, "-r", "--wait", "--timeout", "10s")
	if !strings.Contains(out, "all 4 members in sync after") {
		t.Fatalf("msync -r --wait:\n%s", out)
	}
	for _, x := range h[1:] {
		if b, _ := os.ReadFile(filepath.Join(x.Base, "release.txt")); string(b) != "v1" {
			t.Fatalf("%s lacks release.txt after --wait returned", x.Name)
		}
	}
	must(t, os.WriteFile(filepath.Join(h[0].Base, "release.txt"), []byte("v2"), 0o644))
	push(t, h[0], 0, "-t", "h2", "release.txt")
	_, errOut, code := h[0].Msync("--wait", "--timeout", "2s")
	if code != 1 || !strings.Contains(errOut, "still behind: h3, h4") {
		t.Fatalf("msync --wait with h3 and h4 behind: exit %d, stderr %q", code, errOut)
	}
}
