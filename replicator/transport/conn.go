package transport

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/net/ipv4"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/transport/peers"
	"github.com/makuo/makuo/replicator/wire"
)

// Config configures a Conn. Zero values of optional fields take the
// defaults documented on each field.
type Config struct {
	// Group is the multicast group: IPv4 (the original's 224.0.0.108)
	// or IPv6 (ff02::108 on one link, ff05::108 across a site), as
	// CheckGroup accepts.
	Group netip.Addr
	// Port is the UDP port of the group.
	Port int
	// Interface selects the interface by name ("eth0") or by one of its
	// addresses, IPv4 or IPv6 (a link-local one may carry its zone).
	// Empty lets the kernel pick from the routing table; a link-local
	// IPv6 group needs one.
	Interface string
	// TTL of sent datagrams, the hop limit over IPv6; default 1 keeps
	// traffic on the local link, which is what a 224.0.0.x or ff02::
	// group is for anyway.
	TTL int
	// RecvBuffer and SendBuffer set SO_RCVBUF/SO_SNDBUF in bytes; 0 keeps
	// the defaults of 16 MiB and 1 MiB: bursts of data datagrams must not
	// overflow a receiver that is briefly busy, and the kernel's buffer is
	// the cheapest place to hold them (no copy yet, and outside the Go
	// heap, which the garbage collector lets grow to twice what it holds).
	RecvBuffer, SendBuffer int
	// MaxDatagram is the largest datagram this node sends (UDP payload);
	// the default fits a 1500-byte MTU: 1472 over IPv4, 1452 over IPv6
	// (whose header is 20 bytes longer). Receivers accept any size up to
	// wire.MaxDatagram.
	MaxDatagram int
	// Key is the 32-byte datagram key (see ReadKey); nil sends and accepts
	// only unsealed datagrams.
	Key []byte
	// OldKeys are more keys a received datagram may be sealed with; Key
	// alone seals. They serve a key rotation: every member first accepts
	// the new key besides the old, then seals with the new, then drops
	// the old. Each one costs a failed open on every datagram sealed with
	// a later one, so keep them few. They need a Key.
	OldKeys [][]byte
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
	// MulticastReplies sends everything from the group socket, as daemons
	// before unicast answers did, so peers answer this member by
	// multicast (see UnicastReplies). By default a second socket, on a
	// port the kernel picks, sends every datagram and takes the answers
	// peers unicast to it: no member then receives the others' answers.
	// The knob is for networks whose firewalls pass the group's port
	// only.
	MulticastReplies bool
	// Peers, when set, is unicast mode's peer table: every datagram meant
	// for the group also goes to each of its Targets, from a socket bound
	// to Port (and to the Interface's address, if one is named), which
	// takes the peers' datagrams. With Group unset the Conn is unicast
	// only (no multicast at all); with a Group too it is mixed: multicast
	// inside the segment, unicast to the peers (members heard on the
	// group get no unicast copy; see package peers). Run runs the table's
	// own loop and sends it our list of peers every GossipEvery and when
	// it learned one.
	Peers *peers.Set
	// GossipEvery is how often the list of peers goes to every peer in
	// unicast mode; default 10 s. A learned peer makes it go at once
	// (at most once per gossipGap).
	GossipEvery time.Duration
	// Learned, when set, is called (from a goroutine of Run, at most once
	// per gossipGap) after the peer table learned an address: the owner
	// sends its heartbeat then, so that the new peer lists it as a member
	// at once rather than at its next heartbeat.
	Learned func()
	// Relay, when set, makes this member a relay candidate of its
	// segment: see the package doc, Relays. It needs a Group and no
	// Peers.
	Relay *RelayConfig
	// RelayHeard is how long a relay candidate's hello heard on the
	// group, and an origin heard through a relay, stand for it: while
	// both do, answers to that origin go through our segment's active
	// relay (see the package doc, Relays); default 3 s (three
	// heartbeats). Every member uses it, candidate or not.
	RelayHeard time.Duration
	Logger     *slog.Logger
	Metrics    *metrics.Metrics
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
	// At is when the datagram arrived: the kernel's receive time where
	// it stamps datagrams, else when the read loop took it. Receivers
	// time the delivery of data with it, whatever queue the packet waits
	// in afterwards.
	At   time.Time
	buf  []byte
	pool *sync.Pool
}

