package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/makuo/makuo/exclude"
	"github.com/makuo/makuo/internal/version"
	"github.com/makuo/makuo/replicator/control"
)

// Exit codes, documented in the usage text.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

func run(ctx context.Context, args, env []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, env, stdout)
	switch {
	case errors.Is(err, errHelp):
		return exitOK
	case err != nil:
		fmt.Fprintf(stderr, "msync: %v\nTry 'msync -h' for help.\n", err)
		return exitUsage
	case o.version:
		fmt.Fprintln(stdout, version.Line("msync"))
		return exitOK
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var password string
	if o.passwordFile != "" {
		b, err := os.ReadFile(o.passwordFile)
		if err != nil {
			fmt.Fprintf(stderr, "msync: -K: %v\n", err)
			return exitUsage
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	client, err := control.NewClient(o.target, password)
	if err != nil {
		fmt.Fprintf(stderr, "msync: %v\n", err)
		return exitUsage
	}
	switch {
	case o.members:
		err = members(ctx, client, o.json, stdout)
	case o.status:
		err = status(ctx, client, o.json, stdout)
	case len(o.paths) == 0 && !o.recursive:
		return wait(ctx, client, o.timeout, stdout, stderr)
	default:
		code := push(ctx, client, o, stdout, stderr)
		if code != exitOK || !o.wait {
			return code
		}
		return wait(ctx, client, o.timeout, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "msync: %v\n", err)
		return exitUsage
	}
	return exitOK
}

// push runs a push and prints one line per changed path (with the members
// it changed on), failures, and a summary line.
func push(ctx context.Context, c *control.Client, o *options, stdout, stderr io.Writer) int {
	excludes := o.excludes
	for _, f := range o.excludeFrom {
		pats, err := exclude.ReadFile(f)
		if err != nil {
			fmt.Fprintf(stderr, "msync: --exclude-from: %v\n", err)
			return exitUsage
		}
		excludes = append(excludes, pats...)
	}
	if _, err := exclude.New(excludes); err != nil {
		fmt.Fprintf(stderr, "msync: %v\n", err)
		return exitUsage
	}
	req := control.PushRequest{
		Paths: o.paths, Recursive: o.recursive, DryRun: o.dryRun, Check: o.check,
		Delete: o.delete, Sync: o.sync, Targets: o.hosts, Excludes: excludes, Verbose: o.verbose,
	}
	progress := isTerminal(stderr)
	shown := false
	sum, err := c.Push(ctx, req, func(ev control.Event) {
		switch ev.Type {
		case control.EventPath:
			if shown {
				fmt.Fprint(stderr, "\r\033[K")
				shown = false
			}
			fmt.Fprintf(stdout, "%-7s %s", ev.Action, quotePath(ev.Path))
			if len(ev.Members) > 0 {
				fmt.Fprintf(stdout, "  %s", strings.Join(ev.Members, ","))
			}
			fmt.Fprintln(stdout)
		case control.EventFailure:
			if ev.Path != "" {
				fmt.Fprintf(stdout, "FAILED  %s  %s: %s\n", quotePath(ev.Path), ev.Member, ev.Reason)
			} else {
				fmt.Fprintf(stdout, "FAILED  member %s: %s\n", ev.Member, ev.Reason)
			}
		case control.EventProgress:
			if progress && ev.BytesTotal > 0 {
				fmt.Fprintf(stderr, "\r%s of %s sent (%d%%)", mib(ev.BytesSent), mib(ev.BytesTotal), 100*ev.BytesSent/ev.BytesTotal)
				shown = true
			}
		}
	})
	if shown {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err != nil {
		fmt.Fprintf(stderr, "msync: %v\n", err)
		return exitUsage
	}
	verb := "changed"
	switch {
	case sum.DryRun:
		verb = "would change"
	case sum.Check:
		verb = "differ"
	}
	rate := ""
	if sum.Seconds > 0 && sum.PayloadBytes > 0 {
		rate = fmt.Sprintf(" (%s/s)", mib(uint64(float64(sum.PayloadBytes)/sum.Seconds)))
	}
	fmt.Fprintf(stdout, "%d members, %d paths: %d %s, %d failed, %d deleted; %s sent%s, %s on the wire, %.2fs\n",
		len(sum.Members), sum.Entries, sum.Changed, verb, sum.Failed, sum.Deleted,
		mib(sum.PayloadBytes), rate, mib(sum.WireBytes), sum.Seconds)
	if !sum.OK() {
		return exitFail
	}
	return exitOK
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// quotePath shows a path on one line even when it holds a newline or
// bytes that are not UTF-8.
func quotePath(p string) string {
	if strconv.CanBackquote(p) && !strings.ContainsAny(p, " \t") {
		return p
	}
	return strconv.Quote(p)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func members(ctx context.Context, c *control.Client, asJSON bool, w io.Writer) error {
	ms, err := c.Members(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(w, ms)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, m := range ms {
		heard := fmt.Sprintf("%.1fs", m.LastHeardSeconds)
		state := "in sync"
		switch {
		case m.Self:
			heard, state = "self", "-"
		case m.Root == "":
			state = "unknown"
		case !m.InSync:
			state = fmt.Sprintf("differs (%.0fs)", m.LagSeconds)
		}
		addr := m.Addr
		if addr == "" {
			addr = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Hostname, addr, m.Version, m.Roles, heard, state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "Total: %d members\n", len(ms))
	return err
}

func status(ctx context.Context, c *control.Client, asJSON bool, w io.Writer) error {
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(w, st)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintf(tw, "pid:\t%d\n", st.PID)
	fmt.Fprintf(tw, "version:\t%s\n", st.Version)
	fmt.Fprintf(tw, "node:\t%s (%s)\n", st.NodeID, st.Hostname)
	fmt.Fprintf(tw, "base:\t%s\n", st.Base)
	fmt.Fprintf(tw, "group:\t%s\n", st.Group)
	fmt.Fprintf(tw, "uptime:\t%s\n", (time.Duration(st.UptimeSeconds) * time.Second).String())
	fmt.Fprintf(tw, "members:\t%d\n", st.Members)
	fmt.Fprintf(tw, "transfers:\t%d in flight\n", st.TransfersInFlight)
	fmt.Fprintf(tw, "sent:\t%d datagrams, %d bytes\n", st.Counters["datagrams_sent"], st.Counters["bytes_sent"])
	fmt.Fprintf(tw, "received:\t%d datagrams, %d bytes\n", st.Counters["datagrams_received"], st.Counters["bytes_received"])
	var drops []string
	var total uint64
	for k, v := range st.Counters {
		if r, ok := strings.CutPrefix(k, "dropped_"); ok && v > 0 {
			drops = append(drops, fmt.Sprintf("%s %d", r, v))
			total += v
		}
	}
	fmt.Fprintf(tw, "dropped:\t%d %s\n", total, strings.Join(drops, ", "))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Recent) > 0 {
		fmt.Fprintln(w, "recent pushes:")
	}
	for _, t := range st.Recent {
		outcome := "ok"
		switch {
		case t.Error != "":
			outcome = "error: " + t.Error
		case len(t.FailedMembers) > 0 || t.Failed > 0:
			outcome = fmt.Sprintf("FAILED (%d paths, members %s)", t.Failed, strings.Join(t.FailedMembers, ","))
		}
		fmt.Fprintf(w, "  %s  %-7s %s: %d changed on %d members, %s in %.2fs, %s\n", t.Started.Format("15:04:05"),
			t.Origin, strings.Join(t.Paths, " "), t.Changed, t.Members, mib(t.PayloadBytes), t.Seconds, outcome)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// wait polls the daemon until every live receiving member announces the
// same tree root as the daemon, or timeout passes (exit 1, naming the
// members still behind).
func wait(ctx context.Context, c *control.Client, timeout time.Duration, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	var behind []string
	for {
		ms, err := c.Members(ctx)
		if err != nil && ctx.Err() == nil {
			fmt.Fprintf(stderr, "msync: %v\n", err)
			return exitUsage
		}
		if err == nil {
			behind = behind[:0]
			ready := true
			for _, m := range ms {
				switch {
				case m.Self:
					ready = ready && m.Root != ""
				case strings.Contains(m.Roles, "recv") && !m.InSync:
					behind = append(behind, m.Hostname)
				}
			}
			if ready && len(behind) == 0 {
				fmt.Fprintf(stdout, "all %d members in sync after %.2fs\n", len(ms), time.Since(start).Seconds())
				return exitOK
			}
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(stderr, "msync: --wait: after %v, still behind: %s\n", timeout, strings.Join(behind, ", "))
			return exitFail
		case <-time.After(200 * time.Millisecond):
		}
	}
}
