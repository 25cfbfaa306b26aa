package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		// The scripts' msync never looks for the real daemon: its default
		// targets come from $MSYNCTEST_DEFAULTS, which Setup points into
		// $WORK.
		"msync": func() {
			os.Exit(run(context.Background(), os.Args[1:], sys{
				env: os.Environ(), stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
				defaultTargets: strings.Fields(os.Getenv("MSYNCTEST_DEFAULTS")),
			}))
		},
	})
}

func TestScripts(t *testing.T) {
	if os.Getenv("CI") == "true" && os.Geteuid() != 0 {
		t.Fatal("CI runs as root: the -g scripts need it to give files a group of their choosing")
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata",
		Setup: func(env *testscript.Env) error {
			env.Setenv("MSYNCTEST_DEFAULTS", "unix:"+filepath.Join(env.WorkDir, "run", "makuosan.sock")+
				" unix:"+filepath.Join(env.WorkDir, "tcp-default.sock"))
			return nil
		},
		Condition: func(cond string) (bool, error) {
			if cond == "root" {
				return os.Geteuid() == 0, nil
			}
			return false, errors.New("unknown condition " + cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"fakemakuo": cmdFakemakuo,
			"exits":     cmdExits,
			"gid":       cmdGid,
		},
	})
}

// cmdExits is "exits N PROG ARGS...": PROG must exit with status N; its
// output is kept for stdout and stderr as exec keeps it.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits N PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("%s: %v", args[1], err)
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", strings.Join(args[1:], " "), got, want)
	}
}

// cmdGid is "gid FILE N" (FILE's group must be N) and "gid -set FILE N".
func cmdGid(ts *testscript.TestScript, neg bool, args []string) {
	set := len(args) == 3 && args[0] == "-set"
	if set {
		args = args[1:]
	}
	if len(args) != 2 {
		ts.Fatalf("usage: gid [-set] FILE N")
	}
	want, err := strconv.Atoi(args[1])
	ts.Check(err)
	if set {
		ts.Check(os.Lchown(ts.MkAbs(args[0]), -1, want))
		return
	}
	fi, err := os.Lstat(ts.MkAbs(args[0]))
	ts.Check(err)
	got := int(fi.Sys().(*syscall.Stat_t).Gid)
	if (got == want) == neg {
		ts.Fatalf("%s has group %d, want %s%d", args[0], got, map[bool]string{true: "not ", false: ""}[neg], want)
	}
}

func TestExitCodes(t *testing.T) {
	none := []string{"unix:" + filepath.Join(t.TempDir(), "none.sock")}
	tests := []struct {
		args []string
		env  []string
		want int
	}{
		{[]string{"-h"}, nil, exitOK},
		{[]string{"-V"}, nil, exitOK},
		{nil, nil, exitUsage},
		{[]string{"--bogus"}, nil, exitUsage},
		{[]string{"--members", "--status"}, nil, exitUsage},
		{[]string{"--members", "x"}, nil, exitUsage},
		{[]string{"--json", "x"}, nil, exitUsage},
		{[]string{"-c", "nope", "--members"}, nil, exitUsage},
		{[]string{"-c", "127.0.0.1:5000", "--members"}, nil, exitUsage},
		{[]string{"--members"}, []string{"MSYNC_TARGET=bogus"}, exitUsage},
		{[]string{"-c", "unix:/nonexistent/sock", "--members"}, nil, exitUsage},
		{[]string{"-c", "/nonexistent/sock", "--members"}, nil, exitUsage},
		{[]string{"--members"}, nil, exitUsage}, // no daemon at the default targets
		{[]string{"-l", "-1", "x"}, nil, exitUsage},
		{[]string{"-l", "x", "x"}, nil, exitUsage},
		{[]string{"--expect", "-1", "x"}, nil, exitUsage},
		{[]string{"--expect", "2", "--members"}, nil, exitUsage},
		{[]string{"--allow-no-members", "--wait"}, nil, exitUsage},
		{[]string{"-g", "0", "--members"}, nil, exitUsage},
		{[]string{"-g", "0", "--check", "x"}, nil, exitUsage},
		{[]string{"-g", "no-such-group-here", "x"}, nil, exitUsage},
		{[]string{"-f", "cmds", "-r"}, nil, exitUsage},
		{[]string{"-f", "cmds", "x"}, nil, exitUsage},
		{[]string{"-f", "-", "--exclude-from", "-"}, nil, exitUsage},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		s := sys{env: tt.env, stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, defaultTargets: none}
		if got := run(context.Background(), tt.args, s); got != tt.want {
			t.Errorf("msync %q (env %q) = %d, want %d; stderr: %s", tt.args, tt.env, got, tt.want, errOut.String())
		}
	}
}
