package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeAccounts is an accountDB over maps; members lists who a group names,
// as /etc/group does.
type fakeAccounts struct {
	users   []account
	groups  map[string]int
	members map[int][]string
	fail    error
}

func (f fakeAccounts) userByName(name string) (account, error) {
	if f.fail != nil {
		return account{}, f.fail
	}
	for _, u := range f.users {
		if u.name == name {
			return u, nil
		}
	}
	return account{}, errNoEntry
}

func (f fakeAccounts) userByID(uid int) (account, error) {
	for _, u := range f.users {
		if u.uid == uid {
			return u, nil
		}
	}
	return account{}, errNoEntry
}

func (f fakeAccounts) groupByName(name string) (int, error) {
	if g, ok := f.groups[name]; ok {
		return g, nil
	}
	return 0, errNoEntry
}

func (f fakeAccounts) groupsOf(name string, gid int) ([]int, error) {
	gs := []int{gid}
	for g, names := range f.members {
		if slices.Contains(names, name) {
			gs = append(gs, g)
		}
	}
	return gs, nil
}

var testAccounts = fakeAccounts{
	users: []account{
		{"root", 0, 0}, {"www-data", 33, 33}, {"deploy", 1001, 1001},
		{"2000", 3000, 3000}, // a user whose name is digits
	},
	groups: map[string]int{"root": 0, "adm": 4, "www-data": 33, "deploy": 1001, "web": 2001},
	// deploy's own group does not list it: initgroups adds the primary
	// group it is given, not the passwd one.
	members: map[int][]string{4: {"deploy"}, 2001: {"deploy", "www-data"}, 0: {"root"}},
}

func TestResolveIdentity(t *testing.T) {
	tests := []struct {
		name                string
		user, group, groups string
		uid, gid            int
		want                []int  // supplementary groups
		err                 string // substring of the error
	}{
		{name: "nothing asked", uid: -1, gid: -1},
		{name: "user by name", user: "www-data", uid: 33, gid: 33, want: []int{33, 2001}},
		{name: "user by uid with an entry", user: "33", uid: 33, gid: 33, want: []int{33, 2001}},
		{name: "user in several groups", user: "deploy", uid: 1001, gid: 1001, want: []int{4, 1001, 2001}},
		{name: "primary group replaced", user: "deploy", group: "web", uid: 1001, gid: 2001, want: []int{4, 2001}},
		{name: "extra groups", user: "deploy", groups: "www-data, 5000,adm", uid: 1001, gid: 1001, want: []int{4, 33, 1001, 2001, 5000}},
		{name: "root asked for", user: "root", uid: 0, gid: 0, want: []int{0}},
		{name: "digits name wins over uid", user: "2000", uid: 3000, gid: 3000, want: []int{3000}},
		{name: "uid without entry needs -g", user: "4000123", err: "-u 4000123: uid 4000123 has no passwd entry, so its primary group is unknown: give it with -g GROUP"},
		{name: "uid without entry and -g", user: "4000123", group: "4000124", groups: "4000125,adm", uid: 4000123, gid: 4000124, want: []int{4, 4000124, 4000125}},
		{name: "uid without entry, group by name", user: "4000123", group: "web", uid: 4000123, gid: 2001, want: []int{2001}},
		{name: "group only drops root's groups", group: "adm", uid: -1, gid: 4, want: []int{4}},
		{name: "groups only", groups: "web", uid: -1, gid: -1, want: []int{2001}},
		{name: "unknown user", user: "nosuch", err: "-u nosuch: no such user"},
		{name: "negative uid", user: "-5", err: "-u -5: no such user"},
		{name: "uid -1 as unsigned", user: "4294967295", err: "no such user"},
		{name: "unknown group", user: "deploy", group: "nosuch", err: "-g nosuch: no such group"},
		{name: "unknown extra group", user: "deploy", groups: "adm,nosuch", err: "-G nosuch: no such group"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := resolveIdentity(identitySpec{tt.user, tt.group, tt.groups}, testAccounts)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.uid != tt.uid || id.gid != tt.gid || !slices.Equal(id.groups, tt.want) || (id.groups == nil) != (tt.want == nil) {
				t.Fatalf("got uid %d gid %d groups %v, want uid %d gid %d groups %v", id.uid, id.gid, id.groups, tt.uid, tt.gid, tt.want)
			}
		})
	}
	db := testAccounts
	db.fail = errors.New("nss down")
	if _, err := resolveIdentity(identitySpec{user: "deploy"}, db); err == nil || !strings.Contains(err.Error(), "nss down") {
		t.Fatalf("a failing database: err = %v", err)
	}
}

