package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/makuo/makuo/replicator/control"
)

// binDir holds the makuosan and msync binaries built by TestMain.
var binDir string

// labScript is the lab tool the tests and `make demo` share.
var labScript string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "makuo-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	wd, _ := os.Getwd()
	labScript = filepath.Join(wd, "..", "deploy", "lab", "lab.sh")
	build := exec.Command("go", "build", "-o", dir, "../cmd/makuosan", "../cmd/msync")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build daemons:", err)
		return 1
	}
	return m.Run()
}

// requireLab skips (or, in CI, fails) a test that cannot build a lab here.
func requireLab(t *testing.T) {
	t.Helper()
	var missing string
	switch {
	case os.Geteuid() != 0:
		missing = "needs root for network namespaces"
	default:
		for _, tool := range []string{"ip", "nft", "tc"} {
			if _, err := exec.LookPath(tool); err != nil {
				missing = tool + " not installed (apt-get install iproute2 nftables)"
			}
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("lab test cannot run in CI: %s", missing)
	}
	t.Skip(missing)
}

// Lab is a set of hosts, one network namespace each, on one bridge (NewLab)
// or on several routed segments (NewRoutedLab).
type Lab struct {
	t    *testing.T
	name string
	root string // the hosts' directories
	ipv6 bool   // daemons join the IPv6 group (NewLabIPv6)
	// flags, when set, are the flags a daemon meets the others with
	// instead of the group's (unicast mode: UseUnicastRing).
	flags func(*Host) []string
	// copies is how many copies of a push the sender's uplink carries:
	// 1 by multicast, one per receiver in unicast mode (0 reads as 1).
	copies int
	Hosts  []*Host
	// Segments holds a routed lab's hosts by segment; nil in a flat lab.
	Segments [][]*Host
}

// NewLab creates n hosts and removes them when the test ends; their
// daemons meet on the default IPv4 group.
func NewLab(t *testing.T, n int) *Lab {
	t.Helper()
	requireLab(t)
	l := newLab(t, "up", fmt.Sprint(n))
	for i := 1; i <= n; i++ {
		l.addHost(fmt.Sprintf("h%d", i), fmt.Sprintf("10.77.0.%d", 10+i))
	}
	return l
}

// ipv6Group is the group of NewLabIPv6's daemons: link-local, on eth0.
const ipv6Group = "ff02::108"

// NewLabIPv6 is NewLab whose daemons meet on the link-local IPv6 group
// (-m ff02::108 -i eth0) and so know each other by their link-local
// addresses; the control, metrics and test traffic stays on IPv4.
func NewLabIPv6(t *testing.T, n int) *Lab {
	t.Helper()
	l := NewLab(t, n)
	l.ipv6 = true
	return l
}

// GroupFlags are the flags a daemon of the lab joins its group with.
func (l *Lab) GroupFlags(h *Host) []string {
	if l.flags != nil {
		return l.flags(h)
	}
	if l.ipv6 {
		return []string{"-m", ipv6Group, "-i", "eth0"}
	}
	return []string{"-i", h.Addr}
}

// newLab runs lab.sh with a fresh lab name after cmd and args, and tears
// the lab down when the test ends; the caller adds its hosts.
func newLab(t *testing.T, cmd string, args ...string) *Lab {
	t.Helper()
	return newLabEnv(t, nil, cmd, args...)
}

// newLabEnv is newLab with lab.sh's environment extended by env (LAB_MTU=…
// and the like) for the call that builds the lab.
func newLabEnv(t *testing.T, env []string, cmd string, args ...string) *Lab {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	l := &Lab{t: t, name: "mk" + hex.EncodeToString(b[:]), root: t.TempDir()}
	// Cleanup first: a lab.sh that fails half way leaves namespaces behind.
	t.Cleanup(func() {
		for _, h := range l.Hosts {
			h.Kill()
		}
		l.script("down", l.name)
	})
	// A test that hangs until go test's -timeout panics never runs its
	// cleanups: its daemons and namespaces would outlive the run. Tear the
	// lab down shortly before that deadline (lab.sh down kills what runs
	// inside); the hung test then fails on its own.
	if dl, ok := t.Deadline(); ok {
		guard := time.AfterFunc(time.Until(dl)-15*time.Second, func() {
			_ = exec.Command(labScript, "down", l.name).Run()
		})
		t.Cleanup(func() { guard.Stop() })
	}
	l.scriptEnv(env, append([]string{cmd, l.name}, args...)...)
	return l
}

// addHost adds the lab's next host (namespace NAME-hI, as lab.sh numbers
// them), with its own base and state directories.
func (l *Lab) addHost(name, addr string) *Host {
	i := len(l.Hosts) + 1
	h := &Host{
		lab: l, I: i, Name: name, NS: fmt.Sprintf("%s-h%d", l.name, i), Addr: addr,
		Base: filepath.Join(l.root, name, "base"), State: filepath.Join(l.root, name, "state"),
	}
	for _, d := range []string{h.Base, h.State} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			l.t.Fatal(err)
		}
	}
	l.Hosts = append(l.Hosts, h)
	return h
}

