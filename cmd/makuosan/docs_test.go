package main

import (
	"flag"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/makuo/makuo/internal/usage"
	"github.com/makuo/makuo/internal/version"
	"github.com/makuo/makuo/replicator/control"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite the manual page and completions under deploy/ (make docs)")

// docs describes makuosan for its generated manual page and completions.
func docs() usage.Page {
	_, fs := newFlagSet()
	return usage.Page{
		Name: "makuosan", Section: 8, Version: version.Release,
		Summary: "keep a directory identical on every member of a multicast group",
		Head:    usageHead, Tail: usageTail, Flags: fs,
		Files: [][2]string{
			{"/etc/default/makuosan", "Environment of makuosan.service: MAKUOSAN_* variables and MAKUOSAN_OPTS, any other flags."},
			{"/etc/default/makuosan-INSTANCE", "Environment of makuosan@INSTANCE.service, one more base directory on the same host."},
			{"/var/lib/makuosan", "The default --state-dir: the node id and the saved tree index."},
			{control.DefaultSocket, "The default control socket (-U), mode 0660: root and the members of its group (makuosan, where that group exists) may push through it."},
		},
		SeeAlso: []string{"msync(1)", "systemd.service(5)"},
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
