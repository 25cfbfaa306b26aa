package replicator

import (
	"context"
	"net/netip"

	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/replicator/wire"
)

// Link is what the engine needs of the network: multicast to the group,
// and the group's datagrams in, authenticated and parsed as far as the
// header. transport.Conn is the real one; transporttest.HubConn runs
// daemons in one process over an in-memory network, and both pass the
// same conformance suite (transporttest.TestConn). Implementations must be
// safe for concurrent use; a Packet belongs to the receiver until it calls
// Release.
type Link interface {
	Send(wire.Message) error
	SendN(wire.Message) (int, error)
	SendBatch([]wire.Message) (int, error)
	Packets() <-chan *transport.Packet
	MaxPayload() int
	LocalAddr() netip.Addr
	Run(context.Context) error
	Close() error
}

var _ Link = (*transport.Conn)(nil)

// listen opens the real multicast link.
func listen(cfg transport.Config) (Link, error) { return transport.Listen(cfg) }
