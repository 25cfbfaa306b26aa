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
	// Node and Incarnation stamp every datagram we send. Node may change
	// at run time (see Renew); Incarnation never does, and must grow from
	// one run of a daemon to the next (receivers refuse older ones).
	Node        wire.NodeID
	Incarnation uint64
	// Seen, when set, keeps the replay filter's state across restarts
	// while a Key is set: Listen seeds the filter from it, so that a
	// restarted node still refuses the recorded datagrams of incarnations
	// (and sequence numbers, as of the last save) it accepted before, and
	// Run saves it when it changes (see saveEvery) and when it returns. Without a key it is
	// not used: anyone may forge an unsealed datagram, so a saved state
	// would protect nothing, and a forged incarnation must not outlive a
	// restart.
	Seen SeenStore
	// Renew, when set, picks, persists and returns a fresh node id. Run
	// calls it when an authentic heartbeat carries our node id with a
	// newer incarnation than ours (another daemon uses our id: a cloned
	// state directory), and stamps our datagrams with the new id from
	// then on. It is called from a goroutine of Run, never from the read
	// loop, so it may do file I/O. Nil: such a clash is logged and
	// counted, not healed.
	Renew func() (wire.NodeID, error)
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

// SeenStore keeps the replay filter's state across restarts. Load is
// called by Listen, Save by Run's goroutines, never two calls at once.
type SeenStore interface {
	// Load returns the saved state, least recently heard sender first.
	Load() ([]Seen, error)
	// Save replaces the saved state with seen (least recently heard
	// first); the state must be durable when it returns.
	Save(seen []Seen) error
}

// saveEvery bounds how often Run saves the replay state when a sender or
// an incarnation appeared, refreshEvery how often when only sequence
// numbers moved (a heartbeat moves one every second: saving each time
// would cost a file write and two fsyncs per second for little). Either
// way the state is saved when Run returns.
const (
	saveEvery    = 5 * time.Second
	refreshEvery = time.Minute
)

// clashLogEvery rate-limits the log line about datagrams carrying our
// node id that we do not act on.
const clashLogEvery = time.Minute

// maxPastIDs bounds the node ids this Conn used before a renewal whose
// looped-back datagrams it still recognises as its own.
const maxPastIDs = 8

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
	// node is the node id we stamp datagrams with; past are the ids used
	// before a renewal (of our incarnation, they are still ours).
	node atomic.Uint64
	past atomic.Pointer[[]wire.NodeID]
	// replay, lastSnap and clashLogged belong to the read loop.
	replay      *replayFilter
	lastSnap    time.Time
	clashLogged time.Time
	// saveq and renewq hand work from the read loop to the keeper
	// goroutine of Run, which may block on file I/O.
	saveq  chan []Seen
	renewq chan renewal
}

// renewal asks for a fresh node id because of a heartbeat carrying ours.
type renewal struct {
	old         wire.NodeID // the id the heartbeat carried
	incarnation uint64
	from        netip.AddrPort
}

// packetSizes are the buffer size classes of queued packets: a datagram on
// a 1500-byte MTU, one on a 9000-byte (jumbo) MTU, and the largest. Each
// is one of the Go allocator's size classes, so no byte is wasted on
// rounding: thousands of packets may wait in the queues.
var packetSizes = [...]int{1536, 9216, wire.MaxDatagram}

// Listen opens the socket, joins the group and returns a Conn ready for
// Run and Send.
func Listen(cfg Config) (*Conn, error) {
	c, err := newConn(cfg)
	if err != nil {
		return nil, err
	}
	if err := c.open(); err != nil {
		return nil, err
	}
	return c, nil
}

// Node returns the node id this Conn stamps datagrams with now.
func (c *Conn) Node() wire.NodeID { return wire.NodeID(c.node.Load()) }

// newConn validates cfg, fills its defaults and builds a Conn with no
// socket yet.
func newConn(cfg Config) (*Conn, error) {
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
	if cfg.Node == 0 {
		return nil, errors.New("transport: Config.Node is zero")
	}
	c := &Conn{cfg: cfg, out: make(chan *Packet, cfg.QueueLen),
		saveq: make(chan []Seen, 1), renewq: make(chan renewal, 1)}
	c.node.Store(uint64(cfg.Node))
	c.past.Store(&[]wire.NodeID{})
	c.initPools()
	if cfg.Key != nil {
		aead, err := chacha20poly1305.NewX(cfg.Key)
		if err != nil {
			return nil, fmt.Errorf("transport: key: %w", err)
		}
		c.aead = aead
	}
	var seed []Seen
	if c.persists() {
		var err error
		if seed, err = cfg.Seen.Load(); err != nil {
			return nil, fmt.Errorf("transport: replay state: %w", err)
		}
	}
	c.replay = newReplayFilter(c.aead != nil, seed)
	return c, nil
}

// persists reports whether the replay state is kept across restarts.
func (c *Conn) persists() bool { return c.aead != nil && c.cfg.Seen != nil }

// open opens the socket and joins the group.
func (c *Conn) open() error {
	cfg := c.cfg
	ifi, err := findInterface(cfg.Interface)
	if err != nil {
		return err
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
		return fmt.Errorf("transport: bind %s: %w", laddr, err)
	}
	c.udp = pconn.(*net.UDPConn)
	c.pc = ipv4.NewPacketConn(c.udp)
	c.dst = &net.UDPAddr{IP: cfg.Group.AsSlice(), Port: cfg.Port}
	if err := c.setup(ifi); err != nil {
		c.udp.Close()
		return err
	}
	return nil
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
	c.filterOwn(c.Node())
	c.local = localAddr(ifi, c.dst)
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
	// A UDP socket filter sees the datagram from its UDP header on; the
	// incarnation follows the node id in the header.
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

// Close closes the socket; Run then returns. It is safe to call more than
// once.
func (c *Conn) Close() error {
	if c.closed.Swap(true) || c.udp == nil {
		return nil
	}
	return c.udp.Close()
}
