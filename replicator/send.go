package replicator

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// Timing of a send session. Rounds are short because a LAN round trip is
// well under a millisecond; the session timeout is what bounds a dead
// member's cost.
const (
	offerRetry = 200 * time.Millisecond // first re-send of unanswered offers; doubles up to a second
	pollEvery  = 512                    // data blocks between polls (~700 KB on a 1500-byte MTU)
	// maxBacklog is how many polls a member may leave unanswered (about
	// pollEvery blocks each) before the sender slows down: a growing
	// backlog is an overrun that has not turned into loss yet, or one whose
	// loss reports are themselves stuck in the backlog. It counts polls, not
	// block numbers, because a delta or partial push skips whole stretches
	// of block numbers that cost the member nothing.
	maxBacklog = 8
	// backlogHeard: a lagging member counts as backlogged (rather than
	// perhaps dead) while its answers keep arriving this often.
	backlogHeard  = 250 * time.Millisecond
	finalPollWait = 30 * time.Millisecond // first wait for answers to a final poll; grows while nothing changes
	commitRetry   = 300 * time.Millisecond
	sendBatch     = 32 // datagrams per sendmmsg
	// repairedPruneAt is the size from which the record of repairs in
	// flight is swept at each repair batch.
	repairedPruneAt = 16384
	minRate         = 10e6
	startRate       = 200e6
	maxRate         = 20e9
)

// reply is a receiver's message routed to the session it answers.
type reply struct {
	from wire.NodeID
	msg  wire.Message
}

// peer is one receiver of a send session.
type peer struct {
	id       wire.NodeID
	hostname string
	answered []bool // per offer
	nAnswer  int
	change   []bool // per entry
	data     []bool // per entry
	basis    []bool // per entry: holds an older copy to diff against
	heard    time.Time
	failed   string // why the member dropped out; "" while it takes part
	complete bool   // reported nothing missing at the final watermark
	// chunksAnswered records the chunk-list parts answered, by (entry, first).
	chunksAnswered map[chunkPart]bool
	result         *wire.Result
	losses         [16]float64 // recent window loss rates, a ring
	nLoss          int
	// answeredRound is the latest poll round this member answered: how
	// far behind the sender it works through its queue.
	answeredRound uint32
	needsData     bool // lacks some content of this session
}

// lossFloor is the typical recent loss rate (the median of the last
// windows): the loss this member sees whatever the rate (a bad cable, a
// busy host), which backing off would not cure. ok is false until enough
// windows have been seen to tell.
func (p *peer) lossFloor() (floor, spread float64, ok bool) {
	n := min(p.nLoss, len(p.losses))
	if n < 4 {
		return 0, 0, false
	}
	w := slices.Clone(p.losses[:n])
	slices.Sort(w)
	return w[n/2], w[3*n/4] - w[n/4], true
}

func (p *peer) active() bool { return p.failed == "" }

// sendSession is one transfer from this node to the live receivers.
type sendSession struct {
	n         *Node
	id        uint64
	flags     wire.SessionFlags
	entries   []wire.Entry
	offers    []*wire.Offer
	blockSize int
	first     []uint64 // first block of each entry (files), by entry
	files     []int    // indexes of file entries, in block order
	total     uint64   // blocks in the session
	peers     []*peer
	byID      map[wire.NodeID]*peer
	replies   chan reply
	timeout   time.Duration
	wire      uint64 // bytes put on the wire for this session
	payload   uint64 // content bytes sent once
	round     uint32
	pollAt    map[uint32]uint64 // round → watermark, for loss accounting
	repaired  map[uint64]uint32 // block → round in which it was last repaired
	repairQ   []uint64
	queued    map[uint64]bool
	open      openFiles
	rate      float64
	plans     map[int]*chunkPlan // files sent as chunks (deltas)
	chunkNeed map[int][]bool     // per delta file: chunks some receiver lacks
	// slowedAt is the poll round current at the last back-off. Only
	// answers to later polls reflect the slower rate: earlier ones are
	// no reason to slow down again (once per round trip, however many
	// members complain).
	slowedAt uint32
	grewAt   uint32 // the poll round current at the last speed-up
	prunedTo uint32 // repairs before this round are forgotten (pruneRepaired)
	progress func(sent, total uint64)
}

func newSessionID() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

