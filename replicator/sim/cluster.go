package sim

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/makuo/makuo/exclude"
	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/apply"
	"github.com/makuo/makuo/replicator/session"
	"github.com/makuo/makuo/replicator/stage"
	"github.com/makuo/makuo/replicator/transport/transporttest"
	"github.com/makuo/makuo/replicator/tree"
	"github.com/makuo/makuo/replicator/wire"
)

// Datagram sizes of the simulated segment: a 1500-byte MTU.
const (
	maxDatagram = 1472
	maxPayload  = maxDatagram - wire.HeaderLen
)

// Cluster is a simulated makuo cluster: members with real base
// directories on disk, the real session, apply and source packages, and a
// seeded in-memory network under a virtual clock, all driven from one
// goroutine. The same seed replays the same run.
type Cluster struct {
	cfg     Config
	rng     *rand.Rand
	net     *transporttest.Network
	now     time.Time
	nodes   []*Node
	byID    map[wire.NodeID]*Node
	met     *metrics.Metrics
	push    *pushRun
	expired time.Time // last idle sweep
	stats   Stats
	// Trace, if set, receives one line per event (for debugging a seed).
	Trace func(format string, args ...any)
}

// Config shapes a simulated cluster.
type Config struct {
	Seed      uint64
	Receivers int
	// Faults applies to every link.
	Faults transporttest.Faults
	// Rate is the link rate in bits per second the sender paces to at most
	// (and the virtual time of a datagram on a sender's uplink).
	Rate float64
	// Dir holds the members' base directories (a t.TempDir()).
	Dir string
	// Watch makes the receivers watching members (-w): the conflict rule
	// of watcher sessions protects their unreplicated edits.
	Watch bool
	// Excludes are the receivers' own exclude patterns.
	Excludes []string
	// Uplink is every member's egress bottleneck (a shaped link: a rate
	// below the sender's and a queue that drops when full); the zero
	// value is none.
	Uplink transporttest.Uplink
	// DecideCost is the virtual time a receiving member spends deciding
	// each offered entry (a real one looks each path up on disk), so
	// that the answers to a push of many files come over a while; its
	// answers leave in order, after the work before them. Zero:
	// decisions take no time.
	DecideCost time.Duration
}

// Stats count what a run did.
type Stats struct {
	Datagrams uint64 // sent by anyone
	Unicast   uint64 // of them, answers sent to their sender alone
	Bytes     uint64
	Polls     uint64
	Delivered uint64
	// SenderDatagrams and SenderBytes are what the pushing member sent
	// (the data, offers, polls and commits of its sessions).
	SenderDatagrams uint64
	SenderBytes     uint64
}

// Node is one simulated member.
type Node struct {
	ID       wire.NodeID
	Name     string
	Base     string
	c        *Cluster
	dir      *stage.Dir
	root     *os.Root
	index    *tree.Index
	prov     *apply.Provenance
	budget   *session.Budget
	appliers map[wire.NodeID]*apply.Applier
	// unicast holds the senders whose last offer asked for answers by
	// unicast (wire.SessionReplyUnicast), as a daemon's receive loop
	// keeps it.
	unicast map[wire.NodeID]bool
	replay  *replayCheck
	Down    bool
	seq     uint64
	inc     uint64
	hashes  map[string]cachedHash // Snapshot's cache
	turns   sync.Mutex            // shared by the member's appliers
	busy    time.Time             // until when the member works on what it received (DecideCost)
}

// New builds a cluster of one sender (node 0) and cfg.Receivers receivers.
func New(cfg Config) (*Cluster, error) {
	if cfg.Rate == 0 {
		cfg.Rate = 1e9
	}
	c := &Cluster{
		cfg:  cfg,
		rng:  rand.New(rand.NewPCG(cfg.Seed, 0x5eed)),
		net:  transporttest.NewNetwork(cfg.Seed),
		now:  time.Unix(1_700_000_000, 0),
		byID: map[wire.NodeID]*Node{},
		met:  metrics.New(prometheus.NewRegistry(), "sim"),
	}
	c.net.SetDefault(cfg.Faults)
	for i := range cfg.Receivers + 1 {
		n := &Node{ID: wire.NodeID(0x1000 + i), Name: fmt.Sprintf("m%d", i), c: c}
		n.Base = filepath.Join(cfg.Dir, n.Name)
		if err := os.MkdirAll(n.Base, 0o755); err != nil {
			return nil, err
		}
		if err := n.start(); err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
		c.byID[n.ID] = n
		c.net.Attach(n.ID)
		c.net.SetUplink(n.ID, cfg.Uplink)
	}
	return c, nil
}

