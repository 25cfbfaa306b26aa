// Package peers is unicast mode's table of peer addresses, for networks
// that carry no multicast (containers without NET_ADMIN, cloud VPCs):
// package transport sends every datagram meant for the group to each of
// its addresses instead.
//
// Addresses come from three places:
//   - listed: --peer HOST[:PORT] and the lines of --peers-file (read
//     again whenever it changes; a change that does not parse is refused
//     with its line number, and the previous list stays), a DNS name
//     standing for every address it resolves to (looked up again every
//     ResolveEvery, so a name that lists every member follows members
//     that come and go). Listed addresses stay, silent or not;
//   - heard: the source address of a heartbeat or a peer list, so that a
//     member needs to list only one other and every member it lists
//     learns it back;
//   - gossiped: the addresses in a live peer's list (wire.Peers), which
//     every member sends its peers now and then and when it learned an
//     address, so that news spreads in a round trip.
//
// A learned address (heard or gossiped, not listed) is forgotten once
// silent for as long as the member table forgets a member. What a peer
// can make the table hold is bounded: at most MaxLearned learned
// addresses, past which new ones are ignored and counted (drop reason
// peer_limit); a list is followed only from a live peer and names at
// most wire.MaxPeers addresses; an address must be a unicast address of
// the set's family, loopback only from loopback.
//
// A member may have several addresses (a name's IPv4 and IPv6 answers, a
// host with two interfaces): once heard, each member gets one datagram,
// at one address (a live one first, then a listed one). Our own addresses
// (a name that lists every member lists us) are found when one of our own
// datagrams comes back from them, and get nothing more. In mixed mode
// (multicast inside the segment, unicast to other segments) a member
// heard on the group gets no unicast copy.
//
// The table knows nothing of sockets: the transport tells it what it
// heard (Heard, Gossip, Own, HeardOnGroup) and asks it where to send
// (Targets).
package peers
