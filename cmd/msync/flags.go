package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/makuo/makuo/internal/usage"

	"github.com/makuo/makuo/replicator/control"
)

type options struct {
	target         string // empty: try defaultTargets
	passwordFile   string
	members        bool
	status         bool
	json           bool
	recursive      bool
	dryRun         bool
	itemize        bool
	hosts          []string
	group          string
	gid            int
	level          int
	check          bool
	delete         bool
	sync           bool
	excludes       []string
	excludeFrom    []string
	script         string
	expect         int
	allowNoMembers bool
	version        bool
	help           bool
	wait           bool
	timeout        time.Duration
	paths          []string
}

var errHelp = errors.New("help requested")

// Output levels of a push (-l, -v), the original console's loglevels.
const (
	levelErrors    = 0 // FAILED lines, and what a dry run or --check finds
	levelChanged   = 1 // also every changed path and the summary line
	levelUnchanged = 2 // also the paths that were already equal
)

const usageHead = `Usage: msync [options] PATH...
       msync -f FILE
       msync --members | --status [--json]
       msync --wait [--timeout DURATION]

msync talks to the local makuosan (see -c) and asks it to push PATH (relative
to the daemon's base directory, or absolute under it) to every member, or
reports on the cluster.

Options:
`

const usageTail = `
The daemon is found at -c TARGET, else $MSYNC_TARGET, else the first that
answers of unix:` + control.DefaultSocket + ` and ` + control.DefaultTarget + `
(makuosan's default control socket and TCP listener). TARGET is unix:PATH,
tcp:HOST:PORT, or a socket path (one with a '/' or ending in .sock).

-l N sets how much a push prints, as the original's console loglevel: 0
only FAILED lines (and what a dry run or --check finds), 1 also each
changed path and the summary (the default), 2 and more also the paths
already equal. -v raises the level by one, in command-line order with -l.
It changes nothing in the daemon's own log.

-f FILE runs the original's console commands, one per line (- reads
standard input; blank lines and lines starting with # are skipped):
send, sync, dsync and check (md5) with [-r] [-n] [-t HOST] [-g GROUP]
[PATH...], members, status, echo TEXT, exclude add|del|list|clear
[PATTERN], loglevel N, alive on|off (ignored), help, and quit, exit or bye
(stop reading). dsync mirrors (a push with --delete) and needs -r. Every
line is checked before the first runs; msync stops at the first command
that fails, with its exit status. -c, -K, -l, -v, --exclude,
--exclude-from, --expect and --allow-no-members apply to every command.

-g GROUP: before the push, msync itself (as the original daemon did)
changes the group of PATH, with -r of everything below it but the excluded
paths, to GROUP; the files must be yours and GROUP one of your groups,
unless you are root. A dry run changes nothing.

Examples:
  msync --members
  msync -r htdocs/
  msync -r --wait htdocs/      # deploy barrier: return once every member has it
  msync -r --expect 3 htdocs/  # fail unless 3 members took the push
  msync -c /run/makuosan/makuosan.sock --status --json

Exit status: 0 if every targeted member did everything asked, 1 if some
member failed or (--check) differs, if no member (or fewer than --expect)
took a push, or if -g could not change a group, 2 on a usage error or when
the daemon cannot be reached.
`

