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
	"golang.org/x/net/bpf"
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
	// the defaults of 16 MiB and 1 MiB: bursts of data datagrams must not
	// overflow a receiver that is briefly busy, and the kernel's buffer is
	// the cheapest place to hold them (no copy yet, and outside the Go
	// heap, which the garbage collector lets grow to twice what it holds).
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
	// consumer; default 2048 datagrams. The consumer only decodes and
	// dispatches: a deep queue here would double the buffering of the
	// one behind it, in packet buffers of 1.5 KiB and more each.
	QueueLen int
	// NoOffload turns off UDP segmentation offload (UDP_SEGMENT) on send
	// and receive coalescing (UDP_GRO). Both are on by default and fall
	// back by themselves where the kernel or device lacks them; the knob
	// is for troubleshooting and for labs that must see every datagram as
	// its own packet.
	NoOffload bool
	Logger    *slog.Logger
	Metrics   *metrics.Metrics
}

// Packet is one accepted datagram. Payload is opened (decrypted) and valid
// until Release.
type Packet struct {
	Header  wire.Header
	Payload []byte
	From    netip.AddrPort
	buf     []byte
	pool    *sync.Pool
}

// Release returns the packet and its buffer for reuse. The packet must not
// be used afterwards.
func (p *Packet) Release() {
	if pool := p.pool; pool != nil {
		p.Payload, p.pool = nil, nil
		pool.Put(p)
	}
}

// Conn is a joined multicast socket.
type Conn struct {
	cfg  Config
	udp  *net.UDPConn
	pc   *ipv4.PacketConn
	dst  *net.UDPAddr
	aead cipher.AEAD
	seq  atomic.Uint64
	out  chan *Packet
	// pools hold released packets by buffer size class (packetSizes):
	// queued packets are many, so each holds a buffer of its own size
	// class, not one of the largest.
	pools  [len(packetSizes)]sync.Pool
	sendMu sync.Mutex
	sendB  []byte
	// batchBufs, batchMsgs and batchOOB are reused by SendBatch under
	// sendMu.
	batchBufs [][]byte
	batchMsgs []ipv4.Message
	batchOOB  [][]byte
	// gso is whether SendBatch may hand the kernel runs of equal-sized
	// datagrams as one UDP_SEGMENT send; cleared on the first refusal.
	gso    atomic.Bool
	closed atomic.Bool
	// ownSeen counts our own looped-back datagrams that got past the
	// socket filter (tests check the filter with it).
	ownSeen atomic.Uint64
	local   netip.Addr
}

// packetSizes are the buffer size classes of queued packets: a datagram on
// a 1500-byte MTU, one on a 9000-byte (jumbo) MTU, and the largest. Each
// is one of the Go allocator's size classes, so no byte is wasted on
// rounding: thousands of packets may wait in the queues.
var packetSizes = [...]int{1536, 9216, wire.MaxDatagram}

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
		cfg.RecvBuffer = 16 << 20
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
		cfg.QueueLen = 2048
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		return nil, errors.New("transport: Config.Metrics is required")
	}
	c := &Conn{cfg: cfg, out: make(chan *Packet, cfg.QueueLen)}
	c.initPools()
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

func (c *Conn) initPools() {
	for i, size := range packetSizes {
		pool := &c.pools[i]
		pool.New = func() any { return &Packet{buf: make([]byte, size)} }
	}
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
	if !c.cfg.NoOffload {
		c.gso.Store(true)
		c.enableGRO()
	}
	c.filterOwn()
	c.local = localAddr(ifi, c.dst)
	return nil
}

// filterOwn attaches a socket filter that drops our own datagrams, which
// multicast loopback hands back to us, in the kernel: otherwise every
// datagram we send costs a copy into our receive buffer and a read, and a
// fast send fills that buffer until the kernel drops the replies we are
// waiting for. accept still checks, for kernels that refuse the filter.
func (c *Conn) filterOwn() {
	// A UDP socket filter sees the datagram from its UDP header on.
	const nodeAt = 8 + wire.NodeOffset
	id := uint64(c.cfg.Node)
	prog, err := bpf.Assemble([]bpf.Instruction{
		// Too short to carry a node id: let it through to be counted as
		// malformed.
		bpf.LoadExtension{Num: bpf.ExtLen},
		bpf.JumpIf{Cond: bpf.JumpLessThan, Val: nodeAt + 8, SkipTrue: 5},
		bpf.LoadAbsolute{Off: nodeAt, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(id >> 32), SkipTrue: 3},
		bpf.LoadAbsolute{Off: nodeAt + 4, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(id), SkipTrue: 1},
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
func (c *Conn) enableGRO() {
	rc, err := c.udp.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		if err := unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1); err != nil {
			c.cfg.Logger.Debug("UDP receive coalescing unavailable", "err", err)
		}
	})
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
// the kernel allows: one sendmmsg, in which each run of equal-sized
// datagrams goes as one UDP_SEGMENT message the kernel (or the NIC) cuts
// into datagrams. It returns the bytes written.
func (c *Conn) SendBatch(msgs []wire.Message) (int, error) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	for len(c.batchBufs) < len(msgs) {
		c.batchBufs = append(c.batchBufs, make([]byte, 0, c.cfg.MaxDatagram))
		c.batchMsgs = append(c.batchMsgs, ipv4.Message{Addr: c.dst})
		c.batchOOB = append(c.batchOOB, make([]byte, unix.CmsgSpace(2)))
	}
	frames := c.batchBufs[:len(msgs)]
	for i, m := range msgs {
		b := c.frame(frames[i][:0], m.Type(), m.AppendPayload)
		if len(b) > c.cfg.MaxDatagram {
			return 0, fmt.Errorf("transport: %v datagram of %d bytes exceeds %d", m.Type(), len(b), c.cfg.MaxDatagram)
		}
		frames[i] = b
	}
	total, err := c.sendFrames(frames)
	for i := range frames {
		frames[i] = frames[i][:0]
	}
	return total, err
}

