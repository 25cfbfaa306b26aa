// Package replicator is makuo's engine: a Node joins the multicast group,
// keeps the member table and serves the control API's Backend. It wires the
// sub-packages together and owns their goroutines:
//
//	transport.Conn.Run ──► packets ──► dispatch ──► membership.Service
//	membership.Service.Run (heartbeats, expiry, goodbye)
//
// The read loop in transport never blocks on the dispatcher: packets queue
// in a bounded channel, and overflow is a counted drop.
//
// Transfers (offer → needs → data → repair → commit) are built on this
// skeleton; see the README's design section for their state.
package replicator
