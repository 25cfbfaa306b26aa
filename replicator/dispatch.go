package replicator

import (
	"unsafe"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/replicator/wire"
)

// dispatch decodes an accepted packet and routes it by type. The link
// calls it on its read loops (transport.Link.Deliver), so it never blocks:
// a full queue is a counted drop, which the session protocol repairs.
//
//	heartbeat, goodbye              → membership
//	offer, data, poll, commit, ...  → the receive loop of the sending node
//	need, nack, result, ...         → the send session they answer
func (n *Node) dispatch(p *transport.Packet) {
	if p.Header.Type == wire.TypeData {
		n.dispatchData(p, n.datas)
		return
	}
	m, err := wire.ParsePayload(p.Header.Type, p.Payload)
	if err != nil {
		p.Release()
		n.met.Drop(metrics.DropMalformed)
		n.log.Debug("malformed datagram", "from", p.From, "type", p.Header.Type, "err", err)
		return
	}
	n.members.Handle(p.Header, m, p.From.Addr())
	switch m := m.(type) {
	case *wire.Offer, *wire.Poll, *wire.Commit, *wire.Abort, *wire.Chunks:
		n.recv.route(p, m, nil, queuedSize(m, len(p.Payload)))
	case *wire.Need, *wire.Nack, *wire.Result, *wire.ChunkNeed, *wire.Busy:
		n.toSession(p.Header.Node, answerSession(m), m)
		p.Release()
	default:
		p.Release()
	}
}

// dispatchData queues a data datagram for its sender's receive loop,
// decoded into a reused Data: this is the per-datagram path, kept free of
// allocations.
func (n *Node) dispatchData(p *transport.Packet, datas *dataPool) {
	d := datas.get()
	if err := d.Decode(p.Payload); err != nil {
		d.release()
		p.Release()
		n.met.Drop(metrics.DropMalformed)
		return
	}
	n.members.Handle(p.Header, &d.Data, p.From.Addr())
	n.recv.route(p, &d.Data, d, int64(len(d.Bytes)))
}

// queuedSize is the memory a parsed offer or chunk list holds while it
// waits in a receive queue, with its datagram: parsed, an offer takes
// several times its payload, and a queue of them would otherwise be
// bounded by count only. Polls, commits and aborts are small and must get
// through: they count nothing.
func queuedSize(m wire.Message, payload int) int64 {
	switch m := m.(type) {
	case *wire.Offer:
		n := payload + len(m.Items)*int(unsafe.Sizeof(wire.Entry{}))
		for i := range m.Items {
			e := &m.Items[i]
			n += len(e.Path) + len(e.Target) + len(e.Basis)
		}
		return int64(n)
	case *wire.Chunks:
		return int64(payload + len(m.Refs)*int(unsafe.Sizeof(wire.ChunkRef{})))
	}
	return 0
}

// toSession hands a receiver's answer to the send session it belongs to.
func (n *Node) toSession(from wire.NodeID, id uint64, m wire.Message) {
	n.sendMu.Lock()
	s := n.sends[id]
	n.sendMu.Unlock()
	if s == nil {
		return
	}
	select {
	case s.replies <- reply{from: from, msg: m}:
	default:
		n.met.Drop(metrics.DropQueueFull)
	}
}

// answerSession returns the session a receiver's answer is for.
func answerSession(m wire.Message) uint64 {
	switch m := m.(type) {
	case *wire.Need:
		return m.Session
	case *wire.Nack:
		return m.Session
	case *wire.Result:
		return m.Session
	case *wire.ChunkNeed:
		return m.Session
	case *wire.Busy:
		return m.Session
	}
	return 0
}
