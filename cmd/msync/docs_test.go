package main

import (
	"flag"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/makuo/makuo/internal/usage"
	"github.com/makuo/makuo/internal/version"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite the manual page and completions under deploy/ (make docs)")

// docs describes msync for its generated manual page and completions.
func docs() usage.Page {
	_, fs := newFlagSet()
	return usage.Page{
		Name: "msync", Section: 1, Version: version.Release,
		Summary: "push files to every makuosan of a multicast group, or report on it",
		Head:    usageHead, Tail: usageTail, Flags: fs, Args: "PATH",
		Files: [][2]string{
			{"/run/makuosan/makuosan.sock", "The packaged daemon's control socket, which msync tries first (members of the group makuosan may use it)."},
		},
		SeeAlso: []string{"makuosan(8)"},
	}
}

// The committed manual page and completions are what the flags generate:
// a new or changed flag without `make docs` fails here.
func TestGeneratedDocs(t *testing.T) {
	p := docs()
	if *updateDocs {
		if err := p.WriteGenerated("../../deploy"); err != nil {
			t.Fatal(err)
		}
	}
	stale, err := p.StaleGenerated("../../deploy")
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) > 0 {
		t.Fatalf("generated files out of date (run make docs): %s", strings.Join(stale, ", "))
	}
	man := p.Man()
	p.Flags.VisitAll(func(f *pflag.Flag) {
		if !strings.Contains(man, `\fB\-\-`+strings.ReplaceAll(f.Name, "-", `\-`)+`\fR`) {
			t.Errorf("--%s is not on the manual page", f.Name)
		}
	})
}
