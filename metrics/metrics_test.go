package metrics_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/makuo/makuo/metrics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeMembers is a MemberSource whose members the test changes between
// gathers; safe for concurrent use as MemberSource requires.
type fakeMembers struct {
	mu      sync.Mutex
	members []metrics.MemberStat
}

func (f *fakeMembers) set(m ...metrics.MemberStat) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.members = slices.Clone(m)
}

func (f *fakeMembers) source() []metrics.MemberStat {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.members)
}

var (
	web2 = metrics.MemberStat{ID: "a1b2c3d4e5f60708", Hostname: "web2", LastHeardSeconds: 0.25}
	web3 = metrics.MemberStat{ID: "0f1e2d3c4b5a6978", Hostname: "web3", Segment: "dc2", LastHeardSeconds: 1.5}
)

// newRegistry builds what makuosan serves: New plus RegisterMembers.
func newRegistry(t *testing.T, members ...metrics.MemberStat) (*prometheus.Registry, *metrics.Metrics, *fakeMembers) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, "1.2.3-test")
	src := &fakeMembers{}
	src.set(members...)
	if err := metrics.RegisterMembers(reg, src.source); err != nil {
		t.Fatalf("RegisterMembers: %v", err)
	}
	return reg, m, src
}

func TestLint(t *testing.T) {
	reg, m, _ := newRegistry(t, web2, web3)
	// Touch every collector so every family has a sample to lint.
	m.DatagramsSent.Inc()
	m.DatagramsReceived.Inc()
	m.BytesSent.Add(1400)
	m.BytesReceived.Add(1400)
	m.Drop(metrics.DropAuth)
	m.Retransmits.Inc()
	m.Sessions.WithLabelValues("ok").Inc()
	m.FilesApplied.Inc()
	m.BytesApplied.Add(10)
	m.DuplicateIDs.Inc()
	m.Peers.WithLabelValues("listed").Set(2)
	m.PeerSendErrors.Inc()
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatalf("GatherAndLint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// dropsGolden is the exposition of the drop counter right after New: every
// reason exists at 0 before the first drop, so rate() and alerts work from
// the first scrape. Reasons are append-only (see DropReasons): alerts and
// dashboards refer to them, so a change here must be deliberate.
const dropsGolden = `
# HELP makuosan_transport_datagrams_dropped_total Datagrams refused, by reason.
# TYPE makuosan_transport_datagrams_dropped_total counter
makuosan_transport_datagrams_dropped_total{reason="auth"} AUTH
makuosan_transport_datagrams_dropped_total{reason="bad_version"} 0
makuosan_transport_datagrams_dropped_total{reason="duplicate_id"} 0
makuosan_transport_datagrams_dropped_total{reason="malformed"} 0
makuosan_transport_datagrams_dropped_total{reason="member_limit"} 0
makuosan_transport_datagrams_dropped_total{reason="oversize"} 0
makuosan_transport_datagrams_dropped_total{reason="path_refused"} 0
makuosan_transport_datagrams_dropped_total{reason="peer_limit"} 0
makuosan_transport_datagrams_dropped_total{reason="queue_full"} 0
makuosan_transport_datagrams_dropped_total{reason="relay_no_route"} 0
makuosan_transport_datagrams_dropped_total{reason="relay_queue_full"} 0
makuosan_transport_datagrams_dropped_total{reason="relay_refused"} 0
makuosan_transport_datagrams_dropped_total{reason="replay"} 0
makuosan_transport_datagrams_dropped_total{reason="session_limit"} 0
makuosan_transport_datagrams_dropped_total{reason="session_memory"} 0
makuosan_transport_datagrams_dropped_total{reason="unknown_member"} 0
`

func TestDropsPrecreated(t *testing.T) {
	reg, m, _ := newRegistry(t)
	const name = "makuosan_transport_datagrams_dropped_total"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(strings.Replace(dropsGolden, "AUTH", "0", 1)), name); err != nil {
		t.Fatalf("after New:\n%v", err)
	}
	m.Drop(metrics.DropAuth)
	m.Drop(metrics.DropAuth)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(strings.Replace(dropsGolden, "AUTH", "2", 1)), name); err != nil {
		t.Fatalf("after two auth drops:\n%v", err)
	}
	if got, want := len(metrics.DropReasons()), strings.Count(dropsGolden, "reason="); got != want {
		t.Errorf("DropReasons() has %d reasons, the golden text %d: update both", got, want)
	}
}

