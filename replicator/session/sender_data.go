package session

import (
	"slices"
	"sort"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// Data phase tuning.
const (
	pollEvery = 512 // data blocks between polls (~700 KB on a 1500-byte MTU)
	// maxBacklog is how many polls a member may leave unanswered before
	// the sender slows down: a growing backlog is an overrun that has not
	// turned into loss yet, or one whose loss reports are themselves stuck
	// in the backlog. It counts polls, not block numbers, because a delta
	// or partial push skips whole stretches of block numbers that cost the
	// member nothing.
	maxBacklog = 8
	// backlogHeard: a lagging member counts as backlogged (rather than
	// perhaps dead) while its answers keep arriving this often.
	backlogHeard  = 250 * time.Millisecond
	finalPollWait = 30 * time.Millisecond  // first wait for answers to a final poll; grows while nothing changes
	maxFinalWait  = 500 * time.Millisecond // the wait's ceiling
	// repairedPruneAt is the size from which the record of repairs in
	// flight is swept.
	repairedPruneAt = 16384
	// maxNackBlocks bounds the blocks one Nack can queue for repair: a
	// round cannot send more than a few thousand blocks anyway, the rest
	// is asked for again, and a crafted Nack's ranges cost bounded work.
	maxNackBlocks = 1 << 16
)

// PollEvery is the number of data blocks between two polls; receivers
// size their queues from it.
const PollEvery = pollEvery

// MaxBacklog is how many polls a member may leave unanswered before the
// sender slows down.
const MaxBacklog = maxBacklog

// dataPhase is the state of the data phase: a cursor through the blocks
// members need, polls, and the repair queue.
type dataPhase struct {
	need  bitset // per entry: some member needs its content
	bytes uint64 // content bytes to send (an upper bound for deltas)
	// sendable: the cursor may enter the first sendable files (all of
	// them in the data phase; before it, see releaseAnswered).
	sendable int
	stalled  bool // the cursor is at sendable, waiting for answers
	// cursor: file s.files[k-1] is being sent, range ri of ranges, next
	// block b.
	k         int
	ranges    [][2]uint64
	ri        int
	b         uint64
	sent      bool // the cursor reached the end
	sincePoll uint64
	polled    bool // a poll just went out: look at the backlog before going on
	round     uint32
	pollAt    map[uint32]uint64 // round → watermark
	windows   windowLog         // what each poll's window sent, for delivery reports
	repaired  map[uint64]uint32 // block → round in which it was last repaired
	repairQ   []uint64
	queued    map[uint64]struct{}
	prunedTo  uint32 // repairs before this round are forgotten (pruneRepaired)
	final     uint32 // round of the outstanding final poll; 0 when none
	deadline  time.Time
	wait      time.Duration
}

func (s *Sender) enterData(now time.Time, out []Out) []Out {
	s.phase = PhaseData
	s.initData()
	d := &s.data
	for ; d.sendable < len(s.files); d.sendable++ {
		s.markNeed(s.files[d.sendable])
	}
	if d.bytes == 0 {
		// Nothing but empty files, which receivers create at commit.
		for _, p := range s.peers {
			p.complete = true
		}
		return s.enterCommit(now, out)
	}
	for _, p := range s.peers {
		// A member that needs no content has nothing to miss.
		p.complete = !p.needsData
	}
	return out
}

func (d *dataPhase) wake(now time.Time) time.Time {
	if d.final != 0 && len(d.repairQ) == 0 {
		return d.deadline
	}
	return now
}

func (s *Sender) nextData(now time.Time, out []Out, max int) []Out {
	d := &s.data
	d.windows.stamp(now)
	if s.activePeers() == 0 {
		return s.enterCommit(now, out) // every member dropped out: nobody to send to
	}
	if d.polled {
		d.polled = false
		s.checkBacklog(now)
		s.rate.grow(d.round, s.keptUpSince)
	}
	n := 0
	if len(d.repairQ) > 0 {
		out, n = s.sendRepairs(now, out, max)
		if len(d.repairQ) > 0 {
			return out
		}
	}
	if s.phase == PhaseOffer {
		if d.stalled = s.aheadOfAnswers(); d.stalled {
			return out
		}
	}
	for !d.sent && n < max {
		b, i, ok := s.nextBlock()
		if !ok {
			// Before the data phase the cursor only waits for more
			// answered offers.
			d.sent = s.phase == PhaseData
			d.stalled = !d.sent
			break
		}
		out = append(out, Out{Block: b})
		size := s.blockLen(i, b)
		d.windows.block(now, size, s.rate.rate)
		s.stats.PayloadBytes += uint64(size)
		if s.phase == PhaseOffer {
			s.stats.EarlyBlocks++
		}
		n++
		if d.sincePoll++; d.sincePoll >= pollEvery {
			d.sincePoll = 0
			out = s.poll(now, out, b+1, false)
			d.polled = true
			return out
		}
	}
	if !d.sent {
		return out
	}
	return s.finalRound(now, out, max-n)
}

// finalRound repairs until every active member has all it needs: a final
// poll, answers from everyone or a deadline, repairs, again.
func (s *Sender) finalRound(now time.Time, out []Out, max int) []Out {
	d := &s.data
	if d.final == 0 {
		if len(d.repairQ) > 0 {
			return out
		}
		out = s.poll(now, out, s.total, true)
		d.final = d.round
		d.deadline = now.Add(d.wait)
		return out
	}
	if !s.answeredSince(d.final-1) && now.Before(d.deadline) {
		return out
	}
	s.expire(now)
	if !slices.ContainsFunc(s.peers, func(p *peer) bool { return p.active() && !p.complete }) {
		return s.enterCommit(now, out)
	}
	if len(d.repairQ) == 0 {
		d.wait = min(2*d.wait, maxFinalWait)
	} else {
		d.wait = finalPollWait
	}
	s.rate.grow(d.round, s.keptUpSince)
	d.final = 0
	if max <= 0 {
		return out
	}
	out, _ = s.sendRepairs(now, out, max)
	return s.finalRound(now, out, 0)
}

// nextBlock advances the cursor through the blocks some member needs,
// file after file, and returns the next one with its entry.
func (s *Sender) nextBlock() (block uint64, entry int, ok bool) {
	d := &s.data
	for {
		if d.ri < len(d.ranges) {
			if rg := d.ranges[d.ri]; d.b < rg[1] {
				d.b++
				return d.b - 1, s.files[d.k-1], true
			}
			if d.ri++; d.ri < len(d.ranges) {
				d.b = d.ranges[d.ri][0]
			}
			continue
		}
		for d.k < d.sendable && !d.need.has(uint64(s.files[d.k])) {
			d.k++
		}
		if d.k >= d.sendable {
			return 0, 0, false
		}
		d.k++
		d.ranges = s.sendRanges(s.files[d.k-1], d.ranges[:0])
		d.ri = 0
		if len(d.ranges) > 0 {
			d.b = d.ranges[0][0]
		}
	}
}

// sendRanges appends the block ranges [from, to) of file entry i that some
// member needs: all of it when sent whole, else the chunks lacked.
func (s *Sender) sendRanges(i int, out [][2]uint64) [][2]uint64 {
	first := s.first[i]
	plan := s.chunks.plans[i]
	if plan == nil {
		if n := blocksOf(s.entries[i].Size, s.blockSize); n > 0 {
			out = append(out, [2]uint64{first, first + n})
		}
		return out
	}
	need := s.chunks.need[i]
	for c := range plan.refs {
		if !need.has(uint64(c)) {
			continue
		}
		s.stats.ChunksSent++
		from, to := first+plan.blk[c], first+plan.blk[c+1]
		if n := len(out); n > 0 && out[n-1][1] == from {
			out[n-1][1] = to
		} else {
			out = append(out, [2]uint64{from, to})
		}
	}
	return out
}

// realBlocks is the number of blocks entry i's content takes in its layout
// (the rest of its budget is never sent).
func (s *Sender) realBlocks(i int) uint64 {
	if plan := s.chunks.plans[i]; plan != nil {
		return plan.blocks()
	}
	return blocksOf(s.entries[i].Size, s.blockSize)
}

// blockLen is the content length of block b of file entry i.
func (s *Sender) blockLen(i int, b uint64) int {
	local := b - s.first[i]
	if plan := s.chunks.plans[i]; plan != nil {
		_, _, n := plan.locate(local, s.blockSize)
		return n
	}
	_, n := wholeLocate(local, s.blockSize, s.entries[i].Size)
	return n
}

// poll appends a poll for the blocks below watermark.
func (s *Sender) poll(now time.Time, out []Out, watermark uint64, final bool) []Out {
	d := &s.data
	d.round++
	d.pollAt[d.round] = watermark
	d.windows.poll(now, d.round)
	return append(out, Out{Msg: &wire.Poll{Session: s.cfg.Session, Round: d.round, Watermark: watermark, Final: final}})
}

// sendRepairs appends up to max queued repair blocks, lowest first.
func (s *Sender) sendRepairs(now time.Time, out []Out, max int) ([]Out, int) {
	d := &s.data
	if !slices.IsSorted(d.repairQ) {
		slices.Sort(d.repairQ)
	}
	n := min(max, len(d.repairQ))
	for _, b := range d.repairQ[:n] {
		delete(d.queued, b)
		d.repaired[b] = d.round
		out = append(out, Out{Block: b, Repair: true})
		size := s.blockSize
		if _, _, k, err := s.Locate(b); err == nil {
			size = k
		}
		d.windows.block(now, size, s.rate.rate)
	}
	s.stats.Retransmits += uint64(n)
	d.repairQ = d.repairQ[n:]
	if len(d.repairQ) == 0 {
		d.repairQ = nil
		s.pruneRepaired()
	}
	return out, n
}

// nack queues the blocks p misses for repair and adapts the rate to the
// loss it reveals. Only blocks p needs and the layout holds are queued: a
// Nack for a gap between files, past the poll's watermark or for another
// member's files costs nothing and fails nobody.
func (s *Sender) nack(p *peer, m *wire.Nack) {
	d := &s.data
	wm, ok := d.pollAt[m.Round]
	if !ok {
		return
	}
	p.answeredRound = max(p.answeredRound, m.Round)
	if m.Missing == 0 && wm == s.total {
		p.complete = true
		return
	}
	budget := maxNackBlocks
	for _, rg := range m.Ranges {
		if budget = s.queueRange(p, rg.Start, min(rg.Start+uint64(rg.Count), wm), m.Round, budget); budget == 0 {
			break
		}
	}
	if m.WindowSize >= lossWindow {
		loss := float64(m.WindowLost) / float64(m.WindowSize)
		congested := p.loss.congested(loss, m.WindowSize)
		p.loss.add(loss)
		if congested && s.rate.backOff(m.Round, d.round) {
			s.stats.BackOffs++
		}
	}
	if m.Flags&wire.NackDelivery != 0 {
		s.delivered(p, m)
	}
}

// queueRange queues the blocks of [from, to) that p needs, at most budget
// of them, and returns what is left of the budget.
func (s *Sender) queueRange(p *peer, from, to uint64, round uint32, budget int) int {
	d := &s.data
	for from < to && budget > 0 {
		k := sort.Search(len(s.files), func(k int) bool { return s.first[s.files[k]] > from }) - 1
		if k < 0 {
			if len(s.files) == 0 {
				return budget
			}
			from = s.first[s.files[0]]
			continue
		}
		i := s.files[k]
		end := s.first[i] + s.realBlocks(i)
		if !p.data.has(uint64(i)) || from >= end {
			if k+1 >= len(s.files) {
				return budget
			}
			from = s.first[s.files[k+1]]
			continue
		}
		// Every block looked at costs budget, queued or not: a Nack
		// repeated a thousand times costs a thousand budgets, not more.
		for ; from < min(to, end) && budget > 0; from++ {
			budget--
			// A block repaired after this poll went out may be in flight.
			if r, ok := d.repaired[from]; ok && r >= round {
				continue
			}
			if _, q := d.queued[from]; !q {
				d.queued[from] = struct{}{}
				d.repairQ = append(d.repairQ, from)
			}
		}
	}
	return budget
}

// checkBacklog slows down, once per round, when a member leaves more than
// maxBacklog polls unanswered. Only members still talking count: one that
// went silent may be dead, and slowing everyone down for it until the
// session timeout drops it would let a dead member stall the transfer.
func (s *Sender) checkBacklog(now time.Time) {
	d := &s.data
	for _, p := range s.peers {
		if p.active() && p.needsData && p.answeredRound > s.rate.slowedAt &&
			d.round > p.answeredRound+maxBacklog && now.Sub(p.heard) < backlogHeard {
			if s.rate.backOff(p.answeredRound, d.round) {
				s.stats.BackOffs++
			}
			return
		}
	}
}

// answeredSince reports whether every active member that needs data has
// answered a poll of a round after round.
func (s *Sender) answeredSince(round uint32) bool {
	for _, p := range s.peers {
		if p.active() && p.needsData && p.answeredRound <= round {
			return false
		}
	}
	return true
}

// pruneRepaired forgets repairs older than every member's latest answer:
// only a Nack to a poll sent before a repair can skip that block, and
// members answer polls in order. Under steady loss the map would
// otherwise grow by every block ever repaired.
func (s *Sender) pruneRepaired() {
	d := &s.data
	if len(d.repaired) < repairedPruneAt {
		return
	}
	oldest := d.round
	for _, p := range s.peers {
		if p.active() {
			oldest = min(oldest, p.answeredRound)
		}
	}
	if oldest <= d.prunedTo {
		return // nothing became prunable since the last sweep: skip the walk
	}
	d.prunedTo = oldest
	for b, r := range d.repaired {
		if r < oldest {
			delete(d.repaired, b)
		}
	}
}
