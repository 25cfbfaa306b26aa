package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/control"
)

// TestControlDefaults: by default control is the unix socket
// control.DefaultSocket and nothing on TCP; -U replaces the socket and,
// as in the original, opens no TCP; TCP only with -l or -K; -o turns
// every control listener off. Metrics stay on loopback by default.
func TestControlDefaults(t *testing.T) {
	base := t.TempDir()
	tests := []struct {
		args      []string
		env       []string
		socket    string
		tcp       string
		password  bool
		socketSet bool
	}{
		{args: nil, socket: control.DefaultSocket},
		{args: []string{"-U", "/tmp/x.sock"}, socket: "/tmp/x.sock"},
		{args: []string{"--socket=/tmp/x.sock"}, socket: "/tmp/x.sock"},
		{env: []string{"MAKUOSAN_SOCK=/tmp/env.sock"}, socket: "/tmp/env.sock"},
		{args: []string{"-U", ""}, socket: ""},
		{args: []string{"-l", "127.0.0.1"}, socket: control.DefaultSocket, tcp: "127.0.0.1:5000"},
		{args: []string{"--listen", "0.0.0.0", "-p", "6000"}, socket: control.DefaultSocket, tcp: "0.0.0.0:6000"},
		{args: []string{"-l", "::1"}, socket: control.DefaultSocket, tcp: "[::1]:5000"},
		{args: []string{"-K", "/etc/pw"}, socket: control.DefaultSocket, tcp: "127.0.0.1:5000"},
		{args: []string{"-U", "/tmp/x.sock", "-K", "/etc/pw", "-l", "10.0.0.1"}, socket: "/tmp/x.sock", tcp: "10.0.0.1:5000"},
		{args: []string{"-o"}, socket: ""},
		{args: []string{"--no-listen", "-l", "127.0.0.1", "-K", "/etc/pw", "-U", "/tmp/x.sock"}, socket: ""},
	}
	for _, tt := range tests {
		o, err := parseFlags(append([]string{"-b", base}, tt.args...), tt.env, io.Discard)
		if err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		if got, gotTCP := o.controlSocket(), o.controlTCP(); got != tt.socket || gotTCP != tt.tcp {
			t.Errorf("%q %q: socket %q, tcp %q; want %q, %q", tt.args, tt.env, got, gotTCP, tt.socket, tt.tcp)
		}
	}
	o, err := parseFlags([]string{"-b", base}, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.metrics != "127.0.0.1:9758" || o.foreground || o.node.SendOwnedOnly || o.node.OwnerMatch || o.core || o.pidFile != "" {
		t.Errorf("defaults: metrics %q, foreground %v, -O %v, owner match %v, core %v, pid file %q",
			o.metrics, o.foreground, o.node.SendOwnedOnly, o.node.OwnerMatch, o.core, o.pidFile)
	}
}

// TestOriginalSwitches: the original's -O is the sender rule now, the
// receiver rule has its own long name; -C, -n and two -k parse.
func TestOriginalSwitches(t *testing.T) {
	base := t.TempDir()
	for _, tt := range []struct {
		args                        []string
		sendOwned, ownerMatch, core bool
		foreground                  bool
		keys                        int
	}{
		{args: []string{"-O"}, sendOwned: true},
		{args: []string{"--send-owned-only"}, sendOwned: true},
		{args: []string{"--receive-owner-match"}, ownerMatch: true},
		{args: []string{"-C", "-n"}, core: true, foreground: true},
		{args: []string{"--core", "--foreground"}, core: true, foreground: true},
		{args: []string{"-k", "a", "--key-file", "b"}, keys: 2},
		{args: []string{"-nOC", "-k", "a"}, sendOwned: true, core: true, foreground: true, keys: 1},
	} {
		o, err := parseFlags(append([]string{"-b", base}, tt.args...), nil, io.Discard)
		if err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		if o.node.SendOwnedOnly != tt.sendOwned || o.node.OwnerMatch != tt.ownerMatch || o.core != tt.core ||
			o.foreground != tt.foreground || len(o.keyFiles) != tt.keys {
			t.Errorf("%q: -O %v, receive owner match %v, core %v, foreground %v, %d keys", tt.args,
				o.node.SendOwnedOnly, o.node.OwnerMatch, o.core, o.foreground, len(o.keyFiles))
		}
	}
}

// TestSocketGroup: --socket-group wins, then -g, then the group makuosan
// where it exists, then the daemon's own group.
func TestSocketGroup(t *testing.T) {
	withMakuosan := testAccounts
	withMakuosan.groups = map[string]int{"makuosan": 998, "web": 2001, "adm": 4}
	for _, tt := range []struct {
		name        string
		socketGroup string
		group       string
		db          fakeAccounts
		ident       identity
		want        int
		err         string
	}{
		{name: "--socket-group by name", socketGroup: "web", db: withMakuosan, ident: identity{uid: 33, gid: 33}, want: 2001},
		{name: "--socket-group by gid", socketGroup: "4000200", db: withMakuosan, ident: keepIdentity, want: 4000200},
		{name: "--socket-group unknown", socketGroup: "nosuch", db: withMakuosan, err: "--socket-group nosuch: no such group"},
		{name: "-g", group: "adm", db: withMakuosan, ident: identity{uid: -1, gid: 4}, want: 4},
		{name: "makuosan exists", db: withMakuosan, ident: identity{uid: 33, gid: 33}, want: 998},
		{name: "no makuosan, -u", db: testAccounts, ident: identity{uid: 33, gid: 33}, want: 33},
		{name: "no makuosan, root", db: testAccounts, ident: keepIdentity, want: os.Getegid()},
	} {
		o := &options{socketGroup: tt.socketGroup, primaryGroup: tt.group}
		got, err := socketGroup(o, tt.ident, tt.db)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("%s: err %v, want %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: gid %d, %v; want %d", tt.name, got, err, tt.want)
		}
	}
}

