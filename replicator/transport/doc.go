// Package transport moves makuo datagrams over one UDP IPv4 multicast group.
//
// It frames (header from package wire), seals and opens (XChaCha20-Poly1305
// with a key derived from the group key file), and filters replays; it does
// not interpret payloads. Socket set-up follows the x/net/ipv4 sequence:
// bind the group address and port with SO_REUSEADDR (several daemons may
// share a host), join the group on the chosen interface, set the outgoing
// interface, TTL and loopback (on, so members on one host hear each other;
// a daemon's own datagrams are filtered by node id).
//
// The read loop only reads (in batches, recvmmsg), checks and hands off: it
// never blocks on processing. Each accepted datagram is copied into a pooled
// buffer owned by the Packet handed to the consumer, which must call
// Release when done; when the consumer's queue is full the datagram is
// dropped and counted (reason queue_full), since blocking would stall every
// member's traffic behind one slow handler. Every refused datagram is
// counted by reason (see package metrics) and never stops the loop.
//
// Closing the socket is what unblocks the read loop: Run closes it when its
// context ends.
package transport
