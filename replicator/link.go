package replicator

import "github.com/makuo/makuo/replicator/transport"

// Link is the engine's seam to the network (see transport.Link): the real
// multicast socket in a daemon, an in-memory one in tests.
type Link = transport.Link

// listen opens the real multicast link.
func listen(cfg transport.Config) (Link, error) { return transport.Listen(cfg) }
