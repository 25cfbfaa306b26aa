package main

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"msync": func() { os.Exit(run(context.Background(), os.Args[1:], os.Environ(), os.Stdout, os.Stderr)) },
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata"})
}

func TestExitCodes(t *testing.T) {
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
		{[]string{"--members"}, []string{"MSYNC_TARGET=bogus"}, exitUsage},
		{[]string{"-c", "unix:/nonexistent/sock", "--members"}, nil, exitUsage},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		if got := run(context.Background(), tt.args, tt.env, &out, &errOut); got != tt.want {
			t.Errorf("msync %q (env %q) = %d, want %d; stderr: %s", tt.args, tt.env, got, tt.want, errOut.String())
		}
	}
}
