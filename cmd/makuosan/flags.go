package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/makuo/makuo/internal/usage"

	"github.com/makuo/makuo/replicator"
	"github.com/makuo/makuo/watcher"
)

// options is everything the command line and environment can set.
type options struct {
	node replicator.Config

	group         string
	listen        string
	socket        string
	noListen      bool
	passwordFile  string
	keyFile       string
	user          string
	primaryGroup  string
	groups        string
	chroot        bool
	foreground    bool
	debug         int
	logFormat     string
	metrics       string
	watch         bool
	pprof         bool
	watchQuiet    time.Duration
	watchMaxDelay time.Duration
	excludes      []string
	excludeFrom   []string
	version       bool
	help          bool
}

// errHelp is returned when -h was given: usage goes to stdout, exit 0.
var errHelp = errors.New("help requested")

// errChroot refuses -c. The daemon resolves paths after start-up (the
// index it saves under --state-dir, the directories -w watches), and inside
// a chroot to the base directory they would name base/var/lib/... instead.
// Doing it right means holding a descriptor for each of them across the
// chroot; until the node does, -c is refused rather than half working.
var errChroot = errors.New("-c (chroot to the base directory) is refused: the daemon keeps saving its index under --state-dir and, with -w, watching the base directory by path after start-up, which a chroot would hide; confine it with the systemd unit instead (ProtectSystem=strict, ReadWritePaths=; see the README, Security)")

const usageHead = `Usage: makuosan -b DIR [options]

makuosan keeps DIR identical on every member of a multicast group. Run it on
every server; push changes with msync. It never forks (-n is accepted for
compatibility): run it under systemd or a terminal.

Options:
`

const usageTail = `
Environment (a flag given on the command line wins):
  MAKUOSAN_BASE, MAKUOSAN_PORT, MAKUOSAN_USER, MAKUOSAN_GROUP,
  MAKUOSAN_GROUPS, MAKUOSAN_SOCK, MAKUOSAN_RCVBUF, MAKUOSAN_SNDBUF
  set -b, -p, -u, -g, -G, -U, -R and -S.

Examples:
  makuosan -n -b /var/www
  makuosan -n -b /var/www -i eth1 -k /etc/makuosan/key -U /run/makuosan/makuosan.sock

Exit status: 0 after a clean shutdown (SIGTERM, SIGINT), 1 on a runtime
error, 2 on a usage or configuration error.
`

// envFlags maps the original's environment variables to flag names.
var envFlags = [][2]string{
	{"MAKUOSAN_BASE", "base"},
	{"MAKUOSAN_PORT", "port"},
	{"MAKUOSAN_USER", "user"},
	{"MAKUOSAN_GROUP", "group"},
	{"MAKUOSAN_GROUPS", "groups"},
	{"MAKUOSAN_SOCK", "socket"},
	{"MAKUOSAN_RCVBUF", "rcvbuf"},
	{"MAKUOSAN_SNDBUF", "sndbuf"},
}

