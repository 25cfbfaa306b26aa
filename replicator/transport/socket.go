package transport

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/makuo/makuo/replicator/wire"
)

// open opens the sockets and joins the group, or opens unicast mode's
// socket only.
func (c *Conn) open() error {
	if !c.mcast {
		return c.openUnicast()
	}
	if err := c.openGroup(); err != nil {
		return err
	}
	var err error
	switch {
	case c.cfg.Peers != nil:
		err = c.openPeerSocket()
	case c.rel != nil:
		err = c.openRelay()
	}
	if err != nil {
		c.udp.Close()
		if c.reply != nil {
			c.reply.Close()
		}
		return err
	}
	return nil
}

// openGroup opens the group socket and the reply socket and joins the
// group.
func (c *Conn) openGroup() error {
	cfg := c.cfg
	ifi, err := findInterface(cfg.Interface)
	if err != nil {
		return err
	}
	fam := c.fam
	// The group goes without a zone: sends name the interface with
	// IP(V6)_MULTICAST_IF, and the bind takes its index.
	c.dst = &net.UDPAddr{IP: cfg.Group.AsSlice(), Port: cfg.Port}
	zone := 0
	if ifi != nil {
		c.ifName, c.ifZone = ifi.Name, strconv.Itoa(ifi.Index)
		if needsZone(cfg.Group) {
			zone = ifi.Index
		}
	}
	// Bind the group address, not the wildcard: the socket then receives
	// only this group's traffic, not every group some other socket
	// joined, nor unicast to the port.
	c.udp, err = listenGroup(netip.AddrPortFrom(cfg.Group, uint16(cfg.Port)), zone)
	if err != nil {
		if zone != 0 {
			return fmt.Errorf("transport: bind %v on %s: %w", c.dst, ifi.Name, err)
		}
		return fmt.Errorf("transport: bind %v: %w", c.dst, err)
	}
	c.pc = fam.wrap(c.udp)
	c.tx, c.txUDP = c.pc, c.udp
	if !cfg.MulticastReplies {
		// Any address, a port of the kernel's choice: the source of our
		// datagrams, to which peers unicast their answers. A link-local
		// answer routes by the zone its source address carries (SendTo),
		// so the wildcard serves link-local groups too.
		rconn, err := net.ListenUDP(fam.network, &net.UDPAddr{})
		if err != nil {
			c.udp.Close()
			return fmt.Errorf("transport: open the reply socket: %w", err)
		}
		c.reply = rconn
		c.replyPC = fam.wrap(rconn)
		c.tx, c.txUDP = c.replyPC, rconn
	}
	if err := c.setup(fam, ifi); err != nil {
		c.udp.Close()
		if c.reply != nil {
			c.reply.Close()
		}
		return err
	}
	return nil
}

// zoned gives a link-local address the zone of the Conn's interface.
// The kernel reports an address's interface by index; x/net and net name
// it from caches that are process-wide (wrong in a process whose threads
// are in several network namespaces, as in tests) and refreshed at most
// once a minute, so a renamed interface keeps its old name there. A Conn
// that has an interface knows better: a link-local peer reaches it on
// that interface only (its group socket is bound to it for a link-local
// group, and a link-local address is reachable on its own link only).
func (c *Conn) zoned(a netip.Addr) netip.Addr {
	if c.ifName != "" && a.Is6() && a.IsLinkLocalUnicast() && a.Zone() != c.ifName {
		return a.WithZone(c.ifName)
	}
	return a
}

func (c *Conn) initPools() {
	for i, size := range packetSizes {
		pool := &c.pools[i]
		pool.New = func() any { return &Packet{buf: make([]byte, size)} }
	}
}

func (c *Conn) setup(fam family, ifi *net.Interface) error {
	if err := c.pc.JoinGroup(ifi, c.dst); err != nil {
		if ifi == nil {
			return fmt.Errorf("transport: join %v: %w (no route for multicast? name the interface with -i)", c.cfg.Group, err)
		}
		return fmt.Errorf("transport: join %v on %s: %w", c.cfg.Group, ifi.Name, err)
	}
	if ifi != nil {
		if err := c.tx.SetMulticastInterface(ifi); err != nil {
			return fmt.Errorf("transport: set multicast interface %s: %w", ifi.Name, err)
		}
	}
	if err := c.tx.SetMulticastHops(c.cfg.TTL); err != nil {
		return fmt.Errorf("transport: set TTL: %w", err)
	}
	// Loopback on: several members may share a host (tests, several base
	// directories); our own datagrams are filtered in the kernel instead.
	if err := c.tx.SetMulticastLoopback(true); err != nil {
		return fmt.Errorf("transport: set loopback: %w", err)
	}
	socks := []*net.UDPConn{c.udp}
	if c.reply != nil {
		socks = append(socks, c.reply)
	}
	// Both sockets get both buffers: the reply socket sends the data and
	// takes every member's answers at once.
	if err := c.setBuffers(socks...); err != nil {
		return err
	}
	c.filterOwn(c.Node())
	c.local = c.zoned(localAddr(fam, ifi, c.dst))
	return nil
}

