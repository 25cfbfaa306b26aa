package transport

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

// Config configures a Conn. Zero values of optional fields take the
// defaults documented on each field.
type Config struct {
	// Group is the IPv4 multicast group (the original's 224.0.0.108).
	Group netip.Addr
	// Port is the UDP port of the group.
	Port int
	// Interface selects the interface by name ("eth0") or by one of its
	// IPv4 addresses. Empty lets the kernel pick from the routing table.
	Interface string
	// TTL of sent datagrams; default 1 keeps traffic on the local link,
	// which is what a 224.0.0.x group is for anyway.
	TTL int
	// NoLoopback turns off delivery of our datagrams to other sockets on
	// this host. Loopback is on by default so that several members can
	// share a host.
	NoLoopback bool
	// RecvBuffer and SendBuffer set SO_RCVBUF/SO_SNDBUF in bytes; 0 keeps
	// the defaults of 4 MiB and 1 MiB: bursts of data datagrams must not
	// overflow a receiver that is briefly busy.
	RecvBuffer, SendBuffer int
	// MaxDatagram is the largest datagram this node sends (UDP payload);
	// default 1472, which fits a 1500-byte MTU. Receivers accept any size
	// up to wire.MaxDatagram.
	MaxDatagram int
	// Key is the 32-byte datagram key (see ReadKey); nil sends and accepts
	// only unsealed datagrams.
	Key []byte
	// Node and Incarnation stamp every datagram we send.
	Node        wire.NodeID
	Incarnation uint64
	// QueueLen bounds the hand-off queue between the read loop and the
	// consumer; default 8192 datagrams.
	QueueLen int
	Logger   *slog.Logger
	Metrics  *metrics.Metrics
}

// Packet is one accepted datagram. Payload is opened (decrypted) and valid
// until Release.
type Packet struct {
	Header  wire.Header
	Payload []byte
	From    netip.AddrPort
	buf     *[]byte
	pool    *sync.Pool
}

// Release returns the packet's buffer for reuse. The packet must not be
// used afterwards.
func (p *Packet) Release() {
	if p.pool != nil {
		p.pool.Put(p.buf)
		p.pool, p.buf, p.Payload = nil, nil, nil
	}
}

// Conn is a joined multicast socket.
type Conn struct {
	cfg    Config
	udp    *net.UDPConn
	pc     *ipv4.PacketConn
	dst    *net.UDPAddr
	aead   cipher.AEAD
	seq    atomic.Uint64
	out    chan *Packet
	small  sync.Pool // buffers for datagrams up to smallBuf bytes
	large  sync.Pool // buffers for anything larger
	sendMu sync.Mutex
	sendB  []byte
	// batchBufs and batchMsgs are reused by SendBatch under sendMu.
	batchBufs [][]byte
	batchMsgs []ipv4.Message
	closed    atomic.Bool
	local     netip.Addr
}

// smallBuf covers a datagram on a 1500-byte MTU with room to spare.
const smallBuf = 2048

// Listen opens the socket, joins the group and returns a Conn ready for
// Run and Send.
func Listen(cfg Config) (*Conn, error) {
	if !cfg.Group.Is4() || !cfg.Group.IsMulticast() {
		return nil, fmt.Errorf("transport: %v is not an IPv4 multicast address", cfg.Group)
	}
	if cfg.Port <= 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("transport: port %d out of range", cfg.Port)
	}
	if cfg.TTL == 0 {
		cfg.TTL = 1
	}
	if cfg.RecvBuffer == 0 {
		cfg.RecvBuffer = 4 << 20
	}
	if cfg.SendBuffer == 0 {
		cfg.SendBuffer = 1 << 20
	}
	if cfg.MaxDatagram == 0 {
		cfg.MaxDatagram = 1472
	}
	if cfg.MaxDatagram < 512 || cfg.MaxDatagram > wire.MaxDatagram {
		return nil, fmt.Errorf("transport: datagram size %d outside 512..%d", cfg.MaxDatagram, wire.MaxDatagram)
	}
	if cfg.QueueLen == 0 {
		cfg.QueueLen = 8192
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		return nil, errors.New("transport: Config.Metrics is required")
	}
	c := &Conn{cfg: cfg, out: make(chan *Packet, cfg.QueueLen)}
	c.small.New = func() any { b := make([]byte, smallBuf); return &b }
	c.large.New = func() any { b := make([]byte, wire.MaxDatagram); return &b }
	if cfg.Key != nil {
		aead, err := chacha20poly1305.NewX(cfg.Key)
		if err != nil {
			return nil, fmt.Errorf("transport: key: %w", err)
		}
		c.aead = aead
	}
	ifi, err := findInterface(cfg.Interface)
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	// Bind the group address, not 0.0.0.0: the socket then receives only
	// this group's traffic, not every group some other socket joined.
	laddr := netip.AddrPortFrom(cfg.Group, uint16(cfg.Port)).String()
	pconn, err := lc.ListenPacket(context.Background(), "udp4", laddr)
	if err != nil {
		return nil, fmt.Errorf("transport: bind %s: %w", laddr, err)
	}
	c.udp = pconn.(*net.UDPConn)
	c.pc = ipv4.NewPacketConn(c.udp)
	c.dst = &net.UDPAddr{IP: cfg.Group.AsSlice(), Port: cfg.Port}
	if err := c.setup(ifi); err != nil {
		c.udp.Close()
		return nil, err
	}
	return c, nil
}

