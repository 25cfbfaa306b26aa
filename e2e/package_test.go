package e2e

import (
	"encoding/json"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/makuo/makuo/internal/version"
	"github.com/makuo/makuo/replicator/control"
)

// TestPackage builds the Debian package with `make deb`, checks what it
// holds, then installs it with dpkg on a never-configured Debian system
// booted with systemd (systemd-nspawn, in lab host h1's namespace) and
// checks that the service starts as shipped: active under Type=notify,
// the control socket usable by the group makuosan only, watchdog
// keepalives, a file pushed from a daemon on h2 applied under the unit's
// sandbox, a makuosan@ instance, a clean stop, and a purge that leaves
// nothing behind.
func TestPackage(t *testing.T) {
	requirePackageTools(t)
	lab := NewLab(t, 2)
	deb := buildDeb(t)
	checkDebContents(t, deb)

	root := newFreshRoot(t)
	copyFile(t, deb, filepath.Join(root.Pkg, "makuosan.deb"))
	root.AddBootService(t, "pkgtest", packageScript)
	h2 := lab.Hosts[1]
	h2.Start()
	done, console := root.Boot(t, lab.Hosts[0].NS)
	fail := func(format string, args ...any) {
		t.Helper()
		b, _ := os.ReadFile(filepath.Join(root.Out, "pkgtest.log"))
		t.Fatalf(format+"\n--- container console:\n%s\n--- pkgtest.log:\n%s\n--- journal:\n%s",
			append(args, console.String(), b, root.Result("journal"))...)
	}

	// Wait for the script inside to report the daemon up (or to die).
	for deadline := time.Now().Add(3 * time.Minute); !fileExists(filepath.Join(root.Out, "ready")); time.Sleep(100 * time.Millisecond) {
		select {
		case <-done:
			fail("the container stopped before the packaged daemon was up")
		default:
		}
		if time.Now().After(deadline) {
			fail("the packaged daemon did not come up within 3 minutes")
		}
	}
	checkInstalled(t, root, fail)

	// A push from h2 reaches the packaged daemon, through its sandbox.
	eventually(t, 10*time.Second, func() bool { return strings.Contains(strings.Join(h2.Hostnames(), " "), root.name) },
		"h2 does not list the packaged daemon %s: %v", root.name, h2.Hostnames())
	mustWrite(t, filepath.Join(h2.Base, "hello.txt"), "from h2\n", 0o644)
	if out, errOut, code := h2.Msync("hello.txt"); code != 0 {
		fail("msync hello.txt on h2: exit %d\n%s%s", code, out, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(root.Dir, "var/www/hello.txt")); err != nil || string(b) != "from h2\n" {
		fail("hello.txt on the packaged member: %q, %v", b, err)
	}
	mustWrite(t, filepath.Join(root.Out, "pushed"), "", 0o644)

	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		fail("the container did not power off")
	}
	if !fileExists(filepath.Join(root.Out, "done")) {
		fail("the script inside did not finish")
	}
	checkAfterwards(t, root, fail)
}

