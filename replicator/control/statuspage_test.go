package control

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

// pageBackend is a Backend with fixed answers for the status page tests.
type pageBackend struct {
	members   []Member
	status    Status
	err       error
	statusErr error
}

func (b pageBackend) Members(context.Context) ([]Member, error) { return b.members, b.err }
func (b pageBackend) Status(context.Context) (Status, error)    { return b.status, b.statusErr }

var pageNow = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

func samplePageBackend() pageBackend {
	return pageBackend{
		members: []Member{
			{ID: "aa01", Hostname: "web1", Addr: "10.0.0.1", Version: "makuo 0.9", Roles: "send,receive", Self: true},
			{ID: "aa02", Hostname: "web2", Addr: "10.0.0.2", Version: "makuo 0.9", Roles: "receive", LastHeardSeconds: 0.43, Root: "ab12", InSync: true},
			{ID: "aa03", Hostname: "web3", Addr: "10.0.0.3", Version: "makuo 0.8", Roles: "receive", LastHeardSeconds: 1.2, Root: "cd34", LagSeconds: 12.2},
			{ID: "aa04", Hostname: "web4", Addr: "10.0.0.4", Version: "makuo 0.7", Roles: "receive", LastHeardSeconds: 0.9},
		},
		status: Status{
			Version: "makuo 0.9", NodeID: "aa01", Hostname: "web1", Base: "/var/www", Group: "224.0.0.108:5000",
			UptimeSeconds: 3725, Members: 4,
			Counters: map[string]uint64{"datagrams_sent": 120, "dropped_bad_seal": 3, "dropped_short": 0},
			Recent: []Transfer{
				{Started: pageNow.Add(-5 * time.Second), Seconds: 0.35, Paths: []string{"htdocs/index.html"}, Origin: "msync",
					Members: 3, Changed: 1, PayloadBytes: 1536},
				{Started: pageNow.Add(-time.Minute), Seconds: 5.1, Paths: []string{"big.bin"}, Origin: "watcher",
					Members: 3, Failed: 1, FailedMembers: []string{"web4"}, PayloadBytes: 200 << 20},
				{Started: pageNow.Add(-2 * time.Minute), Origin: "msync", Error: "no space left on device"},
			},
		},
	}
}

