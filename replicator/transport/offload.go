package transport

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// UDP segmentation offload and receive coalescing speak through control
// messages: UDP_SEGMENT carries a uint16 segment size on send, UDP_GRO an
// int segment size on receive. They are built and parsed here by hand, on
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

// segmentSize returns the UDP_GRO segment size in the control messages
// oob, or 0 when the buffer holds a single datagram. Malformed control
// data (which only the kernel writes) reads as 0.
func segmentSize(oob []byte) int {
	for len(oob) >= unix.SizeofCmsghdr {
		var n int
		if cmsgLenSize == 8 {
			n = int(min(binary.NativeEndian.Uint64(oob), uint64(len(oob))))
		} else {
			n = int(binary.NativeEndian.Uint32(oob))
		}
		if n < unix.SizeofCmsghdr || n > len(oob) {
			return 0
		}
		level := int32(binary.NativeEndian.Uint32(oob[cmsgLenSize:]))
		typ := int32(binary.NativeEndian.Uint32(oob[cmsgLenSize+4:]))
		data := oob[unix.CmsgLen(0):n]
		if level == unix.SOL_UDP && typ == unix.UDP_GRO && len(data) >= 4 {
			return int(int32(binary.NativeEndian.Uint32(data)))
		}
		next := unix.CmsgSpace(n - unix.CmsgLen(0))
		if next > len(oob) {
			return 0
		}
		oob = oob[next:]
	}
	return 0
}
