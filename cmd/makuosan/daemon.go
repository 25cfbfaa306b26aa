package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// detachEnv marks the process a detaching makuosan starts (see detach);
// its value is the descriptor of the pipe the start is reported on. It is
// internal to makuosan, not an operator setting.
const detachEnv = "MAKUOSAN_DETACHED_START_FD"

// startFD is the child's descriptor of the start pipe: the first of
// exec.Cmd.ExtraFiles.
const startFD = 3

// readyLine is the last line a detached child writes on the start pipe
// once it serves; lines before it are warnings for the operator. Without
// it, what the child wrote is its start-up error.
const readyLine = "ready\n"

// detaches reports whether makuosan goes into the background, as the
// original did without -n. Under systemd's Type=notify ($NOTIFY_SOCKET)
// it never does: systemd would take the parent's exit for the daemon's.
func detaches(o *options, env []string) bool {
	return !o.foreground && lookupEnv(env, "NOTIFY_SOCKET") == "" && lookupEnv(env, detachEnv) == ""
}

// detach starts makuosan again with the same arguments in a new session
// (setsid: no controlling terminal, so closing it does not stop the
// daemon), stdin, stdout and stderr on /dev/null (or, with --log-file,
// output on that file, where a crash would print), and waits until the
// child reports on a pipe that it serves; then it returns exitOK and the
// child lives on. If the child fails to start, its error is printed and
// its exit status returned, so an rc script sees the failure.
func detach(o *options, args, env []string, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "makuosan: detach: %v\n", err)
		return exitFail
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return fail(err)
	}
	defer null.Close()
	out := null
	if o.logFile != "" {
		if out, err = os.OpenFile(o.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640); err != nil {
			fmt.Fprintf(stderr, "makuosan: --log-file: %v\n", err)
			return exitConfig
		}
		defer out.Close()
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	defer r.Close()
	cmd := &exec.Cmd{
		// /proc/self/exe is this very binary even if the file was replaced
		// since it started; argv[0] stays what it was.
		Path:        "/proc/self/exe",
		Args:        append([]string{os.Args[0]}, args...),
		Env:         append(slices.Clone(env), detachEnv+"="+strconv.Itoa(startFD)),
		Stdin:       null,
		Stdout:      out,
		Stderr:      out,
		ExtraFiles:  []*os.File{w},
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	err = cmd.Start()
	w.Close() // the child holds the only write end now
	if err != nil {
		return fail(err)
	}
	// EOF comes once the child closed its end: when it serves, or when it
	// exits without having served.
	msg, _ := io.ReadAll(r)
	if warnings, ok := bytes.CutSuffix(msg, []byte(readyLine)); ok {
		stderr.Write(warnings)
		return exitOK
	}
	err = cmd.Wait()
	stderr.Write(msg)
	if ee, ok := errors.AsType[*exec.ExitError](err); ok && ee.ExitCode() > 0 {
		return ee.ExitCode()
	}
	if len(msg) == 0 {
		fmt.Fprintf(stderr, "makuosan: the daemon ended before it served (%v)\n", err)
	}
	return exitFail
}

// startReport is a detached child's end of the start pipe; nil in a
// process that did not detach.
type startReport struct {
	f *os.File // nil once reported
}

// childReport returns the start pipe when makuosan runs as a detached
// child, nil otherwise.
func childReport(env []string) *startReport {
	v := lookupEnv(env, detachEnv)
	if v == "" {
		return nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < startFD {
		return nil
	}
	return &startReport{f: os.NewFile(uintptr(fd), "start pipe")}
}

// pending reports whether the start is yet to be reported.
func (r *startReport) pending() bool { return r != nil && r.f != nil }

// ready tells the waiting parent that the daemon serves.
func (r *startReport) ready() { r.finish(readyLine) }

// warn passes a warning to the operator waiting for the start (none in a
// process that did not detach).
func (r *startReport) warn(msg string) {
	if r.pending() {
		_, _ = fmt.Fprintf(r.f, "makuosan: %s\n", msg)
	}
}

// failed tells the waiting parent why the daemon could not start.
func (r *startReport) failed(err error) { r.finish(fmt.Sprintf("makuosan: %v\n", err)) }

func (r *startReport) finish(msg string) {
	if !r.pending() {
		return
	}
	_, _ = r.f.WriteString(msg)
	r.f.Close()
	r.f = nil
}

// writePidFile writes this process's pid to path (--pid-file).
func writePidFile(path string) error {
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return configError{fmt.Errorf("--pid-file: %w", err)}
	}
	return nil
}

// removePidFile removes path if it still holds this process's pid. After
// -u the daemon may lack the right to: then the file stays, stale.
func removePidFile(path string) {
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		_ = os.Remove(path)
	}
}

// enableCore is -C, the original's core switch: it raises RLIMIT_CORE to
// unlimited, or to the hard limit where the process may not raise that
// (no CAP_SYS_RESOURCE, as under the systemd unit), and makes a fatal Go
// error abort with a core dump rather than only print its trace. It
// returns the soft limit now in effect.
func enableCore() (uint64, error) {
	lim := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &lim); err != nil {
		if err := unix.Getrlimit(unix.RLIMIT_CORE, &lim); err != nil {
			return 0, fmt.Errorf("-C: getrlimit: %w", err)
		}
		lim.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_CORE, &lim); err != nil {
			return 0, fmt.Errorf("-C: setrlimit: %w", err)
		}
	}
	debug.SetTraceback("crash")
	return lim.Cur, nil
}

// coreLimitString renders a core size limit for the log.
func coreLimitString(l uint64) string {
	if l == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return strconv.FormatUint(l, 10)
}

// keepDumpable undoes what a change of ids does to a process: the kernel
// stops it dumping core (PR_SET_DUMPABLE), which -C asked for.
func keepDumpable() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("-C: prctl(PR_SET_DUMPABLE): %w", err)
	}
	return nil
}

// lookupEnv returns the value of key in env ("KEY=value" entries).
func lookupEnv(env []string, key string) string {
	for _, kv := range slices.Backward(env) {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}
