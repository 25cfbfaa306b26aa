package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

// Unicast mode (Config.Peers): datagrams meant for the group go to every
// peer, from one socket bound to the group's port, which also takes the
// peers' datagrams (their source port is that port: a heartbeat's source
// address is where the member takes datagrams, which is what peers learn
// from it). Without a group that socket is the only one; with a group
// (mixed mode) it is a third one, bound to the multicast interface's
// address so that it takes no multicast.

// gossipGap bounds how often a learned peer makes the list (and our
// heartbeat, Config.Learned) go out ahead of GossipEvery: news spreads a
// hop per gap at worst, and a flood of new addresses does not turn into
// a flood of lists.
const gossipGap = 250 * time.Millisecond

// sendErrLogEvery rate-limits the log line about a peer the kernel
// refuses to send to.
const sendErrLogEvery = time.Minute

// openUnicast opens the socket of unicast mode without a group: bound
// to Port on the Interface's address (an address, or the first of the
// named interface's of the peers' family), or on every address.
func (c *Conn) openUnicast() error {
	bind, err := bindAddr(c.fam, c.cfg.Interface)
	if err != nil {
		return err
	}
	if bind.Is6() && bind.Zone() != "" {
		// A link-local address: the interface it names routes link-local
		// peers without a zone of their own (unicastTo).
		if ifi, err := net.InterfaceByName(bind.Zone()); err == nil {
			c.ifName, c.ifZone = ifi.Name, fmt.Sprint(ifi.Index)
		}
	}
	u, err := listenUnicast(c.fam, netip.AddrPortFrom(bind, uint16(c.cfg.Port)))
	if err != nil {
		return err
	}
	c.udp, c.pc = u, c.fam.wrap(u)
	c.tx, c.txUDP = c.pc, u
	c.uni, c.uniPC = u, c.pc
	if err := c.setBuffers(u); err != nil {
		u.Close()
		return err
	}
	if !bind.IsUnspecified() {
		c.local = bind
	}
	return nil
}

// openPeerSocket opens mixed mode's unicast socket, on the address our
// multicast goes out from: bound to it, and not to every address, it
// takes none of the group's datagrams.
func (c *Conn) openPeerSocket() error {
	if !c.local.IsValid() {
		return errors.New("transport: no unicast address for the peers on the multicast interface (name it with -i)")
	}
	u, err := listenUnicast(c.fam, netip.AddrPortFrom(c.local, uint16(c.cfg.Port)))
	if err != nil {
		return err
	}
	c.uni, c.uniPC = u, c.fam.wrap(u)
	if err := c.setBuffers(u); err != nil {
		u.Close()
		return err
	}
	return nil
}

// listenUnicast binds a UDP socket to at. Without SO_REUSEADDR: two
// daemons taking one address and port would each get part of the
// peers' datagrams.
func listenUnicast(fam family, at netip.AddrPort) (*net.UDPConn, error) {
	u, err := net.ListenUDP(fam.network, net.UDPAddrFromAddrPort(at))
	if err != nil {
		return nil, fmt.Errorf("transport: bind %v for the peers: %w", at, err)
	}
	return u, nil
}

// bindAddr is the address unicast mode binds: the unspecified one for
// "", an address itself, or an interface's first address of the family
// (a global one before a link-local one, which carries its zone).
func bindAddr(fam family, iface string) (netip.Addr, error) {
	unspec := netip.IPv4Unspecified()
	if fam.v6 {
		unspec = netip.IPv6Unspecified()
	}
	if iface == "" {
		return unspec, nil
	}
	if a, err := netip.ParseAddr(iface); err == nil {
		a = a.Unmap()
		if a.Is6() != fam.v6 {
			return a, fmt.Errorf("transport: -i %s is not of the peers' address family", iface)
		}
		return a, nil
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return unspec, fmt.Errorf("transport: interface %q: %w", iface, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return unspec, fmt.Errorf("transport: addresses of %s: %w", iface, err)
	}
	var linkLocal netip.Addr
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil || p.Addr().Is6() != fam.v6 {
			continue
		}
		if p.Addr().IsLinkLocalUnicast() {
			if !linkLocal.IsValid() {
				linkLocal = p.Addr().WithZone(ifi.Name)
			}
			continue
		}
		return p.Addr(), nil
	}
	if linkLocal.IsValid() {
		return linkLocal, nil
	}
	return unspec, fmt.Errorf("transport: interface %s has no address of the peers' family", iface)
}

