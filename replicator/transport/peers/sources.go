package peers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"time"
)

// sources are where the listed addresses come from: the specs of the
// command line and of the file, and the last answer for each. They
// belong to New and then to Run's goroutine.
type sources struct {
	flagSpecs []Spec
	fileSpecs []Spec
	// file is the content fileSpecs were read from; fileErr the last
	// refusal of a changed content, logged once.
	file    []byte
	fileErr string
	// answers holds each spec's addresses as last resolved (a name that
	// stops resolving keeps its last answer); failed the specs whose
	// last lookup failed.
	answers map[Spec][]netip.Addr
	failed  map[Spec]error
}

func (src *sources) init(flags []Spec) {
	src.flagSpecs = flags
	src.answers = map[Spec][]netip.Addr{}
	src.failed = map[Spec]error{}
}

// resolveAll looks every spec up (a literal is its own answer).
func (src *sources) resolveAll(ctx context.Context, s *Set, specs []Spec) {
	for _, sp := range specs {
		src.resolve(ctx, s, sp)
	}
}

// resolve looks sp up, keeping the previous answer when the lookup fails.
func (src *sources) resolve(ctx context.Context, s *Set, sp Spec) {
	if a, ok := sp.literal(); ok {
		src.answers[sp] = []netip.Addr{a}
		return
	}
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	addrs, err := s.cfg.Resolve(lctx, sp.Host)
	if err == nil && len(addrs) == 0 {
		err = errors.New("no address")
	}
	if err != nil {
		if _, was := src.failed[sp]; !was && src.answers[sp] != nil {
			s.log.Warn("peer name does not resolve any more; keeping its last addresses", "peer", sp.String(), "err", err)
		}
		src.failed[sp] = err
		return
	}
	if _, was := src.failed[sp]; was && src.answers[sp] == nil {
		s.log.Info("peer name resolves now", "peer", sp.String(), "addrs", len(addrs))
	}
	delete(src.failed, sp)
	clean := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		if checkAddr(a) == nil {
			clean = append(clean, a)
		}
	}
	slices.SortFunc(clean, netip.Addr.Compare)
	src.answers[sp] = slices.Compact(clean)
}

// only6 reports whether every answer is IPv6 (and there is one).
func (src *sources) only6() bool {
	six := false
	for _, as := range src.answers {
		for _, a := range as {
			if a.Is4() {
				return false
			}
			six = true
		}
	}
	return six
}

// listed returns the addresses of every current spec of the family.
func (src *sources) listed(fam6 bool) []netip.AddrPort {
	var out []netip.AddrPort
	seen := map[netip.AddrPort]bool{}
	for _, sp := range slices.Concat(src.flagSpecs, src.fileSpecs) {
		for _, a := range src.answers[sp] {
			ap := netip.AddrPortFrom(a, sp.Port)
			if a.Is6() == fam6 && !seen[ap] {
				seen[ap] = true
				out = append(out, ap)
			}
		}
	}
	return out
}

// hasNames reports whether some spec is a DNS name.
func (src *sources) hasNames() bool {
	for _, sp := range slices.Concat(src.flagSpecs, src.fileSpecs) {
		if _, ok := sp.literal(); !ok {
			return true
		}
	}
	return false
}

// readList reads and parses the peers file; fam (4 or 6, 0 for either)
// refuses literal addresses of the other family, with their line.
func readList(name string, port, fam int) ([]byte, []Spec, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, fmt.Errorf("peers file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("peers file: %w", err)
	}
	specs, err := parseList(bytes.NewReader(b), port, fam)
	if err != nil {
		return nil, nil, fmt.Errorf("peers file %s: %w", name, err)
	}
	return b, specs, nil
}

// Run keeps the set current until ctx ends: it re-resolves the names
// every ResolveEvery, reloads File when it changes (a change that does
// not parse is logged with its line and changes nothing), and forgets
// silent learned addresses. It returns nil when ctx ends.
func (s *Set) Run(ctx context.Context) error {
	expiry := time.NewTicker(max(s.cfg.Timeout/4, 10*time.Millisecond))
	defer expiry.Stop()
	resolve := time.NewTicker(s.cfg.ResolveEvery)
	defer resolve.Stop()
	var changed <-chan struct{}
	if s.cfg.File != "" {
		fw := NewFileWatch(s.cfg.File, s.cfg.PollEvery, s.log)
		wctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			fw.Run(wctx)
		}()
		defer func() {
			stop()
			<-done
		}()
		changed = fw.C
		// What changed between New and the watch.
		s.reload(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-expiry.C:
			s.Expire(now)
		case <-resolve.C:
			if s.src.hasNames() || len(s.src.failed) > 0 {
				s.src.resolveAll(ctx, s, slices.Concat(s.src.flagSpecs, s.src.fileSpecs))
				s.applyListed()
			}
		case <-changed:
			s.reload(ctx)
		}
	}
}

// reload reads the file again and, if its content changed and parses,
// lists its peers instead of the old ones.
func (s *Set) reload(ctx context.Context) {
	fam := 4
	if s.fam6 {
		fam = 6
	}
	b, specs, err := readList(s.cfg.File, s.cfg.Port, fam)
	if err != nil {
		// Once per distinct error: the poll would repeat it.
		if msg := err.Error(); msg != s.src.fileErr {
			s.src.fileErr = msg
			s.log.Error("peers file refused; keeping the previous list", "err", err, "peers", len(s.src.fileSpecs))
		}
		return
	}
	s.src.fileErr = ""
	if bytes.Equal(b, s.src.file) {
		return
	}
	s.src.file = b
	old := s.src.fileSpecs
	s.src.fileSpecs = specs
	for _, sp := range specs {
		if _, ok := s.src.answers[sp]; !ok {
			s.src.resolve(ctx, s, sp)
		}
	}
	for _, sp := range old {
		if !slices.Contains(specs, sp) && !slices.Contains(s.src.flagSpecs, sp) {
			delete(s.src.answers, sp)
			delete(s.src.failed, sp)
		}
	}
	s.log.Info("peers file reloaded", "file", s.cfg.File, "peers", len(specs))
	s.applyListed()
}

// applyListed lists the current specs' addresses.
func (s *Set) applyListed() {
	addrs := s.src.listed(s.fam6)
	if len(addrs) > maxListed {
		addrs = addrs[:maxListed]
	}
	s.setListed(addrs, time.Now())
}
