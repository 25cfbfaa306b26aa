package session

import (
	"slices"

	"github.com/makuo/makuo/replicator/wire"
)

// Data before the offer phase ends. A file's content can go out as soon as
// every member has decided it, that is once every active member answered
// the offers up to the one that holds it: waiting for the last offer's
// answers would leave the link idle for a round of decisions over the
// whole push. The cursor stops at the first file some member could diff
// against, whose chunk list goes out only once every offer is answered
// (PhaseChunks), so a delta keeps its phase and the layout its order.

// releaseAnswered moves the cursor's limit past the files every active
// member has decided and reports whether the data phase's records are
// ready to send from. Dry runs, checks and digest rounds send no data.
func (s *Sender) releaseAnswered() bool {
	if s.cfg.Flags&(wire.SessionDigest|wire.SessionDryRun|wire.SessionCheck) != 0 {
		return false
	}
	prefix := len(s.offers)
	for _, p := range s.peers {
		if p.active() {
			prefix = min(prefix, p.prefix)
		}
	}
	d := &s.data
	if prefix == 0 {
		return d.pollAt != nil
	}
	o := s.offers[prefix-1]
	end := int(o.First) + len(o.Items)
	for d.sendable < len(s.files) && s.files[d.sendable] < end && !s.deltaCandidate(s.files[d.sendable]) {
		if d.pollAt == nil {
			s.initData()
		}
		s.markNeed(s.files[d.sendable])
		d.sendable++
		d.stalled = false
	}
	return d.pollAt != nil
}

// earlyPolls is how many polls the data may run ahead of a member's
// answers before every offer is answered. A member answers a poll only
// once it decided the offers queued before it, so the data sent early wait
// in its queue meanwhile: a few polls' worth cover a round of decisions
// at the link's rate, and stay well inside the receive queue and the
// backlog that would make the sender slow down.
const earlyPolls = maxBacklog / 2

// aheadOfAnswers reports whether the early data ran earlyPolls polls
// ahead of some member that needs them.
func (s *Sender) aheadOfAnswers() bool {
	return slices.ContainsFunc(s.peers, func(p *peer) bool {
		return p.active() && p.needsData && s.data.round >= p.answeredRound+earlyPolls
	})
}

// early reports whether the data cursor or the repairs have something to
// send before the data phase.
func (d *dataPhase) early() bool {
	return d.pollAt != nil && (len(d.repairQ) > 0 || !d.stalled)
}

// deltaCandidate reports whether file entry i may be sent as chunks: it
// has more than one chunk and some active member holds an older copy.
func (s *Sender) deltaCandidate(i int) bool {
	if s.entries[i].Size < MinChunk {
		return false
	}
	return slices.ContainsFunc(s.peers, func(p *peer) bool { return p.active() && p.basis.has(uint64(i)) })
}

// markNeed records whether some active member needs file entry i's
// content, once every active member has decided it.
func (s *Sender) markNeed(i int) {
	d := &s.data
	for _, p := range s.peers {
		if p.active() && p.data.has(uint64(i)) {
			d.need.set(uint64(i))
			p.needsData = true
		}
	}
	if d.need.has(uint64(i)) {
		d.bytes += s.entries[i].Size
	}
}

// initData readies the data phase's records, once.
func (s *Sender) initData() {
	d := &s.data
	if d.pollAt != nil {
		return
	}
	d.need = newBitset(uint64(len(s.entries)))
	d.pollAt = map[uint32]uint64{}
	d.windows.byRound = map[uint32]window{}
	d.repaired = map[uint64]uint32{}
	d.queued = map[uint64]struct{}{}
	d.wait = finalPollWait
}
