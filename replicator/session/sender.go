package session

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// Timing of a send session. Rounds are short because a LAN round trip is
// well under a millisecond; the session timeout is what bounds a dead
// member's cost.
const (
	offerRetry  = 200 * time.Millisecond // first re-send of unanswered offers and chunk lists; doubles up to a second
	maxRetry    = time.Second
	commitRetry = 300 * time.Millisecond
	expireEvery = 50 * time.Millisecond // how often silent members are looked for
)

// Phase is where a session stands.
type Phase uint8

// Phases, in the order a session goes through them.
const (
	PhaseOffer  Phase = iota // offers out, waiting for every member's needs
	PhaseChunks              // chunk lists of deltas out, waiting for the chunks members lack
	PhaseData                // data, polls and repairs
	PhaseCommit              // commit out, waiting for every member's result
	PhaseDone
)

func (p Phase) String() string {
	return [...]string{"offer", "chunk lists", "data", "commit", "done"}[p]
}

// SenderConfig describes one send session.
type SenderConfig struct {
	Session uint64
	Flags   wire.SessionFlags
	// Entries are offered in this order (parents before children, a hard
	// link's first name before the others). The Sender keeps the slice.
	Entries  []wire.Entry
	Targets  []wire.NodeID // carried in offers; empty: every receiving member
	Excludes []string      // the sender's excludes, for mirror deletes
	// Members are the receivers expected to answer.
	Members []wire.NodeID
	// MaxPayload is the datagram payload available to a message; data
	// blocks carry MaxPayload - wire.DataHeaderLen bytes.
	MaxPayload int
	// Timeout drops a member that has not been heard from for this long.
	Timeout time.Duration
	// StartRate and MaxRate bound the adaptive send rate (bits/s; zero
	// takes StartRate and MaxRate).
	StartRate, MaxRate float64
	// Settled says StartRate is where an earlier session settled: the
	// rate grows from it with care instead of probing fast.
	Settled bool
}

// Out is one datagram for the driver to send: a message, or, when Msg is
// nil, data block Block, which the driver reads (Locate) and sends as a
// wire.Data.
type Out struct {
	Msg    wire.Message
	Block  uint64
	Repair bool // a block sent again because a member reported it missing
}

// SenderStats count what a session did, for metrics.
type SenderStats struct {
	PayloadBytes  uint64 // content bytes sent once
	Retransmits   uint64 // blocks sent again
	ChunksSent    uint64 // delta chunks some member lacked
	NacksReceived uint64
	EarlyBlocks   uint64  // blocks sent while later offers were still being answered
	BackOffs      uint64  // slow-downs for loss or a backlog
	Caps          uint64  // slow-downs to the rate a member got
	Rate          float64 // the current send rate, bits/s
}

// Sender is the sending side of one session: a state machine without I/O.
// The driver calls Next for what to send and when to call again, Step with
// every answer from a member, SetChunkLists when NeedChunkLists asks, and
// Gone when a member leaves the group. It is not safe for concurrent use.
type Sender struct {
	cfg       SenderConfig
	entries   []wire.Entry
	offers    []*wire.Offer
	blockSize int
	first     []uint64 // first block of each entry (files), by entry
	files     []int    // indexes of file entries, in block order
	total     uint64   // blocks in the session
	peers     []*peer
	byID      map[wire.NodeID]*peer
	phase     Phase
	started   bool
	retry     time.Duration
	resendAt  time.Time
	expireAt  time.Time
	commitAt  time.Time
	stats     SenderStats
	rate      rateControl
	chunks    chunkPhase
	data      dataPhase
}

// ErrConfig reports a SenderConfig that cannot describe a session.
var ErrConfig = errors.New("session: bad sender config")