// GSO limits: the kernel takes at most 64 segments (128 since Linux 6.x)
// and one IP datagram's worth of payload per UDP_SEGMENT send.
const (
	maxSegments     = 64
	maxSegmentBytes = 65507
)

// sendFrames writes framed datagrams, grouped for segmentation offload
// while it is on. If the kernel refuses a segmented send (no checksum
// offload on the device, a datagram larger than the MTU), offload is
// turned off for good and the rest goes out datagram by datagram.
func (c *Conn) sendFrames(frames [][]byte) (int, error) {
	total := 0
	for len(frames) > 0 {
		ms := c.group(frames)
		for len(ms) > 0 {
			n, err := c.pc.WriteBatch(ms, 0)
			if err != nil {
				if len(ms[0].Buffers) > 1 && offloadRefused(err) && c.gso.Swap(false) {
					c.cfg.Logger.Info("UDP segmentation offload refused; sending datagram by datagram", "err", err)
					break
				}
				return total, fmt.Errorf("transport: send batch: %w", err)
			}
			for _, m := range ms[:n] {
				for _, b := range m.Buffers {
					total += len(b)
				}
				c.cfg.Metrics.DatagramsSent.Add(float64(len(m.Buffers)))
				frames = frames[len(m.Buffers):]
			}
			ms = ms[n:]
		}
	}
	c.cfg.Metrics.BytesSent.Add(float64(total))
	return total, nil
}

// offloadRefused reports whether a segmented send failed because the
// kernel or device will not segment (no checksum offload: EIO; a segment
// larger than the MTU: EMSGSIZE or EINVAL; no support: EOPNOTSUPP,
// ENOPROTOOPT), not for a passing reason such as ENOBUFS.
func offloadRefused(err error) bool {
	for _, e := range []error{unix.EIO, unix.EMSGSIZE, unix.EINVAL, unix.EOPNOTSUPP, unix.ENOPROTOOPT} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// group builds the messages for frames: runs of equal-sized datagrams
// (the last of a run may be shorter) share one message with a
// UDP_SEGMENT control message while offload is on.
func (c *Conn) group(frames [][]byte) []ipv4.Message {
	gso := c.gso.Load()
	k := 0
	for i := 0; i < len(frames); k++ {
		size, j, sum := len(frames[i]), i+1, len(frames[i])
		for gso && j < len(frames) && j-i < maxSegments && len(frames[j]) <= size &&
			sum+len(frames[j]) <= maxSegmentBytes && len(frames[j-1]) == size {
			sum += len(frames[j])
			j++
		}
		m := &c.batchMsgs[k]
		m.Buffers, m.OOB = frames[i:j], nil
		if j-i > 1 {
			m.OOB = putSegmentSize(c.batchOOB[k], size)
		}
		i = j
	}
	return c.batchMsgs[:k]
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
		// A coalesced read (UDP_GRO) holds up to 64 KiB of datagrams.
		msgs[i].Buffers = [][]byte{make([]byte, 1<<16)}
		msgs[i].OOB = make([]byte, unix.CmsgSpace(4))
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
			c.acceptRead(&msgs[i], replay)
		}
	}
}

// acceptRead splits one read into its datagrams: several when the kernel
// coalesced them (a UDP_GRO control message gives the segment size; the
// last segment may be shorter).
func (c *Conn) acceptRead(m *ipv4.Message, replay *replayFilter) {
	b := m.Buffers[0][:m.N]
	var from netip.AddrPort
	if ua, ok := m.Addr.(*net.UDPAddr); ok {
		from = ua.AddrPort()
	}
	if m.Flags&unix.MSG_TRUNC != 0 {
		c.cfg.Metrics.DatagramsReceived.Inc()
		c.cfg.Metrics.BytesReceived.Add(float64(m.N))
		c.cfg.Metrics.Drop(metrics.DropOversize)
		return
	}
	seg := segmentSize(m.OOB[:m.NN])
	if seg <= 0 || seg >= len(b) {
		c.accept(b, from, replay)
		return
	}
	for len(b) > 0 {
		k := min(seg, len(b))
		c.accept(b[:k], from, replay)
		b = b[k:]
	}
}

// accept checks one received datagram and queues it, or counts the drop.
func (c *Conn) accept(b []byte, from netip.AddrPort, replay *replayFilter) {
	met := c.cfg.Metrics
	h, payload, err := wire.ParseHeader(b)
	if err == nil && h.Node == c.cfg.Node {
		c.ownSeen.Add(1)
		return // our own datagram, looped back
	}
	met.DatagramsReceived.Inc()
	met.BytesReceived.Add(float64(len(b)))
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
	// The last eighth of the queue is kept for control messages: when
	// data overruns a member, the polls that make it report the loss (and
	// slow the sender down) must still get through.
	if h.Type == wire.TypeData && len(c.out) >= cap(c.out)-cap(c.out)/8 {
		met.Drop(metrics.DropQueueFull)
		return
	}
	class := 0
	for len(payload) > packetSizes[class] {
		class++
	}
	pool := &c.pools[class]
	p := pool.Get().(*Packet)
	p.Header, p.From, p.pool = h, from, pool
	p.Payload = append(p.buf[:0], payload...)
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
