package replicator

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/makuo/makuo/replicator/membership"
	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/replicator/transport/peers"
)

// Version is the makuo release; cmd sets nothing, so this is the one place.
const Version = "0.1.0"

// Config configures a Node. Flags map onto it in cmd/makuosan.
type Config struct {
	// Base is the directory kept identical across members (-b). Required.
	Base string
	// StateDir holds the node id and, later, the tree index
	// (--state-dir, default /var/lib/makuosan).
	StateDir string
	// Hostname announced to peers; default os.Hostname().
	Hostname string
	// Group and Port of the multicast group (-m, -p): 224.0.0.108:5000 like
	// the original, a link-local group that routers never forward. An
	// IPv6 group works alike (transport.CheckGroup): ff02::108 is
	// link-local and needs the Interface, ff05::108 (site-local) or
	// ff08::108 (organization-local) cross multicast routers.
	Group netip.Addr
	Port  int
	// Interface by name or address (-i); empty lets the routing table
	// pick, except for a link-local IPv6 group, whose address names no
	// link by itself.
	Interface string
	// TTL of multicast datagrams (the hop limit over IPv6); 1 keeps them
	// on the local link. Above 1 a multicast router may forward them, if
	// the group is not link-local (239.192.0.0/14, organization-local, is
	// the usual pick; ff05:: or ff08:: over IPv6).
	TTL int
	// RecvBuffer and SendBuffer are socket buffer sizes in bytes (-R, -S);
	// 0 takes the transport defaults.
	RecvBuffer, SendBuffer int
	// MaxDatagram is the UDP payload size of sent datagrams; 0 fits a
	// 1500-byte MTU (1472 bytes over IPv4, 1452 over IPv6, whose header
	// is longer), raise it for jumbo frames.
	MaxDatagram int
	// NoOffload turns off UDP segmentation offload and receive coalescing
	// (--no-offload); see transport.Config.NoOffload.
	NoOffload bool
	// MulticastReplies makes members answer this one's pushes by
	// multicast, as before unicast answers (--multicast-replies); see
	// transport.Config.MulticastReplies.
	MulticastReplies bool
	// Peers (--peer HOST[:PORT], each a peers.ParseSpec) and PeersFile
	// (--peers-file, read again when it changes) make the daemon run in
	// unicast mode, for networks without multicast: every datagram goes
	// to each peer, from a socket bound to Port (on the Interface's
	// address, if one is named), and peers learn each other from their
	// heartbeats and lists (package peers). Group and TTL are then
	// unused, unless Mixed.
	Peers     []string
	PeersFile string
	// Mixed (--mixed) keeps the multicast group as well in unicast mode:
	// multicast inside the segment, unicast to the peers (members on
	// other segments); a member heard on the group gets no unicast copy.
	Mixed bool
	// Segment (--segment) names this member's segment; RelayPeers
	// (--relay-peer HOST[:PORT]) and RelayPeersFile (--relay-peers) are
	// the relay candidates of other segments, and make this member a
	// relay candidate of its own (transport.RelayConfig).
	Segment        string
	RelayPeers     []string
	RelayPeersFile string
	// Key is the 32-byte datagram key (-k); nil means no sealing.
	Key []byte
	// OldKeys are accepted besides Key on received datagrams, never used
	// to seal (a second -k, during a key rotation).
	OldKeys [][]byte
	// NoReceive (-r) never applies received changes; NoSend (-s) refuses
	// to send.
	NoReceive, NoSend bool
	// RateMbps caps the send rate (-T); 0 means adaptive.
	RateMbps int
	// Parallel is the number of concurrent send sessions (-f).
	Parallel int
	// OwnerMatch (--receive-owner-match) applies received files only
	// where the local owner matches the sender's.
	OwnerMatch bool
	// SendOwnedOnly (-O, as in the original) leaves out of every push the
	// paths not owned by the daemon's effective uid (the -u user): the
	// original's "skip: owner unmatch". Below a mirrored directory that
	// holds such paths nothing is deleted (see source.Options.OwnerOnly).
	SendOwnedOnly bool
	// Heartbeat and MissedHeartbeats tune membership (see package
	// membership for the defaults' reasons).
	Heartbeat        time.Duration
	MissedHeartbeats int
	// SessionTimeout drops a receiver from a transfer after it has not
	// answered for this long (default 5 s): long enough for a busy member,
	// short enough that a dead one costs the others little.
	SessionTimeout time.Duration
	// Excludes are patterns (package exclude) left out of the index and
	// therefore of the tree root hash: give every member the same ones, or
	// their roots never match. The watcher uses them too.
	Excludes []string
	// RescanInterval is how often the whole base directory is rescanned to
	// notice changes made without the watcher (default 10 min); the index
	// makes a rescan of unchanged files cost a stat each.
	RescanInterval time.Duration
	// Watch says the daemon replicates its own changes continuously (-w);
	// such a member also catches up members that fell behind.
	Watch bool
	// SessionMemory bounds what the offers of every receive session hold
	// together, in bytes (--max-session-memory): an offer past it makes
	// this member refuse the session with a clear reason instead of
	// growing without bound, whatever the sender (or an attacker) claims.
	// The default, 20 MiB, holds about 130,000 offered paths (about 150
	// bytes each with a 40-byte path), and keeps the heap a flood of hostile offers can
	// make a member reach under 64 MiB above idle (the garbage collector
	// lets the heap grow to twice what is live); a first push of a larger
	// tree at once needs a larger value on the receivers, or pushing it in
	// parts.
	SessionMemory int64
	// CatchUpGrace is how long a member's tree may differ from the
	// majority before a watching member pushes the difference to it
	// (default 10 s: longer than a normal transfer takes to settle).
	CatchUpGrace time.Duration
}