// NewSender validates cfg and returns a Sender in PhaseOffer.
func NewSender(cfg SenderConfig) (*Sender, error) {
	bs := cfg.MaxPayload - wire.DataHeaderLen
	switch {
	case bs < wire.MinBlockSize || bs > wire.MaxBlockSize:
		return nil, fmt.Errorf("%w: payload %d leaves a block size of %d", ErrConfig, cfg.MaxPayload, bs)
	case len(cfg.Entries) > wire.MaxEntries:
		return nil, fmt.Errorf("%w: %d entries, at most %d", ErrConfig, len(cfg.Entries), wire.MaxEntries)
	case len(cfg.Targets) > wire.MaxTargets:
		return nil, fmt.Errorf("%w: %d targets, at most %d", ErrConfig, len(cfg.Targets), wire.MaxTargets)
	case cfg.Timeout <= 0:
		return nil, fmt.Errorf("%w: timeout %v", ErrConfig, cfg.Timeout)
	}
	s := &Sender{
		cfg:       cfg,
		entries:   cfg.Entries,
		blockSize: bs,
		byID:      make(map[wire.NodeID]*peer, len(cfg.Members)),
		rate:      newRateControl(cfg.StartRate, cfg.MaxRate, cfg.Settled),
	}
	base := wire.Offer{Session: cfg.Session, Flags: cfg.Flags, BlockSize: uint32(bs), Targets: cfg.Targets}
	s.offers = buildOffers(base, cfg.Entries, cfg.Excludes, cfg.MaxPayload)
	if err := s.layout(); err != nil {
		return nil, err
	}
	for _, id := range cfg.Members {
		if _, dup := s.byID[id]; dup {
			continue
		}
		p := &peer{id: id, answered: newBitset(uint64(len(s.offers))),
			change: newBitset(uint64(len(s.entries))), data: newBitset(uint64(len(s.entries))), basis: newBitset(uint64(len(s.entries)))}
		s.peers = append(s.peers, p)
		s.byID[id] = p
	}
	return s, nil
}

// layout assigns blocks to file entries.
func (s *Sender) layout() error {
	s.first = make([]uint64, len(s.entries))
	nfiles := 0
	for i := range s.entries {
		if s.entries[i].Kind == wire.KindFile {
			nfiles++
		}
	}
	s.files = make([]int, 0, nfiles)
	var next uint64
	for i := range s.entries {
		e := &s.entries[i]
		s.first[i] = next
		if e.Kind == wire.KindFile {
			if e.Size > wire.MaxFileSize {
				return fmt.Errorf("%w: %s: %d bytes, at most %d", ErrConfig, e.Path, e.Size, uint64(wire.MaxFileSize))
			}
			s.files = append(s.files, i)
			next += blockBudget(e.Size, s.blockSize)
		}
	}
	s.total = next
	return nil
}

// Session returns the session id.
func (s *Sender) Session() uint64 { return s.cfg.Session }

// Phase returns where the session stands.
func (s *Sender) Phase() Phase { return s.phase }

// Done reports whether the session is over: every member answered the
// commit or dropped out.
func (s *Sender) Done() bool { return s.phase == PhaseDone }

// Stats returns the session's counters so far.
func (s *Sender) Stats() SenderStats {
	st := s.stats
	st.Rate = s.rate.rate
	return st
}

// Rate is the send rate the driver paces data at, in bits per second.
func (s *Sender) Rate() float64 { return s.rate.rate }

// Settled reports whether the rate is one the path was seen to limit (the
// session slowed down, or it started from a settled rate): a session that
// ended still probing, such as a digest round of a few datagrams, says
// nothing of the path, and the next one should probe on from its rate.
func (s *Sender) Settled() bool { return !s.rate.probing }

// BlockSize is the content bytes of a full data block.
func (s *Sender) BlockSize() int { return s.blockSize }

// Progress returns the content bytes sent once and an upper bound of what
// the session sends (deltas send less).
func (s *Sender) Progress() (sent, total uint64) { return s.stats.PayloadBytes, s.data.bytes }