// setBuffers sizes the sockets' buffers, checks the first one's and
// turns offload on unless Config.NoOffload.
func (c *Conn) setBuffers(socks ...*net.UDPConn) error {
	for _, u := range socks {
		if err := setBuffer(u, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, c.cfg.RecvBuffer); err != nil {
			return fmt.Errorf("transport: SO_RCVBUF: %w", err)
		}
		if err := setBuffer(u, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, c.cfg.SendBuffer); err != nil {
			return fmt.Errorf("transport: SO_SNDBUF: %w", err)
		}
	}
	c.checkBuffers(socks[0])
	if !c.cfg.NoOffload {
		c.gso.Store(true)
		// GRO on the sockets that take data: the group's, and unicast
		// mode's (the reply socket takes answers only).
		c.enableGRO(socks[0])
	}
	enableTimestamps(socks[0], c.cfg.Logger)
	return nil
}

// filterOwn attaches a socket filter that drops our own datagrams, which
// multicast loopback hands back to us, in the kernel: otherwise every
// datagram we send costs a copy into our receive buffer and a read, and a
// fast send fills that buffer until the kernel drops the replies we are
// waiting for. accept still checks, for kernels that refuse the filter.
//
// The filter matches our node id and our incarnation, not the id alone:
// another daemon using our node id (a cloned state directory) runs with
// another incarnation, and its datagrams must reach accept to be noticed.
// Run attaches it again, for the new id, when the node id changes.
func (c *Conn) filterOwn(node wire.NodeID) {
	// A UDP socket filter sees the datagram from its UDP header on, over
	// IPv4 and IPv6 alike; the incarnation follows the node id in the
	// header.
	const nodeAt = 8 + wire.NodeOffset
	const incAt = nodeAt + 8
	id, inc := uint64(node), c.cfg.Incarnation
	prog, err := bpf.Assemble([]bpf.Instruction{
		// Too short to carry a node id and an incarnation: let it through
		// to be counted as malformed.
		bpf.LoadExtension{Num: bpf.ExtLen},
		bpf.JumpIf{Cond: bpf.JumpLessThan, Val: incAt + 8, SkipTrue: 9},
		bpf.LoadAbsolute{Off: nodeAt, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(id >> 32), SkipTrue: 7},
		bpf.LoadAbsolute{Off: nodeAt + 4, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(id), SkipTrue: 5},
		bpf.LoadAbsolute{Off: incAt, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(inc >> 32), SkipTrue: 3},
		bpf.LoadAbsolute{Off: incAt + 4, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(inc), SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.RetConstant{Val: 1 << 17}, // keep the whole (maybe coalesced) datagram
	})
	if err == nil {
		err = c.pc.SetBPF(prog)
	}
	if err != nil {
		c.cfg.Logger.Debug("socket filter for own datagrams unavailable", "err", err)
	}
}

// enableGRO asks the kernel to hand us runs of equal-sized datagrams of
// one sender as a single buffer (UDP_GRO, Linux 5.0+): one copy and one
// wake-up for up to 64 KiB instead of one per datagram. Where the kernel
// refuses, datagrams simply keep arriving one by one.
func (c *Conn) enableGRO(u *net.UDPConn) {
	rc, err := u.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		if err := unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1); err != nil {
			c.cfg.Logger.Debug("UDP receive coalescing unavailable", "err", err)
		}
	})
}

// enableTimestamps asks the kernel to stamp every datagram with the time
// it received it (SO_TIMESTAMPNS): receive sessions time the delivery of
// data by it, which a read loop that got the CPU late would stretch.
// Where the kernel refuses, the read loop's own clock stands in.
func enableTimestamps(u *net.UDPConn, log *slog.Logger) {
	rc, err := u.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			log.Debug("receive timestamps unavailable", "err", err)
		}
	})
}

// setBuffer sets a socket buffer size, past net.core.[rw]mem_max when the
// process may (CAP_NET_ADMIN: the FORCE variant), else up to that cap.
func setBuffer(u *net.UDPConn, force, plain, size int) error {
	rc, err := u.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, force, size) == nil {
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, plain, size)
	})
	if err != nil {
		return err
	}
	return serr
}

// checkBuffers logs when the kernel capped a socket buffer below what was
// asked (net.core.rmem_max / wmem_max), since that silently costs loss.
func (c *Conn) checkBuffers(u *net.UDPConn) {
	rc, err := u.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		// Linux reports twice the usable size it granted.
		if got, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF); err == nil && got/2 < c.cfg.RecvBuffer {
			c.cfg.Logger.Warn("socket receive buffer capped by the kernel; raise net.core.rmem_max",
				"asked", c.cfg.RecvBuffer, "got", got/2)
		}
		if got, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF); err == nil && got/2 < c.cfg.SendBuffer {
			c.cfg.Logger.Warn("socket send buffer capped by the kernel; raise net.core.wmem_max",
				"asked", c.cfg.SendBuffer, "got", got/2)
		}
	})
}

// findInterface finds the interface named name, or having the address
// name (a link-local IPv6 address may carry its zone, which must then
// be the interface's name); nil for "".
func findInterface(name string) (*net.Interface, error) {
	if name == "" {
		return nil, nil
	}
	if addr, err := netip.ParseAddr(name); err == nil {
		ifs, err := net.Interfaces()
		if err != nil {
			return nil, fmt.Errorf("transport: list interfaces: %w", err)
		}
		zone := addr.Zone()
		addr = addr.WithZone("").Unmap()
		for i := range ifs {
			if zone != "" && ifs[i].Name != zone {
				continue
			}
			addrs, err := ifs[i].Addrs()
			if err != nil {
				continue
			}
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap() == addr {
					return &ifs[i], nil
				}
			}
		}
		return nil, fmt.Errorf("transport: no interface has address %v", name)
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("transport: interface %q: %w", name, err)
	}
	return ifi, nil
}
