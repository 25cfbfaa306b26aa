package replicator

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/makuo/makuo/exclude"
	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/apply"
	"github.com/makuo/makuo/replicator/control"
	"github.com/makuo/makuo/replicator/membership"
	"github.com/makuo/makuo/replicator/session"
	"github.com/makuo/makuo/replicator/stage"
	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/replicator/transport/peers"
	"github.com/makuo/makuo/replicator/tree"
	"github.com/makuo/makuo/replicator/wire"
)

// Node is one makuosan daemon's engine.
type Node struct {
	cfg         Config
	log         *slog.Logger
	met         *metrics.Metrics
	ident       *identity // node id (may change at run time: use ID), state directory lock
	incarnation uint64
	started     time.Time
	conn        Link
	members     *membership.Service
	root        *os.Root   // base directory, for confined reads
	dir         *stage.Dir // base directory, for confined writes
	index       *tree.Index
	indexReady  atomic.Bool // the first scan finished: the root is meaningful
	excl        *exclude.Set
	prov        *apply.Provenance
	budget      *session.Budget
	lags        lagTracker
	droppedMu   sync.Mutex
	dropped     map[wire.NodeID]time.Time // members dropped from a session, when
	// startChanges are the paths that changed while the daemon was
	// stopped (the first scan against the saved index); a watching member
	// pushes them once the index is ready.
	startChanges chan []string
	history      history
	recv         receivers
	datas        *dataPool // dispatch's Data messages, for the data path
	sendMu       sync.Mutex
	sends        map[uint64]*sendRun
	pushSlots    chan struct{} // bounds concurrent pushes (-f)
	paths        pathLocks     // pushes of overlapping paths wait for each other
	// watchChanges and watchExcludes are the watcher's batches (Watch),
	// which Run's watch loop pushes.
	watchChanges  <-chan WatchBatch
	watchExcludes []string
	// lastRate is where the latest session's rate ended: the next one
	// starts there, and probes on unless it had settled.
	lastRate lastRate
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
	n, err := newNode(cfg, logger, met, ident, listen)
	if err != nil {
		ident.close()
		return nil, err
	}
	return n, nil
}

// newNode is New once the state directory is locked and the identity
// loaded; dial opens the link to the group (tests pass an in-memory one).
func newNode(cfg Config, logger *slog.Logger, met *metrics.Metrics, ident *identity, dial func(transport.Config) (Link, error)) (*Node, error) {
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
	if n.root, err = os.OpenRoot(cfg.Base); err != nil {
		return nil, fmt.Errorf("open base directory: %w", err)
	}
	if n.dir, err = stage.Open(cfg.Base); err != nil {
		n.root.Close()
		return nil, fmt.Errorf("open base directory: %w", err)
	}
	if n.excl, err = exclude.New(cfg.Excludes); err != nil {
		n.closeFiles()
		return nil, err
	}
	n.index, err = tree.New(n.root, tree.Options{Exclude: n.excl.Match, ExcludeListed: n.excl.MatchListed, SkipName: stage.IsTempName})
	if err != nil {
		n.closeFiles()
		return nil, fmt.Errorf("index: %w", err)
	}
	n.prov = apply.NewProvenance(cfg.Watch, time.Now)
	n.budget = session.NewBudget(cfg.SessionMemory)
	n.startChanges = make(chan []string, 1)
	n.sends = map[uint64]*sendRun{}
	n.pushSlots = make(chan struct{}, cfg.Parallel)
	tcfg := transport.Config{
		Group:            cfg.Group,
		Port:             cfg.Port,
		Interface:        cfg.Interface,
		TTL:              cfg.TTL,
		RecvBuffer:       cfg.RecvBuffer,
		SendBuffer:       cfg.SendBuffer,
		MaxDatagram:      cfg.MaxDatagram,
		NoOffload:        cfg.NoOffload,
		MulticastReplies: cfg.MulticastReplies,
		RelayHeard:       time.Duration(cfg.MissedHeartbeats) * cfg.Heartbeat,
		Key:              cfg.Key,
		OldKeys:          cfg.OldKeys,
		Node:             ident.ID(),
		Incarnation:      n.incarnation,
		Seen:             ident.seen,
		Renew:            ident.renew,
		Logger:           logger.With("component", "transport"),
		Metrics:          met,
	}
	if cfg.Unicast() {
		if tcfg.Peers, err = newPeerSet(cfg, logger, met); err != nil {
			n.closeFiles()
			return nil, err
		}
		if !cfg.Mixed {
			tcfg.Group = netip.Addr{}
		}
		// A new peer hears our heartbeat at once, not at the next beat:
		// members told of one peer meet in round trips. Called during Run
		// only, once n.members is set.
		tcfg.Learned = func() { n.members.Kick() }
	}
	if cfg.Relay() {
		if tcfg.Relay, err = cfg.relayConfig(); err != nil {
			n.closeFiles()
			return nil, err
		}
	}
	n.conn, err = dial(tcfg)
	if err != nil {
		n.closeFiles()
		return nil, err
	}
	mc := membership.DefaultConfig()
	mc.Hostname, mc.Version, mc.Roles, mc.Segment = cfg.Hostname, Version, n.roles(), cfg.Segment
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
	n.recv.init(n)
	n.datas = newDataPool()
	n.conn.Deliver(n.dispatch)
	return n, nil
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
		n.groupAddr(), "base", n.cfg.Base, "sealed", n.cfg.Key != nil)
	defer n.closeFiles()
	if removed, err := n.dir.CleanStale(); err != nil {
		n.log.Warn("removing stale temp files failed", "err", err)
	} else if removed > 0 {
		n.log.Info("removed temp files left by a crash", "count", removed)
	}
	// The socket must outlive the membership loop so that the goodbye goes
	// out; it gets its own context, cancelled after that loop returns.
	tctx, tcancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = n.conn.Run(tctx) })
	rctx, rcancel := context.WithCancel(ctx)
	wg.Go(func() { n.maintainIndex(rctx) })
	wg.Go(func() { n.trackLag(rctx) })
	if n.cfg.Watch && !n.cfg.NoSend {
		wg.Go(func() { n.catchUp(rctx) })
	}
	if n.watchChanges != nil {
		wg.Go(func() { _ = n.watchLoop(rctx, n.watchChanges, n.watchExcludes) })
	}
	err := n.members.Run(ctx)
	rcancel()
	// The read loops dispatch until the link closes; past this, what
	// they route to a receive loop is dropped.
	n.recv.closeAll()
	tcancel()
	wg.Wait()
	n.recv.wait()
	if err == nil {
		err = runErr
	}
	return err
}