// TestDefaultControl: a daemon with the default control configuration
// serves control on its unix socket only (no TCP on the control port),
// and its first log line says where it listens and whether it seals.
func TestDefaultControl(t *testing.T) {
	leakCheck(t)
	args := daemonArgs(t, t.TempDir())
	sock := args[slicesIndex(args, "-U")+1]
	port := args[slicesIndex(args, "-p")+1]
	p := startInProcess(t, append(args, "--state-dir", t.TempDir(), "--metrics-listen", "127.0.0.1:0"))
	if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
		c.Close()
		t.Errorf("something listens on TCP 127.0.0.1:%s by default", port)
	}
	c, err := control.NewClient("unix:"+sock, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(context.Background()); err != nil {
		t.Errorf("status over the socket: %v", err)
	}
	log := p.stop(t)
	first, _, _ := strings.Cut(log, "\n")
	for _, want := range []string{`msg="makuosan starting"`, "control_socket=" + sock, "control_tcp=off", "tcp_password=false",
		"metrics=127.0.0.1:", "group=224.0.0.108:" + port, "interface=lo", "sealed=false", "old_keys=0"} {
		if !strings.Contains(first, want) {
			t.Errorf("first log line lacks %q: %s", want, first)
		}
	}
}

// TestTCPOptIn: -l opens TCP control where asked, without a password;
// -K alone opens it on 127.0.0.1 and refuses a client without the
// password.
func TestTCPOptIn(t *testing.T) {
	leakCheck(t)
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		args     []string
		password string
		refused  bool
	}{
		{"-l", []string{"-l", "127.0.0.1"}, "", false},
		{"-K without the password", []string{"-K", pw}, "", true},
		{"-K with the password", []string{"-K", pw}, "s3cret", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := daemonArgs(t, t.TempDir())
			port := args[slicesIndex(args, "-p")+1]
			p := startInProcess(t, append(append(args, "--state-dir", t.TempDir()), tt.args...))
			c, err := control.NewClient("tcp:127.0.0.1:"+port, tt.password)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Status(context.Background())
			log := p.stop(t)
			if tt.refused != (err != nil) || (tt.refused && !strings.Contains(err.Error(), "password required or wrong")) {
				t.Errorf("status over TCP: %v", err)
			}
			if got := logField(t, log, "makuosan starting", "control_tcp"); got != "127.0.0.1:"+port {
				t.Errorf("control_tcp=%s, want 127.0.0.1:%s", got, port)
			}
		})
	}
}

