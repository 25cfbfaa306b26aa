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

	"github.com/makuo/makuo/replicator"
	"github.com/makuo/makuo/replicator/control"
	"github.com/makuo/makuo/watcher"
)

// options is everything the command line and environment can set.
type options struct {
	node replicator.Config

	group         string
	listen        string // -l; empty: 127.0.0.1, and only with -K
	socket        string // -U; empty: no unix socket
	socketGroup   string
	noListen      bool
	passwordFile  string
	keyFiles      []string
	genKey        string
	user          string
	primaryGroup  string
	groups        string
	chroot        bool
	foreground    bool
	core          bool
	pidFile       string
	logFile       string
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

// maxKeyFiles bounds -k: the key datagrams are sealed with, and one more
// accepted during a rotation. Every further key would cost a failed
// decryption on each datagram sealed with a later one.
const maxKeyFiles = 2

// defaultMetrics is --metrics-listen's default: loopback only, since the
// status page names the base directory, recent paths and the members.
const defaultMetrics = "127.0.0.1:9758"

const usageHead = `Usage: makuosan -b DIR [options]
       makuosan --gen-key FILE

makuosan keeps DIR identical on every member of a multicast group. Run it
on every server; push changes with msync. Without -n it detaches once it
serves (a new session, output to syslog or --log-file) and the command
returns, or fails with the daemon's start-up error; under systemd, use -n.

`

const usageTail = `
Security: root and the members of the control socket's group may push,
that is overwrite and delete files under DIR on every member: the group is
--socket-group, else -g, else makuosan if that group exists, else the
daemon's. Other local users may not. TCP control is off unless -l or -K
opens it: with -K a client must send the password, without it anyone who
reaches the address can push. Without -k any host on the network segment
can push as well, and read what is pushed.

Signals: SIGTERM, SIGINT and SIGHUP stop the daemon cleanly (a goodbye to
the group, listeners and pid file removed); SIGUSR1 and SIGUSR2 make the
log more and less verbose (debug, info, warn, error).

Environment (a flag given on the command line wins):
  MAKUOSAN_BASE, MAKUOSAN_PORT, MAKUOSAN_USER, MAKUOSAN_GROUP,
  MAKUOSAN_GROUPS, MAKUOSAN_SOCK, MAKUOSAN_RCVBUF, MAKUOSAN_SNDBUF
  set -b, -p, -u, -g, -G, -U, -R and -S.

Examples:
  makuosan -b /var/www -u www-data
  makuosan -n -b /var/www -i eth1 -k /etc/makuosan/key
  makuosan --gen-key /etc/makuosan/key

Exit status: 0 after a clean shutdown, 1 on a runtime error, 2 on a usage
or configuration error.
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

// newFlagSet binds every flag to a fresh options, section by section of
// the help text (see help.go); the man page and shell completions are
// generated from it too (docs_test.go).
func newFlagSet() (*options, *pflag.FlagSet) {
	wc := watcher.DefaultConfig()
	o := &options{node: replicator.DefaultConfig(), watchQuiet: wc.Quiet, watchMaxDelay: wc.MaxDelay}
	fs := pflag.NewFlagSet("makuosan", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	n := &o.node

	fs.StringVarP(&n.Base, "base", "b", "", "`DIR` kept identical on every member (required)")
	fs.BoolVarP(&n.NoReceive, "no-receive", "r", false, "do not apply changes sent by other members")
	fs.BoolVarP(&n.NoSend, "no-send", "s", false, "refuse to send")
	fs.BoolVarP(&n.SendOwnedOnly, "send-owned-only", "O", false, "push only paths owned by the daemon's user (-u), as the original -O did; no --delete below what it skips")
	fs.BoolVar(&n.OwnerMatch, "receive-owner-match", false, "apply a received file only where the local owner matches the sender's")
	fs.BoolVarP(&o.watch, "watch", "w", false, "replicate local changes continuously (inotify)")
	fs.DurationVar(&o.watchQuiet, "watch-quiet", o.watchQuiet, "send a changed path once it has been quiet for `DURATION`")
	fs.DurationVar(&o.watchMaxDelay, "watch-max-delay", o.watchMaxDelay, "send a path that keeps changing at least every `DURATION`")
	fs.StringArrayVar(&o.excludes, "exclude", nil, "never replicate paths matching `PATTERN` from the watcher (repeatable; rsync-like)")
	fs.StringArrayVar(&o.excludeFrom, "exclude-from", nil, "read watcher exclude patterns from `FILE`")
	fs.DurationVar(&n.RescanInterval, "rescan-interval", n.RescanInterval, "rescan DIR every `DURATION` for changes made without the watcher")
	fs.StringVar(&n.StateDir, "state-dir", n.StateDir, "`DIR` for the node id and index")
	fs.StringVar(&n.Hostname, "hostname", "", "`NAME` announced to other members (default: the host name)")
	endSection(fs, "Replication")

	fs.IntVarP(&n.Port, "port", "p", n.Port, "UDP `PORT` of the multicast group (in unicast mode, this member's and its peers'), also the TCP control port (-l, -K)")
	fs.StringVarP(&o.group, "mcast", "m", n.Group.String(), "multicast group `ADDR`, IPv4 or IPv6; routers never forward 224.0.0.0/24 nor ff02::/16 (which needs -i), so across segments use one in 239.192.0.0/14 or ff05::/16")
	fs.StringVarP(&n.Interface, "interface", "i", "", "multicast interface `IF`, a name or an address, IPv4 or IPv6 (default: from the routing table); in unicast mode the address to bind (or the interface's)")
	fs.StringArrayVar(&n.Peers, "peer", nil, "unicast mode, for networks without multicast: send to `HOST[:PORT]` (repeatable; a name stands for every address it resolves to, looked up again every 30s; PORT defaults to -p); members learn the others from each other")
	fs.StringVar(&n.PeersFile, "peers-file", "", "unicast mode: the peers in `FILE`, one HOST[:PORT] per line, # comments; read again when it changes")
	fs.BoolVar(&n.Mixed, "mixed", false, "with --peer or --peers-file, multicast to the group (-m) inside the segment too, and unicast to the peers (members on other segments)")
	fs.StringVar(&n.Segment, "segment", "", "`NAME` of this member's segment (letters, digits, punctuation), shown by msync status; needed with --relay-peer")
	fs.StringArrayVar(&n.RelayPeers, "relay-peer", nil, "make this member a relay candidate of its segment, forwarding the group to the relays of other segments: a relay candidate of another segment at `HOST[:PORT]` (repeatable; PORT defaults to -p; names resolved at start); one candidate per segment is elected")
	fs.StringVar(&n.RelayPeersFile, "relay-peers", "", "as --relay-peer, the relay candidates of other segments in `FILE`, one HOST[:PORT] per line, # comments, read again when it changes")
	fs.IntVar(&n.TTL, "ttl", n.TTL, "multicast `TTL` (hop limit over IPv6): 1 stays on the segment, N crosses up to N-1 multicast routers")
	fs.IntVar(&n.MaxDatagram, "datagram-size", n.MaxDatagram, "UDP payload `BYTES` per datagram (default 1472, 1452 over IPv6: a 1500-byte MTU; more for jumbo frames)")
	fs.BoolVar(&n.NoOffload, "no-offload", false, "send and receive datagram by datagram (no UDP GSO/GRO)")
	fs.BoolVar(&n.MulticastReplies, "multicast-replies", false, "send from the group's port, so members answer this one's pushes by multicast, not unicast to a port of the kernel's choice (for firewalls that pass the group's port only)")
	fs.IntVarP(&n.RecvBuffer, "rcvbuf", "R", 0, "socket receive buffer in `BYTES` (default 16 MiB)")
	fs.IntVarP(&n.SendBuffer, "sndbuf", "S", 0, "socket send buffer in `BYTES` (default 1 MiB)")
	fs.IntVarP(&n.RateMbps, "rate", "T", 0, "send rate cap in `MBPS` (default: adaptive)")
	fs.IntVarP(&n.Parallel, "parallel", "f", n.Parallel, "`N` concurrent send sessions")
	fs.DurationVar(&n.Heartbeat, "heartbeat", n.Heartbeat, "heartbeat `INTERVAL`")
	fs.IntVar(&n.MissedHeartbeats, "missed-heartbeats", n.MissedHeartbeats, "`N` heartbeats a member may miss before it is dropped")
	fs.DurationVar(&n.SessionTimeout, "session-timeout", n.SessionTimeout, "drop a member from a transfer after `DURATION` without an answer")
	fs.Int64Var(&n.SessionMemory, "max-session-memory", n.SessionMemory, "`BYTES` the offers of every receive session may hold together (about 150 per offered path); a larger push is refused with that reason")
	endSection(fs, "Network")

	fs.StringArrayVarP(&o.keyFiles, "key-file", "k", nil, "group key `FILE`: seal every datagram (XChaCha20-Poly1305); a second -k is also accepted, for a key rotation; without -k any host on the segment can push")
	fs.StringVar(&o.genKey, "gen-key", "", "write a new random group key to `FILE` (mode 0600, never overwritten) and exit")
	fs.StringVarP(&o.user, "user", "u", "", "after binding, run as `USER` (name or uid): its uid, primary group and groups (/etc/group)")
	fs.StringVarP(&o.primaryGroup, "group", "g", "", "primary `GROUP` (name or gid) instead of the user's, and the control socket's group; required with a uid that has no passwd entry")
	fs.StringVarP(&o.groups, "groups", "G", "", "supplementary `GROUPS` (comma-separated) added to the user's; root's are never kept")
	fs.BoolVarP(&o.chroot, "chroot", "c", false, "refused (exit 2): a chroot to DIR would hide --state-dir and what -w watches")
	endSection(fs, "Security")

	fs.StringVarP(&o.socket, "socket", "U", control.DefaultSocket, "serve control on the unix socket `PATH` (mode 0660; empty: none); as in the original, no TCP unless -l or -K")
	fs.StringVar(&o.socketGroup, "socket-group", "", "`GROUP` whose members may push through the socket (default: -g, else makuosan if it exists, else the daemon's)")
	fs.StringVarP(&o.listen, "listen", "l", "", "also serve control over TCP on `ADDR`, port -p (with -K alone: 127.0.0.1); without -K whoever reaches it can push")
	fs.StringVarP(&o.passwordFile, "password-file", "K", "", "open TCP control, and require the password in `FILE` there")
	fs.BoolVarP(&o.noListen, "no-listen", "o", false, "console off: no control socket nor TCP listener")
	endSection(fs, "Control")

	fs.BoolVarP(&o.foreground, "foreground", "n", false, "do not detach: stay in the foreground, log to stderr (for systemd and terminals)")
	fs.StringVar(&o.pidFile, "pid-file", "", "write the daemon's pid to `FILE` once it serves; removed at a clean stop")
	fs.BoolVarP(&o.core, "core", "C", false, "allow core dumps: RLIMIT_CORE unlimited (or the hard limit), a crash dumps core")
	endSection(fs, "Process")

	fs.IntVarP(&o.debug, "debug", "d", 0, "log level `N`: 0 info, 1 or more debug")
	fs.StringVar(&o.logFormat, "log-format", "text", "log `FORMAT`: text or json")
	fs.StringVar(&o.logFile, "log-file", "", "append the log to `FILE` instead of stderr, or of syslog once detached")
	fs.StringVar(&o.metrics, "metrics-listen", defaultMetrics, "serve /metrics, /healthz, /readyz and a status page on `ADDR` (empty: off)")
	fs.BoolVar(&o.pprof, "pprof", false, "also serve Go profiles on the metrics listener under /debug/pprof/ (for diagnosis)")
	endSection(fs, "Logging and monitoring")

	fs.BoolVarP(&o.version, "version", "V", false, "print the version and exit")
	fs.BoolVarP(&o.help, "help", "h", false, "print this help and exit")
	endSection(fs, "Information")
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
		fmt.Fprint(stdout, usageHead+helpTable(fs)+usageTail)
		return nil, errHelp
	}
	if o.version || o.genKey != "" {
		return o, nil
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.chroot {
		return nil, errChroot
	}
	if len(o.keyFiles) > maxKeyFiles {
		return nil, fmt.Errorf("-k given %d times: at most %d (the key to seal with, and the old one during a rotation)", len(o.keyFiles), maxKeyFiles)
	}
	if fs.Changed("listen") && o.listen == "" {
		return nil, errors.New("-l: empty address (leave -l out for no TCP listener)")
	}
	if err := parseGroup(o.group, n); err != nil {
		return nil, err
	}
	if n.Unicast() && !n.Mixed {
		// Silently unused, they would make an operator think the group
		// is in use.
		for _, f := range []string{"mcast", "ttl", "multicast-replies"} {
			if fs.Changed(f) {
				return nil, fmt.Errorf("--%s: unicast mode (--peer, --peers-file) sends to no group; add --mixed to multicast inside the segment as well", f)
			}
		}
	}
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

// parseGroup sets n.Group from -m. An IPv6 group may carry its interface
// as a zone (ff02::108%eth0, as ping takes it), which is then -i; a
// zone and a different -i are refused. Whether the group can serve is
// replicator.Config.Validate's to say.
func parseGroup(s string, n *replicator.Config) error {
	g, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("multicast group %q is not an IP address", s)
	}
	if zone := g.Zone(); zone != "" {
		if n.Interface != "" && n.Interface != zone {
			return fmt.Errorf("multicast group %s names interface %s, -i names %s: give one", s, zone, n.Interface)
		}
		n.Interface, g = zone, g.WithZone("")
	}
	n.Group = g
	return nil
}

// controlSocket is the unix socket control is served on, "" for none.
func (o *options) controlSocket() string {
	if o.noListen {
		return ""
	}
	return o.socket
}

// controlTCP is the address of the TCP control listener, "" for none: it
// is opened only when asked for, by -l or by -K (a password makes no sense
// without it).
func (o *options) controlTCP() string {
	if o.noListen || (o.listen == "" && o.passwordFile == "") {
		return ""
	}
	host := o.listen
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(o.node.Port))
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