// Locate maps a block Next asked for to the entry it belongs to and the
// file offset and length of its content.
func (s *Sender) Locate(b uint64) (entry int, off int64, n int, err error) {
	k := sort.Search(len(s.files), func(k int) bool { return s.first[s.files[k]] > b }) - 1
	if k < 0 {
		return 0, 0, 0, fmt.Errorf("session: block %d before the first file", b)
	}
	i := s.files[k]
	local := b - s.first[i]
	if plan := s.chunks.plans[i]; plan != nil {
		if local >= plan.blocks() {
			return 0, 0, 0, fmt.Errorf("session: block %d past the chunks of entry %d", b, i)
		}
		_, off, n = plan.locate(local, s.blockSize)
		return i, off, n, nil
	}
	if local >= blocksOf(s.entries[i].Size, s.blockSize) {
		return 0, 0, 0, fmt.Errorf("session: block %d past the end of entry %d", b, i)
	}
	off, n = wholeLocate(local, s.blockSize, s.entries[i].Size)
	return i, off, n, nil
}

// Gone drops a member that left the group: it will not answer.
func (s *Sender) Gone(id wire.NodeID, why string) {
	if p := s.byID[id]; p != nil && p.active() {
		p.failed = why + " during " + s.phase.String()
	}
}

// Next appends to out what to send now, at most maxBlocks data blocks, and
// returns when to call it again if no answer arrives first (the zero time
// when the session is done).
func (s *Sender) Next(now time.Time, out []Out, maxBlocks int) ([]Out, time.Time) {
	if !s.started {
		s.started = true
		for _, p := range s.peers {
			p.heard = now
		}
		s.expireAt = now.Add(expireEvery)
		s.enterOffer(now)
		return s.sendOffers(out, true), s.wake(now)
	}
	if !now.Before(s.expireAt) {
		s.expire(now)
		s.expireAt = now.Add(expireEvery)
	}
	switch s.phase {
	case PhaseOffer:
		out = s.nextOffer(now, out, maxBlocks)
	case PhaseChunks:
		out = s.nextChunks(now, out)
	case PhaseData:
		out = s.nextData(now, out, maxBlocks)
	case PhaseCommit:
		out = s.nextCommit(now, out)
	}
	return out, s.wake(now)
}

// wake is when Next must run again without an answer.
func (s *Sender) wake(now time.Time) time.Time {
	var t time.Time
	switch s.phase {
	case PhaseDone:
		return time.Time{}
	case PhaseOffer:
		if s.data.early() {
			return now
		}
		t = s.resendAt
	case PhaseCommit:
		t = s.commitAt
	case PhaseChunks:
		if s.chunks.wanted != nil {
			return now // waiting for SetChunkLists
		}
		t = s.resendAt
	case PhaseData:
		t = s.data.wake(now)
	}
	if s.expireAt.Before(t) {
		t = s.expireAt
	}
	return t
}

func (s *Sender) enterOffer(now time.Time) {
	s.phase = PhaseOffer
	s.retry = offerRetry
	s.resendAt = now.Add(s.retry)
}

// sendOffers appends the offers some active member has not answered (all
// of them the first time).
func (s *Sender) sendOffers(out []Out, all bool) []Out {
	for i, o := range s.offers {
		if all || slices.ContainsFunc(s.peers, func(p *peer) bool { return p.active() && !p.answered.has(uint64(i)) }) {
			out = append(out, Out{Msg: o})
		}
	}
	return out
}

func (s *Sender) nextOffer(now time.Time, out []Out, maxBlocks int) []Out {
	if !slices.ContainsFunc(s.peers, func(p *peer) bool { return p.active() && p.nAnswer < len(s.offers) }) {
		return s.offersAnswered(now, out)
	}
	if !now.Before(s.resendAt) {
		out = s.sendOffers(out, false)
		s.retry = min(2*s.retry, maxRetry)
		s.resendAt = now.Add(s.retry)
	}
	if s.releaseAnswered() {
		out = s.nextData(now, out, maxBlocks)
	}
	return out
}