func getPage(t *testing.T, b Backend, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	h := statusPage{b: b, now: func() time.Time { return pageNow }}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

// section returns the part of body between the first occurrence of start
// and the next occurrence of end.
func section(t *testing.T, body, start, end string) string {
	t.Helper()
	_, rest, ok := strings.Cut(body, start)
	if !ok {
		t.Fatalf("no %q in page:\n%s", start, body)
	}
	s, _, ok := strings.Cut(rest, end)
	if !ok {
		t.Fatalf("no %q after %q in page", end, start)
	}
	return s
}

var rowRE = regexp.MustCompile(`(?s)<tr class="([a-z-]+)"[^>]*>(.*?)</tr>`)

func TestStatusPageMembers(t *testing.T) {
	rec := getPage(t, samplePageBackend(), http.MethodGet, "/")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	body := rec.Body.String()
	table := section(t, body, `<table id="members">`, "</table>")
	rows := rowRE.FindAllStringSubmatch(table, -1)
	want := []struct{ class, host, state string }{
		{"self", "web1", "self"},
		{"in-sync", "web2", "in sync"},
		{"lagging", "web3", "lagging for 12s"},
		{"unknown", "web4", "unknown"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d member rows, want %d:\n%s", len(rows), len(want), table)
	}
	for i, w := range want {
		class, cells := rows[i][1], rows[i][2]
		if class != w.class || !strings.Contains(cells, "<td>"+w.host+"</td>") || !strings.Contains(cells, `<td class="state">`+w.state+"</td>") {
			t.Errorf("row %d = class %q %s; want class %q, host %s, state %q", i, class, cells, w.class, w.host, w.state)
		}
	}
	for _, s := range []string{"0.4s ago", "10.0.0.3", "makuo 0.8", "send,receive"} {
		if !strings.Contains(table, s) {
			t.Errorf("members table lacks %q", s)
		}
	}
	header := section(t, body, "<header>", "</header>")
	for _, s := range []string{"web1", "makuo 0.9", "aa01", "/var/www", "224.0.0.108:5000", "1h2m5s", `<dd id="member-count">4</dd>`} {
		if !strings.Contains(header, s) {
			t.Errorf("header lacks %q:\n%s", s, header)
		}
	}
}

func TestStatusPageTransfersAndCounters(t *testing.T) {
	body := getPage(t, samplePageBackend(), http.MethodGet, "/").Body.String()
	table := section(t, body, `<table id="transfers">`, "</table>")
	rows := rowRE.FindAllStringSubmatch(table, -1)
	if len(rows) != 3 {
		t.Fatalf("%d transfer rows, want 3:\n%s", len(rows), table)
	}
	checks := []struct {
		class string
		has   []string
	}{
		{"ok", []string{"(5.0s ago)", "msync", "<code>htdocs/index.html</code>", "1.5 KiB", "0.35s", `<span class="ok">ok</span>`}},
		{"failed", []string{"watcher", "<code>big.bin</code>", "200.0 MiB", "5.10s", `<span class="bad">failed on web4</span>`}},
		{"failed", []string{"(2m0s ago)", `<span class="bad">error: no space left on device</span>`}},
	}
	for i, c := range checks {
		if rows[i][1] != c.class {
			t.Errorf("transfer %d: class %q, want %q", i, rows[i][1], c.class)
		}
		for _, s := range c.has {
			if !strings.Contains(rows[i][2], s) {
				t.Errorf("transfer %d lacks %q:\n%s", i, s, rows[i][2])
			}
		}
	}
	counters := section(t, body, `<ul class="counters" id="counters">`, "</ul>")
	for _, s := range []string{
		`<li class="warn"><span>dropped_bad_seal</span><span class="mono">3</span></li>`,
		`<li><span>dropped_short</span><span class="mono">0</span></li>`,
		`<li><span>datagrams_sent</span><span class="mono">120</span></li>`,
	} {
		if !strings.Contains(counters, s) {
			t.Errorf("counters lack %s:\n%s", s, counters)
		}
	}
	if !strings.Contains(body, `<dt>datagrams dropped</dt><dd class="bad">3</dd>`) {
		t.Error("total drops not highlighted")
	}
}

func TestStatusPageRefreshAndSelfContained(t *testing.T) {
	rec := getPage(t, samplePageBackend(), http.MethodGet, "/")
	body := rec.Body.String()
	if !strings.Contains(body, `<meta http-equiv="refresh" content="2">`) {
		t.Error("no refresh tag")
	}
	for _, s := range []string{"<script", "<link", "src=", "http://", "https://", "@import"} {
		if strings.Contains(body, s) {
			t.Errorf("page contains %q: it must not load anything", s)
		}
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
}

func TestStatusPageEscapes(t *testing.T) {
	const evil = `<script>alert("x")</script>`
	b := samplePageBackend()
	b.members[1].Hostname = evil
	b.members[2].Roles = `" onmouseover="x`
	b.members[3].ID = `"><img src=x>`
	b.status.Hostname = evil
	b.status.Base = "/srv/<b>"
	b.status.Recent[0].Paths = []string{"<i>.html"}
	b.status.Recent[1].FailedMembers = []string{evil}
	b.status.Recent[2].Error = evil
	b.status.Counters[evil] = 1
	body := getPage(t, b, http.MethodGet, "/").Body.String()
	for _, s := range []string{"<script", "<img", "<b>", "<i>", `" onmouseover`} {
		if strings.Contains(body, s) {
			t.Errorf("page contains unescaped %q", s)
		}
	}
	if !strings.Contains(body, "<td>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</td>") {
		t.Error("escaped hostname not shown")
	}
}

func TestStatusPageEmpty(t *testing.T) {
	rec := getPage(t, pageBackend{}, http.MethodGet, "/")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	for _, s := range []string{"no members", "no pushes yet", "no counters"} {
		if !strings.Contains(rec.Body.String(), s) {
			t.Errorf("empty page lacks %q", s)
		}
	}
}

func TestStatusPageBackendError(t *testing.T) {
	for _, b := range []pageBackend{
		{err: errors.New("member table gone")},
		{statusErr: errors.New("member table gone")},
	} {
		rec := getPage(t, b, http.MethodGet, "/")
		if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "member table gone") {
			t.Errorf("got %d %q, want 500 with the error", rec.Code, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("error Content-Type %q", ct)
		}
	}
}

func TestStatusPageRoutes(t *testing.T) {
	tests := []struct {
		method, path string
		code         int
	}{
		{http.MethodGet, "/", http.StatusOK},
		{http.MethodHead, "/", http.StatusOK},
		{http.MethodGet, "/?x=1", http.StatusOK},
		{http.MethodPost, "/", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/", http.StatusMethodNotAllowed},
		{http.MethodGet, "/index.html", http.StatusNotFound},
		{http.MethodGet, "/metricsx", http.StatusNotFound},
		{http.MethodPost, "/nope", http.StatusNotFound},
	}
	for _, tt := range tests {
		rec := getPage(t, samplePageBackend(), tt.method, tt.path)
		if rec.Code != tt.code {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, rec.Code, tt.code)
		}
		if tt.code == http.StatusMethodNotAllowed && rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q", tt.method, tt.path, rec.Header().Get("Allow"))
		}
	}
}

// TestStatusPageServer goes through a real server and StatusPage itself,
// mounted as makuosan mounts it next to another handler.
func TestStatusPageServer(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("metrics")) }))
	mux.Handle("/", StatusPage(samplePageBackend()))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for path, want := range map[string]int{"/": 200, "/metrics": 200, "/other": 404} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

func TestFormatting(t *testing.T) {
	for in, want := range map[float64]string{-1: "0.0s", 0.43: "0.4s", 9.94: "9.9s", 9.96: "10s", 12.2: "12s", 59.4: "59s", 65: "1m5s", 3725: "1h2m5s"} {
		if got := seconds(in); got != want {
			t.Errorf("seconds(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[float64]string{-1: "0ms", 0.0042: "4ms", 0.0994: "99ms", 0.0996: "0.10s", 0.35: "0.35s", 9.994: "9.99s", 9.996: "10s", 12.2: "12s"} {
		if got := duration(in); got != want {
			t.Errorf("duration(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 200 << 20: "200.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := Bytes(in); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", in, got, want)
		}
	}
}
