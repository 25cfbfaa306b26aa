package replicator

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/makuo/makuo/replicator/session"
	"github.com/makuo/makuo/replicator/source"
	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/replicator/wire"
)

// sendBatch is the number of datagrams handed to the kernel at once
// (sendmmsg, and UDP segmentation offload within it).
const sendBatch = 32

// reply is a receiver's message routed to the session it answers.
type reply struct {
	from wire.NodeID
	msg  wire.Message
}

// sendRun is a send session in progress: its protocol state, the files it
// reads, and the queue its answers arrive on.
type sendRun struct {
	s        *session.Sender
	scan     *source.Scan // nil for a digest round
	replies  chan reply
	progress func(sent, total uint64)
	wire     uint64 // datagram bytes put on the wire
	counted  session.SenderStats
}

func newSessionID() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

// lastRate is the rate the latest session ended with, and whether it had
// settled (session.Sender.Settled).
type lastRate struct {
	mu      sync.Mutex
	rate    float64
	settled bool
}

func (l *lastRate) store(rate float64, settled bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rate, l.settled = rate, settled
}

// startRate is where a session's rate starts: where the latest one ended,
// so that it need not probe again if that one settled, or
// session.StartRate.
func (n *Node) startRate() (rate float64, settled bool) {
	l := &n.lastRate
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.rate <= 0:
		return session.StartRate, false
	case !l.settled:
		// It ended probing: on from where it got.
		return max(l.rate, session.StartRate), false
	}
	return l.rate, true
}

// newSendRun prepares a session over entries for members and registers it
// to receive their answers.
func (n *Node) newSendRun(sc *source.Scan, entries []wire.Entry, flags wire.SessionFlags, members, targets []wire.NodeID, excludes []string) (*sendRun, error) {
	if n.conn.UnicastReplies() {
		flags |= wire.SessionReplyUnicast
	}
	start, settled := n.startRate()
	s, err := session.NewSender(session.SenderConfig{
		Session: newSessionID(), Flags: flags, Entries: entries, Targets: targets, Excludes: excludes,
		Members: members, MaxPayload: n.conn.MaxPayload(), Timeout: n.cfg.SessionTimeout,
		StartRate: start, MaxRate: n.maxRate(), Settled: settled,
	})
	if err != nil {
		return nil, err
	}
	run := &sendRun{s: s, scan: sc, replies: make(chan reply, 16384)}
	n.sendMu.Lock()
	defer n.sendMu.Unlock()
	if _, dup := n.sends[s.Session()]; dup {
		return nil, fmt.Errorf("bug: session id %016x in use", s.Session())
	}
	n.sends[s.Session()] = run
	return run, nil
}

func (n *Node) endSendRun(run *sendRun) {
	n.sendMu.Lock()
	delete(n.sends, run.s.Session())
	n.sendMu.Unlock()
	n.countSession(run)
}

// drive runs a send session to its end: it sends what the session asks
// for, paced at its rate, in socket batches, and steps the answers in. It
// returns an error only when the session could not run at all; members'
// failures are in the session's outcomes.
func (n *Node) drive(ctx context.Context, run *sendRun) error {
	s := run.s
	var rd *source.Reader
	if run.scan != nil {
		rd = source.NewReader(n.root, run.scan)
		defer rd.Close()
	}
	b := newBatcher(n.conn, n.log, s.BlockSize())
	pacer := transport.NewPacer(s.Rate())
	out := make([]session.Out, 0, sendBatch+4)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	lastGone, lastProgress := time.Now(), time.Now()
	start, phase := lastGone, s.Phase()
	for !s.Done() {
		now := time.Now()
		if p := s.Phase(); p != phase {
			// Where a push's time goes, for a diagnosis (-d): the data
			// phase ends when every member has every block.
			phase = p
			n.log.Debug("session phase", "session", fmt.Sprintf("%016x", s.Session()), "phase", p.String(),
				"seconds", now.Sub(start).Seconds(), "rate_mbit", s.Rate()/1e6)
		}
		if now.Sub(lastGone) > 50*time.Millisecond {
			lastGone = now
			n.dropDeparted(s)
			n.countSession(run)
		}
		if want := s.NeedChunkLists(); want != nil {
			s.SetChunkLists(source.ChunkLists(n.index, run.scan, want))
		}
		var wake time.Time
		out, wake = s.Next(now, out[:0], sendBatch)
		if len(out) > 0 {
			pacer.SetRate(s.Rate())
			if err := n.sendOut(ctx, run, rd, b, pacer, out); err != nil {
				return err
			}
			if run.progress != nil && now.Sub(lastProgress) > 50*time.Millisecond {
				lastProgress = now
				run.progress(s.Progress())
			}
			n.drainReplies(run)
			continue
		}
		if wake.IsZero() {
			break
		}
		timer.Reset(max(time.Until(wake), 0))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case r := <-run.replies:
			s.Step(time.Now(), r.from, r.msg)
			n.drainReplies(run)
		case <-timer.C:
		}
	}
	n.lastRate.store(s.Rate(), s.Settled())
	return nil
}