// TestOSAccounts reads the real database through the adapter: root is
// always there, an unknown name or id is errNoEntry.
func TestOSAccounts(t *testing.T) {
	db := osAccounts{}
	if a, err := db.userByName("root"); err != nil || a.uid != 0 || a.gid != 0 {
		t.Fatalf("root = %+v, %v", a, err)
	}
	if a, err := db.userByID(0); err != nil || a.name != "root" {
		t.Fatalf("uid 0 = %+v, %v", a, err)
	}
	if gs, err := db.groupsOf("root", 0); err != nil || !slices.Contains(gs, 0) {
		t.Fatalf("groups of root = %v, %v", gs, err)
	}
	if g, err := db.groupByName("root"); err != nil || g != 0 {
		t.Fatalf("group root = %d, %v", g, err)
	}
	if _, err := db.userByName("no-such-user-makuo"); !errors.Is(err, errNoEntry) {
		t.Fatalf("unknown user: %v", err)
	}
	if _, err := db.userByID(4000123); !errors.Is(err, errNoEntry) {
		t.Fatalf("unknown uid: %v", err)
	}
	if _, err := db.groupByName("no-such-group-makuo"); !errors.Is(err, errNoEntry) {
		t.Fatalf("unknown group: %v", err)
	}
}

// requireRoot fails the test in CI and skips it elsewhere when not root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (it switches ids), and CI runs as root")
	}
	t.Skip("needs root: it switches ids")
}

// TestDropPrivileges starts the real daemon as root with -u/-g/-G and
// reads, once it serves, the ids of every one of its threads from
// /proc/PID/task/*/status: exactly the identity asked for, none of root's
// groups. Its control socket is the new user's and group's.
func TestDropPrivileges(t *testing.T) {
	requireRoot(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("the test uses the nobody account: %v", err)
	}
	nobodyGroups, err := nobody.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(nobodyGroups)
	tests := []struct {
		name               string
		args               []string
		uid, gid           string
		groups             []string
		stateUID, stateGID int
	}{
		{"user by name", []string{"-u", "nobody"}, nobody.Uid, nobody.Gid, nobodyGroups, atoi(t, nobody.Uid), atoi(t, nobody.Gid)},
		// The original defect: a numeric -u kept gid 0 and root's groups.
		{"user by uid", []string{"-u", nobody.Uid}, nobody.Uid, nobody.Gid, nobodyGroups, atoi(t, nobody.Uid), atoi(t, nobody.Gid)},
		{"uid without entry", []string{"-u", "4000123", "-g", "4000124", "-G", "4000126,4000125"}, "4000123", "4000124", []string{"4000124", "4000125", "4000126"}, 4000123, 4000124},
		{"group only", []string{"-g", "4000124"}, "0", "4000124", []string{"4000124"}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state := sharedDir(t)
			if err := os.Chown(state, tt.stateUID, tt.stateGID); err != nil {
				t.Fatal(err)
			}
			sock := filepath.Join(state, "sock")
			d := startDaemon(t, append(tt.args, "--state-dir", state, "-U", sock)...)
			// The control socket belongs to the daemon's user and group
			// (unless the host has the group makuosan and no -g says
			// otherwise: see TestSocketGroup).
			sockGID := tt.gid
			if g, err := user.LookupGroup(defaultSocketGroup); err == nil && !slices.Contains(tt.args, "-g") {
				sockGID = g.Gid
			}
			fi, err := os.Stat(sock)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if got := fmt.Sprintf("%d:%d %v", st.Uid, st.Gid, fi.Mode().Perm()); got != tt.uid+":"+sockGID+" -rw-rw----" {
				t.Errorf("control socket: owner and mode %s, want %s:%s -rw-rw----", got, tt.uid, sockGID)
			}
			for _, task := range d.tasks(t) {
				ids := procIDs(t, task)
				want := map[string][]string{
					"Uid":    {tt.uid, tt.uid, tt.uid, tt.uid},
					"Gid":    {tt.gid, tt.gid, tt.gid, tt.gid},
					"Groups": tt.groups,
				}
				for k, w := range want {
					if !slices.Equal(ids[k], w) {
						t.Errorf("%s: %s %v, want %v", task, k, ids[k], w)
					}
				}
			}
			d.stop(t)
		})
	}
}