func (l *Lab) script(args ...string) string {
	l.t.Helper()
	return l.scriptEnv(nil, args...)
}

func (l *Lab) scriptEnv(env []string, args ...string) string {
	l.t.Helper()
	cmd := exec.Command(labScript, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		l.t.Fatalf("lab.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// StartAll starts a daemon on every host with the same extra flags.
func (l *Lab) StartAll(extra ...string) {
	for _, h := range l.Hosts {
		h.Start(extra...)
	}
}

// Host is one lab host and the daemon on it.
type Host struct {
	lab   *Lab
	I     int
	Name  string // hostname announced by its daemon
	NS    string
	Addr  string
	Base  string
	State string
	cmd   *exec.Cmd
	done  chan struct{}
	log   *syncBuffer
}

// syncBuffer collects a daemon's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start runs makuosan on the host with the lab's standard flags plus extra.
func (h *Host) Start(extra ...string) {
	t := h.lab.t
	t.Helper()
	if h.cmd != nil {
		t.Fatalf("%s: daemon already running", h.Name)
	}
	args := append([]string{"netns", "exec", h.NS, filepath.Join(binDir, "makuosan"),
		"-n", "-b", h.Base, "--state-dir", h.State, "--hostname", h.Name,
		"--metrics-listen", h.Addr + ":9758", "-U", h.Socket()}, append(h.lab.GroupFlags(h), extra...)...)
	cmd := exec.Command("ip", args...)
	h.log = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = h.log, h.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start makuosan: %v", h.Name, err)
	}
	h.cmd, h.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(h.done)
}

// Signal sends sig to the daemon.
func (h *Host) Signal(sig syscall.Signal) {
	if h.cmd != nil {
		_ = h.cmd.Process.Signal(sig)
	}
}

// Wait waits for the daemon to exit and returns its exit code.
func (h *Host) Wait(timeout time.Duration) int {
	t := h.lab.t
	t.Helper()
	if h.cmd == nil {
		t.Fatalf("%s: no daemon", h.Name)
	}
	select {
	case <-h.done:
	case <-time.After(timeout):
		t.Fatalf("%s: daemon did not exit within %v\n%s", h.Name, timeout, h.log)
	}
	code := h.cmd.ProcessState.ExitCode()
	h.cmd = nil
	return code
}

// Kill stops the daemon hard, if it runs.
func (h *Host) Kill() {
	if h.cmd == nil {
		return
	}
	_ = h.cmd.Process.Kill()
	<-h.done
	h.cmd = nil
}

// Running reports whether the daemon is still up.
func (h *Host) Running() bool {
	if h.cmd == nil {
		return false
	}
	select {
	case <-h.done:
		return false
	default:
		return true
	}
}

// Log returns what the daemon printed so far.
func (h *Host) Log() string { return h.log.String() }

// Run runs a command inside the host's namespace.
func (h *Host) Run(ctx context.Context, name string, args ...string) (stdout, stderr string, code int) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
		e.WriteString(err.Error())
	}
	return o.String(), e.String(), code
}

