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

// SendN is Send that also returns the bytes written.
func (c *Conn) SendN(m wire.Message) (int, error) {
	return c.sendOne(m, c.dst)
}

// SendTo frames, seals and unicasts one message to the member whose
// datagrams come from to: a unicast address of the group's family. A
// link-local IPv6 address routes by its zone, which a Packet's From
// carries; one without takes the Conn's interface.
func (c *Conn) SendTo(m wire.Message, to netip.AddrPort) error {
	a, err := c.unicastTo(to)
	if err != nil {
		return fmt.Errorf("transport: send %v: %w", m.Type(), err)
	}
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, to.Port()))
	if dst.Zone != "" && dst.Zone == c.ifName {
		// By index, not by name: see zoned.
		dst.Zone = c.ifZone
	}
	_, err = c.sendOne(m, dst)
	return err
}

// unicastTo checks that to is a member's unicast address and returns
// its address as the sockets take it.
func (c *Conn) unicastTo(to netip.AddrPort) (netip.Addr, error) {
	a := to.Addr()
	if c.cfg.Group.Is4() {
		a = a.Unmap()
	}
	switch {
	case !to.IsValid() || to.Port() == 0 || a.IsMulticast() || a.IsUnspecified():
		return a, fmt.Errorf("%v is not a member's unicast address", to)
	case a.Is4() != c.cfg.Group.Is4() || a.Is4In6():
		return a, fmt.Errorf("%v is not of the group's address family (group %v)", to, c.cfg.Group)
	case a.Zone() == "" && needsZone(a):
		if c.ifName == "" {
			return a, fmt.Errorf("%v is link-local and has no zone to route it by", to)
		}
		a = a.WithZone(c.ifName)
	}
	return a, nil
}

func (c *Conn) sendOne(m wire.Message, dst *net.UDPAddr) (int, error) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	b := c.frame(c.sendB[:0], m.Type(), func(b []byte) []byte { return m.AppendPayload(b) })
	c.sendB = b[:0]
	if len(b) > wire.MaxDatagram {
		return 0, fmt.Errorf("transport: %v datagram of %d bytes exceeds %d", m.Type(), len(b), wire.MaxDatagram)
	}
	n, err := c.txUDP.WriteTo(b, dst)
	if err != nil {
		return 0, fmt.Errorf("transport: send %v: %w", m.Type(), err)
	}
	c.cfg.Metrics.DatagramsSent.Inc()
	c.cfg.Metrics.BytesSent.Add(float64(n))
	return n, nil
}

// SendBatch frames, seals and multicasts msgs with as few system calls as
// the kernel allows: one sendmmsg, in which each run of equal-sized
// datagrams goes as one UDP_SEGMENT message the kernel (or the NIC) cuts
// into datagrams. It returns the bytes written.
func (c *Conn) SendBatch(msgs []wire.Message) (int, error) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	for len(c.batchBufs) < len(msgs) {
		c.batchBufs = append(c.batchBufs, make([]byte, 0, c.cfg.MaxDatagram))
		c.batchMsgs = append(c.batchMsgs, ipv4.Message{Addr: c.dst})
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
	total, err := c.sendFrames(frames)
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

// sendFrames writes framed datagrams, grouped for segmentation offload
// while it is on. If the kernel refuses a segmented send (no checksum
// offload on the device, a datagram larger than the MTU), offload is
// turned off for good and the rest goes out datagram by datagram.
func (c *Conn) sendFrames(frames [][]byte) (int, error) {
	total := 0
	for len(frames) > 0 {
		ms := c.group(frames)
		for len(ms) > 0 {
			n, err := c.tx.WriteBatch(ms, 0)
			if err != nil {
				if len(ms[0].Buffers) > 1 && offloadRefused(err) && c.gso.Swap(false) {
					c.cfg.Logger.Info("UDP segmentation offload refused; sending datagram by datagram", "err", err)
					break
				}
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

// group builds the messages for frames: runs of equal-sized datagrams
// (the last of a run may be shorter) share one message with a
// UDP_SEGMENT control message while offload is on.
func (c *Conn) group(frames [][]byte) []ipv4.Message {
	gso := c.gso.Load()
	k := 0
	for i := 0; i < len(frames); k++ {
		size, j, sum := len(frames[i]), i+1, len(frames[i])
		for gso && j < len(frames) && j-i < maxSegments && len(frames[j]) <= size &&
			sum+len(frames[j]) <= maxSegmentBytes && len(frames[j-1]) == size {
			sum += len(frames[j])
			j++
		}
		m := &c.batchMsgs[k]
		m.Buffers, m.OOB = frames[i:j], nil
		if j-i > 1 {
			m.OOB = putSegmentSize(c.batchOOB[k], size)
		}
		i = j
	}
	return c.batchMsgs[:k]
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