// newFlagSet binds every flag to a fresh options; the man page and shell
// completions are generated from it too (docs_test.go).
func newFlagSet() (*options, *pflag.FlagSet) {
	o := &options{level: levelChanged}
	fs := pflag.NewFlagSet("msync", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	fs.StringVarP(&o.target, "target", "c", "", "talk to the daemon at `TARGET` (unix:PATH, tcp:HOST:PORT or a socket path)")
	fs.StringVarP(&o.passwordFile, "password-file", "K", "", "read the control password from `FILE`")
	fs.BoolVar(&o.members, "members", false, "list the live members")
	fs.BoolVar(&o.status, "status", false, "show the daemon's status")
	fs.BoolVar(&o.json, "json", false, "print --members and --status as JSON")
	fs.BoolVarP(&o.recursive, "recursive", "r", false, "push directories recursively")
	fs.BoolVarP(&o.dryRun, "dry-run", "n", false, "show what would change on which member, change nothing")
	fs.BoolVarP(&o.itemize, "itemize-changes", "i", false, "with -n or --check: say what differs per path and member, as rsync -i (YXctpo)")
	fs.StringArrayVarP(&o.hosts, "target-host", "t", nil, "only push to member `HOST` (repeatable)")
	fs.StringVarP(&o.group, "chgrp", "g", "", "change the group of the pushed paths here to `GROUP` (name or number) first")
	fs.VarP(&levelValue{&o.level}, "loglevel", "l", "how much a push prints, `N` from 0 (failures only) to 2 (also unchanged paths)")
	fs.VarPF(&verboseValue{&o.level}, "verbose", "v", "raise -l by one: also print unchanged paths").NoOptDefVal = "true"
	fs.BoolVar(&o.check, "check", false, "compare content hashes on every member, print differences")
	fs.BoolVar(&o.delete, "delete", false, "also delete on members what PATH does not have (mirror)")
	fs.BoolVar(&o.sync, "sync", false, "a PATH missing locally is deleted on the members")
	fs.StringArrayVar(&o.excludes, "exclude", nil, "skip paths matching `PATTERN` (repeatable)")
	fs.StringArrayVar(&o.excludeFrom, "exclude-from", nil, "read exclude patterns from `FILE` (- for standard input)")
	fs.StringVarP(&o.script, "script", "f", "", "run the console commands of `FILE`, one per line (- for standard input)")
	fs.IntVar(&o.expect, "expect", 0, "fail (exit 1) unless at least `N` members took the push")
	fs.BoolVar(&o.allowNoMembers, "allow-no-members", false, "a push that reached no member at all is no failure")
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
	if !fs.Changed("target") {
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "MSYNC_TARGET="); ok && v != "" {
				o.target = v
			}
		}
	}
	if o.target != "" || fs.Changed("target") {
		t, err := normalizeTarget(o.target)
		if err != nil {
			return nil, err
		}
		o.target = t
	}
	o.paths = fs.Args()
	if o.version {
		return o, nil
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.group != "" {
		gid, err := resolveGroup(o.group)
		if err != nil {
			return nil, err
		}
		o.gid = gid
	}
	return o, nil
}

// validate refuses combinations of flags that mean nothing.
func (o *options) validate() error {
	report := o.members || o.status
	push := !report && o.script == "" && (len(o.paths) > 0 || o.recursive)
	stdinUsers := 0
	for _, f := range append([]string{o.script}, o.excludeFrom...) {
		if f == "-" {
			stdinUsers++
		}
	}
	switch {
	case o.members && o.status:
		return errors.New("--members and --status cannot be combined")
	case report && len(o.paths) > 0:
		return errors.New("--members and --status take no PATH")
	case report && o.wait:
		return errors.New("--wait goes with a push or alone, not with --members or --status")
	case o.timeout <= 0:
		return errors.New("--timeout must be positive")
	case o.expect < 0:
		return errors.New("--expect must be 0 or more")
	case stdinUsers > 1:
		return errors.New("only one of -f and --exclude-from can read standard input (-)")
	case o.script != "":
		return o.checkScript()
	case !report && len(o.paths) == 0 && !o.recursive && !o.wait:
		return errors.New("no PATH given (-r alone pushes the whole base directory; or use --members / --status)")
	case o.delete && !o.recursive:
		return errors.New("--delete mirrors directories and needs -r")
	case o.itemize && !o.dryRun && !o.check:
		return errors.New("-i itemizes what a dry run (-n) or a check (--check) finds")
	case o.json && !report:
		return errors.New("--json goes with --members or --status")
	case (o.expect > 0 || o.allowNoMembers) && !push:
		return errors.New("--expect and --allow-no-members go with a push")
	case o.group != "" && (!push || o.check):
		return errors.New("-g changes the group of the paths a push sends: it needs a PATH or -r, and no --check")
	}
	return nil
}

// checkScript refuses, next to -f, the flags that belong in its lines.
func (o *options) checkScript() error {
	if o.report() || o.wait || o.json || len(o.paths) > 0 || o.recursive || o.dryRun || len(o.hosts) > 0 ||
		o.group != "" || o.check || o.delete || o.sync {
		return errors.New("-f runs the commands of its FILE: give PATH, -r, -n, -t, -g, --check, --delete and --sync " +
			"in its lines (send -r PATH), and --members, --status, --json and --wait on their own")
	}
	return nil
}

func (o *options) report() bool { return o.members || o.status }

// levelValue is -l N; verboseValue is -v, which raises the same level by
// one each time it is given. pflag sets flags in command-line order, so,
// as in the original, "-l 0 -v" is level 1 and "-v -l 0" is level 0.
type levelValue struct{ p *int }

func (v *levelValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.Itoa(*v.p)
}

func (v *levelValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return fmt.Errorf("want a level from 0 up, not %q", s)
	}
	*v.p = n
	return nil
}

func (v *levelValue) Type() string { return "int" }

type verboseValue struct{ p *int }

func (v *verboseValue) String() string { return "false" }

func (v *verboseValue) Set(s string) error {
	on, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	if on {
		*v.p++
	}
	return nil
}

// Type is "bool" so that help, manual page and completions show -v as a
// switch.
func (v *verboseValue) Type() string { return "bool" }
