package replicator

import (
	"testing"
	"unsafe"
)

func TestRecvEntrySize(t *testing.T) {
	// A receiver holds one per offered entry for the whole session (100,000
	// for a tree of 100,000 files): keep it within the 96-byte size class.
	if s := unsafe.Sizeof(recvEntry{}); s > 96 {
		t.Errorf("recvEntry is %d bytes", s)
	}
}
