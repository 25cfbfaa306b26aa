package control

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"
)

//go:embed statuspage.html
var statusPageHTML string

var statusPageTmpl = template.Must(template.New("status").Parse(statusPageHTML))

// StatusPage returns a handler serving a small HTML page about the daemon
// at GET / (and HEAD): members with their in-sync state, the latest pushes
// and the counters. The page reloads itself every two seconds with a meta
// refresh; it has no script and no external asset, only inline CSS. Any
// other path is answered 404, any other method 405.
func StatusPage(b Backend) http.Handler {
	return statusPage{b: b, now: time.Now}
}

type statusPage struct {
	b   Backend
	now func() time.Time
}

func (p statusPage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	st, err := p.b.Status(r.Context())
	if err != nil {
		http.Error(w, "status page: status: "+err.Error(), http.StatusInternalServerError)
		return
	}
	ms, err := p.b.Members(r.Context())
	if err != nil {
		http.Error(w, "status page: members: "+err.Error(), http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := statusPageTmpl.Execute(&buf, newPageData(st, ms, p.now())); err != nil {
		http.Error(w, "status page: render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	// Nothing but the inline style sheet may load or run.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	_, _ = w.Write(buf.Bytes())
}

// pageData is what the template renders; every value is preformatted so
// that the template stays free of logic.
type pageData struct {
	Status    Status
	Now       string
	Uptime    string
	Members   []memberRow
	Transfers []transferRow
	Counters  []counterRow
	Dropped   uint64
}

type memberRow struct {
	Class, State string
	Hostname, ID string
	Addr         string
	Version      string
	Roles        string
	LastHeard    string
	Root         string
}

type transferRow struct {
	Class         string
	Time, TimeISO string
	Age           string
	Origin        string
	Paths         []string
	Changed       int
	Failed        int
	Members       int
	Bytes         string
	Duration      string
	FailedMembers []string
	Error         string
}

type counterRow struct {
	Name  string
	Value uint64
	Warn  bool
}

func newPageData(st Status, ms []Member, now time.Time) pageData {
	d := pageData{
		Status: st,
		Now:    now.Format("2006-01-02 15:04:05 MST"),
		Uptime: seconds(st.UptimeSeconds),
	}
	for _, m := range ms {
		row := memberRow{
			Hostname: m.Hostname, ID: m.ID, Addr: m.Addr, Version: m.Version, Roles: m.Roles,
			LastHeard: seconds(m.LastHeardSeconds) + " ago", Root: m.Root,
		}
		switch {
		case m.Self:
			row.Class, row.State, row.LastHeard = "self", "self", "—"
		case m.InSync:
			row.Class, row.State = "in-sync", "in sync"
		case m.Root == "":
			// Nothing announced yet (or an older member): no claim either way.
			row.Class, row.State = "unknown", "unknown"
		default:
			row.Class, row.State = "lagging", "lagging for "+seconds(m.LagSeconds)
		}
		d.Members = append(d.Members, row)
	}
	for _, t := range st.Recent {
		row := transferRow{
			Class: "ok", Time: t.Started.Local().Format("15:04:05"), TimeISO: t.Started.Format(time.RFC3339),
			Age: seconds(now.Sub(t.Started).Seconds()) + " ago", Origin: t.Origin, Paths: t.Paths,
			Changed: t.Changed, Failed: t.Failed, Members: t.Members,
			Bytes: Bytes(t.PayloadBytes), Duration: duration(t.Seconds),
			FailedMembers: t.FailedMembers, Error: t.Error,
		}
		if t.Error != "" || t.Failed > 0 || len(t.FailedMembers) > 0 {
			row.Class = "failed"
		}
		d.Transfers = append(d.Transfers, row)
	}
	names := make([]string, 0, len(st.Counters))
	for name := range st.Counters {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		v := st.Counters[name]
		drop := strings.HasPrefix(name, "dropped_")
		if drop {
			d.Dropped += v
		}
		d.Counters = append(d.Counters, counterRow{Name: name, Value: v, Warn: drop && v > 0})
	}
	return d
}

// seconds formats a duration given in seconds for people: 0.4s, 12s, 3m5s.
func seconds(s float64) string {
	switch {
	case s < 0:
		s = 0
	case s >= 60:
		return time.Duration(s * float64(time.Second)).Round(time.Second).String()
	case s >= 9.95: // would print as 10.0s
		return fmt.Sprintf("%.0fs", s)
	}
	return fmt.Sprintf("%.1fs", s)
}

// duration formats how long a push took: 4ms, 0.35s, 12s, 3m5s.
func duration(s float64) string {
	if ms := math.Round(s * 1000); ms < 100 {
		return fmt.Sprintf("%.0fms", max(ms, 0))
	}
	if s < 9.995 {
		return fmt.Sprintf("%.2fs", s)
	}
	return seconds(s)
}

// Bytes formats a byte count with binary units, as large as fits: 512 B,
// 1.5 KiB, 200.0 MiB, 3.0 GiB (the status page and msync print sizes alike).
func Bytes(n uint64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n)/1024, 0
	for v >= 1024 && unit < 4 {
		v /= 1024
		unit++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[unit])
}
