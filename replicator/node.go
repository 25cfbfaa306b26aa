package replicator

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/makuo/makuo/exclude"
	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/control"
	"github.com/makuo/makuo/replicator/membership"
	"github.com/makuo/makuo/replicator/stage"
	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/replicator/tree"
	"github.com/makuo/makuo/replicator/wire"
)

// recvQueueLen bounds the messages waiting for the receiver, in pooled
// packets of 1.5 KiB and more each (12 MiB when full, which it only is
// while the receiver falls behind). It holds twice the sender's backlog
// allowance (maxBacklog polls of pollEvery blocks): a receiver that gets
// no CPU for a while falls silent, and the sender slows down only for
// members it hears from (a silent one may be dead), so the queue must
// absorb such stalls. The socket buffer in front of it does not: the
// read loop moves datagrams from it into this queue as fast as they come.
// With half of it, the members of a 100,000-file push sharing 2 CPUs
// dropped four times as many datagrams to full queues (6% of each one's
// instead of 1.5%) and the push took 45 s instead of 38, for 25 MiB less
// peak RSS.
const recvQueueLen = 2 * maxBacklog * pollEvery

// recvQueueBytes bounds the data payload waiting in the receive queue: the
// count alone would let 8,192 jumbo datagrams (--datagram-size 8972) hold
// 72 MiB. 16 MiB is more than 8,192 datagrams of a 1500-byte MTU carry,
// and like them about a tenth of a second at 1 Gbit/s.
const recvQueueBytes = 16 << 20

// Node is one makuosan daemon's engine.
type Node struct {
	cfg         Config
	log         *slog.Logger
	met         *metrics.Metrics
	ident       *identity // node id (may change at run time: use ID), state directory lock
	incarnation uint64
	started     time.Time
	conn        *transport.Conn
	members     *membership.Service
	root        *os.Root   // base directory, for confined reads
	dir         *stage.Dir // base directory, for confined writes
	index       *tree.Index
	indexReady  atomic.Bool // the first scan finished: the root is meaningful
	excl        *exclude.Set
	lags        lagTracker
	synced      syncedSet
	droppedMu   sync.Mutex
	dropped     map[wire.NodeID]time.Time // members dropped from a session, when
	// startChanges are the paths that changed while the daemon was
	// stopped (the first scan against the saved index); a watching member
	// pushes them once the index is ready.
	startChanges chan []string
	history      history
	echo         *echoGuard
	recvq        chan recvItem
	sendMu       sync.Mutex
	sends        map[uint64]*sendSession
	pushSlots    chan struct{} // bounds concurrent pushes (-f)
	// lastRate is the send rate (bits/s, float64 bits) the latest session
	// ended with: the next one starts there instead of probing again.
	lastRate atomic.Uint64
	// queuedData is the data payload in recvq, in bytes (recvQueueBytes).
	queuedData atomic.Int64
}

var _ control.Backend = (*Node)(nil)

// New validates cfg, locks the state directory, loads the node id and
// opens the multicast socket, so that configuration and bind errors
// surface before Run.
func New(cfg Config, logger *slog.Logger, met *metrics.Metrics) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ident, err := openIdentity(cfg.StateDir, time.Now(), randomJitter)
	if err != nil {
		return nil, err
	}
	n, err := newNode(cfg, logger, met, ident)
	if err != nil {
		ident.close()
		return nil, err
	}
	return n, nil
}

// newNode is New once the state directory is locked and the identity loaded.
func newNode(cfg Config, logger *slog.Logger, met *metrics.Metrics, ident *identity) (*Node, error) {
	var err error
	started := time.Now()
	n := &Node{
		cfg:         cfg,
		log:         logger,
		met:         met,
		ident:       ident,
		incarnation: ident.incarnation,
		started:     started,
	}
	if n.root, err = openRoot(cfg.Base); err != nil {
		return nil, err
	}
	if n.dir, err = stage.Open(cfg.Base); err != nil {
		n.root.Close()
		return nil, fmt.Errorf("open base directory: %w", err)
	}
	if n.excl, err = exclude.New(cfg.Excludes); err != nil {
		n.closeFiles()
		return nil, err
	}
	n.index, err = tree.New(n.root, tree.Options{Exclude: n.excl.Match, SkipName: stage.IsTempName})
	if err != nil {
		n.closeFiles()
		return nil, fmt.Errorf("index: %w", err)
	}
	n.echo = newEchoGuard()
	n.startChanges = make(chan []string, 1)
	n.recvq = make(chan recvItem, recvQueueLen)
	n.sends = map[uint64]*sendSession{}
	n.pushSlots = make(chan struct{}, cfg.Parallel)
	n.conn, err = transport.Listen(transport.Config{
		Group:       cfg.Group,
		Port:        cfg.Port,
		Interface:   cfg.Interface,
		TTL:         cfg.TTL,
		RecvBuffer:  cfg.RecvBuffer,
		SendBuffer:  cfg.SendBuffer,
		MaxDatagram: cfg.MaxDatagram,
		NoOffload:   cfg.NoOffload,
		Key:         cfg.Key,
		Node:        ident.ID(),
		Incarnation: n.incarnation,
		Seen:        ident.seen,
		Renew:       ident.renew,
		Logger:      logger.With("component", "transport"),
		Metrics:     met,
	})
	if err != nil {
		n.closeFiles()
		return nil, err
	}
	mc := membership.DefaultConfig()
	mc.Hostname, mc.Version, mc.Roles = cfg.Hostname, Version, n.roles()
	mc.Interval, mc.MissedHeartbeats = cfg.Heartbeat, cfg.MissedHeartbeats
	mc.Root = n.Root
	mc.Logger = logger.With("component", "membership")
	mc.Metrics = met
	n.members, err = membership.New(mc, n.conn)
	if err != nil {
		n.conn.Close()
		n.closeFiles()
		return nil, err
	}
	return n, nil
}

