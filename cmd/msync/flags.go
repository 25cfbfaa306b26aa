package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/makuo/makuo/internal/usage"

	"github.com/makuo/makuo/replicator/control"
)

type options struct {
	target       string
	passwordFile string
	members      bool
	status       bool
	json         bool
	recursive    bool
	dryRun       bool
	hosts        []string
	verbose      bool
	logLevel     int
	check        bool
	delete       bool
	sync         bool
	excludes     []string
	excludeFrom  []string
	version      bool
	help         bool
	wait         bool
	timeout      time.Duration
	paths        []string
}

var errHelp = errors.New("help requested")

const usageHead = `Usage: msync [options] PATH...
       msync --members | --status [--json]
       msync --wait [--timeout DURATION]

msync talks to the local makuosan (see -c) and asks it to push PATH (relative
to the daemon's base directory, or absolute under it) to every member, or
reports on the cluster.

Options:
`

const usageTail = `
The daemon is found at -c TARGET, else $MSYNC_TARGET, else ` + control.DefaultTarget + `
(makuosan's default control listener). TARGET is unix:PATH or tcp:HOST:PORT.

Examples:
  msync --members
  msync -r htdocs/
  msync -r --wait htdocs/      # deploy scripts: return once every member has it
  msync -c unix:/run/makuosan/makuosan.sock --status --json

Exit status: 0 if every targeted member did everything asked, 1 if some
member failed or (--check) differs, 2 on a usage error or when the daemon
cannot be reached.
`

// newFlagSet binds every flag to a fresh options; the man page and shell
// completions are generated from it too (docs_test.go).
func newFlagSet() (*options, *pflag.FlagSet) {
	o := &options{}
	fs := pflag.NewFlagSet("msync", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	fs.StringVarP(&o.target, "target", "c", "", "talk to the daemon at `TARGET` (unix:PATH or tcp:HOST:PORT)")
	fs.StringVarP(&o.passwordFile, "password-file", "K", "", "read the control password from `FILE`")
	fs.BoolVar(&o.members, "members", false, "list the live members")
	fs.BoolVar(&o.status, "status", false, "show the daemon's status")
	fs.BoolVar(&o.json, "json", false, "print --members and --status as JSON")
	fs.BoolVarP(&o.recursive, "recursive", "r", false, "push directories recursively")
	fs.BoolVarP(&o.dryRun, "dry-run", "n", false, "show what would change on which member, change nothing")
	fs.StringArrayVarP(&o.hosts, "target-host", "t", nil, "only push to member `HOST` (repeatable)")
	fs.BoolVarP(&o.verbose, "verbose", "v", false, "print every path, also unchanged ones")
	fs.IntVarP(&o.logLevel, "loglevel", "l", 0, "daemon log detail `N` for this request")
	fs.BoolVar(&o.check, "check", false, "compare content hashes on every member, print differences")
	fs.BoolVar(&o.delete, "delete", false, "also delete on members what PATH does not have (mirror)")
	fs.BoolVar(&o.sync, "sync", false, "a PATH missing locally is deleted on the members")
	fs.StringArrayVar(&o.excludes, "exclude", nil, "skip paths matching `PATTERN` (repeatable)")
	fs.StringArrayVar(&o.excludeFrom, "exclude-from", nil, "read exclude patterns from `FILE`")
	fs.BoolVar(&o.wait, "wait", false, "after the push (or alone), wait until every receiving member's tree equals this one's")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "give up --wait after `DURATION` (exit 1)")
	fs.BoolVarP(&o.version, "version", "V", false, "print the version and exit")
	fs.BoolVarP(&o.help, "help", "h", false, "print this help and exit")
	return o, fs
}

func parseFlags(args, env []string, stdout io.Writer) (*options, error) {
	o, fs := newFlagSet()
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.help {
		fmt.Fprint(stdout, usageHead+usage.FlagTable(fs)+usageTail)
		return nil, errHelp
	}
	if o.target == "" {
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "MSYNC_TARGET="); ok && v != "" {
				o.target = v
			}
		}
	}
	if o.target == "" {
		o.target = control.DefaultTarget
	}
	if _, _, err := control.ParseTarget(o.target); err != nil {
		return nil, err
	}
	o.paths = fs.Args()
	if o.version {
		return o, nil
	}
	switch {
	case o.members && o.status:
		return nil, errors.New("--members and --status cannot be combined")
	case (o.members || o.status) && len(o.paths) > 0:
		return nil, errors.New("--members and --status take no PATH")
	case (o.members || o.status) && o.wait:
		return nil, errors.New("--wait goes with a push or alone, not with --members or --status")
	case o.timeout <= 0:
		return nil, errors.New("--timeout must be positive")
	case !o.members && !o.status && len(o.paths) == 0 && !o.recursive && !o.wait:
		return nil, errors.New("no PATH given (-r alone pushes the whole base directory; or use --members / --status)")
	case o.delete && !o.recursive:
		return nil, errors.New("--delete mirrors directories and needs -r")
	case o.json && !o.members && !o.status:
		return nil, errors.New("--json goes with --members or --status")
	}
	return o, nil
}
