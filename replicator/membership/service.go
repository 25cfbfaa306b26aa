package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

// Config configures a Service.
type Config struct {
	// Hostname, Version and Roles are announced in every heartbeat.
	Hostname string
	Version  string
	Roles    wire.Roles
	// Segment (--segment) is announced too, when set.
	Segment string
	// Interval between heartbeats; default 1 s as in the brief: fast enough
	// to notice a dead member within seconds, cheap (one small datagram per
	// member per second). At most MaxInterval, which is what peers honour.
	Interval time.Duration
	// Jitter spreads heartbeats by up to ±Jitter×Interval; default 0.1.
	Jitter float64
	// MissedHeartbeats a member may miss before it is expired; default 3.
	// The limit is measured in the member's own interval, plus half an
	// interval of grace for jitter and scheduling.
	MissedHeartbeats int
	// MaxMembers bounds the member table; default 1024, far more than a
	// multicast segment serves, yet small enough that a flood of forged
	// heartbeats with random node ids costs bounded memory, metric series
	// and per-member work. Past it, heartbeats of new members are ignored
	// and counted (drop reason member_limit) until members leave.
	MaxMembers int
	// Root returns the tree root hash to announce; nil announces 0.
	Root   func() uint64
	Logger *slog.Logger
	// Metrics counts refused members; nil counts nothing.
	Metrics *metrics.Metrics
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{Interval: time.Second, Jitter: 0.1, MissedHeartbeats: 3, MaxMembers: 1024}
}

// Sender multicasts one message. Implementations must be safe for
// concurrent use.
type Sender interface {
	Send(wire.Message) error
}

// Service runs the heartbeat and expiry loop over a Table.
type Service struct {
	cfg   Config
	send  Sender
	table *Table
	kick  chan struct{}
	// fullLogged is when the table last refused a member and said so
	// (unix ns): once per fullLogEvery is enough.
	fullLogged atomic.Int64
}

// fullLogEvery rate-limits the log line about a full member table.
const fullLogEvery = time.Minute

// New validates cfg and returns a Service that sends through s.
func New(cfg Config, s Sender) (*Service, error) {
	if cfg.Interval <= 0 {
		return nil, errors.New("membership: heartbeat interval must be positive")
	}
	if cfg.Interval > MaxInterval {
		return nil, fmt.Errorf("membership: heartbeat interval %v exceeds %v, the longest peers honour", cfg.Interval, MaxInterval)
	}
	if cfg.MaxMembers < 1 {
		return nil, errors.New("membership: max members must be at least 1")
	}
	if cfg.MissedHeartbeats < 1 {
		return nil, errors.New("membership: missed heartbeats must be at least 1")
	}
	if cfg.Jitter < 0 || cfg.Jitter >= 1 {
		return nil, fmt.Errorf("membership: jitter %v outside [0,1)", cfg.Jitter)
	}
	if cfg.Hostname == "" {
		return nil, errors.New("membership: hostname is empty")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	minLife := time.Duration(cfg.MissedHeartbeats)*cfg.Interval + cfg.Interval/2
	table := NewTable(cfg.MissedHeartbeats, minLife, cfg.MaxMembers)
	table.segment = cfg.Segment
	return &Service{cfg: cfg, send: s, table: table, kick: make(chan struct{}, 1)}, nil
}

// Table returns the member table.
func (s *Service) Table() *Table { return s.table }

// Run heartbeats and expires members until ctx ends, then multicasts a
// goodbye and returns nil.
func (s *Service) Run(ctx context.Context) error {
	s.beat()
	expiry := time.NewTicker(s.cfg.Interval / 4)
	defer expiry.Stop()
	next := time.NewTimer(s.nextBeat())
	defer next.Stop()
	for {
		select {
		case <-ctx.Done():
			// Twice: a single lost datagram would leave peers waiting for
			// the expiry instead.
			for range 2 {
				if err := s.send.Send(&wire.Goodbye{}); err != nil {
					s.cfg.Logger.Warn("goodbye not sent", "err", err)
				}
			}
			return nil
		case <-next.C:
			s.beat()
			next.Reset(s.nextBeat())
		case <-s.kick:
			s.beat()
		case now := <-expiry.C:
			for _, m := range s.table.Expire(now) {
				s.cfg.Logger.Info("member expired", "member", m.ID, "hostname", m.Hostname, "addr", m.Addr,
					"silent", now.Sub(m.LastHeard).Round(time.Millisecond))
			}
		}
	}
}

// Handle processes a heartbeat or goodbye from a peer; other messages are
// ignored. It never blocks.
func (s *Service) Handle(h wire.Header, m wire.Message, from netip.Addr) {
	now := time.Now()
	switch m := m.(type) {
	case *wire.Heartbeat:
		s.heard(h, m, from, now)
	case *wire.Goodbye:
		if gone, ok := s.table.Leave(h.Node, h.Incarnation, from); ok {
			s.cfg.Logger.Info("member left", "member", gone.ID, "hostname", gone.Hostname, "addr", gone.Addr)
		}
	default:
		s.table.Touch(h.Node, h.Incarnation, now)
	}
}

func (s *Service) heard(h wire.Header, m *wire.Heartbeat, from netip.Addr, now time.Time) {
	switch s.table.Heard(h, m, from, now) {
	case Joined:
		s.cfg.Logger.Info("member joined", "member", h.Node, "hostname", m.Hostname, "addr", from, "version", m.Version)
		s.kickBeat()
	case Restarted:
		s.cfg.Logger.Info("member restarted", "member", h.Node, "hostname", m.Hostname, "addr", from)
		s.kickBeat()
	case Moved:
		s.cfg.Logger.Info("member moved to another address", "member", h.Node, "hostname", m.Hostname, "addr", from)
	case Contested:
		old, _ := s.table.Get(h.Node)
		s.cfg.Logger.Warn("heartbeat for a member from another address while its own is live; ignored (a forged heartbeat, or two daemons with one node id)",
			"member", h.Node, "hostname", m.Hostname, "addr", old.Addr, "other", from)
	case Refused:
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.Drop(metrics.DropMemberLimit)
		}
		last := s.fullLogged.Load()
		if now.UnixNano()-last >= int64(fullLogEvery) && s.fullLogged.CompareAndSwap(last, now.UnixNano()) {
			s.cfg.Logger.Warn("member table full; heartbeats of new members ignored (forged heartbeats? or raise the limit)",
				"limit", s.table.Max(), "member", h.Node, "addr", from)
		}
	}
}

// Kick sends a heartbeat soon, out of schedule: the node calls it when its
// root changed, so that peers (and msync --wait) learn it at once.
func (s *Service) Kick() { s.kickBeat() }

func (s *Service) kickBeat() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Service) beat() {
	hb := &wire.Heartbeat{Roles: s.cfg.Roles, Interval: s.cfg.Interval, Hostname: s.cfg.Hostname, Version: s.cfg.Version,
		Segment: s.cfg.Segment}
	if s.cfg.Root != nil {
		hb.Root = s.cfg.Root()
	}
	if err := s.send.Send(hb); err != nil {
		s.cfg.Logger.Warn("heartbeat not sent", "err", err)
	}
}

func (s *Service) nextBeat() time.Duration {
	j := s.cfg.Jitter * (2*rand.Float64() - 1)
	return time.Duration(float64(s.cfg.Interval) * (1 + j))
}
