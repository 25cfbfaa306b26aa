package peers

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDNS answers names from a table the test changes.
type fakeDNS struct {
	mu      sync.Mutex
	answers map[string][]string
	asked   map[string]int
}

func newDNS(answers map[string][]string) *fakeDNS {
	return &fakeDNS{answers: answers, asked: map[string]int{}}
}

func (d *fakeDNS) set(name string, addrs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if addrs == nil {
		delete(d.answers, name)
	} else {
		d.answers[name] = addrs
	}
}

// waitAsked waits until name was asked for n more times.
func (d *fakeDNS) waitAsked(t *testing.T, name string, n int) {
	t.Helper()
	d.mu.Lock()
	want := d.asked[name] + n
	d.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d.mu.Lock()
		got := d.asked[name]
		d.mu.Unlock()
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s asked for %d times, want %d", name, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (d *fakeDNS) resolve(_ context.Context, host string) ([]netip.Addr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.asked[host]++
	as, ok := d.answers[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	var out []netip.Addr
	for _, a := range as {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

// logBuffer collects a logger's output for the test to read.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// wait waits until the log holds s, or fails after 10 s.
func (l *logBuffer) wait(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(l.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the log never said %q:\n%s", s, l.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// running runs s until the test ends.
func running(t *testing.T, s *Set) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// waitTargets waits until s's targets are want, or fails after 10 s.
func waitTargets(t *testing.T, s *Set, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(targets(s), want) {
		if time.Now().After(deadline) {
			t.Fatalf("targets %q, want %q", targets(s), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDNSName: a name stands for every address it resolves to, of the
// set's family; it is looked up again every ResolveEvery, and a lookup
// that fails keeps the last answer.
func TestDNSName(t *testing.T) {
	dns := newDNS(map[string][]string{"makuo.svc": {"10.0.0.3", "10.0.0.2", "fd00::2", "10.0.0.2"}})
	var logs logBuffer
	s := newSet(t, Config{Resolve: dns.resolve, ResolveEvery: 20 * time.Millisecond, PollEvery: 5 * time.Millisecond, Logger: logs.logger()},
		"makuo.svc", "10.0.0.9:6000")
	wantTargets(t, s, "10.0.0.2:5000", "10.0.0.3:5000", "10.0.0.9:6000")
	if s.Is6() {
		t.Fatal("IPv4 answers made an IPv6 set")
	}
	running(t, s)
	dns.set("makuo.svc", "10.0.0.2", "10.0.0.4")
	waitTargets(t, s, "10.0.0.2:5000", "10.0.0.4:5000", "10.0.0.9:6000")
	dns.set("makuo.svc")
	dns.waitAsked(t, "makuo.svc", 3) // several failed lookups
	wantTargets(t, s, "10.0.0.2:5000", "10.0.0.4:5000", "10.0.0.9:6000")
	dns.set("makuo.svc", "10.0.0.5")
	waitTargets(t, s, "10.0.0.5:5000", "10.0.0.9:6000")
	// Polled many times over: without a file, nothing to read.
	if strings.Contains(logs.String(), "peers file") {
		t.Errorf("a set without a peers file logs about one:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "keeping its last addresses") {
		t.Errorf("a name that stopped resolving was not logged:\n%s", logs.String())
	}
}

// TestDNSStart: at start-up a name that does not resolve is a warning
// while another peer has an address (and it is retried), and an error
// when no peer has one; IPv6-only answers make an IPv6 set.
func TestDNSStart(t *testing.T) {
	dns := newDNS(map[string][]string{"web1": {"10.0.0.1"}, "v6only": {"fd00::5", "fd00::6"}})
	var logs logBuffer
	s := newSet(t, Config{Resolve: dns.resolve, ResolveEvery: 20 * time.Millisecond, Logger: logs.logger()}, "web1", "web2")
	wantTargets(t, s, "10.0.0.1:5000")
	if !strings.Contains(logs.String(), "peer does not resolve; retrying") || !strings.Contains(logs.String(), "web2") {
		t.Fatalf("no warning about web2:\n%s", logs.String())
	}
	running(t, s)
	dns.set("web2", "10.0.0.2")
	waitTargets(t, s, "10.0.0.1:5000", "10.0.0.2:5000")

	for _, tt := range []struct {
		specs []string
		want  string
	}{
		{[]string{"web2", "web3"}, "no peer resolves to an address: "},
		{[]string{"10.0.0.1", "fd00::1"}, "fd00::1]:5000 is IPv6, and this member's peers are IPv4"},
	} {
		cfg := Config{Resolve: newDNS(nil).resolve, Port: 5000, Interval: time.Second, MissedHeartbeats: 3}
		for _, x := range tt.specs {
			sp, _ := ParseSpec(x, 5000)
			cfg.Specs = append(cfg.Specs, sp)
		}
		if _, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%q): %v, want an error saying %q", tt.specs, err, tt.want)
		}
	}
	cfg := Config{Resolve: dns.resolve, Port: 5000, Interval: time.Second, MissedHeartbeats: 3, Family: 4}
	cfg.Specs = []Spec{{"v6only", 5000}}
	if _, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "no peer has an IPv4 address") {
		t.Errorf("IPv6 answers on an IPv4 member: %v", err)
	}
	s6 := newSet(t, Config{Resolve: dns.resolve}, "v6only")
	if !s6.Is6() {
		t.Fatal("IPv6-only answers made an IPv4 set")
	}
	wantTargets(t, s6, "[fd00::5]:5000", "[fd00::6]:5000")
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	// As configuration tools do: a new file renamed over the old.
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

// TestFileReload: the peers file is read again when it changes, without
// a restart; a change with a bad line is refused with the line number
// and the previous list stays; a removed file keeps the list too.
func TestFileReload(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "peers")
	writeFile(t, name, "# segment b\n10.0.0.2\n10.0.0.3:6000\n")
	dns := newDNS(map[string][]string{"web4": {"10.0.0.4"}})
	var logs logBuffer
	// A poll far away: the inotify watch must see the changes.
	s := newSet(t, Config{File: name, Resolve: dns.resolve, PollEvery: time.Hour, Logger: logs.logger()})
	wantTargets(t, s, "10.0.0.2:5000", "10.0.0.3:6000")
	running(t, s)

	writeFile(t, name, "10.0.0.2\nweb4\n")
	waitTargets(t, s, "10.0.0.2:5000", "10.0.0.4:5000")

	writeFile(t, name, "10.0.0.2\n10.0.0.5\n10.0.0.300\n")
	logs.wait(t, "line 3")
	wantTargets(t, s, "10.0.0.2:5000", "10.0.0.4:5000")
	if !strings.Contains(logs.String(), "keeping the previous list") {
		t.Errorf("the refusal does not say the list stays:\n%s", logs.String())
	}

	// Written in place, not renamed: seen as well.
	if err := os.WriteFile(name, []byte("10.0.0.6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitTargets(t, s, "10.0.0.6:5000")

	if err := os.Remove(name); err != nil {
		t.Fatal(err)
	}
	logs.wait(t, "no such file")
	wantTargets(t, s, "10.0.0.6:5000")
}

// TestFileReloadWithoutEvent: without an inotify event (a network
// filesystem), the reload the poll makes finds the change.
func TestFileReloadWithoutEvent(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "peers")
	writeFile(t, name, "10.0.0.2\n")
	s := newSet(t, Config{File: name})
	if err := os.WriteFile(name, []byte("10.0.0.7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Not running yet: nothing changed.
	wantTargets(t, s, "10.0.0.2:5000")
	s.reload(context.Background())
	wantTargets(t, s, "10.0.0.7:5000")
}

// TestFileStart: at start-up a peers file must exist and parse; an empty
// one is a set with no listed peer.
func TestFileStart(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	writeFile(t, bad, "10.0.0.1\n\nnot a peer\n")
	cfg := Config{File: bad, Port: 5000, Interval: time.Second, MissedHeartbeats: 3}
	if _, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), bad) {
		t.Fatalf("bad file: %v", err)
	}
	cfg.File = filepath.Join(dir, "missing")
	if _, err := New(context.Background(), cfg); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	misfit := filepath.Join(dir, "misfit")
	writeFile(t, misfit, "10.0.0.1\n[fd00::2]:5000\n")
	cfg.File = misfit
	if _, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("mixed families: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, "# filled in later\n")
	s := newSet(t, Config{File: empty})
	wantTargets(t, s)
}
