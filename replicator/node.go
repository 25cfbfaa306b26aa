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
	"time"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/control"
	"github.com/makuo/makuo/replicator/membership"
	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/replicator/wire"
)

// Node is one makuosan daemon's engine.
type Node struct {
	cfg         Config
	log         *slog.Logger
	met         *metrics.Metrics
	id          wire.NodeID
	incarnation uint64
	started     time.Time
	conn        *transport.Conn
	members     *membership.Service
}

var _ control.Backend = (*Node)(nil)

// New validates cfg, loads the node id and opens the multicast socket, so
// that configuration and bind errors surface before Run.
func New(cfg Config, logger *slog.Logger, met *metrics.Metrics) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	id, err := loadNodeID(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	started := time.Now()
	n := &Node{
		cfg:         cfg,
		log:         logger,
		met:         met,
		id:          id,
		incarnation: uint64(started.UnixNano()),
		started:     started,
	}
	n.conn, err = transport.Listen(transport.Config{
		Group:       cfg.Group,
		Port:        cfg.Port,
		Interface:   cfg.Interface,
		TTL:         cfg.TTL,
		RecvBuffer:  cfg.RecvBuffer,
		SendBuffer:  cfg.SendBuffer,
		MaxDatagram: cfg.MaxDatagram,
		Key:         cfg.Key,
		Node:        id,
		Incarnation: n.incarnation,
		Logger:      logger.With("component", "transport"),
		Metrics:     met,
	})
	if err != nil {
		return nil, err
	}
	mc := membership.DefaultConfig()
	mc.Hostname, mc.Version, mc.Roles = cfg.Hostname, Version, n.roles()
	mc.Interval, mc.MissedHeartbeats = cfg.Heartbeat, cfg.MissedHeartbeats
	mc.Logger = logger.With("component", "membership")
	n.members, err = membership.New(mc, n.conn)
	if err != nil {
		n.conn.Close()
		return nil, err
	}
	return n, nil
}

// ID returns the node id.
func (n *Node) ID() wire.NodeID { return n.id }

func (n *Node) roles() wire.Roles {
	var r wire.Roles
	if !n.cfg.NoSend {
		r |= wire.RoleSend
	}
	if !n.cfg.NoReceive {
		r |= wire.RoleRecv
	}
	return r
}

// Run serves until ctx ends, then says goodbye to the group and returns
// after every goroutine it started has finished.
func (n *Node) Run(ctx context.Context) error {
	n.log.Info("node started", "node", n.id, "hostname", n.cfg.Hostname, "group",
		fmt.Sprintf("%v:%d", n.cfg.Group, n.cfg.Port), "base", n.cfg.Base, "sealed", n.cfg.Key != nil)
	// The socket must outlive the membership loop so that the goodbye goes
	// out; it gets its own context, cancelled after that loop returns.
	tctx, tcancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = n.conn.Run(tctx) })
	wg.Go(n.dispatch)
	err := n.members.Run(ctx)
	tcancel()
	wg.Wait()
	if err == nil {
		err = runErr
	}
	return err
}

// dispatch decodes queued packets and routes them by type, until the
// transport closes the queue.
func (n *Node) dispatch() {
	for p := range n.conn.Packets() {
		m, err := wire.ParsePayload(p.Header.Type, p.Payload)
		from := p.From.Addr()
		h := p.Header
		p.Release()
		if err != nil {
			n.met.Drop(metrics.DropMalformed)
			n.log.Debug("malformed datagram", "from", from, "type", h.Type, "err", err)
			continue
		}
		n.members.Handle(h, m, from)
	}
}

// Members implements control.Backend.
func (n *Node) Members(context.Context) ([]control.Member, error) {
	now := time.Now()
	out := []control.Member{{
		ID: n.id.String(), Hostname: n.cfg.Hostname, Addr: addrString(n.conn.LocalAddr()), Version: Version,
		Roles: n.roles().String(), Self: true, Joined: n.started,
	}}
	for _, m := range n.members.Table().Snapshot() {
		out = append(out, control.Member{
			ID: m.ID.String(), Hostname: m.Hostname, Addr: addrString(m.Addr), Version: m.Version,
			Roles: m.Roles.String(), Joined: m.Joined, LastHeardSeconds: now.Sub(m.LastHeard).Seconds(),
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
		PID:           os.Getpid(),
		Version:       Version,
		NodeID:        n.id.String(),
		Hostname:      n.cfg.Hostname,
		Base:          n.cfg.Base,
		Group:         n.cfg.Group.String() + ":" + strconv.Itoa(n.cfg.Port),
		Started:       n.started,
		UptimeSeconds: time.Since(n.started).Seconds(),
		Members:       n.members.Table().Len() + 1,
		Counters:      n.counters(),
	}, nil
}

// MemberStats feeds the per-member metrics at scrape time.
func (n *Node) MemberStats() []metrics.MemberStat {
	now := time.Now()
	var out []metrics.MemberStat
	for _, m := range n.members.Table().Snapshot() {
		out = append(out, metrics.MemberStat{ID: m.ID.String(), Hostname: m.Hostname, LastHeardSeconds: now.Sub(m.LastHeard).Seconds()})
	}
	return out
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