// isMember reports whether id is a live member.
func (n *Node) isMember(id wire.NodeID) bool {
	_, ok := n.member(id)
	return ok
}

// member returns the live member id.
func (n *Node) member(id wire.NodeID) (membership.Member, bool) {
	return n.members.Table().Get(id)
}

// maxRate is the send rate cap in bits per second (-T, or the adaptive
// ceiling).
func (n *Node) maxRate() float64 {
	if n.cfg.RateMbps > 0 {
		return float64(n.cfg.RateMbps) * 1e6
	}
	return session.MaxRate
}

// IsEcho reports whether the change the watcher saw at rel is this node's
// own application of a change received from another member. It is meant
// for watcher.Config.Ignore.
func (n *Node) IsEcho(rel string) bool {
	fi, err := n.root.Lstat(rel)
	return n.prov.IsEcho(rel, fi, err)
}

// Members implements control.Backend.
func (n *Node) Members(context.Context) ([]control.Member, error) {
	now := time.Now()
	local := n.Root()
	out := []control.Member{{
		ID: n.ID().String(), Hostname: n.cfg.Hostname, Addr: addrString(n.conn.LocalAddr()), Version: Version,
		Roles: n.roles().String(), Self: true, Joined: n.started, Root: rootString(local), InSync: local != 0,
		Segment: n.cfg.Segment,
	}}
	for _, m := range n.members.Table().Snapshot() {
		out = append(out, control.Member{
			ID: m.ID.String(), Hostname: m.Hostname, Addr: addrString(m.Addr), Version: m.Version,
			Roles: m.Roles.String(), Joined: m.Joined, LastHeardSeconds: now.Sub(m.LastHeard).Seconds(),
			Root: rootString(m.Root), InSync: inSync(m, local), LagSeconds: n.lags.lag(m.ID, now).Seconds(),
			Segment: m.Segment,
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
		Group:             n.groupAddr(),
		Segment:           n.cfg.Segment,
		Relay:             n.relayRole(),
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
		out = append(out, metrics.MemberStat{ID: m.ID.String(), Hostname: m.Hostname, Segment: m.Segment, LastHeardSeconds: now.Sub(m.LastHeard).Seconds(),
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

// newPeerSet reads and resolves unicast mode's peers. Their family is
// the bound address's (-i ADDR), in mixed mode the group's, else the
// peers' own (package peers).
func newPeerSet(cfg Config, logger *slog.Logger, met *metrics.Metrics) (*peers.Set, error) {
	pc := peers.Config{
		Specs: cfg.peerSpecs(), File: cfg.PeersFile, Port: cfg.Port,
		Interval: cfg.Heartbeat, MissedHeartbeats: cfg.MissedHeartbeats,
		Logger: logger.With("component", "peers"), Metrics: met,
	}
	if a, err := netip.ParseAddr(cfg.Interface); err == nil {
		pc.Family = 4
		if a.Unmap().Is6() {
			pc.Family = 6
		}
	}
	if cfg.Mixed {
		pc.Family = 4
		if cfg.Group.Is6() {
			pc.Family = 6
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return peers.New(ctx, pc)
}

// groupAddr is the group and port as an address with a port is written:
// 224.0.0.108:5000, [ff02::108]:5000.
func (n *Node) groupAddr() string {
	g := netip.AddrPortFrom(n.cfg.Group, uint16(n.cfg.Port)).String()
	switch {
	case n.cfg.Relay():
		return g + " relayed to other segments"
	case !n.cfg.Unicast():
		return g
	case n.cfg.Mixed:
		return g + " and unicast peers"
	}
	return fmt.Sprintf("unicast peers, port %d", n.cfg.Port)
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
