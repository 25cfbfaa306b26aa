package main

import (
	"errors"
	"log/slog"
	"log/syslog"
	"net"
	"path/filepath"
	"strings"
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
