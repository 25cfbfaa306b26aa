package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requirePackageTools skips (or, in CI, fails) a test that needs the Debian
// packaging tools and systemd-nspawn (make deps installs them).
func requirePackageTools(t *testing.T) {
	t.Helper()
	var missing string
	switch {
	case os.Geteuid() != 0:
		missing = "needs root (overlay mounts, systemd-nspawn)"
	default:
		for _, tool := range []string{"make", "dpkg-deb", "dpkg-shlibdeps", "systemd-nspawn", "systemd-analyze", "zsh", "groff"} {
			if _, err := exec.LookPath(tool); err != nil {
				missing = tool + " not installed (make deps)"
			}
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("package test cannot run in CI: %s", missing)
	}
	t.Skip(missing)
}

// freshRoot is a Debian system that was never configured, for booting
// with systemd-nspawn: this machine's /usr and dpkg database as the lower
// layers of overlays (what it has installed, never changed by the test),
// and an empty /etc, /var and /run. It is what a new server is after the
// installer, less its configuration: systemd creates the system users at
// boot (sysusers.d), and everything a package needs on top it must bring.
type freshRoot struct {
	Dir    string // the root directory
	Out    string // bound to /out in the container, where it writes results
	Pkg    string // bound read-only to /pkg
	name   string
	mounts []string
}

func newFreshRoot(t *testing.T) *freshRoot {
	t.Helper()
	var b [3]byte
	_, _ = rand.Read(b[:])
	top := t.TempDir()
	r := &freshRoot{Dir: filepath.Join(top, "root"), Out: filepath.Join(top, "out"), Pkg: filepath.Join(top, "pkg"),
		name: "mkpkg" + hex.EncodeToString(b[:])}
	for _, d := range []string{r.Out, r.Pkg, "root/usr", "root/etc/systemd/system/multi-user.target.wants",
		"root/var/lib/dpkg", "root/var/tmp", "root/tmp", "root/root", "root/run", "upper", "work"} {
		if !filepath.IsAbs(d) {
			d = filepath.Join(top, d)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(r.unmount)
	r.overlay(t, "/usr", filepath.Join(r.Dir, "usr"), top, "usr")
	r.overlay(t, "/var/lib/dpkg", filepath.Join(r.Dir, "var/lib/dpkg"), top, "dpkg")
	for _, l := range []string{"bin", "sbin", "lib", "lib64"} {
		if target, err := os.Readlink("/" + l); err == nil {
			mustSymlink(t, target, filepath.Join(r.Dir, l))
		}
	}
	// Owners and modes that packages asked for on this machine name groups
	// a fresh /etc has not got (dpkg refuses to run on such an override).
	mustWrite(t, filepath.Join(r.Dir, "var/lib/dpkg/statoverride"), "", 0o644)
	mustSymlink(t, "../usr/lib/os-release", filepath.Join(r.Dir, "etc/os-release"))
	// A machine id: not a first boot, so systemd-firstboot does not wait
	// for answers on the console.
	var id [16]byte
	_, _ = rand.Read(id[:])
	mustWrite(t, filepath.Join(r.Dir, "etc/machine-id"), hex.EncodeToString(id[:])+"\n", 0o444)
	// An image for containers (Docker's convention) may carry a
	// policy-rc.d that forbids starting services; a server has none.
	if err := os.Remove(filepath.Join(r.Dir, "usr/sbin/policy-rc.d")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return r
}

func (r *freshRoot) overlay(t *testing.T, lower, target, top, name string) {
	t.Helper()
	upper, work := filepath.Join(top, "upper", name), filepath.Join(top, "work", name)
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		t.Fatalf("overlay %s on %s: %v", lower, target, err)
	}
	r.mounts = append(r.mounts, target)
}

func (r *freshRoot) unmount() {
	for i := len(r.mounts) - 1; i >= 0; i-- {
		_ = unix.Unmount(r.mounts[i], unix.MNT_DETACH)
	}
	r.mounts = nil
	_ = os.Remove("/run/systemd/nspawn/propagate/" + r.name)
}

// AddBootService installs a oneshot unit that runs script (as /pkg/NAME.sh)
// once the container reached multi-user.target, logging to /out/NAME.log.
func (r *freshRoot) AddBootService(t *testing.T, name, script string) {
	t.Helper()
	mustWrite(t, filepath.Join(r.Pkg, name+".sh"), script, 0o755)
	unit := "[Unit]\nAfter=multi-user.target\n[Service]\nType=oneshot\n" +
		"ExecStart=/bin/sh -x /pkg/" + name + ".sh\nStandardOutput=file:/out/" + name + ".log\nStandardError=inherit\n"
	mustWrite(t, filepath.Join(r.Dir, "etc/systemd/system", name+".service"), unit, 0o644)
	mustSymlink(t, "../"+name+".service", filepath.Join(r.Dir, "etc/systemd/system/multi-user.target.wants", name+".service"))
}

// Boot starts the container with systemd as its init, in the network
// namespace netns. done is closed when it has exited; its console output
// is in Console.
func (r *freshRoot) Boot(t *testing.T, netns string) (done <-chan struct{}, console *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "systemd-nspawn", "--quiet", "-D", r.Dir, "-M", r.name,
		// Not registered with machined (none runs here) and no scope of its
		// own: what lets nspawn run on a host whose init is not systemd.
		"--register=no", "--keep-unit",
		"--network-namespace-path=/run/netns/"+netns,
		"--bind="+r.Out+":/out", "--bind-ro="+r.Pkg+":/pkg",
		"--boot")
	console = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = console, console
	// SIGTERM is nspawn's orderly shutdown of the container; SIGKILL only
	// if that hangs.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("systemd-nspawn: %v", err)
	}
	ch := make(chan struct{})
	go func() { _ = cmd.Wait(); close(ch) }()
	t.Cleanup(func() { cancel(); <-ch })
	return ch, console
}

// Result reads /out/NAME from the container, trimmed; "" if it is missing.
func (r *freshRoot) Result(name string) string {
	b, _ := os.ReadFile(filepath.Join(r.Out, name))
	return strings.TrimSpace(string(b))
}

func mustWrite(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}