// sourceFor asks the kernel which source address datagrams to peer
// carry (a UDP "connect" sends nothing); invalid if there is no route.
func sourceFor(fam family, peer netip.AddrPort) netip.Addr {
	var d net.Dialer
	conn, err := d.DialContext(context.Background(), fam.network, peer.String())
	if err != nil {
		return netip.Addr{}
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
}

// peerAddrs returns the peers' addresses as the sockets take them, from
// a cache rebuilt when the table's targets change. It holds sendMu.
func (c *Conn) peerAddrs() []*net.UDPAddr {
	t := c.cfg.Peers.Targets()
	if t.Gen == c.uniGen && c.uniCache != nil {
		return c.uniCache
	}
	c.uniGen, c.uniCache = t.Gen, make([]*net.UDPAddr, 0, len(t.Addrs))
	for _, to := range t.Addrs {
		a, err := c.unicastTo(to)
		if err != nil {
			continue // the table holds only the family's unicast addresses
		}
		dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, to.Port()))
		if dst.Zone != "" && dst.Zone == c.ifName {
			dst.Zone = c.ifZone
		}
		c.uniCache = append(c.uniCache, dst)
	}
	return c.uniCache
}

// sendPeers writes one framed datagram b to every peer, in as few
// sendmmsg calls as the kernel allows, and returns the bytes of one copy
// (as Link's sends do; the metrics count every copy), or 0 if none went.
// A peer the kernel refuses (no route, a reject) is counted and skipped:
// the others still get theirs. It holds sendMu.
func (c *Conn) sendPeers(b []byte) (int, error) {
	dsts := c.peerAddrs()
	for len(c.uniMsgs) < len(dsts) {
		c.uniMsgs = append(c.uniMsgs, ipv4.Message{Buffers: make([][]byte, 1)})
	}
	ms := c.uniMsgs[:len(dsts)]
	for i, d := range dsts {
		ms[i].Buffers[0], ms[i].Addr, ms[i].OOB = b, d, nil
	}
	sent, failed := 0, 0
	var firstErr error
	for len(ms) > 0 {
		n, err := c.uniPC.WriteBatch(ms, 0)
		if err != nil {
			// The first of ms failed; the rest may not.
			failed++
			firstErr = cmpErr(firstErr, err)
			c.peerSendFailed(ms[0].Addr, err)
			ms = ms[1:]
			continue
		}
		sent += n
		ms = ms[n:]
	}
	c.cfg.Metrics.DatagramsSent.Add(float64(sent))
	c.cfg.Metrics.BytesSent.Add(float64(sent * len(b)))
	if failed > 0 && sent == 0 {
		return 0, fmt.Errorf("transport: send to the peers: %w", firstErr)
	}
	return min(sent, 1) * len(b), nil
}