// Release returns the packet and its buffer for reuse. The packet must not
// be used afterwards.
func (p *Packet) Release() {
	if pool := p.pool; pool != nil {
		p.Payload, p.pool = nil, nil
		pool.Put(p)
	}
}

// Conn is a joined multicast socket, and the socket it sends from.
type Conn struct {
	cfg Config
	// udp and pc are the group socket: bound to the group's address, it
	// receives the group's datagrams.
	udp *net.UDPConn
	pc  packetConn
	// reply, when set, is the socket every datagram goes out from, on a
	// port of its own: peers unicast their answers to that source
	// address, and it receives them. tx and txUDP are the socket sends
	// use: reply, or the group socket with Config.MulticastReplies.
	reply   *net.UDPConn
	replyPC packetConn
	tx      packetConn
	txUDP   *net.UDPConn
	// uni and uniPC are unicast mode's socket (Config.Peers): the group
	// socket itself when there is no group, else a third one. uniCache
	// holds the peers' addresses as sends take them, for Targets of
	// generation uniGen; uniMsgs is reused by sends to every peer. All
	// three are used under sendMu.
	uni      *net.UDPConn
	uniPC    packetConn
	uniGen   uint64
	uniCache []*net.UDPAddr
	uniMsgs  []ipv4.Message
	// peerErrLogged rate-limits the log line about a refused peer
	// (sendMu).
	peerErrLogged time.Time
	// fam is the sockets' address family: the group's, or in unicast
	// mode without a group the peers'. mcast is whether there is a
	// group.
	fam   family
	mcast bool
	// dst is the group. ifName is the interface's name, "" for the
	// routing table's choice, and ifZone its index as a zone: see zoned.
	dst            *net.UDPAddr
	ifName, ifZone string
	// acceptMu serializes accept between the read loops of the group
	// and the reply socket: the replay filter, openBuf and the clash
	// and snapshot state are the read side's.
	acceptMu sync.Mutex
	aead     cipher.AEAD
	// openers are aead and then one per Config.OldKeys; openBuf is the
	// read loop's plaintext buffer while there are several (a failed
	// open must leave the ciphertext for the next).
	openers []cipher.AEAD
	openBuf []byte
	seq     atomic.Uint64
	out     chan *Packet
	// deliver, when set (Deliver), takes accepted packets instead of out.
	deliver func(*Packet)
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
	// local is LocalAddr's answer; in unicast mode without a bound
	// address it is found once there is a peer to route to (localMu).
	localMu sync.Mutex
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
	// rel is a relay candidate's state (Config.Relay); relayBuf is the
	// read side's copy of a relayed datagram, relayReplay the replay
	// filter of relays' hellos and envelopes (both the read loop's).
	rel         *relay
	relayBuf    []byte
	relayReplay *replayFilter
	// routes is where answers to other segments' origins go (every
	// member's; see answers.go); ansB frames the batch of one such
	// answer (sendMu).
	routes answerRoutes
	ansB   []byte
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
	fam, mcast := familyOf(cfg.Group), true
	switch {
	case cfg.Peers != nil && !cfg.Group.IsValid():
		fam, mcast = family4, false
		if cfg.Peers.Is6() {
			fam = family6
		}
	case cfg.Peers != nil && cfg.Peers.Is6() != cfg.Group.Is6():
		return nil, fmt.Errorf("transport: the peers are of another address family than the group %v", cfg.Group)
	}
	if mcast {
		if err := CheckGroup(cfg.Group, cfg.Interface); err != nil {
			return nil, err
		}
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
	defaultSize := cfg.MaxDatagram == 0
	if defaultSize {
		cfg.MaxDatagram = fam.maxDatagram
	}
	if cfg.MaxDatagram < 512 || cfg.MaxDatagram > wire.MaxDatagram {
		return nil, fmt.Errorf("transport: datagram size %d outside 512..%d", cfg.MaxDatagram, wire.MaxDatagram)
	}
	if cfg.QueueLen == 0 {
		cfg.QueueLen = 2048
	}
	if cfg.GossipEvery == 0 {
		cfg.GossipEvery = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RelayHeard <= 0 {
		cfg.RelayHeard = 3 * time.Second
	}
	if cfg.Metrics == nil {
		return nil, errors.New("transport: Config.Metrics is required")
	}
	if cfg.Node == 0 {
		return nil, errors.New("transport: Config.Node is zero")
	}
	c := &Conn{cfg: cfg, fam: fam, mcast: mcast, out: make(chan *Packet, cfg.QueueLen),
		saveq: make(chan []Seen, 1), renewq: make(chan renewal, 1)}
	c.routes = newAnswerRoutes(cfg.RelayHeard)
	c.node.Store(uint64(cfg.Node))
	c.past.Store(&[]wire.NodeID{})
	c.initPools()
	if cfg.Key == nil && len(cfg.OldKeys) > 0 {
		return nil, errors.New("transport: Config.OldKeys without a Key")
	}
	if cfg.Key != nil {
		for i, k := range append([][]byte{cfg.Key}, cfg.OldKeys...) {
			aead, err := chacha20poly1305.NewX(k)
			if err != nil {
				return nil, fmt.Errorf("transport: key %d: %w", i+1, err)
			}
			c.openers = append(c.openers, aead)
		}
		c.aead = c.openers[0]
	}
	if len(c.openers) > 1 {
		c.openBuf = make([]byte, 0, wire.MaxDatagram)
	}
	var seed []Seen
	var err error
	if c.persists() {
		if seed, err = cfg.Seen.Load(); err != nil {
			return nil, fmt.Errorf("transport: replay state: %w", err)
		}
	}
	c.replay = newReplayFilter(c.aead != nil, seed)
	c.relayReplay = newReplayFilter(c.aead != nil, nil)
	if cfg.Relay != nil {
		if !mcast || cfg.Peers != nil {
			return nil, errors.New("transport: a relay needs a group, and no unicast peers")
		}
		if c.rel, err = newRelay(*cfg.Relay, fam, c.Node, cfg.Metrics, cfg.Logger); err != nil {
			return nil, err
		}
		if defaultSize {
			fits := fam.maxDatagram - (wire.MaxDatagram - c.maxRelayed())
			cfg.Logger.Warn("a relayed datagram of the default size does not fit a 1500-byte MTU and is fragmented between segments; give a smaller datagram size",
				"datagram_size", cfg.MaxDatagram, "fits", fits)
		}
	}
	return c, nil
}

// persists reports whether the replay state is kept across restarts.
func (c *Conn) persists() bool { return c.aead != nil && c.cfg.Seen != nil }

// LocalAddr returns this member's source address on the group's interface,
// as the kernel picks it for datagrams to the group (with its zone if it
// is link-local; invalid if unknown). Unicast only, it is the bound
// address, or else the source of datagrams to the first peer.
func (c *Conn) LocalAddr() netip.Addr {
	c.localMu.Lock()
	defer c.localMu.Unlock()
	if !c.local.IsValid() && !c.mcast && c.udp != nil {
		if t := c.cfg.Peers.Targets(); len(t.Addrs) > 0 {
			c.local = c.zoned(sourceFor(c.fam, t.Addrs[0]))
		}
	}
	return c.local
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

// Deliver implements Link. The read loops call f one at a time (they
// accept under one lock), but f must not count on it.
func (c *Conn) Deliver(f func(*Packet)) { c.deliver = f }

// Close closes the socket; Run then returns. It is safe to call more than
// once.
func (c *Conn) Close() error {
	if c.closed.Swap(true) || c.udp == nil {
		return nil
	}
	err := c.udp.Close()
	if c.reply != nil {
		err = errors.Join(err, c.reply.Close())
	}
	if c.uni != nil && c.uni != c.udp {
		err = errors.Join(err, c.uni.Close())
	}
	if c.rel != nil && c.rel.sock != nil {
		err = errors.Join(err, c.rel.sock.Close())
	}
	return err
}

// UnicastReplies reports whether peers may answer this member's datagrams
// by unicast to their source address (SendTo): they come from a socket
// that takes such answers.
func (c *Conn) UnicastReplies() bool { return c.reply != nil || c.uni != nil }
