package replicator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/replicator/transport/peers"
	"github.com/makuo/makuo/replicator/wire"
)

// Relays (--segment, --relay-peer, --relay-peers): see
// transport.RelayConfig and the package doc of transport.

// Relay reports whether this member is a relay candidate of its segment.
func (c *Config) Relay() bool { return len(c.RelayPeers) > 0 || c.RelayPeersFile != "" }

// validateRelay checks the relay settings' syntax; whether the names
// resolve and the file reads is New's to say.
func (c *Config) validateRelay() error {
	if c.Segment != "" {
		if err := wire.CheckSegment(c.Segment); err != nil {
			return fmt.Errorf("--segment: %w", err)
		}
	}
	if !c.Relay() {
		return nil
	}
	switch {
	case c.Segment == "":
		return errors.New("--relay-peer and --relay-peers need --segment NAME: relays elect one of each segment")
	case c.Unicast():
		return errors.New("--relay-peer and --relay-peers relay a segment's multicast group; they do not go with --peer or --peers-file")
	}
	for _, p := range c.RelayPeers {
		if _, err := peers.ParseSpec(p, c.Port); err != nil {
			return fmt.Errorf("--relay-peer: %w", err)
		}
	}
	return nil
}

// relayConfig resolves the relay peers (names at start, and again when
// --relay-peers' file changes) to the group's family.
func (c *Config) relayConfig() (*transport.RelayConfig, error) {
	rc := &transport.RelayConfig{Segment: c.Segment, Every: c.Heartbeat, Missed: c.MissedHeartbeats}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	if rc.Peers, err = c.relayPeers(ctx); err != nil {
		return nil, err
	}
	if c.RelayPeersFile != "" {
		cc := *c
		rc.PeersFile = c.RelayPeersFile
		rc.Reload = func(ctx context.Context) ([]netip.AddrPort, error) {
			ctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			return cc.relayPeers(ctx)
		}
	}
	return rc, nil
}

// relayPeers reads --relay-peer and --relay-peers (a bad line fails with
// its number) and resolves them to addresses of the group's family.
func (c *Config) relayPeers(ctx context.Context) ([]netip.AddrPort, error) {
	var specs []peers.Spec
	for _, p := range c.RelayPeers {
		sp, err := peers.ParseSpec(p, c.Port)
		if err != nil {
			return nil, fmt.Errorf("--relay-peer: %w", err)
		}
		specs = append(specs, sp)
	}
	if c.RelayPeersFile != "" {
		f, err := os.Open(c.RelayPeersFile)
		if err != nil {
			return nil, fmt.Errorf("--relay-peers: %w", err)
		}
		list, err := peers.ParseList(f, c.Port)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("--relay-peers %s: %w", c.RelayPeersFile, err)
		}
		specs = append(specs, list...)
	}
	var out []netip.AddrPort
	seen := map[netip.AddrPort]bool{}
	for _, sp := range specs {
		addrs, err := resolveRelay(ctx, sp.Host)
		if err != nil {
			return nil, fmt.Errorf("relay peer %s: %w", sp, err)
		}
		for _, a := range addrs {
			ap := netip.AddrPortFrom(a.Unmap(), sp.Port)
			if ap.Addr().Is6() == c.Group.Is6() && !seen[ap] {
				seen[ap] = true
				out = append(out, ap)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no relay peer of the group's address family (group %v)", c.Group)
	}
	return out, nil
}

func resolveRelay(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// relayRole is the Status's Relay: "active", "standby", or "" for a
// member that is no relay candidate.
func (n *Node) relayRole() string {
	rs, ok := n.conn.(interface {
		RelayStatus() (transport.RelayStatus, bool)
	})
	if !ok {
		return ""
	}
	switch st, ok := rs.RelayStatus(); {
	case !ok:
		return ""
	case st.Active:
		return "active"
	}
	return "standby"
}
