package transport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/makuo/makuo/replicator/wire"
)

// Send frames, seals and multicasts one message. A message larger than
// MaxPayload still goes out, as an IP-fragmented datagram of up to
// wire.MaxDatagram bytes: that is for the rare oversized control message
// (an offer of one entry with a 4 KiB path), never for data.
func (c *Conn) Send(m wire.Message) error {
	_, err := c.SendN(m)
	return err
}

// SendN is Send that also returns the bytes written: the datagram's, also
// in unicast mode, where each peer gets a copy (the metrics count every
// copy).
func (c *Conn) SendN(m wire.Message) (int, error) {
	return c.sendOne(m, c.dst)
}

// SendTo frames, seals and unicasts one message to the member whose
// datagrams come from to: a unicast address of the group's family. A
// link-local IPv6 address routes by its zone, which a Packet's From
// carries; one without takes the Conn's interface.
//
// An answer to an origin of another segment goes through our segment's
// active relay, where there is one (see answers.go).
func (c *Conn) SendTo(m wire.Message, to netip.AddrPort) error {
	a, err := c.unicastTo(to)
	if err != nil {
		return fmt.Errorf("transport: send %v: %w", m.Type(), err)
	}
	if done, err := c.sendViaRelay(m, c.unmap(to)); done || err != nil {
		if err != nil {
			return fmt.Errorf("transport: send %v through the relay: %w", m.Type(), err)
		}
		return nil
	}
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, to.Port()))
	if dst.Zone != "" && dst.Zone == c.ifName {
		// By index, not by name: see zoned.
		dst.Zone = c.ifZone
	}
	_, err = c.sendTo(m, dst, c.viaPeers(to))
	return err
}

// viaPeers reports whether a datagram to to goes out of unicast mode's
// socket: always without a group; in mixed mode to a peer of the table
// (whose answers it takes), else from the socket multicast goes from.
func (c *Conn) viaPeers(to netip.AddrPort) bool {
	return c.uni != nil && (!c.mcast || c.cfg.Peers.Known(to))
}

// unicastTo checks that to is a member's unicast address and returns
// its address as the sockets take it.
func (c *Conn) unicastTo(to netip.AddrPort) (netip.Addr, error) {
	a := to.Addr()
	if !c.fam.v6 {
		a = a.Unmap()
	}
	switch {
	case !to.IsValid() || to.Port() == 0 || a.IsMulticast() || a.IsUnspecified():
		return a, fmt.Errorf("%v is not a member's unicast address", to)
	case a.Is6() != c.fam.v6 || a.Is4In6():
		if !c.mcast {
			return a, fmt.Errorf("%v is not of the peers' address family", to)
		}
		return a, fmt.Errorf("%v is not of the group's address family (group %v)", to, c.cfg.Group)
	case a.Zone() == "" && needsZone(a):
		if c.ifName == "" {
			return a, fmt.Errorf("%v is link-local and has no zone to route it by", to)
		}
		a = a.WithZone(c.ifName)
	}
	return a, nil
}

// frameOne frames m into the send buffer, which b aliases until the next
// call; the caller holds sendMu.
func (c *Conn) frameOne(m wire.Message) ([]byte, error) {
	b := c.frame(c.sendB[:0], m.Type(), m.AppendPayload)
	c.sendB = b[:0]
	if len(b) > wire.MaxDatagram {
		return nil, fmt.Errorf("transport: %v datagram of %d bytes exceeds %d", m.Type(), len(b), wire.MaxDatagram)
	}
	return b, nil
}

// sendOne frames m once and sends it to the group, if there is one, and
// to every peer in unicast mode.
func (c *Conn) sendOne(m wire.Message, group *net.UDPAddr) (int, error) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	b, err := c.frameOne(m)
	if err != nil {
		return 0, err
	}
	if c.closed.Load() {
		// Unicast mode with no peer yet would send nothing and say so.
		return 0, fmt.Errorf("transport: send %v: %w", m.Type(), net.ErrClosed)
	}
	n := 0
	if group != nil {
		if n, err = c.write(c.txUDP, b, group); err != nil {
			return 0, fmt.Errorf("transport: send %v: %w", m.Type(), err)
		}
		c.relayOwn(m.Type(), b)
	}
	if c.cfg.Peers != nil {
		k, err := c.sendPeers(b)
		if err != nil {
			return n, fmt.Errorf("transport: send %v: %w", m.Type(), err)
		}
		n = max(n, k)
	}
	return n, nil
}

// sendTo frames m and sends it to dst alone, from unicast mode's socket
// if viaPeers.
func (c *Conn) sendTo(m wire.Message, dst *net.UDPAddr, viaPeers bool) (int, error) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	b, err := c.frameOne(m)
	if err != nil {
		return 0, err
	}
	u := c.txUDP
	if viaPeers {
		u = c.uni
	}
	n, err := c.write(u, b, dst)
	if err != nil {
		return 0, fmt.Errorf("transport: send %v: %w", m.Type(), err)
	}
	return n, nil
}

// write sends one datagram and counts it.
func (c *Conn) write(u *net.UDPConn, b []byte, dst *net.UDPAddr) (int, error) {
	n, err := u.WriteTo(b, dst)
	if err != nil {
		return 0, err
	}
	c.cfg.Metrics.DatagramsSent.Inc()
	c.cfg.Metrics.BytesSent.Add(float64(n))
	return n, nil
}

