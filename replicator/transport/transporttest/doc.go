// Package transporttest provides in-memory stand-ins for makuo's multicast
// transport, and the conformance suite that keeps them honest.
//
// Network is for deterministic simulation of whole clusters: one
// goroutine, a virtual clock the caller advances, and every random choice
// drawn from one seed, so that thousands of seeded runs fit in a minute
// and a failing seed replays exactly. The caller attaches members, sends
// datagrams with the current virtual time and takes deliveries in time
// order with Next. Determinism contract: the same seed and the same
// sequence of calls (including fault settings) give the same deliveries,
// byte for byte and in the same order; nothing else (no clock, no
// goroutine, no map order) enters. Each directed link draws from a random
// stream of its own, so traffic on one link does not change the fate of
// datagrams on another.
//
// Hub and HubConn are for running real engines in one process over a fake
// network: a HubConn has transport.Conn's method set and behaviour (wire
// framing with node id, incarnation and increasing seq; own datagrams never
// delivered back; replay filtering; a bounded Packets queue whose last
// eighth is kept for control messages) but lives in real time, with the
// same fault model applied under a mutex. It does not seal.
//
// TestConn is the conformance suite of the Conn interface. The package's
// own tests run it against HubConn, against transport.Conn on the
// loopback interface (IPv4) and on a link-local IPv6 group of a
// multicast interface (IPv6 multicast cannot use lo); package e2e runs it
// against transport.Conn across network namespaces on a bridge, on both
// families.
//
// Fault model: faults are per directed link (SetLink) over a default
// (SetDefault, or NewHub's argument). A datagram is lost with probability
// Loss; one that is not is duplicated with probability Duplicate; each
// copy is delayed by Delay plus a uniform [0, Jitter), and with
// probability Reorder held back up to ReorderDelay more, so that later
// datagrams overtake it. Partition cuts the members into groups that hear
// nothing from each other until Heal. Faults are decided when a datagram
// is sent: changing them affects later datagrams only. Detach (a dead
// member) and Close drop what is on its way to the member. On a Hub, as
// on the real network, a duplicate or a datagram reordered past the
// replay window is then dropped by the receiver's replay filter.
//
// Bounds: a Network holds at most MaxPending deliveries and
// MaxPendingBytes of datagrams (SetLimits changes both per network); a
// HubConn holds at most InboxBytes of arrived datagrams and QueueLen
// packets, like a real socket's receive buffer and queue. Past a bound,
// copies are dropped and counted (LinkStats.Overflow, ConnStats), never
// kept.
package transporttest
