// Package session is makuo's transfer protocol as state machines without
// I/O: a Sender for the member that pushes and, on every receiving member,
// a Receiver per session (held by an Inbox per sending node). They never
// open a socket or a file and never read the clock: the driver passes the
// time in, sends what they return, and carries out the filesystem effects
// a Receiver asks for, answering each one. So a test, a fuzz target or a
// seeded simulation can run whole sessions in one goroutine, with any
// message order, loss or duplication, and replay a failing run exactly.
//
// A session runs in phases:
//
//	sender                                   receivers
//	Offer ×N (entries, hashes)        ──►    decide each entry (EffectDecide)
//	                                  ◄──    Need (change, data, basis bitmaps)
//	Chunks (chunk lists of deltas)    ──►    copy the chunks held (EffectPlan)
//	                                  ◄──    ChunkNeed (chunks lacked)
//	Data ×blocks, Poll every 512      ──►    write, verify, stage (EffectWrite)
//	repairs                           ◄──    Nack (missing ranges, window loss, delivery)
//	Commit                            ──►    rename and apply the rest (EffectCommit)
//	                                  ◄──    Result (applied, failures, deletes)
//
// Every file entry owns a fixed range of block numbers derived from the
// offers alone (blockBudget), so every member agrees on the layout without
// negotiating it; a delta sends only the blocks of the chunks some member
// lacks. The phases overlap where nothing depends on the wait: a file's
// data go out once every member answered the offers up to the one that
// holds it (a receiver lays out the offers it decided from the first on),
// up to the first file some member could diff against, which waits for
// its chunk list. The sender adapts its rate. Every member reports how fast the
// data reach it (the bytes that came between two polls, and the time
// between them); one that gets clearly less than the sender sent between
// the same polls is behind a bottleneck, and the rate is capped below what
// it gets. Random loss
// takes the same share at any rate and caps nothing (a member's share in
// windows sent below the last cap is its usual delivery). On top of that,
// multiplicative back-off once per round trip when a member's loss exceeds
// what it always loses, or when it falls more than MaxBacklog polls behind
// while still talking; growth once per round trip in which every member
// kept up with the fastest window and no queue on the way drains. A member silent for the timeout is
// dropped from the session and reported; it never stalls the others.
//
// # Bounded cost of remote input
//
// Whatever a message claims, it costs bounded work and memory:
//
//   - memory grows with what arrived, never with what was announced: a
//     session holds the offers received (charged to a Budget shared by
//     every session of the member; past it the member refuses the session
//     and says why), a file's received blocks are runs, not a bitmap sized
//     by the file, and a chunk list is kept as its parts arrive;
//   - file sizes are bounded (wire.MaxFileSize) and every layout sum is
//     checked, so no count wraps around;
//   - a poll answer looks at most at maxPollScan entries and a loss window
//     of maxWindowScan blocks, and walks holes, not blocks;
//   - a Nack queues at most maxNackBlocks blocks and only blocks the member
//     needs and the layout holds: a Nack for a gap between files, another
//     member's file or past the watermark costs nothing and fails nobody;
//   - an Inbox runs at most MaxSessions sessions of a node at once and
//     keeps bounded records of finished and ignored ones;
//   - answers from members not in the session, or contradicting its
//     layout, are ignored: one member's message never fails another's part.
package session