// buildOffers packs entries into offers that fit one datagram each (an
// entry too large for that gets an offer of its own). An offer's Items are
// a window on s.entries, not a copy: with 100,000 entries a copy is 12 MB.
func (s *sendSession) buildOffers(targets []wire.NodeID, excludes []string, maxPayload int) {
	base := wire.Offer{Session: s.id, Flags: s.flags, BlockSize: uint32(s.blockSize), Entries: uint32(len(s.entries)), Targets: targets}
	var cur *wire.Offer
	size := 0
	for i := range s.entries {
		el := s.entries[i].EncodedLen()
		if cur == nil || (len(cur.Items) > 0 && size+el > maxPayload) || len(cur.Items) == 0xffff {
			o := base
			if len(s.offers) == 0 {
				o.Excludes = excludes
			}
			o.Index, o.First = uint32(len(s.offers)), uint32(i)
			cur = &o
			s.offers = append(s.offers, cur)
			size = cur.HeaderLen()
		}
		cur.Items = s.entries[cur.First : i+1 : i+1]
		size += el
	}
	if len(s.offers) == 0 { // an empty push still runs, to learn who is there
		o := base
		o.Excludes = excludes
		s.offers = append(s.offers, &o)
	}
	for _, o := range s.offers {
		o.Count = uint32(len(s.offers))
	}
}

// layout assigns blocks to file entries.
func (s *sendSession) layout() {
	s.first = make([]uint64, len(s.entries))
	nfiles := 0
	for _, e := range s.entries {
		if e.Kind == wire.KindFile {
			nfiles++
		}
	}
	s.files = make([]int, 0, nfiles)
	var next uint64
	for i, e := range s.entries {
		s.first[i] = next
		if e.Kind == wire.KindFile {
			s.files = append(s.files, i)
			next += blockBudget(e.Size, s.blockSize)
		}
	}
	s.total = next
}

// run drives the session through its phases. It returns an error only
// when the session could not run at all; member failures are recorded on
// the peers.
func (s *sendSession) run(ctx context.Context) error {
	defer s.closeFiles()
	t0 := time.Now()
	if err := s.offerPhase(ctx); err != nil {
		return err
	}
	t1 := time.Now()
	t2, t3 := t1, t1
	if s.flags&(wire.SessionDryRun|wire.SessionCheck) == 0 {
		if err := s.chunkPhase(ctx); err != nil {
			return err
		}
		t2 = time.Now()
		if err := s.dataPhase(ctx); err != nil {
			return err
		}
		t3 = time.Now()
	}
	err := s.commitPhase(ctx)
	s.n.log.Debug("session phases", "session", fmt.Sprintf("%016x", s.id), "offer", t1.Sub(t0), "chunks", t2.Sub(t1),
		"data", t3.Sub(t2), "commit", time.Since(t3), "rate_mbps", s.rate/1e6)
	return err
}

func (s *sendSession) activePeers() int {
	n := 0
	for _, p := range s.peers {
		if p.active() {
			n++
		}
	}
	return n
}

// expire drops peers silent for longer than the session timeout.
func (s *sendSession) expire(now time.Time, phase string) {
	for _, p := range s.peers {
		if p.active() && now.Sub(p.heard) > s.timeout {
			p.failed = fmt.Sprintf("no answer for %v during %s", s.timeout, phase)
			s.n.met.MembersDropped.Inc()
			s.n.noteDropped(p.id)
			s.n.log.Warn("member dropped from session", "session", fmt.Sprintf("%016x", s.id), "member", p.hostname, "phase", phase)
		}
		// A member that left the group cleanly will not answer either.
		if p.active() && !s.n.isMember(p.id) {
			p.failed = "left the group during " + phase
			s.n.met.MembersDropped.Inc()
		}
	}
}

func (s *sendSession) send(m wire.Message) {
	n, err := s.n.conn.SendN(m)
	if err != nil {
		s.n.log.Warn("send failed", "type", m.Type(), "err", err)
	}
	s.wire += uint64(n)
}

func (s *sendSession) offerPhase(ctx context.Context) error {
	for _, o := range s.offers {
		s.send(o)
	}
	retry := offerRetry
	resend := time.NewTimer(retry)
	defer resend.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		done := true
		for _, p := range s.peers {
			if p.active() && p.nAnswer < len(s.offers) {
				done = false
			}
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case r := <-s.replies:
			s.handle(r)
		case <-resend.C:
			for i, o := range s.offers {
				for _, p := range s.peers {
					if p.active() && !p.answered[i] {
						s.send(o)
						break
					}
				}
			}
			retry = min(2*retry, time.Second)
			resend.Reset(retry)
		case now := <-tick.C:
			s.expire(now, "offer")
		}
	}
}