func TestSessionOutcomesPrecreated(t *testing.T) {
	reg, _, _ := newRegistry(t)
	const golden = `
# HELP makuosan_transfer_sessions_total Send sessions finished, by outcome (ok: every member applied everything).
# TYPE makuosan_transfer_sessions_total counter
makuosan_transfer_sessions_total{outcome="aborted"} 0
makuosan_transfer_sessions_total{outcome="failed"} 0
makuosan_transfer_sessions_total{outcome="ok"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(golden), "makuosan_transfer_sessions_total"); err != nil {
		t.Fatal(err)
	}
}

func TestMembers(t *testing.T) {
	reg, _, src := newRegistry(t, web3, web2)
	names := []string{"makuosan_members_live", "makuosan_member_up", "makuosan_member_last_heard_seconds"}
	const head = `
# HELP makuosan_members_live Members currently heard, this daemon excluded.
# TYPE makuosan_members_live gauge
`
	const upHead = `
# HELP makuosan_member_up 1 for every live member.
# TYPE makuosan_member_up gauge
`
	const heardHead = `
# HELP makuosan_member_last_heard_seconds Seconds since the member was last heard.
# TYPE makuosan_member_last_heard_seconds gauge
`
	steps := []struct {
		name    string
		members []metrics.MemberStat
		want    string
	}{
		{"two members", []metrics.MemberStat{web3, web2}, head + "makuosan_members_live 2\n" +
			upHead +
			`makuosan_member_up{hostname="web2",member="a1b2c3d4e5f60708",segment=""} 1` + "\n" +
			`makuosan_member_up{hostname="web3",member="0f1e2d3c4b5a6978",segment="dc2"} 1` + "\n" +
			heardHead +
			`makuosan_member_last_heard_seconds{hostname="web2",member="a1b2c3d4e5f60708",segment=""} 0.25` + "\n" +
			`makuosan_member_last_heard_seconds{hostname="web3",member="0f1e2d3c4b5a6978",segment="dc2"} 1.5` + "\n"},
		{"web3 left", []metrics.MemberStat{web2}, head + "makuosan_members_live 1\n" +
			upHead +
			`makuosan_member_up{hostname="web2",member="a1b2c3d4e5f60708",segment=""} 1` + "\n" +
			heardHead +
			`makuosan_member_last_heard_seconds{hostname="web2",member="a1b2c3d4e5f60708",segment=""} 0.25` + "\n"},
		// With no member the per-member families vanish; the count stays, at 0.
		{"all left", nil, head + "makuosan_members_live 0\n"},
	}
	for _, s := range steps {
		src.set(s.members...)
		if err := testutil.GatherAndCompare(reg, strings.NewReader(s.want), names...); err != nil {
			t.Fatalf("%s:\n%v", s.name, err)
		}
	}
}

func TestBuildInfo(t *testing.T) {
	reg, _, _ := newRegistry(t)
	golden := `
# HELP makuosan_build_info Build information; the value is always 1.
# TYPE makuosan_build_info gauge
makuosan_build_info{goversion="` + runtime.Version() + `",version="1.2.3-test"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(golden), "makuosan_build_info"); err != nil {
		t.Fatal(err)
	}
}

// gatheredNames returns the name of every family reg exposes.
func gatheredNames(t *testing.T, reg prometheus.Gatherer) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	return names
}

func TestNamePrefix(t *testing.T) {
	reg, _, _ := newRegistry(t, web2)
	var own int
	for _, name := range gatheredNames(t, reg) {
		switch {
		case strings.HasPrefix(name, "makuosan_"):
			own++
		case strings.HasPrefix(name, "go_"), strings.HasPrefix(name, "process_"):
			// the runtime and process collectors New registers
		default:
			t.Errorf("metric %s: want the makuosan_ prefix", name)
		}
	}
	if own == 0 {
		t.Error("no makuosan_ metric gathered")
	}
}

// TestAlertRulesUseKnownMetrics keeps deploy/prometheus/rules.yml honest:
// every makuosan_ metric, drop reason and session outcome it names must
// exist here, so renaming one without updating the alerts fails a test.
func TestAlertRulesUseKnownMetrics(t *testing.T) {
	rules, err := os.ReadFile("../deploy/prometheus/rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	// A member whose root is known (for makuosan_member_in_sync) and the
	// watcher's series (registered with -w).
	synced := web2
	synced.RootKnown, synced.InSync = true, true
	reg, _, _ := newRegistry(t, synced)
	if err := metrics.RegisterWatcher(reg, func() metrics.WatcherStat { return metrics.WatcherStat{} }); err != nil {
		t.Fatal(err)
	}
	known := gatheredNames(t, reg)
	used := regexp.MustCompile(`makuosan_[a-z_]+`).FindAllString(string(rules), -1)
	if len(used) == 0 {
		t.Fatal("rules.yml names no makuosan_ metric")
	}
	for _, name := range used {
		if !slices.Contains(known, name) {
			t.Errorf("rules.yml uses %s, which metrics does not define", name)
		}
	}
	for _, m := range regexp.MustCompile(`reason=~?"([^"]+)"`).FindAllStringSubmatch(string(rules), -1) {
		for r := range strings.SplitSeq(m[1], "|") {
			if !slices.Contains(metrics.DropReasons(), r) {
				t.Errorf("rules.yml uses drop reason %q, not in DropReasons()", r)
			}
		}
	}
	for _, m := range regexp.MustCompile(`outcome=~?"([^"]+)"`).FindAllStringSubmatch(string(rules), -1) {
		for o := range strings.SplitSeq(m[1], "|") {
			if !slices.Contains([]string{"ok", "failed", "aborted"}, o) {
				t.Errorf("rules.yml uses session outcome %q, which metrics does not create", o)
			}
		}
	}
}

func TestRegisterMembersTwice(t *testing.T) {
	reg, _, src := newRegistry(t)
	if err := metrics.RegisterMembers(reg, src.source); err == nil {
		t.Error("a second RegisterMembers on the same registry succeeded; want a duplicate error")
	}
}

func TestHandler(t *testing.T) {
	reg, _, _ := newRegistry(t, web2)
	srv := httptest.NewServer(metrics.Handler(reg))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want text/plain (the text exposition format)", ct)
	}
	for _, want := range []string{
		"makuosan_build_info{",
		`makuosan_member_up{hostname="web2",member="a1b2c3d4e5f60708",segment=""} 1`,
		`makuosan_transport_datagrams_dropped_total{reason="auth"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
