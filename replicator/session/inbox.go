package session

import (
	"sync/atomic"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// Budget bounds the memory every receive session of a member holds
// together, in bytes: offers cost their entries, whatever the sessions'
// senders. It is safe for concurrent use (one inbox per sending node
// shares it).
type Budget struct {
	limit int64
	used  atomic.Int64
}

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// Used returns the bytes held now.
func (b *Budget) Used() int64 { return b.used.Load() }

// Limit returns the budget's size.
func (b *Budget) Limit() int64 { return b.limit }

func (b *Budget) take(n int64) bool {
	if b.used.Add(n) > b.limit {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *Budget) give(n int64) { b.used.Add(-n) }

// InboxConfig configures the receive sessions of one sending node.
type InboxConfig struct {
	// Self returns this member's node id (it can change at run time): a
	// session whose offers target other members only is ignored.
	Self func() wire.NodeID
	// Node is the sending node served.
	Node wire.NodeID
	// MaxSessions bounds the sessions of the node in progress at once; an
	// offer for one more is refused (DropLimit). An honest sender runs a
	// few at once (makuosan -f).
	MaxSessions int
	// Idle is how long a session may go without a message from its sender
	// before it is discarded.
	Idle time.Duration
	// MaxPayload is the payload bytes an answer may take.
	MaxPayload int
	// Budget is shared by every inbox of the member.
	Budget *Budget
}

// Bounds of the records kept for finished or ignored sessions: a repeated
// commit or offer of one of them is answered or ignored without starting
// anew.
const (
	maxDoneSessions    = 64
	maxIgnoredSessions = 64
)

// Inbox holds the receive sessions of one sending node: it starts a
// session on its first offer (if this member is a target and the caps
// allow), routes the node's messages, and forgets sessions that went idle.
// It is not safe for concurrent use.
type Inbox struct {
	cfg      InboxConfig
	sessions map[uint64]*Receiver
	ignored  map[uint64]time.Time
}

// NewInbox returns an empty inbox.
func NewInbox(cfg InboxConfig) *Inbox {
	return &Inbox{cfg: cfg, sessions: map[uint64]*Receiver{}, ignored: map[uint64]time.Time{}}
}

// Step routes a message of the inbox's node to its session. It returns
// the session and what stepping it produced, or a nil Receiver with the
// reason the message was dropped (DropNone: not for a session held here,
// such as data of a session this member is not a target of).
func (in *Inbox) Step(now time.Time, m wire.Message) (*Receiver, *Ready, Drop) {
	id, ok := sessionOf(m)
	if !ok {
		return nil, nil, DropNone
	}
	r := in.sessions[id]
	if r == nil {
		o, isOffer := m.(*wire.Offer)
		if !isOffer {
			return nil, nil, DropNone // data for a session we never joined
		}
		if _, ign := in.ignored[id]; ign {
			in.ignored[id] = now
			return nil, nil, DropNone
		}
		var drop Drop
		if r, drop = in.start(now, id, o); r == nil {
			return nil, nil, drop
		}
	}
	rd := r.Step(now, m)
	if r.Closed() {
		delete(in.sessions, id)
	}
	return r, rd, DropNone
}

func (in *Inbox) start(now time.Time, id uint64, o *wire.Offer) (*Receiver, Drop) {
	if len(o.Targets) > 0 && !containsID(o.Targets, in.cfg.Self()) {
		if len(in.ignored) >= maxIgnoredSessions {
			evictOldest(in.ignored)
		}
		in.ignored[id] = now
		return nil, DropNone
	}
	// Every offer but the one of an empty session carries an entry.
	if o.Count > max(o.Entries, 1) {
		return nil, DropMalformed
	}
	if in.Active() >= in.cfg.MaxSessions {
		return nil, DropLimit
	}
	in.trimDone()
	r := newReceiver(Key{in.cfg.Node, id}, o, in.cfg.Budget, in.cfg.MaxPayload, now)
	in.sessions[id] = r
	return r, DropNone
}

// trimDone forgets the oldest finished sessions past maxDoneSessions.
func (in *Inbox) trimDone() {
	done := len(in.sessions) - in.Active()
	for done >= maxDoneSessions {
		var oldest uint64
		var at time.Time
		for id, r := range in.sessions {
			if r.Done() && (at.IsZero() || r.last.Before(at)) {
				oldest, at = id, r.last
			}
		}
		if at.IsZero() {
			return
		}
		delete(in.sessions, oldest)
		done--
	}
}

// Expire removes the sessions idle at now and returns those whose staged
// files must be discarded (the caller runs each one's Discard).
func (in *Inbox) Expire(now time.Time) []*Receiver {
	var out []*Receiver
	for id, r := range in.sessions {
		if now.Sub(r.last) > in.cfg.Idle || r.Closed() {
			if !r.Done() && !r.Closed() {
				out = append(out, r)
			}
			delete(in.sessions, id)
		}
	}
	for id, at := range in.ignored {
		if now.Sub(at) > in.cfg.Idle {
			delete(in.ignored, id)
		}
	}
	return out
}

// Close removes every session and returns those in progress.
func (in *Inbox) Close() []*Receiver {
	var out []*Receiver
	for _, r := range in.sessions {
		if !r.Done() && !r.Closed() {
			out = append(out, r)
		}
	}
	clear(in.sessions)
	return out
}

// Len returns the number of sessions held, finished ones included.
func (in *Inbox) Len() int { return len(in.sessions) }

// Active returns the number of sessions in progress.
func (in *Inbox) Active() int {
	n := 0
	for _, r := range in.sessions {
		if !r.Done() && !r.Closed() {
			n++
		}
	}
	return n
}

// sessionOf returns the session a sender's message belongs to.
func sessionOf(m wire.Message) (uint64, bool) {
	switch m := m.(type) {
	case *wire.Offer:
		return m.Session, true
	case *wire.Data:
		return m.Session, true
	case *wire.Poll:
		return m.Session, true
	case *wire.Commit:
		return m.Session, true
	case *wire.Abort:
		return m.Session, true
	case *wire.Chunks:
		return m.Session, true
	}
	return 0, false
}

func containsID(ids []wire.NodeID, id wire.NodeID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func evictOldest(m map[uint64]time.Time) {
	var oldest uint64
	var at time.Time
	for id, t := range m {
		if at.IsZero() || t.Before(at) {
			oldest, at = id, t
		}
	}
	delete(m, oldest)
}
