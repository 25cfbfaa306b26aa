// Package chunk splits byte streams into content-defined chunks and hashes
// them, so that a receiver holding an old version of a file can ask for only
// the chunks it lacks.
//
// Chunking is a pure function of the bytes: the same content always gives
// the same boundaries and hashes, on every node, whatever the reader's
// buffering (short reads, one byte at a time). A boundary depends only on the
// bytes from the start of its chunk to the cut point, so the boundaries of an
// edited file fall back into step with the old ones soon after the edit:
//
//   - appending changes only the old last chunk (and adds new ones);
//   - a small insertion, deletion or overwrite usually changes only the chunk
//     it falls in (about 80 KiB on the wire on average), sometimes that one
//     and the next;
//   - rarely, when the edit creates or destroys a cut point, the new
//     boundaries take several chunks to meet the old ones again: of 2000
//     random 100-byte insertions into random data, about one in 1000
//     changed three or more chunks and the worst changed seven (533 KiB).
//     This is the price of
//     normalized chunking, whose cut rule depends on the distance from the
//     chunk start; without it the worst case was three chunks but the mean
//     cost of an edit was 45% higher (118 KiB), so the trade is kept.
//
// The algorithm is FastCDC with normalized chunking (Xia et al., "FastCDC: a
// Fast and Efficient Content-Defined Chunking Approach for Data
// Deduplication", USENIX ATC 2016, and its 2020 revision):
//
//   - a gear rolling hash, fp = fp<<1 + gear[b], over a fixed 256-entry table
//     (gear.go), fed eight bytes per loop iteration (an extension of the 2020
//     paper's "rolling two bytes"; see roll);
//   - the first MinSize bytes of each chunk are not hashed at all;
//   - between MinSize and AvgSize a cut needs 18 zero hash bits, past AvgSize
//     only 14, so sizes cluster around AvgSize (mean 72 KiB on random data,
//     never MaxSize in 16 MiB of it);
//   - a chunk that finds no cut point ends at MaxSize, and the last chunk of
//     a stream may be shorter than MinSize.
//
// Parameters (constants, see their docs for the reasons): MinSize 16 KiB,
// AvgSize 64 KiB, MaxSize 256 KiB. They and the gear table are part of the
// protocol; TestVectors pins their effect so an accidental change fails.
//
// Each chunk is hashed with xxhash64 and Chunker.Sum gives the xxhash64 of
// the whole stream. xxhash detects corruption and identifies chunks among
// cooperating nodes; it is not a cryptographic hash and offers no protection
// against a party that crafts collisions, which the transport's
// authentication keeps out.
//
// Chunker.Follow chunks a new version of a stream given the old version's
// chunk list: where the stream still holds an old chunk at its offset (or
// shifted by the change in size), the chunk is hashed and taken, not
// rolled over, with the same result as chunking from scratch. Re-chunking
// an edited file then costs about what hashing it does
// (BenchmarkChunkerFollow).
//
// A Chunker reuses one 1 MiB buffer and allocates nothing per chunk; chunk
// and hash together run at more than 1 GiB/s per core (BenchmarkChunker).
// The package does no logging and starts no goroutines.
package chunk
