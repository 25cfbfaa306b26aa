// Package replicator is makuo's engine as a daemon runs it: it drives the
// protocol state machines of package session with real sockets, timers
// and goroutines, and wires the packages that do the work.
//
//	Link.Deliver ──► dispatch ──► membership (heartbeats, goodbyes)
//	                   ├────────► one receive loop per sending node ──► apply.Applier
//	                   └────────► the send session an answer is for
//	job (msync, watcher, catch-up) ──► source.Build ──► digest round ──► session.Sender
//	                                   send loop: Next → read blocks (source.Reader),
//	                                   pace, socket batches; answers → Step
//
// Files: node.go (construction, Run, status), dispatch.go and recvloop.go
// (the receive side), sendloop.go and push.go (jobs and send sessions),
// controlapi.go (msync's requests in, events out: the only place results
// become strings), watch.go (the watcher's batches, retries), catchup.go,
// index.go, lag.go, identity.go (state directory, node id, incarnation,
// replay state), link.go (the transport seam), pathlock.go.
//
// Guarantees: dispatch runs on the link's read loops (one goroutine
// hand-off fewer per datagram) and never blocks on processing (a full
// queue is a counted drop); one sending node's sessions never hold up another's;
// sessions are accepted from members only; every refused datagram or
// entry is counted or reported with a reason; every write goes through
// package stage, durable before a result reports it.
package replicator