// packageScript runs inside the container once it has booted. Each check
// writes its evidence to /out for the test to judge.
const packageScript = `out=/out
wait_for() {
	i=0
	while [ ! -e "$1" ]; do
		i=$((i + 1))
		[ "$i" -le 1200 ] || return 1
		sleep 0.1
	done
}
show() {
	systemctl show "$1" -p Type -p ActiveState -p SubState -p Result -p NRestarts -p UnitFileState -p WatchdogUSec -p ExecMainStatus
}
wdog() { systemctl show makuosan -p WatchdogTimestampMonotonic --value; }

# The operator's base directory exists before the package arrives.
mkdir -p /var/www
dpkg -i /pkg/makuosan.deb > $out/install.log 2>&1
echo $? > $out/install.rc
systemctl is-active makuosan > $out/active
show makuosan > $out/show
systemctl status makuosan --no-pager > $out/status 2>&1
grep '^CapBnd:' /proc/$(systemctl show makuosan -p MainPID --value)/status > $out/capbnd
stat -c '%U:%G %a %n' /run/makuosan /run/makuosan/makuosan.sock > $out/socket 2>&1
getent group makuosan > $out/group
systemd-analyze verify makuosan.service makuosan@x.service > $out/verify 2>&1
echo "rc=$?" >> $out/verify

# The control socket: members of the group makuosan may use it, others not
# (setpriv, not runuser: a fresh /etc has no PAM configuration).
useradd -M -U -G makuosan alice
useradd -M -U bob
setpriv --reuid=alice --regid=alice --init-groups msync -c unix:/run/makuosan/makuosan.sock --status --json > $out/alice.json 2> $out/alice.err
echo $? > $out/alice.rc
setpriv --reuid=bob --regid=bob --init-groups msync -c unix:/run/makuosan/makuosan.sock --status > /dev/null 2> $out/bob.err
echo $? > $out/bob.rc

# Watchdog keepalives arrive: with a short WatchdogSec, the time of the
# last one moves.
mkdir -p /etc/systemd/system/makuosan.service.d
printf '[Service]\nWatchdogSec=2s\n' > /etc/systemd/system/makuosan.service.d/watchdog.conf
systemctl daemon-reload
systemctl restart makuosan
first=$(wdog)
i=0
while [ "$(wdog)" = "$first" ] && [ $i -lt 100 ]; do
	i=$((i + 1))
	sleep 0.1
done
echo "$first $(wdog)" > $out/watchdog

touch $out/ready
wait_for $out/pushed
msync -c unix:/run/makuosan/makuosan.sock --members > $out/members 2>&1

# A second base directory on the same host: the template.
mkdir -p /srv/second
sed -e 's|^MAKUOSAN_BASE=.*|MAKUOSAN_BASE=/srv/second|' -e 's|^#MAKUOSAN_PORT=.*|MAKUOSAN_PORT=5001|' \
	-e 's|^MAKUOSAN_OPTS=.*|MAKUOSAN_OPTS="--metrics-listen :9759"|' /etc/default/makuosan > /etc/default/makuosan-second
mkdir -p /etc/systemd/system/makuosan@second.service.d
printf '[Service]\nReadWritePaths=/srv/second\n' > /etc/systemd/system/makuosan@second.service.d/base.conf
systemctl daemon-reload
systemctl start makuosan@second
echo $? > $out/second.rc
systemctl is-active makuosan@second > $out/second.active
stat -c '%U:%G %a %n' /run/makuosan-second/makuosan.sock > $out/second.socket 2>&1
ls /var/lib/makuosan-second > $out/second.state 2>&1
journalctl -u makuosan@second --no-pager > $out/second.journal 2>&1

# A clean stop, then a purge that leaves nothing behind.
systemctl stop makuosan
show makuosan > $out/stopped
journalctl -u makuosan --no-pager > $out/journal 2>&1
dpkg --purge makuosan > $out/purge.log 2>&1
echo $? > $out/purge.rc
systemctl is-active makuosan@second > $out/second.after-purge
for p in /usr/sbin/makuosan /usr/bin/msync /etc/default/makuosan /usr/lib/systemd/system/makuosan.service /var/lib/makuosan /var/lib/makuosan-second; do
	[ ! -e $p ] || echo $p
done > $out/left-behind
touch $out/done
systemctl poweroff --no-block
`

// checkInstalled judges what the script found after dpkg -i.
func checkInstalled(t *testing.T, r *freshRoot, fail func(string, ...any)) {
	t.Helper()
	if rc := r.Result("install.rc"); rc != "0" {
		fail("dpkg -i: exit %s\n%s", rc, r.Result("install.log"))
	}
	if a := r.Result("active"); a != "active" {
		fail("makuosan.service is %q after dpkg -i, want active\n%s", a, r.Result("status"))
	}
	show := r.Result("show")
	for _, want := range []string{"Type=notify", "SubState=running", "NRestarts=0", "UnitFileState=enabled", "WatchdogUSec=30s"} {
		if !strings.Contains(show, want) {
			fail("systemctl show makuosan lacks %s:\n%s", want, show)
		}
	}
	if !strings.Contains(r.Result("status"), "active (running)") {
		fail("systemctl status makuosan:\n%s", r.Result("status"))
	}
	// The bounding set the unit gives: CAP_LEASE (28) for the watcher's
	// lease check, never CAP_SYS_ADMIN (21).
	hexCaps := strings.TrimSpace(strings.TrimPrefix(r.Result("capbnd"), "CapBnd:"))
	caps, ok := new(big.Int).SetString(hexCaps, 16)
	if !ok || caps.Bit(28) != 1 || caps.Bit(21) != 0 {
		fail("bounding set %q: want CAP_LEASE and no CAP_SYS_ADMIN", r.Result("capbnd"))
	}
	wantSocket := "root:root 755 /run/makuosan\nroot:makuosan 660 /run/makuosan/makuosan.sock"
	if got := r.Result("socket"); got != wantSocket {
		fail("control socket:\n%s\nwant\n%s", got, wantSocket)
	}
	if !strings.HasPrefix(r.Result("group"), "makuosan:x:") {
		fail("group makuosan: %q", r.Result("group"))
	}
	if v := r.Result("verify"); v != "rc=0" {
		fail("systemd-analyze verify of the installed units:\n%s", v)
	}
	var st control.Status
	if rc := r.Result("alice.rc"); rc != "0" || json.Unmarshal([]byte(r.Result("alice.json")), &st) != nil || st.Version != version.Release {
		fail("msync --status over the socket as a member of makuosan: exit %s, %q\n%s", rc, r.Result("alice.json"), r.Result("alice.err"))
	}
	if rc, e := r.Result("bob.rc"), r.Result("bob.err"); rc == "0" || !strings.Contains(e, "permission denied") {
		fail("msync over the socket as a non-member: exit %s, %q; want permission denied", rc, e)
	}
	stamps := strings.Fields(r.Result("watchdog"))
	if len(stamps) != 2 || stamps[0] == stamps[1] || stamps[1] == "0" {
		fail("no watchdog keepalive within 10 s at WatchdogSec=2s: WatchdogTimestampMonotonic %v", stamps)
	}
}