func (c *Conn) setup(ifi *net.Interface) error {
	if err := c.pc.JoinGroup(ifi, c.dst); err != nil {
		if ifi == nil {
			return fmt.Errorf("transport: join %v: %w (no route for multicast? name the interface with -i)", c.cfg.Group, err)
		}
		return fmt.Errorf("transport: join %v on %s: %w", c.cfg.Group, ifi.Name, err)
	}
	if ifi != nil {
		if err := c.pc.SetMulticastInterface(ifi); err != nil {
			return fmt.Errorf("transport: set multicast interface %s: %w", ifi.Name, err)
		}
	}
	if err := c.pc.SetMulticastTTL(c.cfg.TTL); err != nil {
		return fmt.Errorf("transport: set TTL: %w", err)
	}
	if err := c.pc.SetMulticastLoopback(!c.cfg.NoLoopback); err != nil {
		return fmt.Errorf("transport: set loopback: %w", err)
	}
	if err := c.setBuffer(unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, c.cfg.RecvBuffer); err != nil {
		return fmt.Errorf("transport: SO_RCVBUF: %w", err)
	}
	if err := c.setBuffer(unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, c.cfg.SendBuffer); err != nil {
		return fmt.Errorf("transport: SO_SNDBUF: %w", err)
	}
	c.checkBuffers()
	c.local = localAddr(ifi, c.dst)
	return nil
}

// localAddr finds the address peers see as our source: the interface's
// first IPv4 address, or the routing table's choice for the group.
func localAddr(ifi *net.Interface, group *net.UDPAddr) netip.Addr {
	if ifi != nil {
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
				return p.Addr()
			}
		}
		return netip.Addr{}
	}
	// A UDP "connect" sends nothing; it only asks the kernel for a route.
	c, err := net.DialUDP("udp4", nil, group)
	if err != nil {
		return netip.Addr{}
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
}

// LocalAddr returns this member's source address on the group's interface
// (invalid if unknown).
func (c *Conn) LocalAddr() netip.Addr { return c.local }

// setBuffer sets a socket buffer size, past net.core.[rw]mem_max when the
// process may (CAP_NET_ADMIN: the FORCE variant), else up to that cap.
func (c *Conn) setBuffer(force, plain, size int) error {
	rc, err := c.udp.SyscallConn()
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
func (c *Conn) checkBuffers() {
	rc, err := c.udp.SyscallConn()
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

func findInterface(name string) (*net.Interface, error) {
	if name == "" {
		return nil, nil
	}
	if addr, err := netip.ParseAddr(name); err == nil {
		ifs, err := net.Interfaces()
		if err != nil {
			return nil, fmt.Errorf("transport: list interfaces: %w", err)
		}
		for i := range ifs {
			addrs, err := ifs[i].Addrs()
			if err != nil {
				continue
			}
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == addr {
					return &ifs[i], nil
				}
			}
		}
		return nil, fmt.Errorf("transport: no interface has address %v", addr)
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("transport: interface %q: %w", name, err)
	}
	return ifi, nil
}

// MaxPayload is the largest payload Send accepts with this configuration.
func (c *Conn) MaxPayload() int {
	n := c.cfg.MaxDatagram - wire.HeaderLen
	if c.aead != nil {
		n -= c.aead.Overhead()
	}
	return n
}

// Packets returns the queue of accepted datagrams. It is closed when Run
// returns.
func (c *Conn) Packets() <-chan *Packet { return c.out }

// Send frames, seals and multicasts one message. A message larger than
// MaxPayload still goes out, as an IP-fragmented datagram of up to
// wire.MaxDatagram bytes: that is for the rare oversized control message
// (an offer of one entry with a 4 KiB path), never for data.
func (c *Conn) Send(m wire.Message) error {
	_, err := c.SendN(m)
	return err
}

// SendN is Send that also returns the bytes written.
func (c *Conn) SendN(m wire.Message) (int, error) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	b := c.frame(c.sendB[:0], m.Type(), func(b []byte) []byte { return m.AppendPayload(b) })
	c.sendB = b[:0]
	if len(b) > wire.MaxDatagram {
		return 0, fmt.Errorf("transport: %v datagram of %d bytes exceeds %d", m.Type(), len(b), wire.MaxDatagram)
	}
	n, err := c.pc.WriteTo(b, nil, c.dst)
	if err != nil {
		return 0, fmt.Errorf("transport: send %v: %w", m.Type(), err)
	}
	c.cfg.Metrics.DatagramsSent.Inc()
	c.cfg.Metrics.BytesSent.Add(float64(n))
	return n, nil
}

