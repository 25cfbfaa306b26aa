package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"makuosan": func() { os.Exit(run(context.Background(), os.Args[1:], os.Environ(), os.Stdout, os.Stderr)) },
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata"})
}

func TestParseFlagsEnv(t *testing.T) {
	base := t.TempDir()
	o, err := parseFlags([]string{"-p", "6000"}, []string{"MAKUOSAN_BASE=" + base, "MAKUOSAN_PORT=7000", "MAKUOSAN_RCVBUF=1234", "MAKUOSAN_SOCK=/tmp/s"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.node.Base != base || o.node.Port != 6000 || o.node.RecvBuffer != 1234 || o.socket != "/tmp/s" {
		t.Fatalf("env/flags not applied: base %q port %d rcvbuf %d sock %q", o.node.Base, o.node.Port, o.node.RecvBuffer, o.socket)
	}
	if _, err := parseFlags(nil, []string{"MAKUOSAN_PORT=abc"}, &bytes.Buffer{}); err == nil {
		t.Fatal("bad MAKUOSAN_PORT accepted")
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		args []string
		want int
	}{
		{[]string{"-h"}, exitOK},
		{[]string{"-V"}, exitOK},
		{nil, exitConfig},
		{[]string{"--bogus"}, exitConfig},
		{[]string{"-b", "/nonexistent"}, exitConfig},
		{[]string{"-b", "/", "extra"}, exitConfig},
		{[]string{"-b", "/", "--log-format", "xml"}, exitConfig},
		{[]string{"-b", "/", "-m", "239.1.1.1.1"}, exitConfig},
		{[]string{"-b", "/", "-c"}, exitConfig},
		{[]string{"-b", "/", "-u", "no-such-user-makuo"}, exitConfig},
		{[]string{"-b", "/", "-u", "4000123"}, exitConfig}, // no passwd entry, no -g
		{[]string{"-b", "/", "-u", "nobody", "-G", "no-such-group-makuo"}, exitConfig},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		if got := run(context.Background(), tt.args, nil, &out, &errOut); got != tt.want {
			t.Errorf("makuosan %q = %d, want %d; stderr: %s", tt.args, got, tt.want, errOut.String())
		}
	}
}

// TestChrootRefused: -c cannot work (the state directory and the watched
// paths are resolved inside the chroot), so it is a usage error.
func TestChrootRefused(t *testing.T) {
	for _, args := range [][]string{{"-c"}, {"--chroot", "-w"}, {"-c", "-u", "nobody"}} {
		_, err := parseFlags(append([]string{"-b", t.TempDir()}, args...), nil, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "-c (chroot to the base directory) is refused") {
			t.Errorf("%q: err = %v, want the -c refusal", args, err)
		}
	}
}
