package transport

import (
	"net"
	"net/netip"
	"time"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/wire"
)

// answerBatch is the answers a relay holds for one destination: another
// segment's active relay (sent from the relay socket, which it lists),
// or, local, an origin of our segment (sent from the socket we send
// everything else from, which it heard our hellos from).
type answerBatch struct {
	local   bool
	answers []wire.Answer
	raws    []*[]byte
	size    int
}

// pendAnswer adds an answer to the batch for where it goes, sending the
// batch first if the answer would not fit in it. An answer for an origin
// of another segment goes to that segment's active relay; without one
// (the origin not heard through a listed relay lately, or its segment
// without a live active relay) it is dropped: the member asks again.
func (c *Conn) pendAnswer(fw *forwarder, it relayItem) {
	r := c.rel
	dst := it.to
	if !it.in {
		seg, ok := c.routes.remoteOf(it.to, time.Now())
		at, live := (*r.bySeg.Load())[seg]
		if !ok || seg == "" || !live {
			r.met.Drop(metrics.DropRelayNoRoute)
			r.put(it.raw)
			return
		}
		dst = at
	}
	a := wire.Answer{From: it.origin, To: it.to, Inner: *it.raw}
	size := wire.AnswerSize(&a)
	if size > c.maxAnswer() {
		r.met.Drop(metrics.DropOversize)
		r.put(it.raw)
		return
	}
	b := fw.batches[dst]
	if b == nil {
		b = &answerBatch{local: it.in}
		fw.batches[dst] = b
	}
	if len(b.answers) > 0 && (b.size+size > c.maxAnswer() || len(b.answers) == wire.MaxAnswers) {
		c.sendAnswers(fw, dst, b)
	}
	b.answers, b.raws = append(b.answers, a), append(b.raws, it.raw)
	b.size += size
	fw.pending++
}

// flushAnswers sends every batch waiting.
func (c *Conn) flushAnswers(fw *forwarder) {
	for dst, b := range fw.batches {
		if len(b.answers) > 0 {
			c.sendAnswers(fw, dst, b)
		}
	}
}

// sendAnswers sends batch b to dst and empties it.
func (c *Conn) sendAnswers(fw *forwarder, dst netip.AddrPort, b *answerBatch) {
	r := c.rel
	m := &wire.RelayAnswers{Answers: b.answers}
	fw.ansB = c.frame(fw.ansB[:0], m.Type(), m.AppendPayload)
	u, way := r.sock, r.ansOut
	if b.local {
		u, way = c.txUDP, r.ansIn
	}
	if _, err := c.write(u, fw.ansB, net.UDPAddrFromAddrPort(dst)); err != nil {
		c.cfg.Logger.Debug("relayed answers not sent", "to", dst, "answers", len(b.answers), "err", err)
	} else {
		way.Add(float64(len(b.answers)))
	}
	fw.pending -= len(b.answers)
	for i, p := range b.raws {
		r.put(p)
		b.raws[i], b.answers[i] = nil, wire.Answer{}
	}
	b.answers, b.raws, b.size = b.answers[:0], b.raws[:0], 0
}
