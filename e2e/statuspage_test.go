package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// requireChromium returns the path of a Chromium binary; without one it
// skips the test, or fails it in CI (the Makefile's deps target installs
// the Debian package chromium).
func requireChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const missing = "chromium not installed (apt-get install chromium)"
	if os.Getenv("CI") == "true" {
		t.Fatalf("status page test cannot run in CI: %s", missing)
	}
	t.Skip(missing)
	return ""
}

// artifactsDir is where tests leave files for people to look at:
// $MAKUO_ARTIFACTS, else e2e/artifacts in the repository.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("MAKUO_ARTIFACTS")
	if dir == "" {
		dir = "artifacts" // the tests run in e2e/
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// chromium runs headless Chromium inside h's namespace with args (and a
// fresh profile) and returns its stdout. Chromium complains on stderr about
// D-Bus, GPU and the like even when all is well: only the exit status
// counts.
func chromium(t *testing.T, h *Host, bin string, args ...string) string {
	mode := args[0]
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args = append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir()}, args...)
	start := time.Now()
	out, errOut, code := h.Run(ctx, bin, args...)
	if code != 0 {
		t.Fatalf("chromium %s: exit %d\nstderr:\n%s", strings.Join(args, " "), code, errOut)
	}
	t.Logf("chromium %s: %.2fs", mode, time.Since(start).Seconds())
	return out
}

var (
	memberRowRE   = regexp.MustCompile(`(?s)<tr class="([a-z-]+)"[^>]*><td>([^<]*)</td>.*?<td class="state">([^<]*)</td></tr>`)
	transferRowRE = regexp.MustCompile(`(?s)<tr class="([a-z-]+)"><td.*?</tr>`)
)

// TestStatusPage: the page on h1's metrics listener, rendered by headless
// Chromium, lists the three members (h1 itself first) and the pushes h1
// made; a screenshot is left in the artifacts directory.
func TestStatusPage(t *testing.T) {
	bin := requireChromium(t)
	lab := NewLab(t, 3)
	lab.StartAll()
	h := lab.Hosts
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == 3 }, "members did not join")

	if err := os.WriteFile(filepath.Join(h[0].Base, "index.html"), []byte("<h1>hello</h1>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(h[0].Base, "docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeRandom(t, filepath.Join(h[0].Base, "docs", "manual.bin"), 3*mib, 7)
	push(t, h[0], 0, "index.html")
	push(t, h[0], 0, "-r", "docs")

	url := "http://" + h[0].Addr + ":9758/"
	dom := chromium(t, h[0], bin, "--dump-dom", url)

	_, members, ok := strings.Cut(dom, `<table id="members">`)
	if !ok {
		t.Fatalf("no members table in the page:\n%s", dom)
	}
	members, _, _ = strings.Cut(members, "</table>")
	rows := memberRowRE.FindAllStringSubmatch(members, -1)
	if len(rows) != 3 {
		t.Fatalf("%d member rows, want 3:\n%s", len(rows), members)
	}
	for i, r := range rows {
		class, host, state := r[1], r[2], r[3]
		t.Logf("member row: %s %s %q", host, class, state)
		if host != h[i].Name {
			t.Errorf("row %d: host %q, want %q", i, host, h[i].Name)
		}
		switch {
		case i == 0 && (class != "self" || state != "self"):
			t.Errorf("h1 row: class %q state %q, want self", class, state)
		case i > 0 && class != "in-sync" && class != "lagging" && class != "unknown":
			t.Errorf("%s row: class %q, want in-sync, lagging or unknown", host, class)
		}
	}

	_, transfers, ok := strings.Cut(dom, `<table id="transfers">`)
	if !ok {
		t.Fatalf("no transfers table in the page:\n%s", dom)
	}
	transfers, _, _ = strings.Cut(transfers, "</table>")
	trs := transferRowRE.FindAllStringSubmatch(transfers, -1)
	if len(trs) != 2 {
		t.Fatalf("%d transfer rows, want 2:\n%s", len(trs), transfers)
	}
	// Newest first.
	for i, want := range []string{"<code>docs</code>", "<code>index.html</code>"} {
		if trs[i][1] != "ok" || !strings.Contains(trs[i][0], want) || !strings.Contains(trs[i][0], `<span class="ok">ok</span>`) {
			t.Errorf("transfer %d: want an ok push of %s:\n%s", i, want, trs[i][0])
		}
	}
	if !strings.Contains(trs[0][0], "3.0 MiB") {
		t.Errorf("docs push does not show 3.0 MiB sent:\n%s", trs[0][0])
	}

	png := filepath.Join(artifactsDir(t), "statuspage.png")
	_ = os.Remove(png)
	chromium(t, h[0], bin, "--screenshot="+png, "--window-size=1200,900", "--hide-scrollbars", url)
	b, err := os.ReadFile(png)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 10_000 {
		t.Fatalf("screenshot %s is not a plausible PNG (%d bytes)", png, len(b))
	}
	t.Logf("screenshot: %s (%d bytes)", png, len(b))
}