// offersAnswered moves on once every active member answered every offer.
func (s *Sender) offersAnswered(now time.Time, out []Out) []Out {
	switch {
	case s.cfg.Flags&wire.SessionDigest != 0:
		// A digest round applies nothing: its answers are all it is for.
		s.phase = PhaseDone
		return append(out, Out{Msg: &wire.Abort{Session: s.cfg.Session}})
	case s.cfg.Flags&(wire.SessionDryRun|wire.SessionCheck) != 0:
		return s.enterCommit(now, out)
	}
	return s.enterChunks(now, out)
}

func (s *Sender) enterCommit(now time.Time, out []Out) []Out {
	s.phase = PhaseCommit
	s.commitAt = now.Add(commitRetry)
	return s.nextCommit(now, append(out, Out{Msg: &wire.Commit{Session: s.cfg.Session}}))
}

func (s *Sender) nextCommit(now time.Time, out []Out) []Out {
	if !slices.ContainsFunc(s.peers, func(p *peer) bool { return p.active() && p.result == nil }) {
		s.phase = PhaseDone
		return out
	}
	if !now.Before(s.commitAt) {
		s.commitAt = now.Add(commitRetry)
		out = append(out, Out{Msg: &wire.Commit{Session: s.cfg.Session}})
	}
	return out
}

// expire drops members silent for longer than the session timeout.
func (s *Sender) expire(now time.Time) {
	for _, p := range s.peers {
		if p.active() && now.Sub(p.heard) > s.cfg.Timeout {
			p.failed = fmt.Sprintf("no answer for %v during %s", s.cfg.Timeout, s.phase)
			p.dropped = true
		}
	}
}

func (s *Sender) activePeers() int {
	n := 0
	for _, p := range s.peers {
		if p.active() {
			n++
		}
	}
	return n
}

// Step records an answer from member from. Answers from members not in
// the session, for other sessions, or that contradict the session's
// layout are ignored: one member's message never fails another's part.
func (s *Sender) Step(now time.Time, from wire.NodeID, m wire.Message) {
	p := s.byID[from]
	if p == nil || !p.active() {
		return
	}
	switch m := m.(type) {
	case *wire.Need:
		if m.Session == s.cfg.Session {
			p.heard = now
			s.need(p, m)
		}
	case *wire.ChunkNeed:
		if m.Session == s.cfg.Session {
			p.heard = now
			s.chunkNeed(p, m)
		}
	case *wire.Nack:
		if m.Session == s.cfg.Session {
			p.heard = now
			s.stats.NacksReceived++
			if s.data.windows.byRound != nil {
				s.data.windows.stamp(now) // what the Nack answers went out by now
			}
			s.nack(p, m)
		}
	case *wire.Result:
		if m.Session == s.cfg.Session && s.phase >= PhaseCommit {
			p.heard = now
			p.result = m
		}
	case *wire.Busy:
		if m.Session == s.cfg.Session {
			p.heard = now
		}
	}
}

func (s *Sender) need(p *peer, m *wire.Need) {
	if int(m.Offer) >= len(s.offers) || p.answered.has(uint64(m.Offer)) {
		return
	}
	o := s.offers[m.Offer]
	if int(m.N) != len(o.Items) {
		return
	}
	p.answered.set(uint64(m.Offer))
	p.nAnswer++
	for p.prefix < len(s.offers) && p.answered.has(uint64(p.prefix)) {
		p.prefix++
	}
	if len(m.Items) == len(o.Items) && s.cfg.Flags&(wire.SessionDryRun|wire.SessionCheck) != 0 {
		if p.items == nil {
			p.items = make([]wire.ItemFlags, len(s.entries))
		}
		copy(p.items[o.First:], m.Items)
	}
	for i := range o.Items {
		idx := uint64(o.First) + uint64(i)
		if wire.IsSet(m.Change, i) {
			p.change.set(idx)
		}
		if wire.IsSet(m.Data, i) && s.entries[idx].Kind == wire.KindFile {
			p.data.set(idx)
			if wire.IsSet(m.Basis, i) {
				p.basis.set(idx)
			}
		}
	}
}
