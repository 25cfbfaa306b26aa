package peers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

// Config configures a Set. Zero values of optional fields take the
// defaults documented on each field.
type Config struct {
	// Specs are the peers given on the command line (--peer).
	Specs []Spec
	// File is a list of peers (ParseList), read at New and again
	// whenever it changes (--peers-file); "" for none.
	File string
	// Port is the port of a peer named without one: the daemon's own.
	Port int
	// Family is 4 or 6: every peer address is of this family. 0 picks
	// it from the peers New resolves: IPv4 if any has an IPv4 address,
	// else IPv6.
	Family int
	// Interval and MissedHeartbeats are this daemon's heartbeat settings:
	// a learned address is forgotten once silent for MissedHeartbeats of
	// its member's announced intervals (at least Timeout), as the member
	// table forgets a member.
	Interval         time.Duration
	MissedHeartbeats int
	// Timeout is how long a learned address lives without a heartbeat of
	// its own; default MissedHeartbeats × Interval + Interval/2, the
	// member table's.
	Timeout time.Duration
	// MaxLearned bounds the learned addresses; default 1024, as many as
	// the member table holds. Past it new addresses are ignored and
	// counted (drop reason peer_limit): a flood of forged heartbeats from
	// many addresses costs bounded memory and bounded sends.
	MaxLearned int
	// ResolveEvery is how often DNS names are looked up again, so that
	// a name listing every member follows members that come and go;
	// default 30 s.
	ResolveEvery time.Duration
	// PollEvery is how often File is checked for a change besides the
	// inotify watch of its directory (which a network filesystem or a
	// full watch table may not deliver); default 10 s.
	PollEvery time.Duration
	// Resolve looks a name up; default the system resolver, both families
	// (addresses of the other family are left out).
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	Logger  *slog.Logger
	Metrics *metrics.Metrics
}

// lookupTimeout bounds one name's lookup.
const lookupTimeout = 5 * time.Second

// maxListed bounds the listed addresses, whatever a DNS answer holds.
const maxListed = 4096

// New reads File, resolves every peer and returns the set. Every peer
// must parse and File must be a list of peers; a name that does not
// resolve is a warning (it is retried every ResolveEvery) unless no peer
// at all has an address, which is an error. A set with no peer at all
// (an empty File) is valid: it learns its peers from their heartbeats.
func New(ctx context.Context, cfg Config) (*Set, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	s := &Set{cfg: cfg, log: cfg.Logger, met: cfg.Metrics, kick: make(chan struct{}, 1),
		peers: map[netip.AddrPort]*entry{}, group: map[wire.NodeID]time.Time{}}
	s.src.init(cfg.Specs)
	var fileSpecs []Spec
	if cfg.File != "" {
		b, specs, err := readList(cfg.File, cfg.Port, 0)
		if err != nil {
			return nil, err
		}
		s.src.file, fileSpecs = b, specs
	}
	s.src.resolveAll(ctx, s, append(cfg.Specs, fileSpecs...))
	s.fam6 = cfg.Family == 6 || cfg.Family == 0 && s.src.only6()
	fam := 4
	if s.fam6 {
		fam = 6
	}
	for _, sp := range cfg.Specs {
		if err := familyOK(sp, fam); err != nil {
			return nil, fmt.Errorf("--peer %v", err)
		}
	}
	if cfg.File != "" {
		// Again with the family known, for the line of a misfit.
		if _, _, err := readList(cfg.File, cfg.Port, fam); err != nil {
			return nil, err
		}
	}
	s.src.fileSpecs = fileSpecs
	addrs := s.src.listed(s.fam6)
	switch {
	case len(addrs) == 0 && len(s.src.failed) > 0:
		return nil, fmt.Errorf("no peer resolves to an address: %s", s.src.failures())
	case len(addrs) == 0 && len(s.src.answers) > 0:
		return nil, fmt.Errorf("no peer has an %s address (unicast mode speaks one family; -i with an address picks it)", map[bool]string{false: "IPv4", true: "IPv6"}[s.fam6])
	}
	for sp, err := range s.src.failed {
		s.log.Warn("peer does not resolve; retrying", "peer", sp.String(), "every", cfg.ResolveEvery, "err", err)
	}
	if len(addrs) > maxListed {
		s.log.Warn("too many listed peer addresses; the first are kept", "listed", len(addrs), "kept", maxListed)
		addrs = addrs[:maxListed]
	}
	s.setListed(addrs, time.Now())
	return s, nil
}

// fill validates cfg and fills its defaults.
func (cfg *Config) fill() error {
	if cfg.Port < 1 || cfg.Port > 65535 {
		return fmt.Errorf("peers: port %d out of range 1-65535", cfg.Port)
	}
	if cfg.Family != 0 && cfg.Family != 4 && cfg.Family != 6 {
		return fmt.Errorf("peers: family %d, want 4 or 6", cfg.Family)
	}
	if cfg.Interval <= 0 || cfg.MissedHeartbeats < 1 {
		return errors.New("peers: heartbeat interval must be positive and missed heartbeats at least 1")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Duration(cfg.MissedHeartbeats)*cfg.Interval + cfg.Interval/2
	}
	if cfg.MaxLearned == 0 {
		cfg.MaxLearned = 1024
	}
	if cfg.ResolveEvery == 0 {
		cfg.ResolveEvery = 30 * time.Second
	}
	if cfg.PollEvery == 0 {
		cfg.PollEvery = 10 * time.Second
	}
	if cfg.Timeout < 0 || cfg.MaxLearned < 0 || cfg.ResolveEvery < 0 || cfg.PollEvery < 0 {
		return errors.New("peers: negative limit")
	}
	if cfg.Resolve == nil {
		cfg.Resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// familyOK refuses a literal address of the other family.
func familyOK(sp Spec, fam int) error {
	a, ok := sp.literal()
	if !ok || a.Is6() == (fam == 6) {
		return nil
	}
	other := map[int]string{4: "IPv4", 6: "IPv6"}
	return fmt.Errorf("%v is %s, and this member's peers are %s (unicast mode speaks one family; -i with an address picks it)",
		sp, other[10-fam], other[fam])
}

// failures lists the names that did not resolve and why.
func (src *sources) failures() string {
	var b strings.Builder
	for sp, err := range src.failed {
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %v", sp.Host, err)
	}
	return b.String()
}
