package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/makuo/makuo/exclude"
	"github.com/makuo/makuo/replicator/control"
)

// pushSpec is one push, from the command line or from a line of -f.
type pushSpec struct {
	req   control.PushRequest
	level int
	gid   int // with chgrp: -g, applied before the push
	chgrp bool
}

// newPushSpec builds the push of the command line.
func newPushSpec(o *options, excludes []string) pushSpec {
	return pushSpec{
		req: control.PushRequest{
			Paths: o.paths, Recursive: o.recursive, DryRun: o.dryRun, Check: o.check,
			Delete: o.delete, Sync: o.sync, Targets: o.hosts, Excludes: excludes, Itemize: o.itemize,
		},
		level: o.level, gid: o.gid, chgrp: o.group != "",
	}
}

// push runs a push and prints, as its level says, one line per changed
// path (with the members it changed on), failures, and a summary line.
func (s *session) push(ctx context.Context, p pushSpec) int {
	req := p.req
	req.Verbose = p.level >= levelUnchanged
	if p.chgrp && !req.DryRun {
		if code := s.chgrp(ctx, p); code != exitOK {
			return code
		}
	}
	progress := isTerminal(s.stderr)
	shown := false
	sum, err := s.c.Push(ctx, req, func(ev control.Event) {
		switch ev.Type {
		case control.EventPath:
			if shown {
				fmt.Fprint(s.stderr, "\r\033[K")
				shown = false
			}
			// What a dry run or a check finds is its answer, so even
			// level 0 shows it (the original did too).
			if p.level < levelChanged && !req.DryRun && !req.Check {
				return
			}
			what := ev.Action
			if ev.Items != "" {
				what = fmt.Sprintf("%-9s", ev.Items)
			}
			fmt.Fprintf(s.stdout, "%-7s %s", what, quotePath(ev.Path))
			if len(ev.Members) > 0 {
				fmt.Fprintf(s.stdout, "  %s", strings.Join(ev.Members, ","))
			}
			fmt.Fprintln(s.stdout)
		case control.EventFailure:
			if ev.Path != "" {
				fmt.Fprintf(s.stdout, "FAILED  %s  %s: %s\n", quotePath(ev.Path), ev.Member, ev.Reason)
			} else {
				fmt.Fprintf(s.stdout, "FAILED  member %s: %s\n", ev.Member, ev.Reason)
			}
		case control.EventProgress:
			if progress && ev.BytesTotal > 0 {
				fmt.Fprintf(s.stderr, "\r%s of %s sent (%d%%)", size(ev.BytesSent), size(ev.BytesTotal), 100*ev.BytesSent/ev.BytesTotal)
				shown = true
			}
		}
	})
	if shown {
		fmt.Fprint(s.stderr, "\r\033[K")
	}
	if err != nil {
		fmt.Fprintf(s.stderr, "msync: %v\n", err)
		return exitUsage
	}
	if p.level >= levelChanged {
		fmt.Fprintln(s.stdout, summaryLine(sum))
	}
	code := exitOK
	if !sum.OK() {
		code = exitFail
	}
	took := len(sum.Members) - len(sum.FailedMembers)
	switch {
	case len(sum.Members) == 0 && !s.allowNoMembers:
		fmt.Fprintln(s.stderr, "msync: no member took the push: the daemon knows no live receiving member (--allow-no-members accepts that)")
		code = exitFail
	case took < s.expect:
		fmt.Fprintf(s.stderr, "msync: %s took the push, --expect wants %d\n", count(took, "member"), s.expect)
		code = exitFail
	}
	return code
}

func summaryLine(sum *control.Summary) string {
	verb := "changed"
	switch {
	case sum.DryRun:
		verb = "would change"
	case sum.Check:
		verb = "differ"
	}
	rate := ""
	if sum.Seconds > 0 && sum.PayloadBytes > 0 {
		rate = fmt.Sprintf(" (%s/s)", size(uint64(float64(sum.PayloadBytes)/sum.Seconds)))
	}
	return fmt.Sprintf("%s, %s: %d %s, %d failed, %d deleted; %s sent%s, %s on the wire, %.2fs",
		count(len(sum.Members), "member"), count(sum.Entries, "path"), sum.Changed, verb, sum.Failed, sum.Deleted,
		size(sum.PayloadBytes), rate, size(sum.WireBytes), sum.Seconds)
}

// chgrp does -g: the paths are the daemon's, so their base is asked first.
func (s *session) chgrp(ctx context.Context, p pushSpec) int {
	st, err := s.c.Status(ctx)
	if err != nil {
		fmt.Fprintf(s.stderr, "msync: %v\n", err)
		return exitUsage
	}
	excl, err := exclude.New(p.req.Excludes)
	if err != nil {
		fmt.Fprintf(s.stderr, "msync: %v\n", err)
		return exitUsage
	}
	if err := chgrp(st.Base, p.req.Paths, p.req.Recursive, excl, p.gid); err != nil {
		fmt.Fprintf(s.stderr, "msync: %v\n", err)
		return exitFail
	}
	return exitOK
}
