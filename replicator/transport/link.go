package transport

import (
	"context"
	"net/netip"

	"github.com/makuo/makuo/replicator/wire"
)

// Link is what the engine needs of the network: multicast to the group,
// and the group's datagrams in, authenticated and parsed as far as the
// header. Conn is the real one; transporttest.HubConn runs daemons in one
// process over an in-memory network, and both pass the same conformance
// suite (transporttest.TestConn). Send, SendN and SendBatch may be called
// concurrently with each other and with Run; a packet from Packets is the
// receiver's until it calls Release.
type Link interface {
	// Send frames and multicasts one message to every other member; it
	// accepts a message past MaxPayload up to wire.MaxDatagram.
	Send(wire.Message) error
	// SendN is Send that also returns the bytes written.
	SendN(wire.Message) (int, error)
	// SendBatch multicasts msgs in order and returns the bytes written; a
	// message past MaxPayload fails the batch before any of it is sent.
	SendBatch([]wire.Message) (int, error)
	// SendTo frames and unicasts one message to the member whose
	// datagrams come from to (a Packet's From), for an answer only that
	// member needs. It accepts what Send accepts.
	SendTo(m wire.Message, to netip.AddrPort) error
	// UnicastReplies reports whether peers may answer this member by
	// SendTo to the source address of its datagrams.
	UnicastReplies() bool
	// Packets is the queue of accepted datagrams, closed when Run returns.
	Packets() <-chan *Packet
	// Deliver, called before Run, makes Run hand each accepted datagram
	// to f on the goroutine that read it instead of queueing it on
	// Packets: a consumer that never blocks saves a goroutine hand-off,
	// and with it a wake-up, per datagram. f must be safe for concurrent
	// use and must not block; Packets then stays empty.
	Deliver(f func(*Packet))
	// MaxPayload is the largest payload SendBatch accepts.
	MaxPayload() int
	// LocalAddr is the source address peers see.
	LocalAddr() netip.Addr
	// Run receives until ctx ends or Close is called and returns nil then.
	Run(ctx context.Context) error
	// Close stops Run; it may be called more than once.
	Close() error
}

var _ Link = (*Conn)(nil)