// SetNames gives the host's namespace its own name service: hosts as its
// /etc/hosts and a resolver that answers nothing at once (ip netns exec
// bind-mounts /etc/netns/NS/* over /etc), so a lookup's result does not
// depend on the machine's DNS.
func (h *Host) SetNames(hosts string) {
	t := h.lab.t
	t.Helper()
	dir := filepath.Join("/etc/netns", h.NS)
	must(t, os.MkdirAll(dir, 0o755))
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.WriteFile(filepath.Join(dir, "hosts"), []byte(hosts), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"), 0o644))
}

// Socket is the host's control socket: its own, since the default path
// is shared by every namespace of the machine.
func (h *Host) Socket() string { return filepath.Join(h.State, "makuosan.sock") }

// Msync runs msync on the host, against the host's daemon.
func (h *Host) Msync(args ...string) (stdout, stderr string, code int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return h.Run(ctx, filepath.Join(binDir, "msync"), append([]string{"-c", "unix:" + h.Socket()}, args...)...)
}

// Members returns msync --members --json on the host, or nil when the daemon
// does not answer.
func (h *Host) Members() []control.Member {
	out, _, code := h.Msync("--members", "--json")
	if code != 0 {
		return nil
	}
	var ms []control.Member
	if json.Unmarshal([]byte(out), &ms) != nil {
		return nil
	}
	return ms
}

// Status returns msync --status --json on the host.
func (h *Host) Status() (control.Status, error) {
	out, errOut, code := h.Msync("--status", "--json")
	var st control.Status
	if code != 0 {
		return st, fmt.Errorf("msync --status: exit %d: %s", code, errOut)
	}
	return st, json.Unmarshal([]byte(out), &st)
}

// Hostnames returns the sorted hostnames h lists, itself included.
func (h *Host) Hostnames() []string {
	var names []string
	for _, m := range h.Members() {
		names = append(names, m.Hostname)
	}
	return names
}

// InNamespace runs f on an OS thread switched into the host's network
// namespace; sockets f creates stay in that namespace after it returns. The
// thread is never handed back to the scheduler: it ends with its goroutine.
func (h *Host) InNamespace(f func() error) error {
	errc := make(chan error, 1)
	var attempt func()
	attempt = func() {
		runtime.LockOSThread() // no Unlock: the thread must die in that namespace
		// Go never ends the main thread; switched, it would keep the whole
		// process in the lab's namespace (and lab.sh down kills what is
		// there). Leave it locked and unswitched, and try another thread.
		if unix.Gettid() == unix.Getpid() {
			go attempt()
			return
		}
		target, err := os.Open("/run/netns/" + h.NS)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", h.NS, err)
			return
		}
		errc <- f()
	}
	go attempt()
	return <-errc
}

// DialGroup returns a UDP socket in the host's namespace that sends to the
// default multicast group.
func (h *Host) DialGroup() *net.UDPConn {
	t := h.lab.t
	t.Helper()
	var c *net.UDPConn
	err := h.InNamespace(func() error {
		var err error
		c, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(224, 0, 0, 108), Port: 5000})
		return err
	})
	if err != nil {
		t.Fatalf("%s: dial group: %v", h.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// lazy is a failure message's argument worked out when the message is
// (eventually's arguments are evaluated before it waits).
type lazy func() string

func (f lazy) String() string { return f() }

// eventually polls cond until it holds or timeout passes, and returns how
// long it took. It fails the test on timeout with msg.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, msg string, args ...any) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("after %v: "+msg, append([]any{timeout}, args...)...)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
