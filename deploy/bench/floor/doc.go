// Command floor measures what applying a tree costs a receiver's
// filesystem with nothing else running: no network, no protocol, no
// hashing. It is the transfer benchmark's yardstick (deploy/bench/transfer.sh
// reports makuo's time over floor's for the small-file and delta rows):
//
//	floor [-batch N] [-sync=false] [-v] SRC DST...
//
// It reads the regular files and directories under SRC into memory (not
// timed), then writes one copy into each DST at once, one goroutine per
// DST, the way a makuo receiver applies them: directories made first;
// each file created under a temp name in its directory (O_CREAT|O_EXCL),
// written, given owner (when root and the file did not get it as it was
// created, as makuo does), mode and times through its
// descriptor, and closed; every -batch files one syncfs makes the
// contents durable, the temps are renamed over their targets, and a
// second syncfs makes the renames durable. -sync=false leaves the syncs
// out (what rsync, which never syncs, costs).
//
// A DST that holds an older version of a file is overwritten like that,
// so a run over a previous copy measures the replacement of every file.
// It prints one line with the wall time, the process's CPU time and the
// CPU time per file and destination, and, with -v, the phases.
//
// SRC must be a directory. A bad argument prints one line to stderr and
// exits with status 2; a failure to read or write exits with status 1.
package main
