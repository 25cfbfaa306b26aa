package sim

import (
	"context"
	"fmt"
	"time"

	"github.com/makuo/makuo/replicator/session"
	"github.com/makuo/makuo/replicator/source"
	"github.com/makuo/makuo/replicator/wire"
)

// pushRun is the send session in progress.
type pushRun struct {
	from    *Node
	s       *session.Sender
	rd      *source.Reader
	scan    *source.Scan
	stepped bool // an answer was stepped since the last Next
}

// Push describes one push.
type Push struct {
	Roots   []string
	Options source.Options
	Flags   wire.SessionFlags
	Targets []wire.NodeID
	// During, if set, runs at every step of the session's driving loop
	// (to crash a member or cut the network mid-session).
	During func(c *Cluster)
}

// Result is what a push reported.
type Result struct {
	Session  uint64
	Entries  []wire.Entry
	Outcomes []session.Outcome
	Virtual  time.Duration // virtual time the push took
	Polls    uint64        // poll rounds (each a round trip)
	Stats    session.SenderStats
}

// maxVirtual bounds a push's virtual time: a push that has not finished
// by then is stuck (a liveness failure).
const maxVirtual = 30 * time.Minute

// Run pushes from the sender to the live receiving members, the way the
// daemon does: a digest round first for a recursive push, then the session.
func (c *Cluster) Run(p Push) (*Result, error) {
	from := c.Sender()
	start, polls := c.now, c.stats.Polls
	sc, err := source.Build(context.Background(), from.index, p.Roots, p.Options)
	if err != nil {
		return nil, err
	}
	members := c.members(p.Targets)
	if p.Options.Recursive && p.Options.Excludes == nil && p.Flags&wire.SessionCheck == 0 && len(members) > 0 {
		dirs := sc.Digest(from.index)
		if len(dirs) > 0 {
			res, err := c.session(from, nil, dirs, wire.SessionDigest, members, p)
			if err != nil {
				return nil, err
			}
			same := map[string]bool{}
			for i, d := range dirs {
				ok := true
				for _, o := range res.Outcomes {
					ok = ok && o.Failed == "" && !o.Changed(i)
				}
				if ok {
					same[d.Path] = true
				}
			}
			sc.Prune(same)
		}
	}
	res, err := c.session(from, sc, sc.Entries, p.Flags, members, p)
	if err != nil {
		return nil, err
	}
	res.Virtual, res.Polls = c.now.Sub(start), c.stats.Polls-polls
	return res, nil
}

// members returns the live receivers, narrowed to targets.
func (c *Cluster) members(targets []wire.NodeID) []wire.NodeID {
	var ids []wire.NodeID
	for _, n := range c.Receivers() {
		if n.Down {
			continue
		}
		if len(targets) == 0 || containsID(targets, n.ID) {
			ids = append(ids, n.ID)
		}
	}
	return ids
}

func containsID(ids []wire.NodeID, id wire.NodeID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// session drives one send session to its end.
func (c *Cluster) session(from *Node, sc *source.Scan, entries []wire.Entry, flags wire.SessionFlags, members []wire.NodeID, p Push) (*Result, error) {
	id := c.rng.Uint64()
	if id%4 != 0 {
		// Three pushes in four take answers by unicast, as daemons do;
		// the rest as from a daemon of before that (or with
		// --multicast-replies). The session id decides, so the seed's
		// other draws stay as they were.
		flags |= wire.SessionReplyUnicast
	}
	s, err := session.NewSender(session.SenderConfig{
		Session: id, Flags: flags, Entries: entries, Targets: p.Targets, Members: members,
		MaxPayload: maxPayload, Timeout: 5 * time.Second, MaxRate: c.cfg.Rate,
	})
	if err != nil {
		return nil, err
	}
	run := &pushRun{from: from, s: s, scan: sc}
	if sc != nil {
		run.rd = source.NewReader(from.root, sc)
		defer run.rd.Close()
	}
	c.push = run
	defer func() { c.push = nil }()
	deadline := c.now.Add(maxVirtual)
	callAt, paced := c.now, c.now
	buf := make([]session.Out, 0, 64)
	block := make([]byte, maxPayload)
	for !s.Done() {
		if c.now.After(deadline) {
			return nil, fmt.Errorf("push %016x stuck in %v after %v of virtual time", s.Session(), s.Phase(), maxVirtual)
		}
		if p.During != nil {
			p.During(c)
		}
		if want := s.NeedChunkLists(); want != nil {
			s.SetChunkLists(source.ChunkLists(from.index, sc, want))
		}
		if !c.now.Before(callAt) {
			var wake time.Time
			buf, wake = s.Next(c.now, buf[:0], 32)
			run.stepped = false
			if len(buf) > 0 {
				bytes, err := c.sendOut(run, buf, block)
				if err != nil {
					return nil, err
				}
				paced = c.now.Add(time.Duration(float64(bytes*8) / s.Rate() * float64(time.Second)))
				callAt = paced
				continue
			}
			if wake.IsZero() {
				break
			}
			callAt = maxTime(wake, paced)
		}
		at, ok := c.net.Peek()
		if ok && !at.After(callAt) {
			c.now = maxTime(c.now, at)
			d, _ := c.net.Next()
			if err := c.deliver(d); err != nil {
				return nil, err
			}
			if run.stepped {
				callAt = maxTime(c.now, paced)
			}
		} else {
			c.now = maxTime(c.now, callAt)
		}
		c.expireIdle()
	}
	return &Result{Session: s.Session(), Entries: entries, Outcomes: s.Outcomes(), Stats: s.Stats()}, nil
}

// sendOut multicasts what Next asked for and returns the bytes sent.
func (c *Cluster) sendOut(run *pushRun, out []session.Out, block []byte) (uint64, error) {
	before := c.stats.Bytes
	for _, o := range out {
		m := o.Msg
		if m == nil {
			i, off, n, err := run.s.Locate(o.Block)
			if err != nil {
				return 0, err
			}
			_ = run.rd.ReadAt(i, block[:n], off)
			m = &wire.Data{Session: run.s.Session(), Block: o.Block, Bytes: block[:n]}
		}
		c.transmit(run.from, m)
	}
	return c.stats.Bytes - before, nil
}