// TestProbesServed: the metrics listener answers /healthz at once and
// /readyz with 200 once the node finished its first scan; /metrics and
// the status page are still there.
func TestProbesServed(t *testing.T) {
	leakCheck(t)
	p := startInProcess(t, append(daemonArgs(t, t.TempDir()), "--state-dir", t.TempDir(), "--metrics-listen", "127.0.0.1:0"))
	defer p.stop(t)
	addr := logField(t, p.log.String(), "makuosan starting", "metrics")
	get := func(path string) int {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	waitFor(t, "/readyz to answer 200", func() bool { return get("/readyz") == http.StatusOK })
	for _, path := range []string{"/metrics", "/"} {
		if code := get(path); code != http.StatusOK {
			t.Errorf("%s: %d", path, code)
		}
	}
}

// TestUnprivilegedPush: with the default socket configuration (mode 0660,
// the group makuosan if it exists, else root's), a local user who is not
// in the socket's group cannot push; one in it can (as documented:
// adduser alice makuosan), and so can a member of --socket-group.
func TestUnprivilegedPush(t *testing.T) {
	requireRoot(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("the test uses the nobody account: %v", err)
	}
	uid, gid := atoi(t, nobody.Uid), atoi(t, nobody.Gid)
	ctl := sharedCopy(t, "makuo-ctl") // testscript's copy lies in a directory of mode 0700
	defaultGID := 0
	if g, err := user.LookupGroup(defaultSocketGroup); err == nil {
		defaultGID = atoi(t, g.Gid)
	}
	for _, tt := range []struct {
		name string
		args []string
		gid  int
	}{
		{"default", nil, defaultGID},
		{"--socket-group", []string{"--socket-group", "4000200"}, 4000200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := sharedDir(t)
			sock := filepath.Join(dir, "makuosan.sock")
			base := t.TempDir()
			if err := os.WriteFile(filepath.Join(base, "index.html"), []byte("hi"), 0o644); err != nil {
				t.Fatal(err)
			}
			port := strconv.Itoa(freeUDPPort(t))
			d := startDaemon(t, append(tt.args, "-b", base, "--state-dir", t.TempDir(), "-U", sock, "-p", port)...)
			fi, err := os.Stat(sock)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode().Perm() != socketMode || st.Uid != 0 || int(st.Gid) != tt.gid {
				t.Fatalf("socket %v %d:%d, want %v 0:%d", fi.Mode().Perm(), st.Uid, st.Gid, os.FileMode(socketMode), tt.gid)
			}
			// Nor over TCP, where any local user could before.
			out, code := ctlAs(t, ctl, uid, gid, nil, "tcp:127.0.0.1:"+port, "index.html")
			if code != 1 || !strings.Contains(out, "connection refused") {
				t.Errorf("nobody over TCP: exit %d, %s", code, out)
			}
			out, code = ctlAs(t, ctl, uid, gid, nil, "unix:"+sock, "index.html")
			if code != 1 || !strings.Contains(out, "permission denied") {
				t.Errorf("nobody, not in the socket's group: exit %d, %s", code, out)
			}
			out, code = ctlAs(t, ctl, uid, gid, []uint32{uint32(tt.gid)}, "unix:"+sock, "index.html")
			if code != 0 || !strings.Contains(out, "entries 1") {
				t.Errorf("nobody in the socket's group: exit %d, %s", code, out)
			}
			d.stop(t)
		})
	}
}

// ctlAs runs the makuo-ctl binary ctl with uid, gid and exactly groups as
// supplementary groups, returning its output and exit code.
func ctlAs(t *testing.T, ctl string, uid, gid int, groups []uint32, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ctl, args...)
	if groups == nil {
		groups = []uint32{}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return out.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), 0
}

// sharedCopy copies the test binary, under name (the testscript command it
// runs as), into a directory every user may enter and returns its path.
func sharedCopy(t *testing.T, name string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(sharedDir(t), name)
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func slicesIndex(args []string, flag string) int {
	for i, a := range args {
		if a == flag {
			return i
		}
	}
	panic(fmt.Sprintf("bug: %s not in %q", flag, args))
}

// TestOwnerOnlyPush: with -O, as in the original, a push leaves out the
// paths the daemon's user does not own; --receive-owner-match (the rule
// -O meant before) changes nothing on the sending side.
func TestOwnerOnlyPush(t *testing.T) {
	requireRoot(t)
	leakCheck(t)
	base := t.TempDir()
	for name, uid := range map[string]int{"mine": 0, "theirs": 4000123} {
		p := filepath.Join(base, name)
		if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		args    []string
		entries int
	}{
		{nil, 3},
		{[]string{"-O"}, 2},
		{[]string{"--receive-owner-match"}, 3},
	} {
		args := daemonArgs(t, base)
		sock := args[slicesIndex(args, "-U")+1]
		p := startInProcess(t, append(append(args, "--state-dir", t.TempDir()), tt.args...))
		c, err := control.NewClient("unix:"+sock, "")
		if err != nil {
			t.Fatal(err)
		}
		sum, err := c.Push(context.Background(), control.PushRequest{Recursive: true}, func(control.Event) {})
		log := p.stop(t)
		if err != nil || sum.Entries != tt.entries {
			t.Errorf("%q: push %+v, %v; want %d entries\n%s", tt.args, sum, err, tt.entries, log)
		}
		if skipped := strings.Contains(log, `msg="skip: owner unmatch (-O)" paths=1 uid=0`); skipped != (tt.entries == 2) {
			t.Errorf("%q: skip line in the log: %v\n%s", tt.args, skipped, log)
		}
	}
}