// newFlagSet binds every flag to a fresh options; the man page and shell
// completions are generated from it too (docs_test.go).
func newFlagSet() (*options, *pflag.FlagSet) {
	wc := watcher.DefaultConfig()
	o := &options{node: replicator.DefaultConfig(), watchQuiet: wc.Quiet, watchMaxDelay: wc.MaxDelay}
	fs := pflag.NewFlagSet("makuosan", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	n := &o.node
	fs.StringVarP(&n.Base, "base", "b", "", "base `DIR` to keep identical on every member (required)")
	fs.IntVarP(&n.Port, "port", "p", n.Port, "UDP `PORT` of the multicast group, also the TCP port of the control listener")
	fs.StringVarP(&o.group, "mcast", "m", n.Group.String(), "multicast group `ADDR`")
	fs.StringVarP(&n.Interface, "interface", "i", "", "send and receive multicast on interface `IF` (a name or an address; default: from the routing table)")
	fs.StringVarP(&o.listen, "listen", "l", "127.0.0.1", "`ADDR` of the TCP control listener; without -K any local user (or whoever reaches ADDR) can push")
	fs.StringVarP(&o.socket, "socket", "U", "", "also listen for control on this unix socket `PATH` (mode 0660; owned by the -u user and group)")
	fs.BoolVarP(&o.noListen, "no-listen", "o", false, "do not open the TCP control listener")
	fs.StringVarP(&o.passwordFile, "password-file", "K", "", "`FILE` holding the password TCP control clients must present")
	fs.StringVarP(&o.keyFile, "key-file", "k", "", "group key `FILE`: seal every datagram (XChaCha20-Poly1305); without it any host on the segment can push")
	fs.StringVarP(&o.user, "user", "u", "", "after binding, run as `USER` (name or uid): its uid, primary group and groups (/etc/group)")
	fs.StringVarP(&o.primaryGroup, "group", "g", "", "primary `GROUP` (name or gid) instead of the user's; required with a uid that has no passwd entry")
	fs.StringVarP(&o.groups, "groups", "G", "", "supplementary `GROUPS` (comma-separated) added to the user's; root's are never kept")
	fs.BoolVarP(&o.chroot, "chroot", "c", false, "refused (exit 2): a chroot to DIR would hide --state-dir and the paths -w watches (see the README, Security)")
	fs.BoolVarP(&o.foreground, "foreground", "n", false, "stay in the foreground (always the case; accepted for compatibility)")
	fs.IntVarP(&o.debug, "debug", "d", 0, "log level `N`: 0 info, 1 or more debug")
	fs.BoolVarP(&n.NoReceive, "no-receive", "r", false, "do not apply changes sent by other members")
	fs.BoolVarP(&n.NoSend, "no-send", "s", false, "refuse to send")
	fs.IntVarP(&n.RecvBuffer, "rcvbuf", "R", 0, "socket receive buffer in `BYTES` (default 16 MiB)")
	fs.IntVarP(&n.SendBuffer, "sndbuf", "S", 0, "socket send buffer in `BYTES` (default 1 MiB)")
	fs.IntVarP(&n.RateMbps, "rate", "T", 0, "send rate cap in `MBPS` (default: adaptive)")
	fs.IntVarP(&n.Parallel, "parallel", "f", n.Parallel, "`N` concurrent send sessions")
	fs.BoolVarP(&n.OwnerMatch, "owner-match", "O", false, "apply a file only where its owner matches the sender's")
	fs.StringVar(&n.StateDir, "state-dir", n.StateDir, "`DIR` for the node id and index")
	fs.StringVar(&n.Hostname, "hostname", "", "`NAME` announced to other members (default: the host name)")
	fs.IntVar(&n.TTL, "ttl", n.TTL, "multicast `TTL`")
	fs.IntVar(&n.MaxDatagram, "datagram-size", n.MaxDatagram, "UDP payload `BYTES` per datagram (raise for jumbo frames)")
	fs.BoolVar(&n.NoOffload, "no-offload", false, "send and receive datagram by datagram (no UDP GSO/GRO)")
	fs.DurationVar(&n.Heartbeat, "heartbeat", n.Heartbeat, "heartbeat `INTERVAL`")
	fs.IntVar(&n.MissedHeartbeats, "missed-heartbeats", n.MissedHeartbeats, "`N` heartbeats a member may miss before it is dropped")
	fs.DurationVar(&n.SessionTimeout, "session-timeout", n.SessionTimeout, "drop a member from a transfer after `DURATION` without an answer")
	fs.DurationVar(&n.RescanInterval, "rescan-interval", n.RescanInterval, "rescan the base directory every `DURATION` to notice changes made without the watcher")
	fs.StringVar(&o.logFormat, "log-format", "text", "log `FORMAT`: text or json")
	fs.BoolVarP(&o.watch, "watch", "w", false, "replicate local changes under the base directory continuously (inotify)")
	fs.DurationVar(&o.watchQuiet, "watch-quiet", o.watchQuiet, "send a changed path once it has been quiet for `DURATION`")
	fs.DurationVar(&o.watchMaxDelay, "watch-max-delay", o.watchMaxDelay, "send a path that keeps changing at least every `DURATION`")
	fs.StringArrayVar(&o.excludes, "exclude", nil, "never replicate paths matching `PATTERN` from the watcher (repeatable; rsync-like)")
	fs.StringArrayVar(&o.excludeFrom, "exclude-from", nil, "read watcher exclude patterns from `FILE`")
	fs.StringVar(&o.metrics, "metrics-listen", ":9758", "serve /metrics on `ADDR` (empty: off)")
	fs.BoolVar(&o.pprof, "pprof", false, "also serve Go profiles on the metrics listener under /debug/pprof/ (for diagnosis)")
	fs.BoolVarP(&o.version, "version", "V", false, "print the version and exit")
	fs.BoolVarP(&o.help, "help", "h", false, "print this help and exit")
	return o, fs
}

func parseFlags(args, env []string, stdout io.Writer) (*options, error) {
	o, fs := newFlagSet()
	n := &o.node
	envMap := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			envMap[k] = v
		}
	}
	for _, ef := range envFlags {
		if v, ok := envMap[ef[0]]; ok && v != "" {
			if err := fs.Set(ef[1], v); err != nil {
				return nil, fmt.Errorf("environment %s=%q: %w", ef[0], v, err)
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.help {
		fmt.Fprint(stdout, usageHead+usage.FlagTable(fs)+usageTail)
		return nil, errHelp
	}
	if o.version {
		return o, nil
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.chroot {
		return nil, errChroot
	}
	g, err := netip.ParseAddr(o.group)
	if err != nil {
		return nil, fmt.Errorf("multicast group %q is not an IP address", o.group)
	}
	n.Group = g
	if o.logFormat != "text" && o.logFormat != "json" {
		return nil, fmt.Errorf("log format %q: want text or json", o.logFormat)
	}
	if o.watchQuiet <= 0 || o.watchMaxDelay < o.watchQuiet {
		return nil, fmt.Errorf("--watch-quiet %v must be positive and at most --watch-max-delay %v", o.watchQuiet, o.watchMaxDelay)
	}
	if n.Heartbeat < 10*time.Millisecond {
		return nil, fmt.Errorf("heartbeat %v is too short (at least 10ms)", n.Heartbeat)
	}
	return o, nil
}

// readSecret reads a one-line secret file, trimming the line end.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

func controlAddr(o *options) string {
	return net.JoinHostPort(strings.Trim(o.listen, "[]"), strconv.Itoa(o.node.Port))
}