// openRoot opens the base directory for confined reads.
func openRoot(base string) (*os.Root, error) {
	r, err := os.OpenRoot(base)
	if err != nil {
		return nil, fmt.Errorf("open base directory: %w", err)
	}
	return r, nil
}

func (n *Node) closeFiles() {
	n.dir.Close()
	n.root.Close()
	n.ident.close()
}

// ID returns the node id; it changes when another daemon turned out to
// use the same one (see package transport).
func (n *Node) ID() wire.NodeID { return n.ident.ID() }

func (n *Node) roles() wire.Roles {
	var r wire.Roles
	if !n.cfg.NoSend {
		r |= wire.RoleSend
	}
	if !n.cfg.NoReceive {
		r |= wire.RoleRecv
	}
	if n.cfg.Watch {
		r |= wire.RoleWatch
	}
	return r
}

// Run serves until ctx ends, then says goodbye to the group and returns
// after every goroutine it started has finished.
func (n *Node) Run(ctx context.Context) error {
	n.log.Info("node started", "node", n.ID(), "incarnation", n.incarnation, "hostname", n.cfg.Hostname, "group",
		fmt.Sprintf("%v:%d", n.cfg.Group, n.cfg.Port), "base", n.cfg.Base, "sealed", n.cfg.Key != nil)
	// The socket must outlive the membership loop so that the goodbye goes
	// out; it gets its own context, cancelled after that loop returns.
	defer n.closeFiles()
	if removed, err := n.dir.CleanStale(); err != nil {
		n.log.Warn("removing stale temp files failed", "err", err)
	} else if removed > 0 {
		n.log.Info("removed temp files left by a crash", "count", removed)
	}
	tctx, tcancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = n.conn.Run(tctx) })
	wg.Go(n.dispatch)
	rctx, rcancel := context.WithCancel(ctx)
	wg.Go(func() { n.maintainIndex(rctx) })
	wg.Go(func() { n.trackLag(rctx) })
	if n.cfg.Watch && !n.cfg.NoSend {
		wg.Go(func() { n.catchUp(rctx) })
	}
	if !n.cfg.NoReceive {
		rcv := &receiver{n: n, dir: n.dir, sessions: map[sessKey]*recvSession{}, isRoot: os.Geteuid() == 0}
		wg.Go(func() { rcv.run(rctx, n.recvq) })
	}
	err := n.members.Run(ctx)
	rcancel()
	tcancel()
	wg.Wait()
	if err == nil {
		err = runErr
	}
	return err
}

// dispatch decodes queued packets and routes them by type, until the
// transport closes the queue. It never blocks on a consumer: a full queue
// is a counted drop, which the session protocol repairs.
func (n *Node) dispatch() {
	datas := newDataPool()
	for p := range n.conn.Packets() {
		h := p.Header
		if h.Type == wire.TypeData {
			n.dispatchData(p, datas)
			continue
		}
		m, err := wire.ParsePayload(p.Header.Type, p.Payload)
		if err != nil {
			p.Release()
			n.met.Drop(metrics.DropMalformed)
			n.log.Debug("malformed datagram", "from", p.From, "type", h.Type, "err", err)
			continue
		}
		n.members.Handle(h, m, p.From.Addr())
		switch m := m.(type) {
		case *wire.Offer, *wire.Data, *wire.Poll, *wire.Commit, *wire.Abort, *wire.Chunks:
			if n.cfg.NoReceive {
				p.Release()
				continue
			}
			// Data aliases the packet buffer: the receiver releases it.
			select {
			case n.recvq <- recvItem{h: h, msg: m, pkt: p}:
			default:
				p.Release()
				n.met.Drop(metrics.DropQueueFull)
			}
		case *wire.Need:
			n.toSession(h.Node, m.Session, m)
			p.Release()
		case *wire.Nack:
			n.toSession(h.Node, m.Session, m)
			p.Release()
		case *wire.Result:
			n.toSession(h.Node, m.Session, m)
			p.Release()
		case *wire.ChunkNeed:
			n.toSession(h.Node, m.Session, m)
			p.Release()
		case *wire.Busy:
			n.toSession(h.Node, m.Session, m)
			p.Release()
		default:
			p.Release()
		}
	}
}

