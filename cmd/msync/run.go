package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
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

// sys is what run takes from the process besides its arguments, so that
// tests can give their own.
type sys struct {
	env            []string
	stdin          io.Reader
	stdout, stderr io.Writer
	// defaultTargets are tried in order when neither -c nor MSYNC_TARGET
	// names the daemon (main: defaultTargets()).
	defaultTargets []string
}

// session is what every command of one msync run shares.
type session struct {
	c              *control.Client
	stdout, stderr io.Writer
	expect         int  // --expect
	allowNoMembers bool // --allow-no-members
}

func run(ctx context.Context, args []string, sy sys) int {
	o, err := parseFlags(args, sy.env, sy.stdout)
	switch {
	case errors.Is(err, errHelp):
		return exitOK
	case err != nil:
		fmt.Fprintf(sy.stderr, "msync: %v\nTry 'msync -h' for help.\n", err)
		return exitUsage
	case o.version:
		fmt.Fprintln(sy.stdout, version.Line("msync"))
		return exitOK
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var password string
	if o.passwordFile != "" {
		b, err := os.ReadFile(o.passwordFile)
		if err != nil {
			fmt.Fprintf(sy.stderr, "msync: -K: %v\n", err)
			return exitUsage
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	excludes, err := loadExcludes(o, sy.stdin)
	if err != nil {
		fmt.Fprintf(sy.stderr, "msync: %v\n", err)
		return exitUsage
	}
	var steps []step
	if o.script != "" {
		if steps, err = readScript(o.script, sy.stdin, o.level, excludes); err != nil {
			fmt.Fprintf(sy.stderr, "msync: %v\n", err)
			return exitUsage
		}
	}
	target := o.target
	if target == "" {
		if target, err = findDaemon(ctx, sy.defaultTargets); err != nil {
			fmt.Fprintf(sy.stderr, "msync: %v\n", err)
			return exitUsage
		}
	}
	client, err := control.NewClient(target, password)
	if err != nil {
		fmt.Fprintf(sy.stderr, "msync: %v\n", err)
		return exitUsage
	}
	s := &session{c: client, stdout: sy.stdout, stderr: sy.stderr, expect: o.expect, allowNoMembers: o.allowNoMembers}
	switch {
	case o.script != "":
		return s.runScript(ctx, o.script, steps)
	case o.members:
		err = members(ctx, client, o.json, sy.stdout)
	case o.status:
		err = status(ctx, client, o.json, sy.stdout)
	case len(o.paths) == 0 && !o.recursive:
		return wait(ctx, client, o.timeout, o.level, sy.stdout, sy.stderr)
	default:
		code := s.push(ctx, newPushSpec(o, excludes))
		if code != exitOK || !o.wait {
			return code
		}
		return wait(ctx, client, o.timeout, o.level, sy.stdout, sy.stderr)
	}
	if err != nil {
		fmt.Fprintf(sy.stderr, "msync: %v\n", err)
		return exitUsage
	}
	return exitOK
}

// loadExcludes gathers --exclude and the patterns of every --exclude-from
// file (- is stdin), and checks them all.
func loadExcludes(o *options, stdin io.Reader) ([]string, error) {
	excludes := slices.Clone(o.excludes)
	for _, f := range o.excludeFrom {
		var pats []string
		var err error
		if f == "-" {
			if pats, err = readPatterns(stdin); err != nil {
				err = fmt.Errorf("standard input: %w", err)
			}
		} else {
			pats, err = exclude.ReadFile(f) // its errors name f
		}
		if err != nil {
			return nil, fmt.Errorf("--exclude-from: %w", err)
		}
		excludes = append(excludes, pats...)
	}
	if _, err := exclude.New(excludes); err != nil {
		return nil, err
	}
	return excludes, nil
}

// readPatterns reads exclude patterns from standard input as
// exclude.ReadFile reads a file.
func readPatterns(r io.Reader) ([]string, error) {
	patterns, err := exclude.Parse(r)
	if err != nil {
		return nil, fmt.Errorf("read patterns: %w", err)
	}
	return patterns, nil
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
	// A segment column only where segments are named: the plain table
	// stays what scripts parse.
	segments := slices.ContainsFunc(ms, func(m control.Member) bool { return m.Segment != "" })
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
		if segments {
			seg := cmp.Or(m.Segment, "-")
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Hostname, addr, m.Version, m.Roles, heard, state, seg)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Hostname, addr, m.Version, m.Roles, heard, state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// The original's line, byte for byte, for the scripts that parse it:
	// it counted the other members only (its member table never held
	// itself), and said "members" whatever the number.
	others := 0
	for _, m := range ms {
		if !m.Self {
			others++
		}
	}
	_, err = fmt.Fprintf(w, "Total: %d members\n", others)
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
	if st.Segment != "" {
		fmt.Fprintf(tw, "segment:\t%s\n", st.Segment)
	}
	if st.Relay != "" {
		fmt.Fprintf(tw, "relay:\t%s\n", st.Relay)
	}
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
			outcome = fmt.Sprintf("FAILED (%s, members %s)", count(t.Failed, "path"), strings.Join(t.FailedMembers, ","))
		}
		fmt.Fprintf(w, "  %s  %-7s %s: %d changed on %s, %s in %.2fs, %s\n", t.Started.Format("15:04:05"),
			t.Origin, strings.Join(t.Paths, " "), t.Changed, count(t.Members, "member"), size(t.PayloadBytes), t.Seconds, outcome)
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
// members still behind). Level 0 (-l 0) keeps it quiet on success.
func wait(ctx context.Context, c *control.Client, timeout time.Duration, level int, stdout, stderr io.Writer) int {
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
				if level >= levelChanged {
					fmt.Fprintf(stdout, "all %s in sync after %.2fs\n", count(len(ms), "member"), time.Since(start).Seconds())
				}
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
