package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDetach: without -n the command returns 0 once the daemon serves,
// the daemon runs on in a session of its own, the pid file holds its pid,
// and SIGTERM stops it cleanly (exit 0, pid file removed). Without
// --log-file it logs to syslog, or, on a host without one, runs with its
// log discarded and the command says so.
func TestDetach(t *testing.T) {
	// The detached daemon is the command's child; once the command has
	// exited, it becomes this process's, so that it can be reaped here.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	t.Run("log file", func(t *testing.T) {
		logFile := filepath.Join(t.TempDir(), "makuosan.log")
		pid, pidFile, stderr := detached(t, "--log-file", logFile)
		if stderr != "" {
			t.Errorf("the command printed %q", stderr)
		}
		code := stopDetached(t, pid)
		log, _ := os.ReadFile(logFile)
		if code != 0 {
			t.Fatalf("daemon exited %d, want 0; log:\n%s", code, log)
		}
		for _, want := range []string{`msg="node started"`, `msg="shutting down" signal=terminated`, `msg=stopped`} {
			if !strings.Contains(string(log), want) {
				t.Errorf("log lacks %s:\n%s", want, log)
			}
		}
		if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pid file after a clean stop: %v", err)
		}
	})
	t.Run("syslog", func(t *testing.T) {
		_, err := os.Stat("/dev/log")
		hasSyslog := err == nil
		pid, _, stderr := detached(t)
		if warned := strings.HasPrefix(stderr, "makuosan: warning: no syslog to log to ("); warned == hasSyslog {
			t.Errorf("syslog socket %v; the command printed %q", hasSyslog, stderr)
		}
		if code := stopDetached(t, pid); code != 0 {
			t.Fatalf("daemon exited %d, want 0", code)
		}
	})
}

// detached starts a test daemon without -n, plus args, and returns the
// detached daemon's pid, its pid file and what the command printed, once
// the command returned 0.
func detached(t *testing.T, args ...string) (pid int, pidFile, stderr string) {
	t.Helper()
	pidFile = filepath.Join(t.TempDir(), "makuosan.pid")
	args = append(append(daemonArgs(t, t.TempDir())[1:], "--state-dir", t.TempDir(), "--pid-file", pidFile), args...)
	if slices.Contains(args, "-n") {
		t.Fatal("bug: -n left in the arguments")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "makuosan", args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("makuosan: %v, output %q", err, out.String())
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("no pid file once the command returned: %v", err)
	}
	if pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
		t.Fatalf("pid file holds %q", b)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL); _, _ = unix.Wait4(pid, nil, unix.WNOHANG, nil) })
	if pid == cmd.Process.Pid {
		t.Fatal("the pid file holds the command's pid, not the daemon's")
	}
	if sid, err := unix.Getsid(pid); err != nil || sid != pid {
		t.Errorf("daemon %d: session %d (%v), want a session of its own", pid, sid, err)
	}
	if ppid := procField(t, pid, "PPid"); ppid != strconv.Itoa(os.Getpid()) {
		t.Errorf("daemon's parent %s: the command should have exited, leaving it to this process", ppid)
	}
	return pid, pidFile, out.String()
}

// stopDetached sends SIGTERM to the detached daemon pid, reaps it and
// returns its exit code (-1 if a signal killed it).
func stopDetached(t *testing.T, pid int) int {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	waitFor(t, "the daemon to exit after SIGTERM", func() bool {
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err != nil {
			t.Fatal(err)
		}
		return got == pid
	})
	return ws.ExitStatus()
}

// TestDetachFails: a daemon that cannot start makes the detaching command
// fail with its error and exit status; a configuration error is caught
// before detaching at all.
func TestDetachFails(t *testing.T) {
	dir := t.TempDir()
	notSocket := filepath.Join(dir, "file")
	if err := os.WriteFile(notSocket, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-b", base, "-U", notSocket}, "makuosan: control socket " + notSocket + ": exists and is not a socket\n"},
		{[]string{"-b", filepath.Join(dir, "missing")}, "makuosan: base directory: stat " + filepath.Join(dir, "missing") + ": no such file or directory\n"},
	} {
		args := append(tt.args, "--state-dir", t.TempDir(), "--metrics-listen", "", "--log-file", filepath.Join(dir, "log"))
		out, code := runDaemonRaw(t, args...)
		if code != exitConfig || out != tt.want {
			t.Errorf("makuosan %q: exit %d, stderr %q; want %d, %q", tt.args, code, out, exitConfig, tt.want)
		}
	}
}

