// Command benchdata writes the data sets of the transfer benchmark
// (deploy/bench/transfer.sh) and changes them between runs:
//
//	benchdata file PATH SIZE               one file of SIZE bytes
//	benchdata mixed DIR N DIRS             N files in DIRS subdirectories; file i has 2^(i%20) bytes (1 B .. 512 KiB)
//	benchdata small DIR N DIRS MAXSIZE     N files in DIRS subdirectories, sizes uniform in 0..MAXSIZE
//	benchdata fixed DIR N DIRS SIZE        N files in DIRS subdirectories, each of exactly SIZE bytes
//	benchdata modify [-list FILE] DIR PCT GEN  change PCT percent of the regular files under DIR
//	benchdata patch PATH LEN GEN           overwrite LEN bytes in the middle of the file PATH
//
// SIZE, MAXSIZE and LEN are bytes, or a number with a binary suffix: 4K, 64M,
// 1G, 1T (KiB, MiB, ... are accepted too); the SIZE of fixed and MAXSIZE are
// at most 1T. The files of mixed, small and fixed are
// DIR/d0000/f0000000 and up: file i is in directory i*DIRS/N, so each
// directory holds a contiguous run of indexes.
//
// Everything is deterministic: the bytes (and, for small, the size) of a
// file come from a ChaCha8 stream seeded with the subcommand and the file's
// index (for file: its size), so two runs write identical trees, no file
// repeats another (a smaller single file is not a prefix of a larger one),
// and the content does not compress. Files are written with 1 MiB
// writes and not synced; the benchmark runs sync(1) before it measures.
//
// modify picks round(PCT% of the files) (at least one when PCT > 0) from the
// sorted list of regular files under DIR, with a selection seeded by GEN, so
// GEN=1 and then GEN=2 change files again. In each picked file it overwrites
// up to 4 KiB at a position inside the file with new bytes (guaranteed to
// differ from the old ones); an empty file gets 100 bytes appended. Content
// and mtime of every picked file change. It prints how many files and bytes
// it changed; with -list it also writes the changed files' paths, relative
// to DIR, one a line in path order, to FILE (what the benchmark's floor
// rewrites).
//
// patch overwrites LEN bytes from offset (size-LEN)/2 with bytes of a
// stream seeded with GEN and the file's size, every byte different from
// the one it replaces, and prints the offset; a file shorter than LEN is an
// error. The same arguments on the same file write the same bytes.
//
// A bad argument prints one line to stderr and exits with status 2; a
// failure to write exits with status 1.
package main
