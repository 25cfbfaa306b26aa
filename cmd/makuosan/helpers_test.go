package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/makuo/makuo/replicator/control"
)

// ctlMain is the test binary's makuo-ctl command, a stand-in for msync
// (another command, built elsewhere): "makuo-ctl TARGET [PATH...]" pushes
// the paths (recursively; none: the whole base directory) through the
// control API at TARGET and prints "entries N", or the error and exits 1.
func ctlMain(args []string) int {
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, "usage: makuo-ctl TARGET [PATH...]")
		return 2
	}
	c, err := control.NewClient(args[0], "")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sum, err := c.Push(ctx, control.PushRequest{Paths: args[1:], Recursive: true}, func(control.Event) {})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("entries %d\n", sum.Entries)
	return 0
}

// inProcess is a daemon run by run() in the test process.
type inProcess struct {
	log    *startedLog
	cancel context.CancelFunc
	done   chan int
}

// startInProcess runs the daemon in this process until it logs "node
// started"; stop ends it. It must leave no goroutine behind.
func startInProcess(t *testing.T, args []string) *inProcess {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &inProcess{log: &startedLog{started: make(chan struct{})}, cancel: cancel, done: make(chan int, 1)}
	go func() { p.done <- run(ctx, args, nil, &bytes.Buffer{}, p.log) }()
	select {
	case <-p.log.started:
	case code := <-p.done:
		cancel()
		t.Fatalf("makuosan exited %d before it started:\n%s", code, p.log)
	case <-time.After(30 * time.Second):
		cancel()
		<-p.done
		t.Fatalf("makuosan did not start within 30s:\n%s", p.log)
	}
	return p
}

// stop ends the daemon as SIGTERM would and returns its log.
func (p *inProcess) stop(t *testing.T) string {
	t.Helper()
	p.cancel()
	if code := <-p.done; code != exitOK {
		t.Fatalf("makuosan exited %d after its context ended:\n%s", code, p.log)
	}
	return p.log.String()
}

// logField returns the value of key in the first log line with msg.
func logField(t *testing.T, log, msg, key string) string {
	t.Helper()
	for line := range strings.Lines(log) {
		if !strings.Contains(line, `msg="`+msg+`"`) && !strings.Contains(line, "msg="+msg+" ") {
			continue
		}
		m := regexp.MustCompile(`\b` + regexp.QuoteMeta(key) + `=("(?:[^"\\]|\\.)*"|\S*)`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("no %s in the %q line: %s", key, msg, line)
		}
		return strings.Trim(m[1], `"`)
	}
	t.Fatalf("no %q line in the log:\n%s", msg, log)
	return ""
}

// leakCheck fails the test if it leaves goroutines behind.
func leakCheck(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// waitFor polls cond until it holds, failing the test after 30s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