// handle records a receiver's message.
func (s *sendSession) handle(r reply) {
	p := s.byID[r.from]
	if p == nil || !p.active() {
		return
	}
	p.heard = time.Now()
	switch m := r.msg.(type) {
	case *wire.Need:
		if int(m.Offer) >= len(s.offers) || p.answered[m.Offer] {
			return
		}
		o := s.offers[m.Offer]
		if int(m.N) != len(o.Items) {
			return
		}
		p.answered[m.Offer] = true
		p.nAnswer++
		for i := range o.Items {
			idx := int(o.First) + i
			p.change[idx] = wire.IsSet(m.Change, i)
			p.data[idx] = wire.IsSet(m.Data, i) && s.entries[idx].Kind == wire.KindFile
			p.basis[idx] = wire.IsSet(m.Basis, i) && p.data[idx]
		}
	case *wire.Nack:
		s.n.met.NacksReceived.Inc()
		s.nack(p, m)
	case *wire.Result:
		p.result = m
	case *wire.Busy:
		// heard: nothing more to record
	}
}

func (s *sendSession) dataPhase(ctx context.Context) error {
	need := make([]bool, len(s.entries))
	var bytes uint64
	for _, i := range s.files {
		for _, p := range s.peers {
			if p.active() && p.data[i] {
				need[i] = true
				p.needsData = true
			}
		}
		if need[i] {
			bytes += s.entries[i].Size // an upper bound for deltas: progress only
		}
	}
	if bytes == 0 {
		for _, p := range s.peers {
			p.complete = true
		}
		return nil
	}
	s.pollAt = map[uint32]uint64{}
	s.repaired = map[uint64]uint32{}
	s.queued = map[uint64]bool{}
	s.open = openFiles{files: map[int]*os.File{}}
	pacer := s.n.newPacer(s.rate)
	batch := make([]wire.Message, 0, sendBatch)
	datas := make([]wire.Data, sendBatch)
	bufs := make([][]byte, sendBatch)
	for i := range bufs {
		bufs[i] = make([]byte, s.blockSize)
	}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		n := 0
		for _, m := range batch {
			n += len(m.(*wire.Data).Bytes) + wire.DataHeaderLen + wire.HeaderLen
		}
		if err := pacer.Wait(ctx, n); err != nil {
			return err
		}
		w, err := s.n.conn.SendBatch(batch)
		s.wire += uint64(w)
		batch = batch[:0]
		if err != nil {
			s.n.log.Warn("data send failed", "err", err)
		}
		return nil
	}
	var lastLen int
	add := func(block uint64) error {
		k := len(batch)
		b, err := s.readBlock(block, bufs[k])
		if err != nil {
			return err
		}
		lastLen = len(b)
		datas[k] = wire.Data{Session: s.id, Block: block, Bytes: b}
		batch = append(batch, &datas[k])
		if len(batch) == sendBatch {
			return flush()
		}
		return nil
	}
	drain := func() {
		for {
			select {
			case r := <-s.replies:
				s.handle(r)
			default:
				return
			}
		}
	}
	sinceTick := time.Now()
	var sincePoll uint64
	for _, i := range s.files {
		if !need[i] {
			continue
		}
		for _, rg := range s.sendRanges(i) {
			for b := rg[0]; b < rg[1]; b++ {
				if err := add(b); err != nil {
					return err
				}
				s.payload += uint64(lastLen)
				sincePoll++
				if sincePoll < pollEvery {
					continue
				}
				sincePoll = 0
				if err := flush(); err != nil {
					return err
				}
				s.poll(b+1, false)
				drain()
				s.checkBacklog()
				if err := s.sendRepairs(ctx, add, flush); err != nil {
					return err
				}
				pacer.SetRate(s.rate)
				if now := time.Now(); now.Sub(sinceTick) > 50*time.Millisecond {
					sinceTick = now
					s.expire(now, "data")
					if s.activePeers() == 0 {
						return nil // every member dropped out: nobody to send to
					}
					if s.progress != nil {
						s.progress(s.payload, bytes)
					}
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	// Final rounds: repair until every active receiver has all it needs.
	wait := finalPollWait
	for {
		round := s.poll(s.total, true)
		deadline := time.NewTimer(wait)
		answered := map[wire.NodeID]bool{}
	collect:
		for {
			select {
			case <-ctx.Done():
				deadline.Stop()
				return ctx.Err()
			case r := <-s.replies:
				s.handle(r)
				if m, ok := r.msg.(*wire.Nack); ok && m.Round == round {
					answered[r.from] = true
					if len(answered) >= s.activePeers() {
						break collect
					}
				}
			case <-deadline.C:
				break collect
			}
		}
		deadline.Stop()
		s.expire(time.Now(), "repair")
		done := true
		for _, p := range s.peers {
			if p.active() && !p.complete {
				done = false
			}
		}
		if done {
			return nil
		}
		if len(s.repairQ) == 0 {
			wait = min(2*wait, 500*time.Millisecond)
		} else {
			wait = finalPollWait
		}
		pacer.SetRate(s.rate)
		if err := s.sendRepairs(ctx, add, flush); err != nil {
			return err
		}
		if err := flush(); err != nil {
			return err
		}
	}
}

// poll multicasts a poll for the blocks below watermark and returns its
// round.
func (s *sendSession) poll(watermark uint64, final bool) uint32 {
	s.round++
	s.pollAt[s.round] = watermark
	s.send(&wire.Poll{Session: s.id, Round: s.round, Watermark: watermark, Final: final})
	return s.round
}

// nack queues the blocks p misses for repair and adapts the rate to the
// loss it reveals.
func (s *sendSession) nack(p *peer, m *wire.Nack) {
	wm, ok := s.pollAt[m.Round]
	if !ok {
		return
	}
	p.answeredRound = max(p.answeredRound, m.Round)
	if m.Missing == 0 && wm == s.total {
		p.complete = true
		return
	}
	for _, rg := range m.Ranges {
		for b := rg.Start; b < rg.Start+uint64(rg.Count) && b < s.total; b++ {
			// A block repaired after this poll went out may be in flight.
			if r, ok := s.repaired[b]; ok && r >= m.Round {
				continue
			}
			if !s.queued[b] {
				s.queued[b] = true
				s.repairQ = append(s.repairQ, b)
			}
		}
	}
	// Congestion control: loss above what this member always loses means
	// the rate overruns the link or the member; back off multiplicatively,
	// once per round however many members complain. Random loss at any
	// rate stays at the floor and costs repairs, not speed.
	if m.WindowSize >= 64 {
		loss := float64(m.WindowLost) / float64(m.WindowSize)
		floor, spread, known := p.lossFloor()
		p.losses[p.nLoss%len(p.losses)] = loss
		p.nLoss++
		// Three standard deviations of the floor's binomial noise, so that
		// random loss alone rarely triggers a back-off; and twice the
		// spread actually seen, since loss comes in bursts (a dropped
		// offload send, a switch buffer overflowing) and then varies far
		// more between windows than independent drops would.
		margin := max(0.03, 3*math.Sqrt(floor*(1-floor)/float64(m.WindowSize)), 2*spread)
		congested := loss > 0.5 || (known && loss > 0.01 && loss > floor+margin)
		if congested && m.Round > s.slowedAt {
			s.slowedAt = s.round
			s.rate = max(s.rate*0.7, minRate)
			s.n.log.Debug("backing off", "member", p.hostname, "loss", loss, "floor", floor, "rate_mbps", s.rate/1e6)
		}
	}
}

// checkBacklog slows down, once per round, when a member leaves more than
// maxBacklog polls unanswered. Only members still talking count: one that
// went silent may be dead, and slowing everyone down for it until the
// session timeout drops it would let a dead member stall the transfer.
func (s *sendSession) checkBacklog() {
	now := time.Now()
	for _, p := range s.peers {
		if p.active() && p.needsData && p.answeredRound > s.slowedAt &&
			s.round > p.answeredRound+maxBacklog && now.Sub(p.heard) < backlogHeard {
			s.slowedAt = s.round
			s.rate = max(s.rate*0.7, minRate)
			s.n.log.Debug("backing off", "member", p.hostname, "backlog_polls", s.round-p.answeredRound, "rate_mbps", s.rate/1e6)
			return
		}
	}
}

// answeredSince reports whether every active member that needs data has
// answered a poll of a round after round.
func (s *sendSession) answeredSince(round uint32) bool {
	for _, p := range s.peers {
		if p.active() && p.needsData && p.answeredRound <= round {
			return false
		}
	}
	return true
}

// sendRepairs multicasts every queued repair block once.
func (s *sendSession) sendRepairs(ctx context.Context, add func(uint64) error, flush func() error) error {
	// Speed up once per round trip too: when every member has answered
	// a poll sent after the last change. Per round, a fast sender would
	// grow the rate a hundredfold before the first complaint came back.
	if s.slowedAt < s.round && s.answeredSince(max(s.slowedAt, s.grewAt)) {
		s.rate = min(s.rate*1.1, s.n.maxRate())
		s.grewAt = s.round
	}
	if len(s.repairQ) == 0 {
		return nil
	}
	q := s.repairQ
	s.repairQ = nil
	sort.Slice(q, func(i, j int) bool { return q[i] < q[j] })
	for _, b := range q {
		delete(s.queued, b)
		s.repaired[b] = s.round
		if err := add(b); err != nil {
			return err
		}
		s.n.met.Retransmits.Inc()
	}
	s.pruneRepaired()
	return flush()
}

// pruneRepaired forgets repairs older than every member's latest answer:
// only a Nack to a poll sent before a repair can skip that block, and
// members answer polls in order. Under steady loss the map would
// otherwise grow by every block ever repaired (megabytes per GiB).
func (s *sendSession) pruneRepaired() {
	if len(s.repaired) < repairedPruneAt {
		return
	}
	oldest := s.round
	for _, p := range s.peers {
		if p.active() {
			oldest = min(oldest, p.answeredRound)
		}
	}
	if oldest <= s.prunedTo {
		return // nothing became prunable since the last sweep: skip the walk
	}
	s.prunedTo = oldest
	for b, r := range s.repaired {
		if r < oldest {
			delete(s.repaired, b)
		}
	}
}

// readBlock reads block b of the session's content into buf.
func (s *sendSession) readBlock(b uint64, buf []byte) ([]byte, error) {
	k := sort.Search(len(s.files), func(k int) bool { return s.first[s.files[k]] > b }) - 1
	if k < 0 {
		return nil, fmt.Errorf("bug: block %d before the first file", b)
	}
	i := s.files[k]
	e := &s.entries[i]
	f, err := s.open.get(i, func() (*os.File, error) { return s.n.root.Open(e.Path) })
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", e.Path, err)
	}
	local := b - s.first[i]
	var off int64
	var want int
	if plan := s.plans[i]; plan != nil {
		if local >= plan.blocks() {
			return nil, fmt.Errorf("bug: block %d past the chunks of %s", b, e.Path)
		}
		_, off, want = plan.locate(local, s.blockSize)
	} else {
		if local >= blocksOf(e.Size, s.blockSize) {
			return nil, fmt.Errorf("bug: block %d past the end of %s", b, e.Path)
		}
		off, want = wholeLocate(local, s.blockSize, e.Size)
	}
	n, err := f.ReadAt(buf[:want], off)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("read %s: %w", e.Path, err)
	}
	// A file that shrank since the scan sends zeros; the receivers' hash
	// check then fails it instead of applying a torn copy.
	clear(buf[n:want])
	return buf[:want], nil
}

// sendRanges lists the block ranges [from, to) of file entry i that some
// receiver needs: all of it when sent whole, else the chunks lacked.
func (s *sendSession) sendRanges(i int) [][2]uint64 {
	first := s.first[i]
	plan := s.plans[i]
	if plan == nil {
		return [][2]uint64{{first, first + blocksOf(s.entries[i].Size, s.blockSize)}}
	}
	var out [][2]uint64
	for c, needed := range s.chunkNeed[i] {
		if !needed {
			continue
		}
		s.n.met.ChunksSent.Inc()
		from, to := first+plan.blk[c], first+plan.blk[c+1]
		if n := len(out); n > 0 && out[n-1][1] == from {
			out[n-1][1] = to
		} else {
			out = append(out, [2]uint64{from, to})
		}
	}
	return out
}

func (s *sendSession) closeFiles() { s.open.closeAll() }

// openFiles keeps the session's most recently read files open, at most
// maxOpenFiles: data goes out file after file, and repairs reopen what
// they need, so a session of a million files holds a few descriptors, not
// a million.
type openFiles struct {
	files map[int]*os.File
	order []int // entry indexes, oldest first
}

const maxOpenFiles = 64

func (o *openFiles) get(i int, open func() (*os.File, error)) (*os.File, error) {
	if f := o.files[i]; f != nil {
		return f, nil
	}
	f, err := open()
	if err != nil {
		return nil, err
	}
	if len(o.order) >= maxOpenFiles {
		old := o.order[0]
		o.order = o.order[1:]
		o.files[old].Close()
		delete(o.files, old)
	}
	o.files[i] = f
	o.order = append(o.order, i)
	return f, nil
}

func (o *openFiles) closeAll() {
	for _, f := range o.files {
		f.Close()
	}
	clear(o.files)
	o.order = o.order[:0]
}

func (s *sendSession) commitPhase(ctx context.Context) error {
	s.send(&wire.Commit{Session: s.id})
	resend := time.NewTicker(commitRetry)
	defer resend.Stop()
	for {
		done := true
		for _, p := range s.peers {
			if p.active() && p.result == nil {
				done = false
			}
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case r := <-s.replies:
			s.handle(r)
		case now := <-resend.C:
			s.expire(now, "commit")
			s.send(&wire.Commit{Session: s.id})
		}
	}
}
