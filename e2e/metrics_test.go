package e2e

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestMetricsExposition: after a transfer, /metrics on a sender and on a
// receiver lists the families with sane values, and `promtool check
// metrics` finds nothing to complain about.
func TestMetricsExposition(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool missing in CI (apt-get install prometheus)")
		}
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	lab := NewLab(t, 2)
	lab.Hosts[0].Start("-w")
	lab.Hosts[1].Start()
	h := lab.Hosts
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == 2 }, "members did not join")
	writeRandom(t, filepath.Join(h[0].Base, "f.bin"), 3*mib, 41)
	push(t, h[0], 0, "f.bin")
	eventually(t, 5*time.Second, func() bool { return inSyncEverywhere(h[0]) }, "not in sync")

	scrape := func(x *Host) []byte {
		c := nsHTTPClient(x)
		defer c.CloseIdleConnections()
		resp, err := c.Get("http://" + x.Addr + ":9758/metrics")
		must(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		must(t, err)
		return b
	}
	value := func(b []byte, series string) float64 {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("series %s missing", series)
		}
		v, err := strconv.ParseFloat(string(m[1]), 64)
		must(t, err)
		return v
	}
	src, dst := scrape(h[0]), scrape(h[1])
	for name, b := range map[string][]byte{"sender": src, "receiver": dst} {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(b)
		if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("promtool check metrics on the %s: %v\n%s", name, err, out)
		}
	}
	checks := []struct {
		b      []byte
		series string
		ok     func(float64) bool
	}{
		{src, "makuosan_members_live", func(v float64) bool { return v == 1 }},
		{src, `makuosan_transfer_sessions_total{outcome="ok"}`, func(v float64) bool { return v >= 1 }},
		{src, "makuosan_transport_bytes_sent_total", func(v float64) bool { return v >= 3*mib }},
		{src, `makuosan_transport_datagrams_dropped_total{reason="auth"}`, func(v float64) bool { return v == 0 }},
		{src, "makuosan_watcher_watches", func(v float64) bool { return v >= 1 }},
		{dst, "makuosan_transfer_files_applied_total", func(v float64) bool { return v >= 1 }},
		{dst, "makuosan_transfer_bytes_applied_total", func(v float64) bool { return v == 3*mib }},
		{dst, "makuosan_transport_bytes_received_total", func(v float64) bool { return v >= 3*mib }},
	}
	for _, c := range checks {
		if v := value(c.b, c.series); !c.ok(v) {
			t.Errorf("%s = %v", c.series, v)
		}
	}
	if !regexp.MustCompile(`(?m)^makuosan_member_in_sync\{hostname="h2",member="[0-9a-f]+",segment=""\} 1$`).Match(src) {
		t.Errorf("the sender does not report h2 in sync:\n%s", regexp.MustCompile(`(?m)^makuosan_member.*$`).FindAll(src, -1))
	}
}
