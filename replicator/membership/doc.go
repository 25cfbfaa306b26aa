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
package membership
