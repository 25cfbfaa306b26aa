package transport

import (
	"encoding/binary"
	"time"

	"golang.org/x/sys/unix"
)

// UDP segmentation offload and receive coalescing speak through control
// messages: UDP_SEGMENT carries a uint16 segment size on send, UDP_GRO an
// int segment size on receive, SCM_TIMESTAMPNS the time the kernel
// received a datagram. They are built and parsed here by hand, on
// reused buffers, because this is the per-datagram path and
// unix.ParseSocketControlMessage allocates.

// cmsgLenSize is the width of cmsghdr.cmsg_len: a size_t.
const cmsgLenSize = unix.SizeofCmsghdr - 8

// putSegmentSize writes a UDP_SEGMENT control message for segments of size
// bytes into b (unix.CmsgSpace(2) bytes) and returns it.
func putSegmentSize(b []byte, size int) []byte {
	b = b[:unix.CmsgSpace(2)]
	clear(b)
	putCmsgHeader(b, unix.SOL_UDP, unix.UDP_SEGMENT, 2)
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(size))
	return b
}

func putCmsgHeader(b []byte, level, typ, dataLen int) {
	n := uint64(unix.CmsgLen(dataLen))
	if cmsgLenSize == 8 {
		binary.NativeEndian.PutUint64(b, n)
	} else {
		binary.NativeEndian.PutUint32(b, uint32(n))
	}
	binary.NativeEndian.PutUint32(b[cmsgLenSize:], uint32(level))
	binary.NativeEndian.PutUint32(b[cmsgLenSize+4:], uint32(typ))
}

// readControls returns what the control messages oob of a read say: the
// UDP_GRO segment size (0 when the buffer holds a single datagram) and
// the kernel's receive time (SCM_TIMESTAMPNS; zero when absent). Malformed
// control data ends the walk with what was found so far.
func readControls(oob []byte) (seg int, stamp time.Time) {
	for len(oob) >= unix.SizeofCmsghdr {
		var n int
		if cmsgLenSize == 8 {
			n = int(min(binary.NativeEndian.Uint64(oob), uint64(len(oob))))
		} else {
			n = int(binary.NativeEndian.Uint32(oob))
		}
		if n < unix.SizeofCmsghdr || n > len(oob) {
			return seg, stamp
		}
		level := int32(binary.NativeEndian.Uint32(oob[cmsgLenSize:]))
		typ := int32(binary.NativeEndian.Uint32(oob[cmsgLenSize+4:]))
		data := oob[unix.CmsgLen(0):n]
		switch {
		case level == unix.SOL_UDP && typ == unix.UDP_GRO && len(data) >= 4:
			seg = int(int32(binary.NativeEndian.Uint32(data)))
		case level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPNS:
			stamp = timespecTime(data)
		}
		next := unix.CmsgSpace(n - unix.CmsgLen(0))
		if next > len(oob) {
			return seg, stamp
		}
		oob = oob[next:]
	}
	return seg, stamp
}

// timespecTime decodes a struct timespec of the platform's width (two
// longs).
func timespecTime(b []byte) time.Time {
	switch {
	case len(b) >= 16:
		return time.Unix(int64(binary.NativeEndian.Uint64(b)), int64(binary.NativeEndian.Uint64(b[8:])))
	case len(b) >= 8:
		return time.Unix(int64(int32(binary.NativeEndian.Uint32(b))), int64(int32(binary.NativeEndian.Uint32(b[4:]))))
	}
	return time.Time{}
}

// arrival is when a datagram read at now arrived, by the kernel's receive
// stamp: now moved back by the time the datagram waited in the socket
// buffer, so that it keeps now's monotonic clock reading. A stamp that is
// missing, in the future or implausibly old (the wall clock was stepped)
// gives now.
func arrival(now, stamp time.Time) time.Time {
	if stamp.IsZero() {
		return now
	}
	wait := now.Round(0).Sub(stamp)
	if wait < 0 || wait > time.Second {
		return now
	}
	return now.Add(-wait)
}