// TestDropPrivilegesRefused: the daemon does not start when the drop
// cannot give it a usable identity.
func TestDropPrivilegesRefused(t *testing.T) {
	requireRoot(t)
	state := sharedDir(t) // root's, 0755: nobody cannot save the index
	out, code := runDaemon(t, "-u", "nobody", "--state-dir", state)
	if code != exitConfig || !strings.Contains(out, "--state-dir "+state+" is not writable after -u/-g/-G") {
		t.Fatalf("exit %d, stderr %q", code, out)
	}
	out, code = runDaemon(t, "-u", "4000123", "--state-dir", state)
	if code != exitConfig || !strings.Contains(out, "give it with -g GROUP") {
		t.Fatalf("exit %d, stderr %q", code, out)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// sharedDir is a fresh directory that any user can reach (t.TempDir's
// parents are 0700).
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "makuosan-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// daemon is a makuosan process started by startDaemon.
type daemon struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // of Wait, once done is closed
	log  *lineLog
}

// daemonArgs are the flags of a test daemon serving base: in the
// foreground, alone on the loopback interface on a free port, its control
// socket in a directory of its own (not the system's default), no metrics.
func daemonArgs(t *testing.T, base string) []string {
	t.Helper()
	return []string{"-n", "-b", base, "-i", "lo", "-p", strconv.Itoa(freeUDPPort(t)),
		"-U", filepath.Join(t.TempDir(), "ctl.sock"), "--metrics-listen", ""}
}

// startDaemon runs the test binary as makuosan (testscript puts it in
// $PATH) and returns once it logged "node started", after the drop.
func startDaemon(t *testing.T, args ...string) *daemon {
	t.Helper()
	cmd := exec.Command("makuosan", append(daemonArgs(t, t.TempDir()), args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, done: make(chan struct{}), log: &lineLog{started: make(chan struct{})}}
	go func() {
		d.log.read(stderr)
		d.err = cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-d.done
	})
	select {
	case <-d.log.started:
	case <-d.done:
		t.Fatalf("makuosan exited before it started: %v\n%s", d.err, d.log)
	case <-time.After(30 * time.Second):
		t.Fatalf("makuosan did not start within 30s\n%s", d.log)
	}
	return d
}

// tasks lists /proc/PID/task/* of the daemon: every thread.
func (d *daemon) tasks(t *testing.T) []string {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", d.cmd.Process.Pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of makuosan: %v %v", tasks, err)
	}
	return tasks
}

// stop sends SIGTERM and expects a clean exit.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-d.done
	if d.err != nil {
		t.Fatalf("makuosan after SIGTERM: %v\n%s", d.err, d.log)
	}
}

// runDaemon runs makuosan, expecting it to refuse to start, and returns
// its stderr and exit code; one still running after 30s fails the test.
func runDaemon(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "makuosan", append(daemonArgs(t, t.TempDir()), args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("makuosan %q started instead of refusing:\n%s", args, stderr.String())
	}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return stderr.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return stderr.String(), 0
}

// procIDs parses the Uid, Gid and Groups lines of a /proc status file.
func procIDs(t *testing.T, dir string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string][]string{}
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "Uid", "Gid", "Groups":
			ids[k] = strings.Fields(v)
			if ids[k] == nil {
				ids[k] = []string{}
			}
		}
	}
	return ids
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// lineLog collects a daemon's stderr and closes started at "node started".
type lineLog struct {
	started chan struct{}
	mu      sync.Mutex
	lines   []string
}

func (l *lineLog) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	once := false
	for sc.Scan() {
		l.mu.Lock()
		l.lines = append(l.lines, sc.Text())
		l.mu.Unlock()
		if !once && strings.Contains(sc.Text(), "node started") {
			once = true
			close(l.started)
		}
	}
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
