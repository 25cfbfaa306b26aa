package main

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"go.uber.org/goleak"

	"github.com/makuo/makuo/replicator"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"makuosan":  func() { os.Exit(run(context.Background(), os.Args[1:], os.Environ(), os.Stdout, os.Stderr)) },
		"makuo-ctl": func() { os.Exit(ctlMain(os.Args[1:])) },
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata", Cmds: map[string]func(*testscript.TestScript, bool, []string){
		// mode FILE PERM: the file's permission bits are PERM (octal).
		"mode": func(ts *testscript.TestScript, neg bool, args []string) {
			if len(args) != 2 {
				ts.Fatalf("usage: mode FILE PERM")
			}
			fi, err := os.Stat(ts.MkAbs(args[0]))
			ts.Check(err)
			want, err := strconv.ParseUint(args[1], 8, 32)
			ts.Check(err)
			if got := uint64(fi.Mode().Perm()); (got == want) == neg {
				ts.Fatalf("%s has mode %#o, want %#o", args[0], got, want)
			}
		},
	}})
}

func TestParseFlagsEnv(t *testing.T) {
	base := t.TempDir()
	o, err := parseFlags([]string{"-p", "6000"}, []string{"MAKUOSAN_BASE=" + base, "MAKUOSAN_PORT=7000", "MAKUOSAN_RCVBUF=1234", "MAKUOSAN_SOCK=/tmp/s"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.node.Base != base || o.node.Port != 6000 || o.node.RecvBuffer != 1234 || o.socket != "/tmp/s" {
		t.Fatalf("env/flags not applied: base %q port %d rcvbuf %d sock %q", o.node.Base, o.node.Port, o.node.RecvBuffer, o.socket)
	}
	if _, err := parseFlags(nil, []string{"MAKUOSAN_PORT=abc"}, &bytes.Buffer{}); err == nil {
		t.Fatal("bad MAKUOSAN_PORT accepted")
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		args []string
		want int
	}{
		{[]string{"-h"}, exitOK},
		{[]string{"-V"}, exitOK},
		{nil, exitConfig},
		{[]string{"--bogus"}, exitConfig},
		{[]string{"-b", "/nonexistent"}, exitConfig},
		{[]string{"-b", "/", "extra"}, exitConfig},
		{[]string{"-b", "/", "--log-format", "xml"}, exitConfig},
		{[]string{"-b", "/", "-m", "239.1.1.1.1"}, exitConfig},
		{[]string{"-b", "/", "-c"}, exitConfig},
		{[]string{"-b", "/", "-u", "no-such-user-makuo"}, exitConfig},
		{[]string{"-b", "/", "-u", "4000123"}, exitConfig}, // no passwd entry, no -g
		{[]string{"-b", "/", "-u", "nobody", "-G", "no-such-group-makuo"}, exitConfig},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		// -n: in this process, detaching would start the test binary.
		if got := run(context.Background(), append([]string{"-n"}, tt.args...), nil, &out, &errOut); got != tt.want {
			t.Errorf("makuosan %q = %d, want %d; stderr: %s", tt.args, got, tt.want, errOut.String())
		}
	}
}

// TestChrootRefused: -c cannot work (the state directory and the watched
// paths are resolved inside the chroot), so it is a usage error.
func TestChrootRefused(t *testing.T) {
	for _, args := range [][]string{{"-c"}, {"--chroot", "-w"}, {"-c", "-u", "nobody"}} {
		_, err := parseFlags(append([]string{"-b", t.TempDir()}, args...), nil, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "-c (chroot to the base directory) is refused") {
			t.Errorf("%q: err = %v, want the -c refusal", args, err)
		}
	}
}

// TestNoKeyWarning: a daemon started without -k says at start-up, in one
// line, what anyone on the segment can do to it; with -k it does not.
func TestNoKeyWarning(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("a group key of at least sixteen bytes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		want int // lines with the warning
	}{
		{"without -k", nil, 1},
		{"with -k", []string{"-k", keyFile}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			args := append(daemonArgs(t, base), "--state-dir", t.TempDir())
			log := runUntilStarted(t, append(args, tt.args...))
			warning := "level=WARN msg=\"no group key (-k): any host on the network segment can push, overwrite and delete files under " +
				base + " on every member, and read what is pushed; use -k FILE\""
			if got := strings.Count(log, warning); got != tt.want {
				t.Fatalf("%d warning lines, want %d; log:\n%s", got, tt.want, log)
			}
			if tt.want > 0 && strings.Index(log, warning) > strings.Index(log, "node started") {
				t.Errorf("the warning comes after node started:\n%s", log)
			}
		})
	}
}

// TestLinkLocalWarning: a group in 224.0.0.0/24 with --ttl above 1 draws
// a warning naming a group routers do forward; a TTL of 1 there, or any
// TTL on a routable group, does not.
func TestLinkLocalWarning(t *testing.T) {
	for _, tt := range []struct {
		group string
		ttl   int
		warn  bool
	}{
		{"224.0.0.108", 1, false},
		{"224.0.0.108", 2, true},
		{"224.0.0.1", 8, true},
		{"224.0.0.255", 255, true},
		{"224.0.1.108", 8, false}, // internetwork control: routed
		{"239.192.0.108", 8, false},
		{"239.192.0.108", 1, false},
		{"ff02::108", 1, false},
		{"ff02::108", 4, true},
		{"ff12::108", 4, true}, // transient, link-local all the same
		{"ff05::108", 8, false},
		{"ff08::108", 8, false},
	} {
		cfg := replicator.DefaultConfig()
		cfg.Group, cfg.TTL = netip.MustParseAddr(tt.group), tt.ttl
		w := linkLocalWarning(cfg)
		if got := w != ""; got != tt.warn {
			t.Errorf("-m %s --ttl %d: warning %q, want one: %v", tt.group, tt.ttl, w, tt.warn)
		}
		remedy := "-m 239.192.0.108"
		if cfg.Group.Is6() {
			remedy = "-m ff05::108"
		}
		if tt.warn && !strings.Contains(w, "routers never forward it") || tt.warn && !strings.Contains(w, remedy) {
			t.Errorf("-m %s --ttl %d: warning %q lacks the reason or the remedy %s", tt.group, tt.ttl, w, remedy)
		}
	}
	// And the daemon logs it at start-up, once, before it serves.
	for _, tt := range []struct {
		args []string
		want int
	}{{nil, 0}, {[]string{"--ttl", "4"}, 1}} {
		args := append(daemonArgs(t, t.TempDir()), "--state-dir", t.TempDir())
		log := runUntilStarted(t, append(args, tt.args...))
		warning := `level=WARN msg="multicast group 224.0.0.108 is link-local (224.0.0.0/24): routers never forward it, so --ttl 4 reaches this segment only;`
		if got := strings.Count(log, warning); got != tt.want {
			t.Errorf("%q: %d warning lines, want %d; log:\n%s", tt.args, got, tt.want, log)
		}
		if tt.want > 0 && strings.Index(log, warning) > strings.Index(log, "node started") {
			t.Errorf("the warning comes after node started:\n%s", log)
		}
	}
}

// TestNoKeyWarningScope: without -k, who can push is the segment unless
// the group is routed, and a link-local group never is, whatever --ttl.
func TestNoKeyWarningScope(t *testing.T) {
	for _, tt := range []struct {
		group string
		ttl   int
		who   string
	}{
		{"224.0.0.108", 1, "any host on the network segment can push"},
		{"224.0.0.108", 8, "any host on the network segment can push"},
		{"239.192.0.108", 1, "any host on the network segment can push"},
		{"239.192.0.108", 8, "any host that can reach the multicast group can push"},
		{"ff02::108", 8, "any host on the network segment can push"},
		{"ff05::108", 1, "any host on the network segment can push"},
		{"ff05::108", 8, "any host that can reach the multicast group can push"},
	} {
		cfg := replicator.DefaultConfig()
		cfg.Base, cfg.Group, cfg.TTL = "/srv", netip.MustParseAddr(tt.group), tt.ttl
		if w := noKeyWarning(cfg); !strings.HasPrefix(w, "no group key (-k): "+tt.who+", overwrite") {
			t.Errorf("-m %s --ttl %d: %q, want %q", tt.group, tt.ttl, w, tt.who)
		}
	}
}

// runUntilStarted runs the daemon in this process until it logs "node
// started", stops it as SIGTERM would, and returns its log; the daemon
// must leave no goroutine behind.
func runUntilStarted(t *testing.T, args []string) string {
	t.Helper()
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := &startedLog{started: make(chan struct{})}
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, nil, &bytes.Buffer{}, log) }()
	select {
	case <-log.started:
	case code := <-done:
		t.Fatalf("makuosan exited %d before it started:\n%s", code, log)
	case <-time.After(30 * time.Second):
		t.Fatalf("makuosan did not start within 30s:\n%s", log)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("makuosan exited %d after its context ended:\n%s", code, log)
	}
	return log.String()
}

// startedLog is a goroutine-safe log sink that closes started once the log
// holds "node started".
type startedLog struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	started chan struct{}
}

func (l *startedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	was := bytes.Contains(l.buf.Bytes(), []byte("node started"))
	l.buf.Write(p)
	if !was && bytes.Contains(l.buf.Bytes(), []byte("node started")) {
		close(l.started)
	}
	return len(p), nil
}

func (l *startedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
