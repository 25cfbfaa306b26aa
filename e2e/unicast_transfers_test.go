package e2e

import (
	"testing"
	"time"
)

// unicastRing is a lab of n hosts whose bridge drops multicast, its
// daemons in unicast mode, each given the next host only.
func unicastRing(t *testing.T, n int) *Lab {
	t.Helper()
	lab := NewNoMcastLab(t, n)
	lab.UseUnicastRing()
	return lab
}

// TestUnicastTransfers runs the lab's other transfer tests (TestUnicast
// has the tree, loss, delta and killed-receiver ones) on a bridge that
// drops multicast, the daemons in unicast mode and each given one peer:
// the same checks, on smaller trees where the multicast version's size
// only adds time, and wire budgets per copy where the sender's uplink
// carries one copy per receiver. Not here: the hostile-input tests
// inject crafted datagrams at the multicast group (DialGroup), which this
// bridge drops; TestWatchLatency only prints a figure, and
// TestWatchBurst tests the watcher's event queue and rescan, not the
// transport.
func TestUnicastTransfers(t *testing.T) {
	start := time.Now()
	t.Cleanup(func() { t.Logf("figure: TestUnicastTransfers took %.1fs", time.Since(start).Seconds()) })
	for _, tt := range []struct {
		name  string
		hosts int
		run   func(*testing.T, *Lab)
	}{
		{"AtomicReplace", 2, atomicReplace},
		// Each peer's copy goes through the same segmented send as the
		// group's, so the refused offload is met here too.
		{"OffloadFallback", 3, offloadFallback},
		{"DeltaMixedVersions", 4, deltaMixedVersions},
		{"DeltaCorruptBasis", 2, deltaCorruptBasis},
		// Away past the member expiry (a few heartbeats): the returning
		// member is relearned from its listed peer, not just still known.
		{"CatchUpStopped", 4, func(t *testing.T, lab *Lab) { catchUp(t, lab, "stopped", 200, 6*time.Second) }},
		{"CatchUpPartitioned", 4, func(t *testing.T, lab *Lab) { catchUp(t, lab, "partitioned", 200, 6*time.Second) }},
		{"SourceRestart", 3, sourceRestart},
		{"Renames", 4, func(t *testing.T, lab *Lab) { renames(t, lab, 32*mib, 300) }},
		{"MerkleRoots", 4, merkleRoots},
		{"ResyncNoChange", 4, func(t *testing.T, lab *Lab) { resyncNoChange(t, lab, 10, 50) }},
		{"Wait", 4, waitInSync},
		{"NoSpace", 3, noSpace},
		{"MsyncRecursiveDelete", 4, msyncRecursiveDelete},
		{"MsyncDeleteNeedsRecursive", 4, msyncDeleteNeedsRecursive},
		{"MsyncSync", 4, msyncSync},
		{"MsyncCheck", 4, msyncCheck},
		{"MsyncDryRun", 4, msyncDryRun},
		{"MsyncTargets", 4, msyncTargets},
		{"MsyncExclude", 4, msyncExclude},
		{"MsyncRoles", 4, msyncRoles},
		{"WatchTwoWay", 4, watchTwoWay},
		{"WatchConflict", 3, watchConflict},
		{"WatchEditorSaves", 3, watchEditorSaves},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, unicastRing(t, tt.hosts)) })
	}
}
