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

// TestAdmitData: data enters the receive queue while it is less than 7/8
// full and holds less than recvQueueBytes of data; what a refusal
// reserved is given back.
func TestAdmitData(t *testing.T) {
	n := &Node{recvq: make(chan recvItem, 16)}
	const jumbo = 8972
	admitted := 0
	for n.admitData(jumbo) {
		admitted++
		if admitted > recvQueueBytes/jumbo {
			t.Fatalf("admitted %d jumbo datagrams, past %d bytes", admitted, recvQueueBytes)
		}
	}
	if admitted != recvQueueBytes/jumbo {
		t.Fatalf("admitted %d jumbo datagrams, want %d", admitted, recvQueueBytes/jumbo)
	}
	if got := n.queuedData.Load(); got != int64(admitted*jumbo) {
		t.Fatalf("%d bytes counted after a refusal, want %d", got, admitted*jumbo)
	}
	n.queuedData.Store(0)
	for range 14 { // 16 - 16/8: the control messages' reserve
		n.recvq <- recvItem{}
	}
	if n.admitData(1) {
		t.Fatal("data admitted into the control messages' reserve")
	}
}
