// Package transporttest provides in-memory stand-ins for makuo's multicast
// transport.
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
// Fault model: faults are per directed link (SetLink) over a default
// (SetDefault). A datagram is lost with probability Loss; one that is not
// is duplicated with probability Duplicate; each copy is delayed by Delay
// plus a uniform [0, Jitter), and with probability Reorder held back up
// to ReorderDelay more, so that later datagrams overtake it. Partition
// cuts the members into groups that hear nothing from each other until
// Heal. Faults are decided when a datagram is sent: changing them affects
// later datagrams only. Detach (a dead member) drops what is on its way
// to the member.
//
// Bounds: a Network holds at most MaxPending deliveries and
// MaxPendingBytes of datagrams (SetLimits changes both per network). Past
// a bound, copies are dropped and counted (LinkStats.Overflow), never
// kept.
package transporttest
