package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"slices"
	"strings"
	"sync"
)

// logOutput is the daemon's logger and where it writes.
type logOutput struct {
	logger *slog.Logger
	// level is changed at run time by SIGUSR1 and SIGUSR2 (stepLevel).
	level *slog.LevelVar
	// separate: the log does not go to stderr (--log-file, syslog), so a
	// fatal error is logged as well as printed.
	separate bool
	close    func()
}

// openLog builds the logger -d, --log-format and --log-file ask for. It
// writes to --log-file if given, else to stderr, or, once detached (where
// stderr is /dev/null), to syslog as the original did. dialSyslog is
// syslogDaemon outside tests. Without a syslog to reach, a detached
// daemon runs with its log discarded, as the original did, and openLog
// returns a warning saying so.
func openLog(o *options, stderr io.Writer, detached bool, dialSyslog func() (*syslog.Writer, error)) (*logOutput, string, error) {
	out := &logOutput{level: new(slog.LevelVar), close: func() {}}
	if o.debug > 0 {
		out.level.Set(slog.LevelDebug)
	}
	opts := &slog.HandlerOptions{Level: out.level}
	w := stderr
	switch {
	case o.logFile != "":
		f, err := os.OpenFile(o.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, "", configError{fmt.Errorf("--log-file: %w", err)}
		}
		w, out.separate, out.close = f, true, func() { f.Close() }
	case detached:
		out.separate = true
		sw, err := dialSyslog()
		if err != nil {
			out.logger = slog.New(slog.DiscardHandler)
			return out, fmt.Sprintf("warning: no syslog to log to (%v): the daemon's log is lost; give --log-file FILE, or -n to stay in the foreground", err), nil
		}
		out.logger = slog.New(newSyslogHandler(sw, o.logFormat, opts))
		out.close = func() { sw.Close() }
		return out, "", nil
	}
	if o.logFormat == "json" {
		out.logger = slog.New(slog.NewJSONHandler(w, opts))
	} else {
		out.logger = slog.New(slog.NewTextHandler(w, opts))
	}
	return out, "", nil
}

// syslogDaemon connects to the local syslog, facility daemon, as the
// original's openlog("makuosan", LOG_NDELAY, LOG_DAEMON).
func syslogDaemon() (*syslog.Writer, error) {
	return syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "makuosan")
}

// levels are the steps SIGUSR1 and SIGUSR2 move the log level along.
var levels = []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}

// stepLevel makes lv one step more verbose (SIGUSR1) or less (SIGUSR2),
// stopping at the ends, and returns the new level.
func stepLevel(lv *slog.LevelVar, moreVerbose bool) slog.Level {
	i := slices.Index(levels, lv.Level())
	switch {
	case i < 0: // not a step: start from info
		i = 1
	case moreVerbose && i > 0:
		i--
	case !moreVerbose && i < len(levels)-1:
		i++
	}
	lv.Set(levels[i])
	return levels[i]
}

// syslogHandler formats records like the text or JSON handler, without
// the time syslog adds itself, and sends each with the priority of its
// level.
type syslogHandler struct {
	inner slog.Handler
	out   *syslogOut
}

// syslogOut collects one formatted record at a time for the syslog
// writer; its handlers share it.
type syslogOut struct {
	mu  sync.Mutex
	w   *syslog.Writer
	buf bytes.Buffer
}

func (o *syslogOut) Write(p []byte) (int, error) { return o.buf.Write(p) }

func newSyslogHandler(w *syslog.Writer, format string, opts *slog.HandlerOptions) slog.Handler {
	out := &syslogOut{w: w}
	o := *opts
	o.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	if format == "json" {
		return syslogHandler{slog.NewJSONHandler(out, &o), out}
	}
	return syslogHandler{slog.NewTextHandler(out, &o), out}
}

func (h syslogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.buf.Reset()
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	msg := strings.TrimSuffix(h.out.buf.String(), "\n")
	switch {
	case r.Level >= slog.LevelError:
		return h.out.w.Err(msg)
	case r.Level >= slog.LevelWarn:
		return h.out.w.Warning(msg)
	case r.Level >= slog.LevelInfo:
		return h.out.w.Info(msg)
	}
	return h.out.w.Debug(msg)
}

func (h syslogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return syslogHandler{h.inner.WithAttrs(as), h.out}
}

func (h syslogHandler) WithGroup(name string) slog.Handler {
	return syslogHandler{h.inner.WithGroup(name), h.out}
}
