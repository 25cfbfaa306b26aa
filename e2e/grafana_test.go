package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// dashboardPath is the Grafana dashboard shipped for makuosan.
const dashboardPath = "../deploy/grafana/makuosan.json"

// dashboardQueries parses the dashboard and returns every PromQL
// expression it holds: the panels' targets (rows' nested panels included)
// and the template variables' queries. It fails the test if the file does
// not parse, has no panels, or a panel that shows data has no query.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr string `json:"expr"`
	}
	type panel struct {
		ID      int       `json:"id"`
		Type    string    `json:"type"`
		Title   string    `json:"title"`
		Targets []target  `json:"targets"`
		Panels  []panel   `json:"panels"` // a collapsed row's panels
		Grid    *struct{} `json:"gridPos"`
	}
	var dash struct {
		SchemaVersion int     `json:"schemaVersion"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []struct {
				Name       string          `json:"name"`
				Type       string          `json:"type"`
				Definition string          `json:"definition"`
				Query      json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s does not parse: %v", dashboardPath, err)
	}
	if len(dash.Panels) == 0 {
		t.Fatalf("%s has no panels", dashboardPath)
	}
	if dash.SchemaVersion == 0 {
		t.Errorf("%s has no schemaVersion", dashboardPath)
	}
	var exprs []string
	ids := map[int]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if prev, dup := ids[p.ID]; dup {
				t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			if p.Grid == nil {
				t.Errorf("panel %q has no gridPos", p.Title)
			}
			walk(p.Panels)
			if p.Type == "row" || p.Type == "text" {
				continue
			}
			n := 0
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) != "" {
					exprs = append(exprs, tg.Expr)
					n++
				}
			}
			if n == 0 {
				t.Errorf("panel %q (%s) has no query", p.Title, p.Type)
			}
		}
	}
	walk(dash.Panels)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		exprs = append(exprs, v.Definition)
		var q struct {
			Query string `json:"query"`
		}
		var s string
		switch {
		case json.Unmarshal(v.Query, &s) == nil:
			exprs = append(exprs, s)
		case json.Unmarshal(v.Query, &q) == nil:
			exprs = append(exprs, q.Query)
		}
	}
	return exprs
}

// metricFamilies fetches url (a /metrics page) and returns each family
// name with its type, from the "# TYPE" lines.
func metricFamilies(t *testing.T, h *Host, url string) map[string]string {
	t.Helper()
	c := nsHTTPClient(h)
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	fams := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			fams[f[2]] = f[3]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return fams
}

// exported reports whether name is a series of one of fams: a family
// itself, or a histogram's or summary's _bucket, _sum or _count.
func exported(fams map[string]string, name string) bool {
	if _, ok := fams[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if ok && (fams[base] == "histogram" || (fams[base] == "summary" && suffix != "_bucket")) {
			return true
		}
	}
	return false
}

// TestGrafanaDashboardParses checks the dashboard's structure without a lab.
func TestGrafanaDashboardParses(t *testing.T) {
	exprs := dashboardQueries(t)
	if len(exprs) == 0 {
		t.Fatal("the dashboard holds no query")
	}
	re := regexp.MustCompile(`makuosan_[a-z0-9_]+`)
	n := 0
	for _, e := range exprs {
		n += len(re.FindAllString(e, -1))
	}
	if n == 0 {
		t.Fatal("the dashboard names no makuosan_ metric")
	}
}

// TestGrafanaDashboardMetrics: every makuosan_ metric the dashboard queries
// is exported by a live daemon (a watching one, after a push, so the
// watcher, session and per-member series all exist).
func TestGrafanaDashboardMetrics(t *testing.T) {
	exprs := dashboardQueries(t)
	lab := NewLab(t, 2)
	h := lab.Hosts
	h[0].Start("-w")
	h[1].Start()
	eventually(t, 5*time.Second, func() bool { return len(h[0].Members()) == 2 }, "members did not join")
	must(t, os.WriteFile(filepath.Join(h[0].Base, "index.html"), []byte("<h1>dashboard</h1>\n"), 0o644))
	push(t, h[0], 0, "index.html")
	eventually(t, 5*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(h[1].Base, "index.html"))
		return err == nil
	}, "index.html did not reach h2")

	url := fmt.Sprintf("http://%s:9758/metrics", h[0].Addr)
	var fams map[string]string
	// makuosan_member_in_sync appears once both roots are known.
	eventually(t, 10*time.Second, func() bool {
		fams = metricFamilies(t, h[0], url)
		_, ok := fams["makuosan_member_in_sync"]
		return ok
	}, "h1 never exported makuosan_member_in_sync")

	re := regexp.MustCompile(`makuosan_[a-z0-9_]+`)
	var used []string
	for _, e := range exprs {
		for _, name := range re.FindAllString(e, -1) {
			if !slices.Contains(used, name) {
				used = append(used, name)
			}
		}
	}
	slices.Sort(used)
	for _, name := range used {
		if !exported(fams, name) {
			t.Errorf("the dashboard queries %s, which the daemon does not export", name)
		}
	}
	// The other way round, for information: families no panel shows.
	var unused []string
	for name := range fams {
		if !strings.HasPrefix(name, "makuosan_") {
			continue
		}
		shown := slices.ContainsFunc(used, func(u string) bool {
			return u == name || strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(u, "_bucket"), "_sum"), "_count") == name
		})
		if !shown {
			unused = append(unused, name)
		}
	}
	slices.Sort(unused)
	t.Logf("dashboard: %d queries naming %d makuosan_ series; families no panel shows: %v", len(exprs), len(used), unused)
}