// SendBatch frames, seals and multicasts msgs with as few system calls as
// the kernel allows: one sendmmsg, in which each run of equal-sized
// datagrams goes as one UDP_SEGMENT message the kernel (or the NIC) cuts
// into datagrams. In unicast mode the same frames go to every peer, one
// such sendmmsg each. It returns the bytes written (of one copy).
func (c *Conn) SendBatch(msgs []wire.Message) (int, error) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	for len(c.batchBufs) < len(msgs) {
		c.batchBufs = append(c.batchBufs, make([]byte, 0, c.cfg.MaxDatagram))
		c.batchMsgs = append(c.batchMsgs, ipv4.Message{})
		c.batchOOB = append(c.batchOOB, make([]byte, unix.CmsgSpace(2)))
	}
	frames := c.batchBufs[:len(msgs)]
	for i, m := range msgs {
		b := c.frame(frames[i][:0], m.Type(), m.AppendPayload)
		if len(b) > c.cfg.MaxDatagram {
			return 0, fmt.Errorf("transport: %v datagram of %d bytes exceeds %d", m.Type(), len(b), c.cfg.MaxDatagram)
		}
		frames[i] = b
	}
	var total int
	var err error
	if c.closed.Load() {
		err = fmt.Errorf("transport: send batch: %w", net.ErrClosed)
	} else if c.mcast {
		total, err = c.sendFrames(c.tx, c.dst, frames, c.batchMsgs, c.batchOOB)
		for i, m := range msgs {
			c.relayOwn(m.Type(), frames[i])
		}
	}
	if c.cfg.Peers != nil && err == nil {
		var n int
		n, err = c.sendFramesPeers(frames)
		total = max(total, n)
	}
	for i := range frames {
		frames[i] = frames[i][:0]
	}
	return total, err
}

// GSO limits: the kernel takes at most 64 segments (128 since Linux 6.x)
// and one IP datagram's worth of payload per UDP_SEGMENT send.
const (
	maxSegments     = 64
	maxSegmentBytes = 65507
)

// sendFrames writes framed datagrams to dst through pc, grouped for
// segmentation offload while it is on, in msgs and oob (as many as
// frames, the caller's to reuse). If the kernel refuses a segmented
// send (no checksum offload on the device, a datagram larger than the
// MTU), offload is turned off for good and the rest goes out datagram by
// datagram.
func (c *Conn) sendFrames(pc packetConn, dst *net.UDPAddr, frames [][]byte, msgs []ipv4.Message, oob [][]byte) (int, error) {
	total := 0
	for len(frames) > 0 {
		ms := c.group(frames, dst, msgs, oob)
		for len(ms) > 0 {
			n, err := pc.WriteBatch(ms, 0)
			if err != nil {
				if len(ms[0].Buffers) > 1 && offloadRefused(err) && c.gso.Swap(false) {
					c.cfg.Logger.Info("UDP segmentation offload refused; sending datagram by datagram", "err", err)
					break
				}
				c.cfg.Metrics.BytesSent.Add(float64(total))
				return total, fmt.Errorf("transport: send batch: %w", err)
			}
			for _, m := range ms[:n] {
				for _, b := range m.Buffers {
					total += len(b)
				}
				c.cfg.Metrics.DatagramsSent.Add(float64(len(m.Buffers)))
				frames = frames[len(m.Buffers):]
			}
			ms = ms[n:]
		}
	}
	c.cfg.Metrics.BytesSent.Add(float64(total))
	return total, nil
}

// offloadRefused reports whether a segmented send failed because the
// kernel or device will not segment (no checksum offload: EIO; a segment
// larger than the MTU: EMSGSIZE or EINVAL; no support: EOPNOTSUPP,
// ENOPROTOOPT), not for a passing reason such as ENOBUFS.
func offloadRefused(err error) bool {
	for _, e := range []error{unix.EIO, unix.EMSGSIZE, unix.EINVAL, unix.EOPNOTSUPP, unix.ENOPROTOOPT} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// group builds the messages for frames to dst: runs of equal-sized
// datagrams (the last of a run may be shorter) share one message with a
// UDP_SEGMENT control message while offload is on.
func (c *Conn) group(frames [][]byte, dst *net.UDPAddr, msgs []ipv4.Message, oob [][]byte) []ipv4.Message {
	gso := c.gso.Load()
	k := 0
	for i := 0; i < len(frames); k++ {
		size, j, sum := len(frames[i]), i+1, len(frames[i])
		for gso && j < len(frames) && j-i < maxSegments && len(frames[j]) <= size &&
			sum+len(frames[j]) <= maxSegmentBytes && len(frames[j-1]) == size {
			sum += len(frames[j])
			j++
		}
		m := &msgs[k]
		m.Buffers, m.OOB, m.Addr = frames[i:j], nil, dst
		if j-i > 1 {
			m.OOB = putSegmentSize(oob[k], size)
		}
		i = j
	}
	return msgs[:k]
}

// frame appends header and payload (produced by appendPayload) to b and
// seals the result when a key is set.
func (c *Conn) frame(b []byte, t wire.Type, appendPayload func([]byte) []byte) []byte {
	h := wire.Header{Type: t, Node: c.Node(), Incarnation: c.cfg.Incarnation, Seq: c.seq.Add(1)}
	if c.aead != nil {
		h.Flags |= wire.FlagSealed
	}
	b = h.Append(b)
	b = appendPayload(b)
	if c.aead != nil {
		hdr := b[:wire.HeaderLen]
		b = c.aead.Seal(b[:wire.HeaderLen], hdr[8:wire.HeaderLen], b[wire.HeaderLen:], hdr)
	}
	return b
}
