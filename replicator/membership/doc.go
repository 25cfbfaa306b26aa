// Package membership keeps the table of live members: it multicasts this
// daemon's heartbeat about once per interval (with jitter, so that members
// started together do not beat in lockstep), records the heartbeats it
// hears, expires a member that has been silent for MissedHeartbeats of its
// own intervals, drops a member at once when it says goodbye, and says
// goodbye itself when its context ends.
//
// A member is identified by its node id, never by its address: several
// members may share a host. A heartbeat with a newer incarnation than the
// recorded one means the member restarted. When a new member appears, the
// service answers with an early heartbeat of its own, so that a member that
// joins learns every peer within a round trip instead of a full interval.
//
// What a peer can make the table keep is bounded, since without a key
// anyone can send heartbeats with any node id:
//   - at most Config.MaxMembers members; heartbeats of new members past it
//     are ignored and counted (drop reason member_limit);
//   - a member's announced interval counts for its expiry up to
//     MaxInterval only (the wire carries up to 49 days);
//   - a heartbeat from another address than the member's is ignored while
//     the member's address is live (heard within two of its intervals),
//     whatever incarnation it claims: one forged heartbeat neither moves
//     the member nor makes its real heartbeats stale. The member moves
//     once its old address fell silent and the new one was heard twice (it
//     changed address, or restarted elsewhere); the first such heartbeat
//     while the old address is live is logged;
//   - a goodbye counts only from the member's address.
//
// A forger that spoofs the member's source address as well is not told
// apart: one heartbeat with a newer incarnation makes the member's real
// ones stale until the entry expires, after which the member rejoins.
// With a key (package transport) none of this can be forged.
package membership
