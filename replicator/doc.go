// Package replicator is makuo's engine. A Node joins the multicast group,
// keeps the member table, indexes the base directory, serves the control
// API's Backend, and runs transfer sessions as sender and receiver:
//
//	transport.Conn.Run ──► packets ──► dispatch ──► membership, receiver, send sessions
//	push.go / send.go   offer → need → chunk lists → data → poll/nack → commit → result
//	receive.go          decide per entry, stage, verify, rename in batches, report
//	digest.go           Merkle digest round: only differing directories are offered
//	delta.go            block layout and chunk lists for deltas
//	busy.go, catchup.go watcher-driven pushes, deferral of files being written,
//	                    retries, catch-up of members that fell behind
//	echo.go, synced.go  no echo of received changes; the conflict rule's notion
//	                    of an unreplicated local edit
//	index.go, lag.go    the saved tree index, tree roots and per-member lag
//
// Guarantees: every write goes through package stage (confined to the base
// directory, temp file + rename, durable before a result reports it); the
// read loop never blocks on processing (a full queue is a counted drop);
// every refused datagram or entry is counted or reported with a reason.
package replicator
