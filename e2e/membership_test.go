package e2e

import (
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// allSee reports whether every running host lists exactly want.
func allSee(hosts []*Host, want []string) bool {
	for _, h := range hosts {
		if !slices.Equal(h.Hostnames(), want) {
			return false
		}
	}
	return true
}

func TestMembership(t *testing.T) {
	lab := NewLab(t, 4)
	lab.StartAll()
	h := lab.Hosts
	all := []string{"h1", "h2", "h3", "h4"}

	d := eventually(t, 3*time.Second, func() bool { return allSee(h, all) }, "not every host lists all 4 members")
	t.Logf("figure: join: every host lists all 4 members after %v", d.Round(time.Millisecond))

	out, _, code := h[0].Msync("--members")
	if code != 0 || !strings.HasSuffix(out, "Total: 3 members\n") {
		t.Fatalf("msync --members: exit %d\n%s", code, out)
	}
	for _, name := range all {
		if !strings.Contains(out, name+" ") {
			t.Fatalf("msync --members lacks %s:\n%s", name, out)
		}
	}

	// SIGKILL: no goodbye, the others expire it.
	h[3].Signal(syscall.SIGKILL)
	h[3].Wait(5 * time.Second)
	d = eventually(t, 5*time.Second, func() bool { return allSee(h[:3], all[:3]) }, "SIGKILLed h4 still listed")
	t.Logf("figure: kill-detect: SIGKILLed member gone from every list after %v", d.Round(time.Millisecond))

	// Restart: back in every list.
	h[3].Start()
	d = eventually(t, 3*time.Second, func() bool { return allSee(h, all) }, "restarted h4 not listed everywhere")
	t.Logf("figure: rejoin: restarted member listed everywhere after %v", d.Round(time.Millisecond))

	// SIGTERM: goodbye, gone at once; clean exit.
	start := time.Now()
	h[2].Signal(syscall.SIGTERM)
	want := []string{"h1", "h2", "h4"}
	others := []*Host{h[0], h[1], h[3]}
	d = eventually(t, time.Second, func() bool { return allSee(others, want) }, "SIGTERMed h3 still listed")
	t.Logf("figure: exit-detect: SIGTERMed member gone from every list after %v", d.Round(time.Millisecond))
	if code := h[2].Wait(5 * time.Second); code != 0 {
		t.Fatalf("h3 exited %d after SIGTERM\n%s", code, h[2].Log())
	}
	t.Logf("h3 shut down in %v", time.Since(start).Round(time.Millisecond))
	if log := h[2].Log(); !strings.Contains(log, "stopped") {
		t.Fatalf("h3 log lacks a clean stop:\n%s", log)
	}
}
