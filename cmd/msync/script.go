package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/makuo/makuo/exclude"
	"github.com/makuo/makuo/replicator/control"
)

// msync -f runs a file of the original makuosan's console commands, which
// the original msync sent to the daemon line by line. The daemon has no
// console any more, so msync maps each command to what it does itself.
// The whole file is checked before the first command runs: a typo on the
// last line must not leave a deploy half done.

// step is one checked command of a -f script.
type step struct {
	line int
	text string
	kind stepKind
	push pushSpec // stepPush
	out  string   // stepPrint
}

type stepKind int

const (
	stepPush stepKind = iota
	stepMembers
	stepStatus
	stepPrint
)

// scriptVerbs are the original console's commands, all of which -f takes.
var scriptVerbs = []string{"send", "sync", "dsync", "check", "md5", "members", "status", "echo",
	"exclude", "loglevel", "alive", "help", "quit", "exit", "bye"}

const scriptHelp = `COMMAND:
  send  [-r] [-t host] [-n] [-g group] [path...]
  sync  [-r] [-t host] [-n] [-g group] [path...]
  dsync -r [-t host] [-n] [path...]
  check [-r] [-t host] [path...]
  members
  status
  echo text
  exclude add|del PATTERN
  exclude list|clear
  loglevel num
  alive on|off
  help
  quit
`

// readScript reads and checks the commands of -f name ("-": stdin).
// level and excludes are the command line's; loglevel and exclude lines
// change them for the lines below.
func readScript(name string, stdin io.Reader, level int, excludes []string) ([]step, error) {
	r, label := stdin, "standard input"
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("-f: %w", err)
		}
		defer f.Close()
		r, label = f, name
	}
	p := scriptParser{level: level, excludes: slices.Clone(excludes)}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSpace(strings.TrimSuffix(sc.Text(), "\r"))
		if text == "" || text[0] == '#' {
			continue
		}
		st, err := p.parse(splitWords(text))
		if errors.Is(err, errStop) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", label, n, text, err)
		}
		if st != nil {
			st.line, st.text = n, text
			p.steps = append(p.steps, *st)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("-f %s: %w", label, err)
	}
	return p.steps, nil
}

// runScript runs the steps in order and stops at the first that fails,
// with its exit status.
func (s *session) runScript(ctx context.Context, name string, steps []step) int {
	for _, st := range steps {
		code := exitOK
		switch st.kind {
		case stepPush:
			code = s.push(ctx, st.push)
		case stepMembers, stepStatus:
			var err error
			if st.kind == stepMembers {
				err = members(ctx, s.c, false, s.stdout)
			} else {
				err = status(ctx, s.c, false, s.stdout)
			}
			if err != nil {
				fmt.Fprintf(s.stderr, "msync: %v\n", err)
				code = exitUsage
			}
		case stepPrint:
			fmt.Fprint(s.stdout, st.out)
		}
		if code != exitOK {
			fmt.Fprintf(s.stderr, "msync: -f %s: stopped at line %d (%s)\n", name, st.line, st.text)
			return code
		}
	}
	return exitOK
}

// errStop is quit, exit or bye: the lines after it are not read.
var errStop = errors.New("stop")

type scriptParser struct {
	level    int
	excludes []string
	steps    []step
}

// parse turns one command into a step (nil for one that only changes the
// parser's state).
func (p *scriptParser) parse(words []string) (*step, error) {
	verb, args := words[0], words[1:]
	switch verb {
	case "send", "sync", "dsync", "check", "md5":
		spec, err := p.parsePush(verb, args)
		if err != nil {
			return nil, err
		}
		return &step{kind: stepPush, push: spec}, nil
	case "members", "status":
		if len(args) > 0 {
			return nil, fmt.Errorf("%s takes no argument", verb)
		}
		if verb == "members" {
			return &step{kind: stepMembers}, nil
		}
		return &step{kind: stepStatus}, nil
	case "echo":
		return &step{kind: stepPrint, out: strings.Join(args, " ") + "\n"}, nil
	case "exclude":
		return p.exclude(args)
	case "loglevel":
		if len(args) != 1 {
			return nil, errors.New("usage: loglevel N")
		}
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 0 {
			return nil, fmt.Errorf("want a level from 0 up, not %q", args[0])
		}
		p.level = n
		return nil, nil
	case "alive":
		// The original kept its console connection alive with it; msync
		// has no such connection.
		if len(args) != 1 || (args[0] != "on" && args[0] != "off") {
			return nil, errors.New("usage: alive on|off")
		}
		return nil, nil
	case "help":
		return &step{kind: stepPrint, out: scriptHelp}, nil
	case "quit", "exit", "bye":
		return nil, errStop
	}
	return nil, fmt.Errorf("unknown command %q (msync -f runs: %s)", verb, strings.Join(scriptVerbs, " "))
}

