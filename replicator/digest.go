package replicator

import (
	"context"
	"fmt"
	"path"
	"time"

	"github.com/makuo/makuo/replicator/membership"
	"github.com/makuo/makuo/replicator/wire"
)

// newSendSession prepares a session over entries for peers.
func (n *Node) newSendSession(peers []membership.Member, entries []wire.Entry, flags wire.SessionFlags) *sendSession {
	s := &sendSession{
		n:         n,
		id:        newSessionID(),
		flags:     flags,
		entries:   entries,
		blockSize: n.conn.MaxPayload() - wire.DataHeaderLen,
		replies:   make(chan reply, 16384),
		timeout:   n.cfg.SessionTimeout,
		byID:      map[wire.NodeID]*peer{},
		rate:      min(n.startRate(), n.maxRate()),
	}
	now := time.Now()
	for _, m := range peers {
		p := &peer{id: m.ID, hostname: m.Hostname, heard: now,
			change: make([]bool, len(entries)), data: make([]bool, len(entries)), basis: make([]bool, len(entries))}
		s.peers = append(s.peers, p)
		s.byID[m.ID] = p
	}
	return s
}

// startSession builds the offers and registers s to receive answers.
func (n *Node) startSession(s *sendSession, targets []wire.NodeID, excludes []string) error {
	s.buildOffers(targets, excludes, n.conn.MaxPayload())
	for _, p := range s.peers {
		p.answered = make([]bool, len(s.offers))
	}
	s.layout()
	n.sendMu.Lock()
	defer n.sendMu.Unlock()
	if _, dup := n.sends[s.id]; dup {
		return fmt.Errorf("bug: session id %016x in use", s.id)
	}
	n.sends[s.id] = s
	return nil
}

func (n *Node) endSession(s *sendSession) {
	n.sendMu.Lock()
	delete(n.sends, s.id)
	n.sendMu.Unlock()
}

// digestPhase offers the Merkle hash of every directory among entries and
// returns those whose whole subtree is the same on every receiver, with the
// bytes it put on the wire. A no-change resync of a large tree then costs
// a datagram per few dozen directories instead of one entry per file.
func (n *Node) digestPhase(ctx context.Context, peers []membership.Member, targets []wire.NodeID, entries []wire.Entry) (map[string]bool, uint64, error) {
	var dirs []wire.Entry
	for _, e := range entries {
		if e.Kind != wire.KindDir {
			continue
		}
		if h, ok := n.index.DirHash(e.Path); ok {
			d := e
			d.Flags, d.Hash = wire.EntryDigest, h
			dirs = append(dirs, d)
		}
	}
	if len(dirs) == 0 {
		return nil, 0, nil
	}
	s := n.newSendSession(peers, dirs, wire.SessionDigest)
	if err := n.startSession(s, targets, nil); err != nil {
		return nil, 0, err
	}
	defer n.endSession(s)
	err := s.offerPhase(ctx)
	s.send(&wire.Abort{Session: s.id})
	if err != nil {
		return nil, s.wire, err
	}
	same := map[string]bool{}
	for i, d := range dirs {
		ok := true
		for _, p := range s.peers {
			if !p.active() || p.change[i] {
				ok = false
			}
		}
		if ok {
			same[d.Path] = true
		}
	}
	return same, s.wire, nil
}

// pruneSame drops the entries below directories that matched everywhere,
// marking those directories EntrySame. A hard link whose first name would
// be dropped keeps that name, and LinkTo indexes are renumbered.
func pruneSame(entries []wire.Entry, same map[string]bool) []wire.Entry {
	if len(same) == 0 {
		return entries
	}
	keep := make([]bool, len(entries))
	for i, e := range entries {
		keep[i] = !underSame(e.Path, same)
	}
	for i, e := range entries {
		if keep[i] && e.Kind == wire.KindHardlink && int(e.LinkTo) < len(entries) {
			keep[e.LinkTo] = true
		}
	}
	index := make([]uint32, len(entries))
	kept := 0
	for _, k := range keep {
		if k {
			kept++
		}
	}
	out := make([]wire.Entry, 0, kept)
	for i, e := range entries {
		if !keep[i] {
			continue
		}
		index[i] = uint32(len(out))
		if e.Kind == wire.KindDir && same[e.Path] {
			e.Flags |= wire.EntrySame
		}
		if e.Kind == wire.KindHardlink {
			e.LinkTo = index[e.LinkTo]
		}
		out = append(out, e)
	}
	return out
}

// underSame reports whether some ancestor of p (not p itself) is in same.
func underSame(p string, same map[string]bool) bool {
	for p != "." && p != "" {
		p = path.Dir(p)
		if same[p] {
			return true
		}
	}
	return false
}