// DefaultConfig returns the defaults of the original makuosan where it had
// one, and documented choices elsewhere.
func DefaultConfig() Config {
	mc := membership.DefaultConfig()
	return Config{
		StateDir:         "/var/lib/makuosan",
		Group:            netip.MustParseAddr("224.0.0.108"),
		Port:             5000,
		TTL:              1,
		Parallel:         5,
		Heartbeat:        mc.Interval,
		MissedHeartbeats: mc.MissedHeartbeats,
		SessionTimeout:   5 * time.Second,
		RescanInterval:   10 * time.Minute,
		CatchUpGrace:     10 * time.Second,
		SessionMemory:    20 << 20,
	}
}

// Validate checks cfg and fills Hostname. Errors name the offending setting
// the way an operator typed it.
func (c *Config) Validate() error {
	if c.Base == "" {
		return errors.New("base directory not set (-b DIR)")
	}
	abs, err := filepath.Abs(c.Base)
	if err != nil {
		return fmt.Errorf("base directory %s: %w", c.Base, err)
	}
	c.Base = abs
	fi, err := os.Stat(c.Base)
	if err != nil {
		return fmt.Errorf("base directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("base directory %s is not a directory", c.Base)
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("port %d out of range 1-65535", c.Port)
	}
	if err := c.validatePeers(); err != nil {
		return err
	}
	if err := c.validateRelay(); err != nil {
		return err
	}
	if c.Multicast() {
		if err := transport.CheckGroup(c.Group, c.Interface); err != nil {
			if ge, ok := errors.AsType[*transport.GroupError](err); ok {
				if ge.NeedsInterface {
					return fmt.Errorf("multicast group %v %s: name it with -i (e.g. -i eth0)", c.Group, ge.Reason)
				}
				return fmt.Errorf("multicast group %v %s", c.Group, ge.Reason)
			}
			return err
		}
	}
	if c.TTL < 1 || c.TTL > 255 {
		return fmt.Errorf("TTL %d out of range 1-255", c.TTL)
	}
	if c.RateMbps < 0 {
		return fmt.Errorf("rate %d Mbps is negative", c.RateMbps)
	}
	if c.Parallel < 1 {
		return fmt.Errorf("parallel sends %d must be at least 1", c.Parallel)
	}
	if c.RecvBuffer < 0 || c.SendBuffer < 0 {
		return errors.New("socket buffer sizes must not be negative")
	}
	if c.Heartbeat <= 0 || c.MissedHeartbeats < 1 {
		return errors.New("heartbeat interval must be positive and missed heartbeats at least 1")
	}
	if c.SessionTimeout < 100*time.Millisecond {
		return fmt.Errorf("session timeout %v is too short (at least 100ms)", c.SessionTimeout)
	}
	if c.SessionMemory < 1<<20 {
		return fmt.Errorf("session memory %d bytes is too small (at least 1 MiB)", c.SessionMemory)
	}
	if c.StateDir == "" {
		return errors.New("state directory not set (--state-dir)")
	}
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("hostname: %w", err)
		}
		c.Hostname = h
	}
	return nil
}

// Unicast reports whether the daemon runs in unicast mode (--peer or
// --peers-file).
func (c *Config) Unicast() bool { return len(c.Peers) > 0 || c.PeersFile != "" }

// Multicast reports whether the daemon uses the multicast group: always
// but in unicast mode without Mixed.
func (c *Config) Multicast() bool { return !c.Unicast() || c.Mixed }

// validatePeers checks the unicast settings' syntax; whether the names
// resolve and the file reads is New's to say.
func (c *Config) validatePeers() error {
	if c.Mixed && !c.Unicast() {
		return errors.New("--mixed needs --peer or --peers-file: the peers on other segments")
	}
	for _, p := range c.Peers {
		if _, err := peers.ParseSpec(p, c.Port); err != nil {
			return fmt.Errorf("--peer: %w", err)
		}
	}
	return nil
}

// peerSpecs returns Peers parsed (validatePeers passed).
func (c *Config) peerSpecs() []peers.Spec {
	var out []peers.Spec
	for _, p := range c.Peers {
		if sp, err := peers.ParseSpec(p, c.Port); err == nil {
			out = append(out, sp)
		}
	}
	return out
}