// SendBatch frames, seals and multicasts msgs with as few system calls as
// the kernel allows (sendmmsg). It returns the bytes written.
func (c *Conn) SendBatch(msgs []wire.Message) (int, error) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	for len(c.batchBufs) < len(msgs) {
		c.batchBufs = append(c.batchBufs, make([]byte, 0, c.cfg.MaxDatagram))
		c.batchMsgs = append(c.batchMsgs, ipv4.Message{Buffers: make([][]byte, 1), Addr: c.dst})
	}
	for i, m := range msgs {
		b := c.frame(c.batchBufs[i][:0], m.Type(), m.AppendPayload)
		if len(b) > c.cfg.MaxDatagram {
			return 0, fmt.Errorf("transport: %v datagram of %d bytes exceeds %d", m.Type(), len(b), c.cfg.MaxDatagram)
		}
		c.batchBufs[i] = b[:0]
		c.batchMsgs[i].Buffers[0] = b
	}
	total := 0
	ms := c.batchMsgs[:len(msgs)]
	for len(ms) > 0 {
		n, err := c.pc.WriteBatch(ms, 0)
		if err != nil {
			return total, fmt.Errorf("transport: send batch: %w", err)
		}
		for _, m := range ms[:n] {
			total += len(m.Buffers[0])
		}
		ms = ms[n:]
	}
	c.cfg.Metrics.DatagramsSent.Add(float64(len(msgs)))
	c.cfg.Metrics.BytesSent.Add(float64(total))
	return total, nil
}

// frame appends header and payload (produced by appendPayload) to b and
// seals the result when a key is set.
func (c *Conn) frame(b []byte, t wire.Type, appendPayload func([]byte) []byte) []byte {
	h := wire.Header{Type: t, Node: c.cfg.Node, Incarnation: c.cfg.Incarnation, Seq: c.seq.Add(1)}
	if c.aead != nil {
		h.Flags |= wire.FlagSealed
	}
	b = h.Append(b)
	b = appendPayload(b)
	if c.aead != nil {
		hdr := b[:wire.HeaderLen]
		b = c.aead.Seal(b[:wire.HeaderLen], hdr[8:wire.HeaderLen], b[wire.HeaderLen:], hdr)
	}
	return b
}

// Run reads datagrams until ctx ends, then closes the socket and the
// Packets channel. It returns nil on cancellation.
func (c *Conn) Run(ctx context.Context) error {
	defer close(c.out)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	const batch = 64
	msgs := make([]ipv4.Message, batch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, wire.MaxDatagram)}
	}
	replay := newReplayFilter()
	for {
		n, err := c.pc.ReadBatch(msgs, 0)
		if err != nil {
			if ctx.Err() != nil || c.closed.Load() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Transient errors (ENOBUFS, ICMP-induced errors) must not
			// kill the loop; back off briefly so a persistent one cannot
			// spin.
			c.cfg.Logger.Warn("multicast read failed", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		for i := range msgs[:n] {
			c.accept(&msgs[i], replay)
		}
	}
}

// accept checks one received datagram and queues it, or counts the drop.
func (c *Conn) accept(m *ipv4.Message, replay *replayFilter) {
	met := c.cfg.Metrics
	b := m.Buffers[0][:m.N]
	h, payload, err := wire.ParseHeader(b)
	if err == nil && h.Node == c.cfg.Node {
		return // our own datagram, looped back
	}
	met.DatagramsReceived.Inc()
	met.BytesReceived.Add(float64(m.N))
	if m.Flags&unix.MSG_TRUNC != 0 {
		met.Drop(metrics.DropOversize)
		return
	}
	if err != nil {
		if errors.Is(err, wire.ErrVersion) {
			met.Drop(metrics.DropVersion)
		} else {
			met.Drop(metrics.DropMalformed)
		}
		return
	}
	sealed := h.Flags&wire.FlagSealed != 0
	switch {
	case sealed != (c.aead != nil):
		met.Drop(metrics.DropAuth)
		return
	case sealed:
		if len(payload) < c.aead.Overhead() {
			met.Drop(metrics.DropAuth)
			return
		}
		payload, err = c.aead.Open(payload[:0], b[8:wire.HeaderLen], payload, b[:wire.HeaderLen])
		if err != nil {
			met.Drop(metrics.DropAuth)
			return
		}
	}
	if !replay.check(&h) {
		met.Drop(metrics.DropReplay)
		return
	}
	pool := &c.small
	if len(payload) > smallBuf {
		pool = &c.large
	}
	buf := pool.Get().(*[]byte)
	p := &Packet{Header: h, Payload: append((*buf)[:0], payload...), buf: buf, pool: pool}
	if ua, ok := m.Addr.(*net.UDPAddr); ok {
		p.From = ua.AddrPort()
	}
	select {
	case c.out <- p:
	default:
		p.Release()
		met.Drop(metrics.DropQueueFull)
	}
}

// Close closes the socket; Run then returns. It is safe to call more than
// once.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	return c.udp.Close()
}
