// Package wire defines makuo's datagram formats: the common header and one
// payload layout per message type. It knows bytes, not sockets: encoders
// append to a caller's buffer, decoders check lengths before they read and
// never retain the input.
//
// Every datagram starts with a 32-byte header, big-endian:
//
//	 0      2   3   4   5           8
//	+-------+---+---+---+-----------+
//	| magic |ver|typ|flg| reserved  |   magic "Mk" (0x4d 0x6b), ver 1
//	+-------+---+---+---+-----------+
//	|         node id (8)           |   stable id of the sending daemon
//	+-------------------------------+
//	|       incarnation (8)         |   sender's start time, unix ns
//	+-------------------------------+
//	|           seq (8)             |   per-incarnation datagram counter
//	+-------------------------------+
//	|    payload ... [AEAD tag 16]  |
//
// When FlagSealed is set the payload is encrypted and authenticated with
// XChaCha20-Poly1305; the header is the associated data and bytes 8..32
// (node, incarnation, seq) are the 24-byte nonce, unique because a node
// never reuses a sequence number within one incarnation.
//
// Payloads by type:
//
//	Heartbeat: roles(1) interval_ms(4) root(8) hostname(str8) version(str8)
//	Goodbye:   empty
//	Peers:     count(1) count×{node(8) family(1) addr(4|16) port(2)},
//	           unicast mode's gossip (see Peers)
//	Offer, Need, Data, Poll, Nack, Commit, Result, Abort: a transfer
//	           session, each laid out on its type's doc comment
//
// A session runs: the sender multicasts Offers (entries with metadata and
// whole-file hashes); each targeted receiver answers every Offer with a
// Need; the sender multicasts the union of needed blocks as Data, then
// Polls; receivers answer with Nacks listing what they miss, and the sender
// repairs until nothing is missing (or a receiver stops answering and is
// dropped); a Commit makes receivers finish and answer with a Result.
//
// str8 is a length byte followed by that many bytes; str16 the same with a
// two-byte length. Decoders ignore bytes
// past the fields they know, so a newer minor revision can append fields;
// an incompatible change bumps the header version, and datagrams of an
// unknown version are rejected with ErrVersion.
package wire
