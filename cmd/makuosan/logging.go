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
	"time"
)

// logOutput is the daemon's logger and where it writes.
type logOutput struct {
	logger *slog.Logger
	// level is changed at run time by SIGUSR1 and SIGUSR2 (stepLevel).
	level *slog.LevelVar
	// separate: the log does not go to stderr (--log-file, syslog), so a
	// fatal error is logged as well as printed.
	separate bool
	// flush writes out the lines gathered so far; close flushes too.
	flush func()
	close func()
}

// openLog builds the logger -d, --log-format and --log-file ask for. It
// writes to --log-file if given, else to stderr, or, once detached (where
// stderr is /dev/null), to syslog as the original did. dialSyslog is
// syslogDaemon outside tests. Without a syslog to reach, a detached
// daemon runs with its log discarded, as the original did, and openLog
// returns a warning saying so.
func openLog(o *options, stderr io.Writer, detached bool, dialSyslog func() (*syslog.Writer, error)) (*logOutput, string, error) {
	out := &logOutput{level: new(slog.LevelVar), flush: func() {}, close: func() {}}
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
	// A receiver logs every path it applies: lines are gathered and
	// written a buffer at a time, not one write(2) each.
	b := newLogBuffer(w)
	closeOut := out.close
	out.flush = func() { _ = b.Flush() }
	out.close = func() { _ = b.Flush(); closeOut() }
	var h slog.Handler
	if o.logFormat == "json" {
		h = slog.NewJSONHandler(b, opts)
	} else {
		h = slog.NewTextHandler(b, opts)
	}
	out.logger = slog.New(flushingHandler{h, b})
	return out, "", nil
}

// Gathered log lines are written out once they fill logBufSize bytes, at
// most logFlushDelay after the first of them, at once after a record of
// level warn or above, and at close.
const (
	logBufSize    = 64 << 10
	logFlushDelay = 100 * time.Millisecond
)

// logBuffer gathers the lines of a stream log (stderr, --log-file) for the
// writer under it. It is safe for concurrent use.
type logBuffer struct {
	mu    sync.Mutex
	w     io.Writer
	buf   []byte
	timer *time.Timer // armed while buf holds lines
}

func newLogBuffer(w io.Writer) *logBuffer { return &logBuffer{w: w} }

// Write gathers p, one formatted record. A failure of the writer under it
// shows in the Write that flushes.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) >= logBufSize {
		return len(p), b.flushLocked()
	}
	if b.timer == nil {
		b.timer = time.AfterFunc(logFlushDelay, func() { _ = b.Flush() })
	}
	return len(p), nil
}

// Flush writes out what is gathered.
func (b *logBuffer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

func (b *logBuffer) flushLocked() error {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	if cap(b.buf) > 2*logBufSize {
		b.buf = nil // a burst of long lines: do not keep its memory
	} else {
		b.buf = b.buf[:0]
	}
	return err
}

// flushingHandler writes the buffer out after each record of level warn
// or above, so that what goes wrong is in the log at once.
type flushingHandler struct {
	slog.Handler
	b *logBuffer
}

func (h flushingHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		if ferr := h.b.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h flushingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return flushingHandler{h.Handler.WithAttrs(as), h.b}
}

func (h flushingHandler) WithGroup(name string) slog.Handler {
	return flushingHandler{h.Handler.WithGroup(name), h.b}
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
