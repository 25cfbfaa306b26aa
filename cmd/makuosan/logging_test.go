package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"log/syslog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStepLevel(t *testing.T) {
	lv := new(slog.LevelVar)
	var got []slog.Level
	for _, more := range []bool{true, true, false, false, false, false, true} {
		got = append(got, stepLevel(lv, more))
	}
	want := []slog.Level{slog.LevelDebug, slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError, slog.LevelError, slog.LevelWarn}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("steps %v, want %v", got, want)
		}
	}
	lv.Set(slog.LevelInfo + 2) // not a step: from info
	if l := stepLevel(lv, false); l != slog.LevelInfo {
		t.Fatalf("from info+2: %v", l)
	}
}

// TestSyslogHandler: a detached daemon's records reach syslog with the
// priority of their level (facility daemon), without a time of their
// own, attributes and groups kept.
func TestSyslogHandler(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	w, err := syslog.Dial("unixgram", path, syslog.LOG_DAEMON|syslog.LOG_INFO, "makuosan")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	lv := new(slog.LevelVar)
	lv.Set(slog.LevelDebug)
	log := slog.New(newSyslogHandler(w, "text", &slog.HandlerOptions{Level: lv})).With("component", "x")
	log.Error("e", "n", 1)
	log.Warn("w")
	log.Info("i")
	log.WithGroup("g").Debug("d", "k", "v")
	wants := [][2]string{
		{"<27>", "level=ERROR msg=e component=x n=1"},
		{"<28>", "level=WARN msg=w component=x"},
		{"<30>", "level=INFO msg=i component=x"},
		{"<31>", "level=DEBUG msg=d component=x g.k=v"},
	}
	buf := make([]byte, 4096)
	for _, want := range wants {
		if err := ln.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := ln.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		msg := string(buf[:n])
		if !strings.HasPrefix(msg, want[0]) || !strings.HasSuffix(strings.TrimSpace(msg), want[1]) || strings.Contains(msg, "time=") {
			t.Errorf("syslog got %q, want priority %s and %q", msg, want[0], want[1])
		}
	}
}

// TestOpenLogDetached: detached, the daemon logs to syslog; where it
// cannot reach one it runs on with the log discarded and a warning for
// the operator, as the original (whose syslog calls went nowhere).
func TestOpenLogDetached(t *testing.T) {
	o := &options{logFormat: "text"}
	logs, warning, err := openLog(o, nil, true, func() (*syslog.Writer, error) { return nil, errors.New("no /dev/log") })
	if err != nil || !logs.separate || !strings.Contains(warning, "no syslog to log to (no /dev/log): the daemon's log is lost") {
		t.Fatalf("unreachable syslog: %v, %q", err, warning)
	}
	logs.logger.Error("goes nowhere") // and does not panic on a nil writer
	logs.close()

	path := filepath.Join(t.TempDir(), "log")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	logs, warning, err = openLog(o, nil, true, func() (*syslog.Writer, error) {
		return syslog.Dial("unixgram", path, syslog.LOG_DAEMON|syslog.LOG_INFO, "makuosan")
	})
	if err != nil || warning != "" {
		t.Fatalf("syslog: %v, %q", err, warning)
	}
	defer logs.close()
	logs.logger.Warn("to syslog")
	buf := make([]byte, 1024)
	if err := ln.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := ln.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "<28>") || !strings.Contains(string(buf[:n]), "msg=\"to syslog\"") {
		t.Fatalf("syslog got %q, %v", buf[:n], err)
	}
}

// countingWriter records what is written to it and in how many writes.
type countingWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.buf.Write(p)
}

func (w *countingWriter) get() (string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String(), w.writes
}

// TestLogBuffered: a stream log gathers its lines and writes them out in
// order, whole: at once after a warning, a buffer at a time when lines
// come fast, on its own shortly after a quiet line, and at close.
func TestLogBuffered(t *testing.T) {
	leakCheck(t)
	w := &countingWriter{}
	logs, _, err := openLog(&options{logFormat: "text"}, w, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs.logger.Info("applied", "path", "a")
	logs.logger.Warn("trouble")
	if got, _ := w.get(); !strings.Contains(got, "path=a") || !strings.HasSuffix(got, "msg=trouble\n") {
		t.Fatalf("after a warning the log holds %q", got)
	}
	// Lines enough for several buffers: written out as they fill, in
	// far fewer writes than lines.
	const lines = 4 * logBufSize / 64
	_, before := w.get()
	for i := range lines {
		logs.logger.Info("applied", "path", fmt.Sprintf("dir/%06d", i))
	}
	got, writes := w.get()
	if n := strings.Count(got, "msg=applied"); n < lines/2 || writes-before > lines/16 {
		t.Errorf("%d of %d lines written in %d writes", n-1, lines, writes-before)
	}
	waitFor(t, "the last line written without a flush", func() bool {
		got, _ := w.get()
		return strings.Contains(got, fmt.Sprintf("path=dir/%06d\n", lines-1))
	})
	logs.logger.Info("last")
	logs.close()
	got, _ = w.get()
	if !strings.HasSuffix(got, "msg=last\n") || strings.Count(got, "msg=applied") != lines+1 {
		t.Fatalf("after close: %d applied lines, ends %q", strings.Count(got, "msg=applied"), got[max(0, len(got)-80):])
	}
	for i := 1; i < lines; i++ {
		if strings.Index(got, fmt.Sprintf("path=dir/%06d\n", i-1)) > strings.Index(got, fmt.Sprintf("path=dir/%06d\n", i)) {
			t.Fatalf("line %d before line %d", i, i-1)
		}
	}
}