// Sender returns the pushing member.
func (c *Cluster) Sender() *Node { return c.nodes[0] }

// Receivers returns the receiving members.
func (c *Cluster) Receivers() []*Node { return c.nodes[1:] }

// Now returns the virtual time.
func (c *Cluster) Now() time.Time { return c.now }

// Metrics returns the members' shared metrics.
func (c *Cluster) Metrics() *metrics.Metrics { return c.met }

// Stats returns the run's counters.
func (c *Cluster) Stats() Stats { return c.stats }

// Network returns the simulated network (for faults and partitions).
func (c *Cluster) Network() *transporttest.Network { return c.net }

// Close releases every member's files.
func (c *Cluster) Close() {
	for _, n := range c.nodes {
		n.stop(true)
	}
}

// start opens the member's base directory and indexes it, as a daemon
// does at start: temp files a crash left behind are removed first.
func (n *Node) start() error {
	var err error
	if n.dir, err = stage.OpenUnsynced(n.Base); err != nil {
		return err
	}
	if _, err := n.dir.CleanStale(); err != nil {
		return err
	}
	if n.root, err = os.OpenRoot(n.Base); err != nil {
		return err
	}
	if n.index, err = tree.New(n.root, tree.Options{SkipName: stage.IsTempName}); err != nil {
		return err
	}
	if _, err := n.index.Scan(context.Background()); err != nil {
		return err
	}
	n.prov = apply.NewProvenance(n.c.cfg.Watch, n.c.Now)
	n.budget = session.NewBudget(64 << 20)
	n.appliers = map[wire.NodeID]*apply.Applier{}
	n.unicast = map[wire.NodeID]bool{}
	n.replay = newReplayCheck()
	n.inc++
	n.seq = 0
	n.busy = time.Time{}
	n.Down = false
	return nil
}

// stop ends the member: cleanly (sessions discarded) or as a crash (temp
// files stay on disk for the next start to remove).
func (n *Node) stop(clean bool) {
	if clean {
		for _, a := range n.appliers {
			a.Close()
		}
	}
	n.appliers = nil
	if n.dir != nil {
		n.dir.Close()
		n.root.Close()
		n.dir, n.root = nil, nil
	}
	n.Down = true
}

// Crash kills the member without a goodbye: it stops receiving, its
// sessions are lost with their temp files left on disk.
func (c *Cluster) Crash(n *Node) {
	c.tracef("crash %s", n.Name)
	n.stop(false)
	c.net.Detach(n.ID)
}

// Restart starts a crashed member again.
func (c *Cluster) Restart(n *Node) error {
	c.tracef("restart %s", n.Name)
	if err := n.start(); err != nil {
		return err
	}
	c.net.Attach(n.ID)
	return nil
}

func (n *Node) self() wire.NodeID { return n.ID }

// applier returns the member's applier for the sessions of node from.
func (n *Node) applier(from wire.NodeID) *apply.Applier {
	a := n.appliers[from]
	if a == nil {
		cfg := apply.Config{
			Dir: n.dir, Index: n.index, Provenance: n.prov, Excludes: mustExclude(n.c.cfg.Excludes), Self: n.self, Hostname: n.Name, Watch: n.c.cfg.Watch,
			Now: n.c.Now, Log: slog.New(slog.DiscardHandler), Metrics: n.c.met, Turns: &n.turns,
		}
		in := session.InboxConfig{Self: n.self, Node: from, MaxSessions: 8, Idle: 2 * time.Minute, MaxPayload: maxPayload, Budget: n.budget}
		a = apply.New(cfg, in, func(m wire.Message) { n.c.answer(n, from, m) })
		n.appliers[from] = a
	}
	return a
}

func mustExclude(patterns []string) *exclude.Set {
	s, err := exclude.New(patterns)
	if err != nil {
		panic("bug: " + err.Error())
	}
	return s
}

// transmit multicasts m from member n.
func (c *Cluster) transmit(n *Node, m wire.Message) {
	if b := c.frame(n, m); b != nil {
		c.net.Send(c.now, n.ID, b)
	}
}