// dispatchData queues a data datagram for the receiver, decoded into a
// reused Data: this is the per-datagram path, kept free of allocations.
// Data is dropped while the queue is more than 7/8 full, so that the
// control messages queued behind it (polls above all) still get through.
func (n *Node) dispatchData(p *transport.Packet, datas *dataPool) {
	d := datas.get()
	if err := d.Decode(p.Payload); err != nil {
		d.release()
		p.Release()
		n.met.Drop(metrics.DropMalformed)
		return
	}
	n.members.Handle(p.Header, &d.Data, p.From.Addr())
	if n.cfg.NoReceive {
		d.release()
		p.Release()
		return
	}
	size := int64(len(d.Bytes))
	if n.admitData(size) {
		select {
		case n.recvq <- recvItem{h: p.Header, msg: &d.Data, pkt: p, data: d, size: size}:
			return
		default:
			n.queuedData.Add(-size)
		}
	}
	d.release()
	p.Release()
	n.met.Drop(metrics.DropQueueFull)
}

// admitData reserves room for size bytes of data in the receive queue: it
// refuses while the queue is more than 7/8 full (the rest is kept for
// control messages) or holds recvQueueBytes of data already.
func (n *Node) admitData(size int64) bool {
	if len(n.recvq) >= cap(n.recvq)-cap(n.recvq)/8 {
		return false
	}
	if n.queuedData.Add(size) > recvQueueBytes {
		n.queuedData.Add(-size)
		return false
	}
	return true
}

// toSession hands a receiver's answer to the send session it belongs to.
func (n *Node) toSession(from wire.NodeID, id uint64, m wire.Message) {
	n.sendMu.Lock()
	s := n.sends[id]
	n.sendMu.Unlock()
	if s == nil {
		return
	}
	select {
	case s.replies <- reply{from: from, msg: m}:
	default:
		n.met.Drop(metrics.DropQueueFull)
	}
}

// isMember reports whether id is a live member.
func (n *Node) isMember(id wire.NodeID) bool {
	for _, m := range n.members.Table().Snapshot() {
		if m.ID == id {
			return true
		}
	}
	return false
}

// maxRate is the send rate cap in bits per second (-T, or the adaptive
// ceiling).
func (n *Node) maxRate() float64 {
	if n.cfg.RateMbps > 0 {
		return float64(n.cfg.RateMbps) * 1e6
	}
	return maxRate
}

func (n *Node) newPacer(rate float64) *transport.Pacer { return transport.NewPacer(rate) }

// Members implements control.Backend.
func (n *Node) Members(context.Context) ([]control.Member, error) {
	now := time.Now()
	local := n.Root()
	out := []control.Member{{
		ID: n.ID().String(), Hostname: n.cfg.Hostname, Addr: addrString(n.conn.LocalAddr()), Version: Version,
		Roles: n.roles().String(), Self: true, Joined: n.started, Root: rootString(local), InSync: local != 0,
	}}
	for _, m := range n.members.Table().Snapshot() {
		out = append(out, control.Member{
			ID: m.ID.String(), Hostname: m.Hostname, Addr: addrString(m.Addr), Version: m.Version,
			Roles: m.Roles.String(), Joined: m.Joined, LastHeardSeconds: now.Sub(m.LastHeard).Seconds(),
			Root: rootString(m.Root), InSync: inSync(m, local), LagSeconds: n.lags.lag(m.ID, now).Seconds(),
		})
	}
	slices.SortFunc(out, func(a, b control.Member) int {
		return cmp.Or(cmp.Compare(a.Hostname, b.Hostname), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// Status implements control.Backend.
func (n *Node) Status(context.Context) (control.Status, error) {
	return control.Status{
		PID:               os.Getpid(),
		Version:           Version,
		NodeID:            n.ID().String(),
		Hostname:          n.cfg.Hostname,
		Base:              n.cfg.Base,
		Group:             n.cfg.Group.String() + ":" + strconv.Itoa(n.cfg.Port),
		Started:           n.started,
		UptimeSeconds:     time.Since(n.started).Seconds(),
		Members:           n.members.Table().Len() + 1,
		Counters:          n.counters(),
		Recent:            n.history.recent(),
		TransfersInFlight: len(n.pushSlots),
	}, nil
}

// MemberStats feeds the per-member metrics at scrape time.
func (n *Node) MemberStats() []metrics.MemberStat {
	now := time.Now()
	var out []metrics.MemberStat
	local := n.Root()
	for _, m := range n.members.Table().Snapshot() {
		out = append(out, metrics.MemberStat{ID: m.ID.String(), Hostname: m.Hostname, LastHeardSeconds: now.Sub(m.LastHeard).Seconds(),
			InSync: inSync(m, local), RootKnown: m.Root != 0 && local != 0, LagSeconds: n.lags.lag(m.ID, now).Seconds()})
	}
	return out
}

func rootString(r uint64) string {
	if r == 0 {
		return ""
	}
	return fmt.Sprintf("%016x", r)
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
