// Package transport moves makuo datagrams over one UDP multicast group,
// IPv4 or IPv6, or, in unicast mode, to each of a set of peers.
//
// It frames (header from package wire), seals and opens (XChaCha20-Poly1305
// with a key derived from the group key file), and filters replays; it does
// not interpret payloads. Socket set-up follows the x/net/ipv4 (and
// x/net/ipv6) sequence: bind the group address and port with SO_REUSEADDR
// (several daemons may share a host; bound to the group, not the
// wildcard, the socket takes that group's datagrams only), join the group
// on the chosen interface, set the outgoing interface, TTL (hop limit)
// and loopback (on, so members on one host hear each other; a daemon's
// own datagrams are filtered by node id and incarnation). The join is the
// kernel's: IGMPv3 (MLDv2) unless the segment's querier speaks an older
// version. The two families differ only in the sockets' set-up (see
// family.go); reading, sending, offload and the socket filter are one
// path, since a UDP socket filter sees the datagram from its UDP header
// on in both.
//
// An IPv6 group of link-local scope (ff02::) exists on every link, so it
// needs its interface (CheckGroup): the group socket is bound to
// group%interface, and peers' datagrams come from their link-local
// addresses with that zone (Packet.From), which SendTo routes by. Nothing here assumes one subnet: a member is known by its
// node id, and its address is only what datagrams came from, so members
// behind a multicast router (a TTL above 1, a group outside 224.0.0.0/24)
// are members like any other.
//
// The read loop only reads (in batches, recvmmsg), checks and hands off: it
// never blocks on processing. Each accepted datagram is copied into a pooled
// buffer owned by the Packet handed to the consumer, which must call
// Release when done; when the consumer's queue is full the datagram is
// dropped and counted (reason queue_full), since blocking would stall every
// member's traffic behind one slow handler. A consumer that never blocks
// takes the packets on the read loop itself (Deliver): the engine's
// dispatch does, which saves a goroutine hand-off, and so a wake-up of
// another thread, per datagram. Every refused datagram is
// counted by reason (see package metrics) and never stops the loop. What
// may block (saving the replay state, renewing the node id) is done by a
// second goroutine of Run.
//
// # Replays
//
// Every datagram carries its sender's node id, incarnation (which grows
// from one run of a daemon to the next) and a sequence number; each
// (node, incarnation, sequence number) is accepted once, within a window
// behind the highest sequence number accepted, and a datagram of an
// incarnation older than the newest accepted from its node is a replay.
//
// With a key only key holders can make a datagram, so the newest
// incarnation and the highest sequence number win at once. That state is
// kept across restarts (Config.Seen): a restarted member still refuses the
// recorded datagrams of every incarnation, and sequence number, it
// accepted before, instead of accepting them until it hears the sender's
// live traffic (or, for a sender that is gone, forever).
//
// Without a key anyone can forge a datagram, and nothing here can stop a
// forger from sending what it likes; what it must not do is lock a
// member's real traffic out as replays with one datagram carrying the
// member's node id and a huge sequence number or incarnation. So for
// unsealed datagrams:
//   - the window's top moves only for datagrams from the address that
//     opened it (late datagrams within it are accepted from anywhere);
//   - anything else ahead of the window (a newer incarnation, a jump past
//     the window, another address) is accepted into a candidate window,
//     which replaces the member's window only once two of its datagrams
//     came in sequence from the window's address (a restart, a burst of
//     loss), or from anywhere once the window accepted nothing for two
//     minutes (a member that moved; twice the longest heartbeat interval,
//     so a live member's window never goes stale) or if the window holds
//     a single datagram (which may be a forgery that came first);
//   - datagrams behind a live window of more than one datagram are
//     refused.
//
// A forged datagram therefore costs the member nothing, a forger at
// another address can never take its window over once the member was
// heard twice, and one that spoofs the member's address and sends in
// sequence holds it only while it keeps sending (and two minutes after). The unsealed state is not kept across
// restarts: it protects nothing a forger could not forge anyway, and a
// forged incarnation must not outlive a restart.
//
// # Own datagrams and clones
//
// Multicast loopback hands our own datagrams back to us; a socket filter
// drops those carrying our node id and our incarnation in the kernel. A
// datagram with our node id and another incarnation comes from another
// daemon using our id (a cloned state directory or VM image): it is never
// handed to the consumer (counted as duplicate_id). If it is an authentic
// heartbeat with a newer incarnation than ours, we give way: Config.Renew
// picks and persists a fresh node id, and our datagrams carry it from then
// on (Conn.Node); the other daemon, hearing our heartbeats with its id and
// an older incarnation, keeps its id. A replay of one of our own earlier
// heartbeats carries an older incarnation, so it never makes us renew.
// Equal incarnations cannot be told from our own looped-back datagrams;
// the incarnation's random part (package replicator) makes them
// practically impossible.
//
// # Unicast mode
//
// With Config.Peers (package peers) a datagram meant for the group goes
// to each peer's address instead (or besides, in mixed mode), framed and
// sealed once: the same frames, to one destination after the other, a
// sendmmsg each, segmented per destination as for the group. The socket
// they go from is bound to the group's port, so a datagram's source is
// where its sender takes datagrams: the peer table learns members from
// heartbeats' sources, and answers go back there (UnicastReplies). A
// peer the kernel refuses is counted and skipped. The read path is the
// group's (checks, replay filter, queue); besides, a heartbeat tells the
// table its sender is alive, a peer list (wire.Peers, the transport's
// own, never queued) names more peers, and one of our own datagrams
// coming back marks its source as ours. Run runs the table's loop and
// sends the list of live peers to every peer now and then and when one
// was learned.
//
// # Relays
//
// With Config.Relay a member is a relay candidate of its segment (one
// group), and carries the group's traffic to the other segments' relays
// by unicast, so that each link between segments carries a datagram once
// per segment rather than once per member there. Members that are not
// candidates need nothing: what a relay brings them is an envelope on
// their group.
//
// Election. Every candidate says hello (wire.RelayHello: its segment,
// whether it hears the other side, whether it is active) every Every, on
// the group and from its relay socket (bound to the group's port on its
// multicast address) to every listed relay of the other segments. A
// candidate hears the other side if a listed relay said hello within
// Missed hellos; the active relay is the lowest node id of the live
// candidates that hear it, and a candidate claims nothing for one such
// period after it starts, so that it has heard the others first. An
// active relay yields to a lower one only once that one says it is
// active, so a candidate coming back never leaves its segment without a
// relay (for a hello the two overlap, which costs duplicates the replay
// filter drops). Per
// other segment the target is the lowest node id of its live relays that
// say they are active; a take-over is followed at the first hello that
// says so. The relay socket takes datagrams from the listed relays only
// (relay_refused), and only hellos and envelopes; a hello naming our own
// segment from there, or another segment on our group, is refused too.
// The state is bounded by the listed relays and maxLocalCandidates.
//
// Forwarding. The active relay keeps a raw copy of every datagram its
// group brings (before opening it, which decrypts in place) and, once
// the datagram passed every check and the replay filter, queues it, as
// it does its own datagrams to the group; a goroutine of Run wraps each
// in an envelope (wire.Relay: the origin's address and the datagram's
// bytes untouched, so authentication and replay protection stay the
// origin's), sealed by the relay like any datagram of its own, and sends
// it to every target. A relay that takes an envelope from a listed relay
// accepts the inner datagram as if it came from the origin (Packet.From
// is the origin: unicast answers go straight to it) and, if it was new,
// queues it for its group, once, in an envelope of its own. A member
// that takes an envelope on its group does the same without forwarding
// anything. The queue is bounded (QueueLen; relay_queue_full), and a
// datagram too large for an envelope is counted (oversize).
//
// A relay's hellos and envelopes are numbered in its own stream, as its
// other datagrams are, but framed when they go, while what a relay
// forwards of its own may wait in relay queues: one window for both
// would put those datagrams behind the relay's later hellos and
// envelopes, and past the window when the queues are long. So hellos and
// envelopes have a replay filter of their own (not kept across
// restarts), and the inner datagrams the one of everything else.
//
// Loops. A datagram is forwarded to other segments only if it came in on
// the group itself, never in an envelope: so it crosses one link between
// segments at most, and since each relay's replay filter lets a datagram
// through once, it goes on a group once per relay that took it, and is
// delivered once per member. Two relays of one segment that both believe
// they are active for a moment (a take-over) cost a duplicate, which the
// replay filter drops, not a loop.
//
// Answers. An answer (SendTo) to an origin of another segment goes
// through the relays: "another segment" means the origin's datagrams came
// in a relay's envelope within RelayHeard. Every member notes its
// segment's candidates from their hellos on the group; while one says it
// is active, the member sends it the answer, framed and sealed as
// always, in a batch of one (wire.RelayAnswers, no From: the relay takes
// the source address, where the origin hears the member). The relay
// gathers the answers bound for each other segment's active relay
// (answerDelay at most, or a datagram's worth) and sends them from its
// relay socket; that relay hands each to its origin, a member it heard on
// its group, in a batch naming the members, from the socket it says hello
// from, or takes it itself. The origin takes a named batch only from a
// candidate of its segment, and each answer as if it came from its
// member (its seal, the replay filter, Packet.From). Hops and senders
// that do not fit are refused (relay_refused); an answer without a route
// is dropped (relay_no_route), so nothing goes where no relay was heard,
// and a batch never grows on its way. Without an active relay heard, or
// one that sends from the group's port (MulticastReplies, whose port is
// its relay socket's), the member answers the origin directly.
//
// The listed relays may change at run time (RelayConfig.PeersFile,
// watched as unicast mode's peers file is, by peers.FileWatch): one no
// longer listed is forgotten and refused from then on.
//
// Not yet: a relay that dies mid-session leaves its segment to the
// session's repairs.
//
// Closing the socket is what unblocks the read loop: Run closes it when its
// context ends.
package transport