// TestSignals: SIGUSR1 makes the log more verbose, SIGUSR2 less, one
// step each, stopping at the ends; SIGHUP stops the daemon cleanly.
func TestSignals(t *testing.T) {
	d := startDaemon(t, "--state-dir", t.TempDir())
	for i, tt := range []struct {
		sig   syscall.Signal
		level string
	}{
		{syscall.SIGUSR1, "DEBUG"}, {syscall.SIGUSR1, "DEBUG"},
		{syscall.SIGUSR2, "INFO"}, {syscall.SIGUSR2, "WARN"}, {syscall.SIGUSR2, "ERROR"}, {syscall.SIGUSR2, "ERROR"},
		{syscall.SIGUSR1, "WARN"}, {syscall.SIGUSR1, "INFO"},
	} {
		if err := d.cmd.Process.Signal(tt.sig); err != nil {
			t.Fatal(err)
		}
		// Each signal waits for the line of the one before: two of the
		// same kind in flight would merge into one.
		var lines []string
		waitFor(t, fmt.Sprintf("log line %d after %v", i+1, tt.sig), func() bool {
			lines = d.log.matching(`msg="log level changed"`)
			return len(lines) > i
		})
		want := fmt.Sprintf(`level=%s msg="log level changed" log_level=%s signal="%v"`, tt.level, tt.level, tt.sig)
		if !strings.Contains(lines[i], want) {
			t.Fatalf("after %v: %s, want %s", tt.sig, lines[i], want)
		}
	}
	pidFile := filepath.Join(t.TempDir(), "pid")
	d2 := startDaemon(t, "--state-dir", t.TempDir(), "--pid-file", pidFile)
	if b, err := os.ReadFile(pidFile); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(d2.cmd.Process.Pid) {
		t.Errorf("pid file %q, %v; want %d", b, err, d2.cmd.Process.Pid)
	}
	if err := d2.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	<-d2.done
	if d2.err != nil || !strings.Contains(d2.log.String(), `msg="shutting down" signal=hangup`) || !strings.Contains(d2.log.String(), "msg=stopped") {
		t.Fatalf("after SIGHUP: %v\n%s", d2.err, d2.log)
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file after SIGHUP: %v", err)
	}
	d.stop(t)
}

// TestCore: -C lifts RLIMIT_CORE (to unlimited as root) and keeps the
// daemon dumpable after -u, which the kernel otherwise turns off: /proc
// files of a non-dumpable process belong to root.
func TestCore(t *testing.T) {
	requireRoot(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("the test uses the nobody account: %v", err)
	}
	for _, tt := range []struct {
		name      string
		args      []string
		limit     string
		procOwner string
	}{
		{"-C", []string{"-C"}, "unlimited", "0"},
		{"-C -u", []string{"--core", "-u", "nobody"}, "unlimited", nobody.Uid},
		{"-u without -C", []string{"-u", "nobody"}, "", "0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			state := sharedDir(t)
			if err := os.Chown(state, atoi(t, nobody.Uid), atoi(t, nobody.Gid)); err != nil {
				t.Fatal(err)
			}
			d := startDaemon(t, append(tt.args, "--state-dir", state)...)
			pid := d.cmd.Process.Pid
			if tt.limit != "" {
				if got := coreLimits(t, pid); got != tt.limit+" "+tt.limit {
					t.Errorf("core limits %q, want %s %s", got, tt.limit, tt.limit)
				}
				if !strings.Contains(d.log.String(), `msg="core dumps enabled (-C)" rlimit_core=unlimited`) {
					t.Errorf("no core line in the log:\n%s", d.log)
				}
			}
			fi, err := os.Stat(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				t.Fatal(err)
			}
			if got := strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid)); got != tt.procOwner {
				t.Errorf("/proc/%d belongs to uid %s, want %s (dumpable: the process's own)", pid, got, tt.procOwner)
			}
			d.stop(t)
		})
	}
}

// coreLimits returns the soft and hard "Max core file size" of pid.
func coreLimits(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Max core file size"); ok {
			f := strings.Fields(rest)
			return f[0] + " " + f[1]
		}
	}
	t.Fatalf("no core limit in /proc/%d/limits", pid)
	return ""
}

// procField returns a field of /proc/PID/status.
func procField(t *testing.T, pid int, key string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /proc/%d/status", key, pid)
	return ""
}

// runDaemonRaw runs makuosan with exactly args, expecting it to exit
// within 30s, and returns its stderr and exit code.
func runDaemonRaw(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "makuosan", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("makuosan %q did not exit:\n%s", args, stderr.String())
	}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return stderr.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return stderr.String(), 0
}

// matching returns the log lines that contain substr.
func (l *lineLog) matching(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}
