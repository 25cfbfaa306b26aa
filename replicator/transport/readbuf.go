package transport

import (
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// readBatch is how many reads one system call of a read loop takes, and
// readBufSize the room for each: a coalesced read (UDP_GRO), or a single
// datagram of the largest size a receiver accepts, holds up to 64 KiB.
const (
	readBatch   = 64
	readBufSize = 1 << 16
)

// readMessages returns the messages a read loop reads into, with their
// buffers, and the function that frees them once the loop is done with
// them. The buffers are mapped outside the Go heap where the kernel lets
// us: the garbage collector lets the heap grow to twice what it holds, so
// megabytes of read buffers held by every socket would make room for as
// many more of garbage, while pages the kernel never writes to (a quiet
// socket's) cost nothing at all. Every accepted datagram is copied out of
// them before the next read.
func readMessages() ([]ipv4.Message, func()) {
	msgs := make([]ipv4.Message, readBatch)
	free := func() {}
	region, err := unix.Mmap(-1, 0, readBatch*readBufSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err == nil {
		free = func() { _ = unix.Munmap(region) }
	} else {
		region = make([]byte, readBatch*readBufSize)
	}
	for i := range msgs {
		msgs[i].Buffers = [][]byte{region[i*readBufSize : (i+1)*readBufSize : (i+1)*readBufSize]}
		// Room for UDP_GRO's segment size and a receive timestamp.
		msgs[i].OOB = make([]byte, unix.CmsgSpace(4)+unix.CmsgSpace(16))
	}
	return msgs, free
}