// answer sends member n's answer m to sender to: by unicast if its last
// offer asked for that, else to the group.
func (c *Cluster) answer(n *Node, to wire.NodeID, m wire.Message) {
	if !n.unicast[to] {
		if b := c.frame(n, m); b != nil {
			c.net.Send(maxTime(c.now, n.busy), n.ID, b)
		}
		return
	}
	if b := c.frame(n, m); b != nil {
		c.stats.Unicast++
		c.net.SendTo(maxTime(c.now, n.busy), n.ID, to, b)
	}
}

// frame counts and frames m as member n's next datagram; nil if n is down.
func (c *Cluster) frame(n *Node, m wire.Message) []byte {
	if n.Down {
		return nil
	}
	n.seq++
	b := wire.Append(nil, wire.Header{Node: n.ID, Incarnation: n.inc, Seq: n.seq}, m)
	c.stats.Datagrams++
	c.stats.Bytes += uint64(len(b))
	if n == c.Sender() {
		c.stats.SenderDatagrams++
		c.stats.SenderBytes += uint64(len(b))
	}
	if _, ok := m.(*wire.Poll); ok {
		c.stats.Polls++
	}
	return b
}

// deliver hands one datagram to its member.
func (c *Cluster) deliver(d transporttest.Delivery) error {
	n := c.byID[d.To]
	if n == nil || n.Down {
		return nil
	}
	h, m, err := wire.Parse(d.Datagram)
	if err != nil {
		return fmt.Errorf("bug: %s sent an undecodable datagram: %w", d.From, err)
	}
	if !n.replay.fresh(h) {
		return nil
	}
	c.stats.Delivered++
	switch m.(type) {
	case *wire.Need, *wire.Nack, *wire.Result, *wire.ChunkNeed, *wire.Busy:
		if p := c.push; p != nil && p.from == n {
			p.s.Step(c.now, h.Node, m)
			p.stepped = true
		}
	case *wire.Offer, *wire.Data, *wire.Poll, *wire.Commit, *wire.Abort, *wire.Chunks:
		if o, ok := m.(*wire.Offer); ok {
			n.unicast[h.Node] = o.Flags&wire.SessionReplyUnicast != 0
			n.busy = maxTime(c.now, n.busy).Add(c.cfg.DecideCost * time.Duration(len(o.Items)))
		}
		n.applier(h.Node).Handle(c.now, m)
	}
	return nil
}

// expireIdle lets every member forget sessions whose sender went silent.
func (c *Cluster) expireIdle() {
	if c.now.Sub(c.expired) < time.Second {
		return
	}
	c.expired = c.now
	for _, n := range c.nodes {
		if !n.Down {
			for _, a := range n.appliers {
				a.Expire(c.now)
			}
		}
	}
}

// Settle runs the network until nothing is in flight and then lets d of
// virtual time pass, so that idle sessions expire.
func (c *Cluster) Settle(d time.Duration) error {
	end := c.now.Add(d)
	for {
		at, ok := c.net.Peek()
		if !ok || at.After(end) {
			break
		}
		c.now = maxTime(c.now, at)
		del, _ := c.net.Next()
		if err := c.deliver(del); err != nil {
			return err
		}
		c.expireIdle()
	}
	for c.now.Before(end) {
		c.now = minTime(end, c.now.Add(time.Second))
		c.expireIdle()
	}
	return nil
}

func (c *Cluster) tracef(format string, args ...any) {
	if c.Trace != nil {
		c.Trace("%v "+format, append([]any{c.now.Sub(time.Unix(1_700_000_000, 0))}, args...)...)
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// replayCheck is the transport's duplicate filter, in the simulation:
// each (node, incarnation, seq) is taken once; the network's duplicates
// stop here as they would at a real member.
type replayCheck struct{ seen map[[3]uint64]struct{} }

func newReplayCheck() *replayCheck { return &replayCheck{seen: map[[3]uint64]struct{}{}} }

func (r *replayCheck) fresh(h wire.Header) bool {
	k := [3]uint64{uint64(h.Node), h.Incarnation, h.Seq}
	if _, dup := r.seen[k]; dup {
		return false
	}
	r.seen[k] = struct{}{}
	return true
}