// parsePush reads the original console's options of send, sync, dsync and
// check (md5). Unlike the original, which took the last path only, every
// path given is pushed.
func (p *scriptParser) parsePush(verb string, args []string) (pushSpec, error) {
	fs := pflag.NewFlagSet(verb, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	recursive := fs.BoolP("recursive", "r", false, "")
	hosts := fs.StringArrayP("target-host", "t", nil, "")
	dryRun, group := new(bool), new(string)
	if verb != "check" && verb != "md5" {
		fs.BoolVarP(dryRun, "dry-run", "n", false, "")
	}
	if verb == "send" || verb == "sync" {
		fs.StringVarP(group, "chgrp", "g", "", "")
	}
	if err := fs.Parse(args); err != nil {
		return pushSpec{}, err
	}
	spec := pushSpec{
		req: control.PushRequest{
			Paths: fs.Args(), Recursive: *recursive, DryRun: *dryRun, Targets: *hosts,
			Excludes: slices.Clone(p.excludes), Sync: verb == "sync", Check: verb == "check" || verb == "md5",
		},
		level: p.level,
	}
	switch {
	case verb == "dsync" && !*recursive:
		return pushSpec{}, errors.New("dsync: makuo mirrors whole directories only: give -r (dsync -r PATH)")
	case verb == "dsync":
		spec.req.Delete = true
	case len(spec.req.Paths) == 0 && !*recursive:
		return pushSpec{}, fmt.Errorf("no PATH (%s -r alone takes the whole base directory)", verb)
	}
	if *group != "" {
		gid, err := resolveGroup(*group)
		if err != nil {
			return pushSpec{}, err
		}
		spec.gid, spec.chgrp = gid, true
	}
	return spec, nil
}

// exclude runs the original's exclude add|del|list|clear on the patterns
// that the following lines push with.
func (p *scriptParser) exclude(args []string) (*step, error) {
	switch {
	case len(args) == 1 && args[0] == "list":
		var b strings.Builder
		for _, e := range p.excludes {
			b.WriteString(e + "\n")
		}
		return &step{kind: stepPrint, out: b.String()}, nil
	case len(args) == 1 && args[0] == "clear":
		p.excludes = nil
		return nil, nil
	case len(args) == 2 && args[0] == "add":
		if _, err := exclude.New(args[1:]); err != nil {
			return nil, err
		}
		if !slices.Contains(p.excludes, args[1]) {
			p.excludes = append(p.excludes, args[1])
		}
		return nil, nil
	case len(args) == 2 && args[0] == "del":
		i := slices.Index(p.excludes, args[1])
		if i < 0 {
			// The original said so and went on.
			return &step{kind: stepPrint, out: "pattern not found " + args[1] + "\n"}, nil
		}
		p.excludes = slices.Delete(p.excludes, i, i+1)
		return nil, nil
	}
	return nil, errors.New("usage: exclude add|del PATTERN, exclude list|clear")
}

// splitWords splits a console line as the original did: on blanks, with
// a backslash before a blank keeping it in the word ("my\ file").
func splitWords(s string) []string {
	var words []string
	var b strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && (s[i+1] == ' ' || s[i+1] == '\t'):
			i++
			b.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, b.String())
				b.Reset()
				inWord = false
			}
		default:
			b.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, b.String())
	}
	return words
}
