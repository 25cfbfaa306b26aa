package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// GroupError says why an address cannot be a Conn's group (CheckGroup).
type GroupError struct {
	Group netip.Addr
	// Reason completes "multicast group G …".
	Reason string
	// NeedsInterface is set when the group is usable once an interface
	// is named: a link-local IPv6 group, whose address means nothing
	// without one.
	NeedsInterface bool
}

func (e *GroupError) Error() string {
	return fmt.Sprintf("transport: multicast group %v %s", e.Group, e.Reason)
}

// CheckGroup reports whether group can be a Conn's group, on the
// interface iface ("" for the routing table's choice): an IPv4 multicast
// address (224.0.0.0/4), or an IPv6 one (ff00::/8) whose scope reaches
// other hosts. The scope is the low nibble of the second byte (RFC 4291):
// interface-local (ffx1::) never leaves the host and 0 and f are
// reserved, so those are refused; link-local (ffx2::) reaches the link of
// one interface, which must be named, since the same address exists on
// every link; admin-, site-, organization-local and global (ffx4::,
// ffx5::, ffx8::, ffxe::) reach as far as multicast routers forward them,
// like 239.0.0.0/8. Source-specific groups (ff3x::/32) are refused: a
// Conn joins any-source groups, since every member is a source. The
// error is a *GroupError.
func CheckGroup(group netip.Addr, iface string) error {
	bad := func(reason string) error { return &GroupError{Group: group, Reason: reason} }
	switch {
	case !group.IsValid():
		return bad("is not an IP address")
	case group.Is4In6():
		return bad(fmt.Sprintf("is an IPv4-mapped IPv6 address: give the IPv4 group itself (%v)", group.Unmap()))
	case !group.IsMulticast():
		return bad("is not a multicast address (224.0.0.0/4 or ff00::/8)")
	case group.Is4():
		return nil
	case group.Zone() != "":
		return bad("has a zone: name the interface on its own")
	}
	b := group.As16()
	switch flags, scope := b[1]>>4, b[1]&0x0f; {
	case scope == 0 || scope == 0xf:
		return bad(fmt.Sprintf("has a reserved scope (%x): use ff02:: (link-local), ff05:: (site-local) or ff08:: (organization-local)", scope))
	case scope == 1:
		return bad("is interface-local (ffx1::/16): its datagrams never leave this host")
	case flags&0x3 == 0x3 && b[2] == 0 && b[3] == 0:
		return bad("is source-specific (ff3x::/32): members join any-source groups, since every member sends")
	case scope == 2 && iface == "":
		return &GroupError{Group: group, Reason: "is link-local (ffx2::/16) and needs its interface", NeedsInterface: true}
	}
	return nil
}

// LinkLocalGroup reports whether routers never forward group, whatever
// the TTL: 224.0.0.0/24 (RFC 5771) or an IPv6 group of link-local scope
// (ffx2::/16).
func LinkLocalGroup(group netip.Addr) bool {
	if group.Is4() {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{224, 0, 0, 0}), 24).Contains(group)
	}
	return group.Is6() && group.IsMulticast() && group.As16()[1]&0x0f == 2
}

// packetConn is what a Conn uses of a socket: x/net's ipv4.PacketConn or
// ipv6.PacketConn, which differ in the hop limit's name only. Their
// batch messages are the same type (socket.Message), so one read and one
// send path serve both families.
type packetConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
	SetBPF(filter []bpf.RawInstruction) error
	JoinGroup(ifi *net.Interface, group net.Addr) error
	SetMulticastInterface(ifi *net.Interface) error
	SetMulticastLoopback(on bool) error
	// SetMulticastHops sets the TTL (IPv4) or hop limit (IPv6) of sent
	// multicast datagrams.
	SetMulticastHops(hops int) error
}

type conn4 struct{ *ipv4.PacketConn }

func (c conn4) SetMulticastHops(hops int) error { return c.SetMulticastTTL(hops) }

type conn6 struct{ *ipv6.PacketConn }

func (c conn6) SetMulticastHops(hops int) error { return c.SetMulticastHopLimit(hops) }

// family is what differs between IPv4 and IPv6 in setting sockets up.
type family struct {
	network string // "udp4" or "udp6"
	v6      bool
	// maxDatagram is the largest UDP payload that fits a 1500-byte MTU
	// unfragmented: the IP header is 20 bytes or 40, the UDP header 8.
	maxDatagram int
	wrap        func(*net.UDPConn) packetConn
	// setMulticastIf sets the outgoing multicast interface of a raw
	// socket, for localAddr's probe.
	setMulticastIf func(fd, index int) error
}

var (
	family4 = family{
		network: "udp4", maxDatagram: 1500 - 20 - 8,
		wrap: func(u *net.UDPConn) packetConn { return conn4{ipv4.NewPacketConn(u)} },
		setMulticastIf: func(fd, index int) error {
			return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(index)})
		},
	}
	family6 = family{
		network: "udp6", v6: true, maxDatagram: 1500 - 40 - 8,
		wrap: func(u *net.UDPConn) packetConn { return conn6{ipv6.NewPacketConn(u)} },
		setMulticastIf: func(fd, index int) error {
			return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, index)
		},
	}
)

func familyOf(group netip.Addr) family {
	if group.Is6() {
		return family6
	}
	return family4
}

// needsZone reports whether a packet to a is routed by its interface
// alone (RFC 4007): a link-local unicast address, or a multicast group
// of interface- or link-local scope.
func needsZone(a netip.Addr) bool {
	if !a.Is6() || a.Is4In6() {
		return false
	}
	if a.IsMulticast() {
		return a.As16()[1]&0x0f <= 2
	}
	return a.IsLinkLocalUnicast()
}

// listenGroup opens a UDP socket bound to the group's address and port,
// with SO_REUSEADDR so that several daemons on a host share the group.
// net.ListenUDP cannot do that: given a multicast address it binds the
// wildcard address instead, and the socket then also takes unicast
// datagrams to the port and every other group's on it that any socket
// of the host joined. zone is the interface index of a link-local
// group, which the kernel requires (it also ties the socket to that
// interface), or 0.
func listenGroup(group netip.AddrPort, zone int) (*net.UDPConn, error) {
	domain := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(group.Port()), Addr: group.Addr().As16(), ZoneId: uint32(zone)}
	if group.Addr().Is4() {
		domain = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: int(group.Port()), Addr: group.Addr().As4()}
	}
	fd, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_UDP)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	f := os.NewFile(uintptr(fd), "udp")
	defer f.Close() // net.FilePacketConn holds a duplicate
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return nil, os.NewSyscallError("setsockopt SO_REUSEADDR", err)
	}
	if domain == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return nil, os.NewSyscallError("setsockopt IPV6_V6ONLY", err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, os.NewSyscallError("bind", err)
	}
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, err
	}
	u, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		return nil, errors.New("not a UDP socket")
	}
	return u, nil
}

// localAddr asks the kernel which source address its datagrams to group
// out of ifi (nil: the routing table's choice) carry, which is the
// address peers see them from: a UDP "connect" sends nothing, it only
// picks a route and a source, by the same rules as a send. A link-local
// source carries its zone. It returns the invalid Addr if there is no
// route.
func localAddr(fam family, ifi *net.Interface, group *net.UDPAddr) netip.Addr {
	d := net.Dialer{}
	if ifi != nil {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) { serr = fam.setMulticastIf(int(fd), ifi.Index) }); err != nil {
				return err
			}
			return serr
		}
	}
	c, err := d.DialContext(context.Background(), fam.network, group.String())
	if err != nil {
		return netip.Addr{}
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
}
