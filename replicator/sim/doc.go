// Package sim runs whole makuo clusters in one goroutine: members with
// real base directories on disk, the real session, apply and source
// packages, and a seeded in-memory network (transporttest.Network) under
// a virtual clock. A test pushes trees through it under loss, duplication,
// reordering, delay, partitions and members that crash and restart, and
// checks DESIGN's guarantees after each push (CheckMirror). The same seed
// replays the same run, datagram for datagram.
package sim