// drainReplies steps every answer already queued.
func (n *Node) drainReplies(run *sendRun) {
	for {
		select {
		case r := <-run.replies:
			run.s.Step(time.Now(), r.from, r.msg)
		default:
			return
		}
	}
}

// dropDeparted tells the session about members that left the group: they
// will not answer.
func (n *Node) dropDeparted(s *session.Sender) {
	live := map[wire.NodeID]bool{}
	for _, m := range n.members.Table().Snapshot() {
		live[m.ID] = true
	}
	for _, o := range s.Outcomes() {
		if o.Failed == "" && !live[o.ID] {
			s.Gone(o.ID, "left the group")
		}
	}
}

// sendOut sends what Next asked for, in order: data blocks in paced socket
// batches, messages one by one.
func (n *Node) sendOut(ctx context.Context, run *sendRun, rd *source.Reader, b *batcher, pacer *transport.Pacer, out []session.Out) error {
	for _, o := range out {
		if o.Msg != nil {
			if err := b.flush(ctx, pacer, run); err != nil {
				return err
			}
			w, err := n.conn.SendN(o.Msg)
			if err != nil {
				n.log.Warn("send failed", "type", o.Msg.Type(), "err", err)
			}
			run.wire += uint64(w)
			continue
		}
		i, off, size, err := run.s.Locate(o.Block)
		if err != nil {
			return err
		}
		buf := b.next()
		if err := rd.ReadAt(i, buf[:size], off); err != nil {
			n.log.Warn("sending zeros for a file that cannot be read as scanned; members will report it", "err", err)
		}
		b.add(run.s.Session(), o.Block, buf[:size])
		if b.full() {
			if err := b.flush(ctx, pacer, run); err != nil {
				return err
			}
		}
	}
	return b.flush(ctx, pacer, run)
}

// batcher gathers data datagrams for one socket batch, in buffers it
// reuses: the data path does not allocate per datagram.
type batcher struct {
	conn  Link
	log   *slog.Logger
	msgs  []wire.Message
	datas []wire.Data
	bufs  [][]byte
	bytes int
}

func newBatcher(conn Link, log *slog.Logger, blockSize int) *batcher {
	b := &batcher{conn: conn, log: log, msgs: make([]wire.Message, 0, sendBatch), datas: make([]wire.Data, sendBatch), bufs: make([][]byte, sendBatch)}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, blockSize)
	}
	return b
}

func (b *batcher) next() []byte { return b.bufs[len(b.msgs)] }
func (b *batcher) full() bool   { return len(b.msgs) == sendBatch }

func (b *batcher) add(sess, block uint64, data []byte) {
	k := len(b.msgs)
	b.datas[k] = wire.Data{Session: sess, Block: block, Bytes: data}
	b.msgs = append(b.msgs, &b.datas[k])
	b.bytes += len(data) + wire.DataHeaderLen + wire.HeaderLen
}

func (b *batcher) flush(ctx context.Context, pacer *transport.Pacer, run *sendRun) error {
	if len(b.msgs) == 0 {
		return nil
	}
	if err := pacer.Wait(ctx, b.bytes); err != nil {
		return err
	}
	w, err := b.conn.SendBatch(b.msgs)
	run.wire += uint64(w)
	clear(b.msgs)
	b.msgs, b.bytes = b.msgs[:0], 0
	if err != nil {
		// Lost like any datagram: the members' nacks repair it.
		b.log.Warn("data send failed", "err", err)
	}
	return nil
}

// countSession adds what the session did since the last count to the
// metrics.
func (n *Node) countSession(run *sendRun) {
	st := run.s.Stats()
	n.met.Retransmits.Add(float64(st.Retransmits - run.counted.Retransmits))
	n.met.NacksReceived.Add(float64(st.NacksReceived - run.counted.NacksReceived))
	n.met.ChunksSent.Add(float64(st.ChunksSent - run.counted.ChunksSent))
	run.counted = st
}