// checkAfterwards judges the rest: members, the instance, stop and purge.
func checkAfterwards(t *testing.T, r *freshRoot, fail func(string, ...any)) {
	t.Helper()
	if m := r.Result("members"); !strings.Contains(m, "h2 ") {
		fail("msync --members on the packaged daemon lacks h2:\n%s", m)
	}
	if rc, a := r.Result("second.rc"), r.Result("second.active"); rc != "0" || a != "active" {
		fail("makuosan@second: start exit %s, %s\n%s", rc, a, r.Result("second.journal"))
	}
	if s := r.Result("second.socket"); s != "root:makuosan 660 /run/makuosan-second/makuosan.sock" {
		fail("makuosan@second control socket: %q", s)
	}
	if s := r.Result("second.state"); !slices.Contains(strings.Fields(s), "node-id") {
		fail("makuosan@second state directory holds %q, want its own node-id", s)
	}
	stopped := r.Result("stopped")
	for _, want := range []string{"ActiveState=inactive", "Result=success", "ExecMainStatus=0"} {
		if !strings.Contains(stopped, want) {
			fail("after systemctl stop makuosan, lacks %s:\n%s", want, stopped)
		}
	}
	if j := r.Result("journal"); strings.Contains(j, "sd_notify") || !strings.Contains(j, "msg=stopped") {
		fail("journal of makuosan.service: want a clean stop and no sd_notify trouble\n%s", j)
	}
	if rc := r.Result("purge.rc"); rc != "0" {
		fail("dpkg --purge: exit %s\n%s", rc, r.Result("purge.log"))
	}
	if a := r.Result("second.after-purge"); a == "active" {
		fail("makuosan@second still active after the package was purged")
	}
	if left := r.Result("left-behind"); left != "" {
		fail("left behind by dpkg --purge:\n%s", left)
	}
}

// buildDeb runs `make deb` into a temporary directory and returns the
// package's path.
func buildDeb(t *testing.T) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command("make", "--no-print-directory", "-C", "..", "deb", "BIN="+out)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make deb: %v\n%s", err, b)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	deb := lines[len(lines)-1]
	if !strings.HasSuffix(deb, ".deb") || !fileExists(deb) {
		t.Fatalf("make deb printed no package:\n%s", b)
	}
	return deb
}

