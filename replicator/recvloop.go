package replicator

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/apply"
	"github.com/makuo/makuo/replicator/session"
	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/replicator/wire"
)

// Receive queues. Each sending node's messages wait in a queue of its own
// for its receive loop, so that one sender's disk work (hashing a large
// basis, a commit's syncs) never holds up another's sessions.
const (
	// recvQueueLen bounds the messages waiting for one node's loop. It
	// holds twice the sender's backlog allowance (MaxBacklog polls of
	// PollEvery blocks): a receiver that gets no CPU for a while falls
	// silent, and the sender slows down only for members it hears from (a
	// silent one may be dead), so the queue must absorb such stalls. The
	// socket buffer in front of it does not: the read loop moves
	// datagrams from it into these queues as fast as they come.
	recvQueueLen = 2 * session.MaxBacklog * session.PollEvery
	// recvQueueBytes bounds the data payload, and the parsed offers and
	// chunk lists, waiting in every queue together: the count alone would
	// let 8,192 jumbo datagrams (--datagram-size 8972) hold 72 MiB, and
	// 8,192 parsed offers of them several times that. 16 MiB is more than
	// 8,192 datagrams of a 1500-byte MTU carry, and like them about a
	// tenth of a second at 1 Gbit/s.
	recvQueueBytes = 16 << 20
	// maxRecvLoops bounds the sending nodes served at once; an offer from
	// one more is a counted drop (session_limit).
	maxRecvLoops = 256
	// recvIdle is how long a receive session may go without hearing from
	// its sender before it is abandoned and its staged files removed.
	recvIdle = 2 * time.Minute
	// loopIdle is how long a loop with no session lives on.
	loopIdle = 10 * time.Minute
	// maxSessionsPerNode bounds the sessions of one sender in progress on
	// this member (an honest one runs a few at once, makuosan -f).
	maxSessionsPerNode = 16
)

// receivers runs one receive loop per sending node.
type receivers struct {
	n      *Node
	apply  apply.Config
	queued atomic.Int64 // bytes queued in every loop (recvItem.size)
	wg     sync.WaitGroup
	mu     sync.Mutex
	loops  map[wire.NodeID]*recvLoop
	ctx    context.Context
	cancel context.CancelFunc
	// beforeBatch, set by tests only and before any loop starts, runs as
	// a loop begins a batch (once the batch counts as handled): it stands
	// in for a loop the kernel or the CPU holds up outside the applier's
	// own Busy.
	beforeBatch func([]recvItem)
}

// recvItem is one message for a receive loop.
type recvItem struct {
	msg  wire.Message
	pkt  *transport.Packet
	data *pooledData // msg's reusable Data, returned with the packet
	size int64       // bytes counted in receivers.queued (queuedSize, or a datum's payload)
}

// arrived is when the datagram arrived (transport.Packet.At): receive
// sessions time the delivery of data with it, so that the rate they
// report is the network's, not how fast this loop got round to the queue.
func (it *recvItem) arrived() time.Time {
	if it.pkt == nil || it.pkt.At.IsZero() {
		return time.Now()
	}
	return it.pkt.At
}

func (it *recvItem) release() {
	it.pkt.Release()
	if it.data != nil {
		it.data.release()
	}
}

// recvLoop is the receive side for one sending node.
type recvLoop struct {
	r      *receivers
	node   wire.NodeID
	mu     sync.Mutex
	q      []recvItem
	signal chan struct{}
	// replyTo is where the node takes answers by unicast: the source of
	// its last offer that asked for it (wire.SessionReplyUnicast); nil,
	// or an offer without the flag, multicasts them. A node's sessions
	// all come from one daemon, so the last offer speaks for them all.
	replyTo atomic.Pointer[netip.AddrPort]
	// handling is when the loop began its current batch of messages
	// (unix nanoseconds; 0 between batches), active the sessions it has
	// in progress, as of its last batch: for stalled.
	handling atomic.Int64
	active   atomic.Pointer[[]uint64]
	// busySent is when stalled last answered for each session (under mu).
	busySent map[uint64]time.Time
}