// sendFramesPeers writes framed datagrams to every peer, grouped for
// segmentation offload per peer as sendFrames does for the group, and
// returns the most bytes one peer got. It holds sendMu.
func (c *Conn) sendFramesPeers(frames [][]byte) (int, error) {
	dsts := c.peerAddrs()
	most, failed := 0, 0
	var firstErr error
	for _, d := range dsts {
		n, err := c.sendFrames(c.uniPC, d, frames, c.batchMsgs, c.batchOOB)
		most = max(most, n)
		if err != nil {
			failed++
			firstErr = cmpErr(firstErr, err)
			c.peerSendFailed(d, err)
		}
	}
	if failed > 0 && failed == len(dsts) {
		return most, fmt.Errorf("transport: send to the peers: %w", firstErr)
	}
	return most, nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// peerSendFailed counts a copy the kernel refused for one peer and says
// so now and then. It holds sendMu.
func (c *Conn) peerSendFailed(to net.Addr, err error) {
	c.cfg.Metrics.PeerSendErrors.Inc()
	if now := time.Now(); now.Sub(c.peerErrLogged) >= sendErrLogEvery {
		c.peerErrLogged = now
		level := c.cfg.Logger.Warn
		if errors.Is(err, syscall.ECONNREFUSED) {
			level = c.cfg.Logger.Debug // a peer that just stopped
		}
		level("a peer's copy not sent; the other peers got theirs", "peer", to, "err", err)
	}
}

// gossip sends our list of peers to every peer every GossipEvery, and
// soon after the table learned an address, until stop is closed.
func (c *Conn) gossip(stop <-chan struct{}) {
	every := time.NewTicker(c.cfg.GossipEvery)
	defer every.Stop()
	soon := time.NewTimer(time.Hour)
	soon.Stop()
	defer soon.Stop()
	var last time.Time
	pending := false
	for {
		kicked := true
		select {
		case <-stop:
			return
		case <-every.C:
			kicked = false
		case <-c.cfg.Peers.Kicked():
			if wait := gossipGap - time.Since(last); wait > 0 {
				if !pending {
					pending = true
					soon.Reset(wait)
				}
				continue
			}
		case <-soon.C:
			pending = false
		}
		now := time.Now()
		if c.sendPeerList(now) == 0 {
			continue // nothing to tell: the gap is not used up
		}
		last = now
		if kicked && c.cfg.Learned != nil {
			c.cfg.Learned()
		}
	}
}

// sendPeerList sends the table's live peers, in as many datagrams as
// they need, to every peer, and returns how many it listed.
func (c *Conn) sendPeerList(now time.Time) int {
	live := c.cfg.Peers.Live(now)
	n := len(live)
	per := min(wire.MaxPeers, (c.MaxPayload()-1)/wire.PeerLen)
	for len(live) > 0 {
		k := min(per, len(live))
		if _, err := c.sendOnlyPeers(&wire.Peers{Peers: live[:k]}); err != nil {
			c.cfg.Logger.Debug("peer list not sent", "err", err)
		}
		live = live[k:]
	}
	return n
}

// sendOnlyPeers frames m and sends it to every peer, not to the group.
func (c *Conn) sendOnlyPeers(m wire.Message) (int, error) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	b := c.frame(c.sendB[:0], m.Type(), m.AppendPayload)
	c.sendB = b[:0]
	return c.sendPeers(b)
}

// notePeer tells the peer table what an accepted datagram says about its
// sender, and reports whether the datagram ends here: a peer list is the
// table's alone (it is never queued, nor anything but unicast mode's).
// It runs on the read loop: it reads a heartbeat's interval from its
// bytes, and a list costs at most wire.MaxPeers entries.
func (c *Conn) notePeer(h *wire.Header, payload []byte, from netip.AddrPort, src source, now time.Time) bool {
	switch {
	case h.Type == wire.TypeHeartbeat && src == fromPeers:
		var interval time.Duration
		if len(payload) >= 5 {
			interval = time.Duration(binary.BigEndian.Uint32(payload[1:])) * time.Millisecond
		}
		c.cfg.Peers.Heard(h.Node, from, interval, now)
	case h.Type == wire.TypeHeartbeat && src == fromGroup:
		c.cfg.Peers.HeardOnGroup(h.Node, now)
	case h.Type == wire.TypePeers:
		if src != fromPeers || c.cfg.Peers == nil {
			return true
		}
		m, err := wire.ParsePayload(h.Type, payload)
		if err != nil {
			c.cfg.Metrics.Drop(metrics.DropMalformed)
			return true
		}
		list := m.(*wire.Peers).Peers
		c.cfg.Peers.Heard(h.Node, from, 0, now)
		kept := list[:0]
		for _, p := range list {
			if !c.isOwn(p.Node) {
				kept = append(kept, p)
			}
		}
		c.cfg.Peers.Gossip(from, kept, now)
		return true
	}
	return false
}