// checkDebContents checks the package without installing it: control
// fields, files, conffiles, maintainer scripts, completions, manual pages,
// versions, and the unit's exposure score.
func checkDebContents(t *testing.T, deb string) {
	t.Helper()
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	fields := run("dpkg-deb", "-f", deb, "Package", "Version", "Depends")
	for _, want := range []string{"Package: makuosan\n", "Version: " + version.Release + "\n", "Depends: adduser, libc6"} {
		if !strings.Contains(fields, want) {
			t.Errorf("control fields lack %q:\n%s", want, fields)
		}
	}
	x := t.TempDir()
	run("dpkg-deb", "-R", deb, x)
	for _, p := range []string{
		"usr/sbin/makuosan", "usr/bin/msync", "etc/default/makuosan", "var/lib/makuosan",
		"usr/lib/systemd/system/makuosan.service", "usr/lib/systemd/system/makuosan@.service",
		"usr/share/man/man8/makuosan.8.gz", "usr/share/man/man1/msync.1.gz",
		"usr/share/bash-completion/completions/makuosan", "usr/share/bash-completion/completions/msync",
		"usr/share/zsh/vendor-completions/_makuosan", "usr/share/zsh/vendor-completions/_msync",
		"usr/share/doc/makuosan/copyright", "usr/share/doc/makuosan/changelog.gz",
	} {
		if !fileExists(filepath.Join(x, p)) {
			t.Errorf("package lacks /%s", p)
		}
	}
	if c, _ := os.ReadFile(filepath.Join(x, "DEBIAN/conffiles")); string(c) != "/etc/default/makuosan\n" {
		t.Errorf("conffiles %q", c)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		run("sh", "-n", filepath.Join(x, "DEBIAN", s))
	}
	for _, cmd := range []string{"makuosan", "msync"} {
		run("bash", "-n", filepath.Join(x, "usr/share/bash-completion/completions", cmd))
		run("zsh", "-n", filepath.Join(x, "usr/share/zsh/vendor-completions", "_"+cmd))
	}
	for _, page := range []string{"man8/makuosan.8.gz", "man1/msync.1.gz"} {
		// groff -ww: every warning; the page must produce none.
		if out := run("sh", "-c", "zcat "+filepath.Join(x, "usr/share/man", page)+" | groff -man -Tutf8 -ww -z 2>&1"); out != "" {
			t.Errorf("%s: groff warnings:\n%s", page, out)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(x, "usr/lib/systemd/system/makuosan.service"))
	if !strings.Contains(string(unit), "\nExecStart=/usr/sbin/makuosan -n $MAKUOSAN_OPTS\n") {
		t.Error("packaged makuosan.service does not start /usr/sbin/makuosan")
	}
	checkVersions(t, x)
	// The exposure score systemd-analyze gives the shipped unit may only
	// get better than the 3.9 it had before Type=notify and CAP_LEASE.
	sec := run("systemd-analyze", "security", "--offline=yes", filepath.Join(x, "usr/lib/systemd/system/makuosan.service"))
	m := regexp.MustCompile(`Overall exposure level for makuosan\.service: ([0-9.]+)`).FindStringSubmatch(sec)
	if m == nil {
		t.Fatalf("systemd-analyze security printed no score:\n%s", sec)
	}
	if score, _ := strconv.ParseFloat(m[1], 64); score > 3.9 {
		t.Errorf("makuosan.service exposure %s, worse than 3.9", m[1])
	}
}

// checkVersions: both binaries print the release, and a build from a git
// clone (as in CI) names the commit it was built from.
func checkVersions(t *testing.T, x string) {
	t.Helper()
	head := ""
	if fi, err := os.Stat("../.git"); err == nil && fi.IsDir() {
		// Worktrees have a .git file, which the go command does not stamp from.
		if out, err := exec.Command("git", "-C", "..", "rev-parse", "HEAD").Output(); err == nil {
			head = strings.TrimSpace(string(out))
		}
	}
	for _, bin := range []string{"usr/sbin/makuosan", "usr/bin/msync"} {
		out, err := exec.Command(filepath.Join(x, bin), "--version").Output()
		name := filepath.Base(bin)
		if err != nil || !strings.HasPrefix(string(out), name+" "+version.Release+" (") {
			t.Errorf("%s --version: %q, %v", name, out, err)
			continue
		}
		if head != "" && !strings.Contains(string(out), "("+head+", ") && !strings.Contains(string(out), "("+head+"+modified, ") {
			t.Errorf("%s --version %q does not name HEAD %s", name, out, head)
		}
	}
}

// The template is the main unit line for line, apart from lines marked
// INSTANCE: hardening added to one cannot be forgotten in the other.
func TestPackageTemplateUnitMatches(t *testing.T) {
	main := unitDirectives(t, "../deploy/systemd/makuosan.service", false)
	tmpl := unitDirectives(t, "../deploy/systemd/makuosan@.service", true)
	if strings.Join(main, "\n") != strings.Join(tmpl, "\n") {
		t.Fatalf("makuosan@.service differs from makuosan.service beyond its INSTANCE lines:\nmain:\n%s\ntemplate:\n%s",
			strings.Join(main, "\n"), strings.Join(tmpl, "\n"))
	}
}

// instanceKeys are the directives the template sets its own way.
var instanceKeys = map[string]bool{"Description": true, "EnvironmentFile": true, "ExecStart": true,
	"ReadWritePaths": true, "StateDirectory": true, "RuntimeDirectory": true}

// unitDirectives lists a unit's section headers and directives without
// comments; for the template, without the INSTANCE lines and with the
// instance's names turned back into the main unit's.
func unitDirectives(t *testing.T, path string, template bool) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	skipNext := false
	for line := range strings.SplitSeq(string(b), "\n") {
		if line == "# INSTANCE" || strings.HasPrefix(line, "# INSTANCE:") {
			skipNext = true
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, _, _ := strings.Cut(line, "=")
		if skipNext {
			skipNext = false
			continue
		}
		if instanceKeys[key] {
			if template {
				t.Errorf("%s: %s= not marked INSTANCE", path, key)
			}
			continue
		}
		if template {
			line = strings.NewReplacer("makuosan-%i", "makuosan", "makuosan@%i", "makuosan").Replace(line)
		}
		out = append(out, line)
	}
	return out
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