func (r *receivers) init(n *Node) {
	r.n = n
	r.loops = map[wire.NodeID]*recvLoop{}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.apply = apply.Config{
		Dir: n.dir, Index: n.index, Provenance: n.prov, Excludes: n.excl, Self: n.ID, Hostname: n.cfg.Hostname,
		Watch: n.cfg.Watch, OwnerMatch: n.cfg.OwnerMatch, SetOwner: os.Geteuid() == 0, Async: true,
		Busy: 500 * time.Millisecond, OnApplied: n.members.Kick, Now: time.Now, Turns: new(sync.Mutex),
		Log: n.log.With("component", "receiver"), Metrics: n.met,
	}
}

// route queues a sender's message for the loop of its node, starting one
// for a live member that has none. It never blocks: past a bound the
// message is a counted drop (the protocol repairs data and re-sends the
// rest).
func (r *receivers) route(p *transport.Packet, m wire.Message, d *pooledData, size int64) {
	it := recvItem{msg: m, pkt: p, data: d, size: size}
	at := it.arrived()
	if r.n.cfg.NoReceive {
		it.release()
		return
	}
	node := p.Header.Node
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.loops[node]
	if l == nil {
		switch {
		case r.ctx.Err() != nil:
			it.release()
			return
		case !r.n.isMember(node):
			// Sessions come from members only: a node must be heard
			// (heartbeat) before it can make this member hold anything.
			it.release()
			r.n.met.Drop(metrics.DropUnknownMember)
			return
		case len(r.loops) >= maxRecvLoops:
			it.release()
			r.n.met.Drop(metrics.DropSessionLimit)
			return
		}
		l = &recvLoop{r: r, node: node, signal: make(chan struct{}, 1)}
		r.loops[node] = l
		r.wg.Go(l.run)
	}
	if !l.push(it) {
		it.release()
		r.n.met.Drop(metrics.DropQueueFull)
	}
	if b := l.stalled(m, at, r.apply.Busy); b != nil {
		r.n.log.Debug("receive loop stalled: busy answered for it", "node", node, "session", fmt.Sprintf("%016x", b.Session))
		l.answer(b)
	}
}

// stalled returns a Busy to send for a sender's poll of a session the
// loop is stuck behind (nil for none). A loop that has been on one batch
// for longer than busy (a filesystem sync the kernel makes it wait for,
// a starved CPU) answers nothing, and the sender would drop this member
// as dead after its session timeout though it is only slow; a Busy from
// here keeps it heard, and the sender holds back for it while its polls
// go unanswered. At most one per busy interval for each session, and only
// for the sessions the loop has in progress.
func (l *recvLoop) stalled(m wire.Message, now time.Time, busy time.Duration) *wire.Busy {
	poll, ok := m.(*wire.Poll)
	if !ok || busy <= 0 {
		return nil
	}
	since := l.handling.Load()
	if since == 0 || now.Sub(time.Unix(0, since)) < busy {
		return nil
	}
	if a := l.active.Load(); a == nil || !slices.Contains(*a, poll.Session) {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.busySent[poll.Session]) < busy {
		return nil
	}
	if l.busySent == nil || len(l.busySent) >= maxSessionsPerNode {
		l.busySent = map[uint64]time.Time{} // sessions end: their times go
	}
	l.busySent[poll.Session] = now
	return &wire.Busy{Session: poll.Session}
}

// push queues it, refusing data while the loop's queue is more than 7/8
// full (the rest is kept for control messages: when data overruns a
// member, the polls that make it report the loss, and slow the sender
// down, must still get through), and data, offers and chunk lists while
// every queue together holds recvQueueBytes (a sender re-sends what goes
// unanswered).
func (l *recvLoop) push(it recvItem) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.q) >= recvQueueLen {
		return false
	}
	if it.data != nil && len(l.q) >= recvQueueLen-recvQueueLen/8 {
		return false
	}
	if it.size > 0 && l.r.queued.Add(it.size) > recvQueueBytes {
		l.r.queued.Add(-it.size)
		return false
	}
	l.q = append(l.q, it)
	select {
	case l.signal <- struct{}{}:
	default:
	}
	return true
}

