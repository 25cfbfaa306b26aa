package main

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/makuo/makuo/replicator/control"
)

// notifyListener is a stand-in for systemd's notify socket.
func notifyListener(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// readState returns the next datagram, failing after a generous deadline
// (a readiness signal, not a timing assertion).
func readState(t *testing.T, ln *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 256)
	_ = ln.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := ln.Read(buf)
	if err != nil {
		t.Fatalf("no sd_notify datagram: %v", err)
	}
	return string(buf[:n])
}

func envFunc(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeNode answers Status, failing the first failFirst calls.
type fakeNode struct {
	failFirst int32
	calls     atomic.Int32
}

func (f *fakeNode) Status(context.Context) (control.Status, error) {
	if f.calls.Add(1) <= f.failFirst {
		return control.Status{}, errors.New("wedged")
	}
	return control.Status{}, nil
}

func TestNotifierReadyWatchdogStopping(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, tc := range []struct{ name, socket string }{
		{"path", filepath.Join(t.TempDir(), "notify")},
		{"abstract", "@makuo-test-" + rand.Text()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln := notifyListener(t, tc.socket)
			sd := newNotifier(envFunc(map[string]string{
				"NOTIFY_SOCKET": tc.socket,
				"WATCHDOG_USEC": "2000",
				"WATCHDOG_PID":  strconv.Itoa(os.Getpid()),
			}), quiet)
			defer sd.close()
			sd.ready()
			if got := readState(t, ln); got != "READY=1" {
				t.Fatalf("first state %q, want READY=1", got)
			}
			// Fail the first two health checks: no keepalive may go out
			// before a check has passed.
			node := &fakeNode{failFirst: 2}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- sd.run(ctx, node) }()
			if got := readState(t, ln); got != "WATCHDOG=1" {
				t.Fatalf("state %q, want WATCHDOG=1", got)
			}
			if c := node.calls.Load(); c < 3 {
				t.Fatalf("keepalive sent after %d health checks, the first two of which failed", c)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("run: %v", err)
			}
			// Keepalives sent before the cancel may still be queued.
			for {
				got := readState(t, ln)
				if got == "STOPPING=1" {
					break
				}
				if got != "WATCHDOG=1" {
					t.Fatalf("state %q, want WATCHDOG=1 or STOPPING=1", got)
				}
			}
		})
	}
}

func TestNotifierWithoutSystemd(t *testing.T) {
	for _, env := range []map[string]string{
		{},
		{"NOTIFY_SOCKET": "relative/path"},
		{"NOTIFY_SOCKET": filepath.Join(t.TempDir(), "nobody-listens")},
	} {
		sd := newNotifier(envFunc(env), quiet)
		if sd.conn != nil {
			t.Fatalf("%v: connected", env)
		}
		sd.ready() // must not panic
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := sd.run(ctx, &fakeNode{}); err != nil {
			t.Fatalf("%v: run: %v", env, err)
		}
		sd.close()
	}
}

func TestNotifierNoWatchdogStillStops(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "notify")
	ln := notifyListener(t, socket)
	sd := newNotifier(envFunc(map[string]string{"NOTIFY_SOCKET": socket}), quiet)
	defer sd.close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	node := &fakeNode{}
	if err := sd.run(ctx, node); err != nil {
		t.Fatal(err)
	}
	if c := node.calls.Load(); c != 0 {
		t.Fatalf("%d health checks without a watchdog", c)
	}
	if got := readState(t, ln); got != "STOPPING=1" {
		t.Fatalf("state %q, want STOPPING=1", got)
	}
}

func TestWatchdogInterval(t *testing.T) {
	pid := 4242
	tests := []struct {
		usec, pid string
		want      time.Duration
	}{
		{"", "", 0},
		{"30000000", "", 15 * time.Second},
		{"30000000", "4242", 15 * time.Second},
		{"30000000", "1", 0}, // meant for another process
		{"0", "", 0},
		{"-5", "", 0},
		{"thirty", "", 0},
		{"99999999999999999999", "", 0},
	}
	for _, tt := range tests {
		got := watchdogInterval(envFunc(map[string]string{"WATCHDOG_USEC": tt.usec, "WATCHDOG_PID": tt.pid}), pid, quiet)
		if got != tt.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, want %v", tt.usec, tt.pid, got, tt.want)
		}
	}
}