// take returns the queued items, leaving the queue empty.
func (l *recvLoop) take(buf []recvItem) []recvItem {
	l.mu.Lock()
	defer l.mu.Unlock()
	buf = append(buf[:0], l.q...)
	clear(l.q)
	l.q = l.q[:0]
	if cap(l.q) > 1024 && len(buf) < 64 {
		l.q = nil // a burst is over: give its memory back
	}
	return buf
}

func (l *recvLoop) run() {
	n := l.r.n
	a := apply.New(l.r.apply, session.InboxConfig{
		Self: n.ID, Node: l.node, MaxSessions: maxSessionsPerNode, Idle: recvIdle,
		MaxPayload: n.conn.MaxPayload(), Budget: n.budget,
	}, l.answer)
	defer a.Close()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	idleSince := time.Now()
	var items []recvItem
	var active []uint64
	for {
		select {
		case <-l.r.ctx.Done():
			for _, it := range l.take(items) {
				l.r.queued.Add(-it.size)
				it.release()
			}
			return
		case <-l.signal:
		case now := <-tick.C:
			a.Expire(now)
			if a.Sessions() > 0 {
				idleSince = now
			} else if now.Sub(idleSince) > loopIdle && l.retire() {
				return
			}
			continue
		}
		items = l.take(items)
		l.handling.Store(time.Now().UnixNano())
		if l.r.beforeBatch != nil {
			l.r.beforeBatch(items)
		}
		for k := range items {
			it := &items[k]
			l.r.queued.Add(-it.size)
			if o, ok := it.msg.(*wire.Offer); ok {
				l.noteReplyTo(o, it.pkt.From)
			}
			a.Handle(it.arrived(), it.msg)
			it.release()
			*it = recvItem{}
		}
		l.handling.Store(0)
		active = l.publish(a, active)
		idleSince = time.Now()
	}
}

// publish makes the sessions a has in progress the loop's active ones,
// when they changed from cur (the loop's last), and returns them.
func (l *recvLoop) publish(a *apply.Applier, cur []uint64) []uint64 {
	var buf [maxSessionsPerNode]uint64
	ids := a.InProgress(buf[:0])
	slices.Sort(ids)
	if cur != nil && slices.Equal(ids, cur) {
		return cur
	}
	ids = slices.Clone(ids)
	l.active.Store(&ids)
	return ids
}

// retire removes an idle loop, unless a message came in meanwhile.
func (l *recvLoop) retire() bool {
	l.r.mu.Lock()
	defer l.r.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.q) > 0 {
		return false
	}
	delete(l.r.loops, l.node)
	return true
}

// closeAll stops every loop (their sessions are discarded).
func (r *receivers) closeAll() {
	r.mu.Lock()
	r.cancel()
	r.mu.Unlock()
}

// wait waits for every loop to finish.
func (r *receivers) wait() {
	r.closeAll()
	r.wg.Wait()
}

// noteReplyTo records how the node of offer o, received from from, takes
// its answers.
func (l *recvLoop) noteReplyTo(o *wire.Offer, from netip.AddrPort) {
	if o.Flags&wire.SessionReplyUnicast == 0 || !from.IsValid() {
		l.replyTo.Store(nil)
		return
	}
	if p := l.replyTo.Load(); p == nil || *p != from {
		l.replyTo.Store(&from)
	}
}

// answer sends a receiver's answer to the node the loop serves: by
// unicast where it takes them so, else to the group.
func (l *recvLoop) answer(m wire.Message) {
	n := l.r.n
	if _, ok := m.(*wire.Nack); ok {
		n.met.NacksSent.Inc()
	}
	var err error
	if to := l.replyTo.Load(); to != nil {
		err = n.conn.SendTo(m, *to)
	} else {
		err = n.conn.Send(m)
	}
	if err != nil {
		n.log.Debug("answer not sent", "type", m.Type(), "err", err)
	}
}
