package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestVXLAN: three segments of two members behind a router that forwards
// unicast only. Without the overlay each segment is on its own, even on a
// routable group; with vxlan.sh's overlay on every host and makuosan on
// vxlan0 all six list each other and a tree, a push under loss and a
// delta arrive byte for byte. Head-end replication puts one copy per
// member on the sender's uplink (the figure). vxlan.sh sync takes a member
// off the list without a restart: it is no longer heard and the rest go
// on; synced back, it rejoins and catches up.
func TestVXLAN(t *testing.T) {
	requireOverlay(t)
	lab := NewUnicastLab(t, 3, 2)
	h := lab.Hosts
	src := h[0]
	all := hostNames(h)
	// Quick heartbeats, so that a member taken off the list expires within
	// seconds; 8 missed keeps a loaded machine from expiring a live one.
	beat := []string{"--heartbeat", "250ms", "--missed-heartbeats", "8"}

	// Without the overlay: a routable group and TTL, but no multicast
	// routing. A heartbeat that reached a host's segment partner would have
	// crossed the router as fast, so each segment listing exactly itself
	// means none crossed.
	lab.StartAll(append([]string{"-m", routedGroup, "--ttl", "8"}, beat...)...)
	eventually(t, 10*time.Second, func() bool { return segmentsAlone(lab.Segments) },
		"without the overlay, the segments' members do not each list exactly their own segment")
	const figSize = 32 * mib
	writeRandom(t, filepath.Join(src.Base, "plain.bin"), figSize, 5)
	before := src.txBytes(t)
	if out := push(t, src, 0, "plain.bin"); !strings.Contains(out, "1 member,") {
		t.Fatalf("push without the overlay reached other than segment 1's other member: %s", out)
	}
	plainTx := src.txBytes(t) - before
	for _, x := range h {
		x.Kill()
	}
	removePaths(t, src.Base, "plain.bin")
	removePaths(t, h[1].Base, "plain.bin")

	members := writeMembers(t, h)
	flags := lab.OverlayUp(members)
	if want := []string{"-i", overlayDev, "--datagram-size", "1422"}; !slices.Equal(flags, want) {
		t.Fatalf("vxlan.sh up asks for makuosan flags %q, want %q", flags, want)
	}
	start := time.Now()
	lab.StartAll(append(flags, beat...)...)
	d := eventually(t, 10*time.Second, func() bool { return allSee(h, all) }, "over the overlay, not every member lists all 6")
	t.Logf("figure: overlay join: every member lists all 6 after %v", d.Round(time.Millisecond))
	for _, x := range h {
		if out, errOut, code := x.Msync("--members"); code != 0 || !strings.HasSuffix(out, "Total: 5 members\n") {
			t.Fatalf("%s: msync --members: exit %d\n%s%s", x.Name, code, out, errOut)
		}
	}

	// A tree with small files and a 4 MiB one.
	{
		makeTree(t, src.Base, treeSpec{smallFiles: 300, bigSize: 4 * mib})
		want := treeSnapshot(t, src.Base)
		out := push(t, src, 0, "-r")
		if !strings.Contains(out, "5 members") || !strings.Contains(out, " 0 failed") {
			t.Fatalf("push summary: %s", out)
		}
		for _, x := range h[1:] {
			sameTree(t, x.Name, want, x.Base)
		}
	}

	// A push with loss on one receiver.
	{
		// lab.sh loss drops UDP at the input hook: both the VXLAN packet
		// arriving on eth0 and, decapsulated, the datagram on vxlan0, so the
		// receiver loses about twice 2% of makuosan's datagrams.
		lossy := h[3]
		lab.script("loss", lab.name, "4", "2")
		p := filepath.Join(src.Base, "lossy.bin")
		writeRandom(t, p, 8*mib, 9)
		out := push(t, src, 0, "lossy.bin")
		if !strings.Contains(out, " 0 failed") {
			t.Fatalf("push summary: %s", out)
		}
		if n := lossy.lossDropped(t); n == 0 {
			t.Fatalf("%s: the loss rule dropped nothing: the push did not cross a lossy link", lossy.Name)
		} else {
			t.Logf("%s: loss rule dropped %d packets", lossy.Name, n)
		}
		lab.script("loss", lab.name, "4", "0")
		want := fileSum(t, p)
		for _, x := range h[1:] {
			if got := fileSum(t, filepath.Join(x.Base, "lossy.bin")); got != want {
				t.Fatalf("%s: lossy.bin differs", x.Name)
			}
		}
	}

	// A delta: 4 KiB changed in the middle of the 4 MiB file.
	{
		p := filepath.Join(src.Base, "big.bin")
		editFile(t, p, func(b []byte) []byte {
			copy(b[len(b)/2:], strings.Repeat("x", 4096))
			return b
		})
		wire := pushCounted(t, src, "big.bin")
		t.Logf("figure: delta of 4 KiB in the middle of a 4 MiB file to 5 members over the overlay: %d bytes on the sender's uplink", wire)
		// Five full copies would be over 20 MiB; a delta is a few chunks each.
		if wire > 4*mib {
			t.Errorf("the delta put %d bytes on the sender's uplink, more than one whole copy of the file", wire)
		}
		want := fileSum(t, p)
		for _, x := range h[1:] {
			if got := fileSum(t, filepath.Join(x.Base, "big.bin")); got != want {
				t.Fatalf("%s: big.bin differs after the delta", x.Name)
			}
		}
	}

	// The figure: what head-end replication costs the sender's uplink.
	{
		p := filepath.Join(src.Base, "fig.bin")
		writeRandom(t, p, figSize, 6)
		var rt [3]int64
		for s := range rt {
			rt[s] = lab.routerTx(t, s+1)
		}
		before := src.txBytes(t)
		if out := push(t, src, 0, "fig.bin"); !strings.Contains(out, "5 members") || !strings.Contains(out, " 0 failed") {
			t.Fatalf("push summary: %s", out)
		}
		tx := src.txBytes(t) - before
		for s := range rt {
			rt[s] = lab.routerTx(t, s+1) - rt[s]
		}
		want := fileSum(t, p)
		for _, x := range h[1:] {
			if got := fileSum(t, filepath.Join(x.Base, "fig.bin")); got != want {
				t.Fatalf("%s: fig.bin differs", x.Name)
			}
		}
		times := func(n int64) float64 { return float64(n) / figSize }
		t.Logf("figure: head-end replication: a 32 MiB push to 5 members put %.1f MiB (%.2fx the file) on the sender's uplink, "+
			"plain multicast to its one segment partner %.1f MiB (%.2fx); router egress into segments 1/2/3: %.2fx / %.2fx / %.2fx "+
			"(routed multicast: about 1x into each other segment)",
			float64(tx)/mib, times(tx), float64(plainTx)/mib, times(plainTx), times(rt[0]), times(rt[1]), times(rt[2]))
		// One copy per member is what head-end replication means; fewer
		// than 4 would mean the overlay carried the data some other way.
		if tx < 4*figSize {
			t.Errorf("the sender's uplink carried %d bytes for a %d-byte file to 5 members: want at least 4 copies", tx, figSize)
		}
	}

	// A member taken off the list with vxlan.sh sync, then put back.
	{
		gone := h[5]
		fewer := writeMembers(t, h[:5])
		notes := lab.OverlaySync(fewer)
		if !strings.Contains(notes[5], "no longer a member") {
			t.Fatalf("%s: vxlan.sh sync off the list said %q", gone.Name, notes[5])
		}
		if peers := src.overlayPeers(t); slices.Contains(peers, gone.Addr) || len(peers) != 4 {
			t.Fatalf("%s floods to %v after the sync, want the 4 others without %s", src.Name, peers, gone.Addr)
		}
		d := eventually(t, 10*time.Second, func() bool {
			return allSee(h[:5], all[:5]) && slices.Equal(gone.Hostnames(), []string{gone.Name})
		}, "%s still heard (or the others not) after vxlan.sh sync took it off the list", gone.Name)
		t.Logf("figure: member taken off the list expired after %v", d.Round(time.Millisecond))
		must(t, os.WriteFile(filepath.Join(src.Base, "after.txt"), []byte("five members"), 0o644))
		if out := push(t, src, 0, "after.txt"); !strings.Contains(out, "4 members") || !strings.Contains(out, " 0 failed") {
			t.Fatalf("push after the removal: %s", out)
		}
		for _, x := range h[1:5] {
			if b, _ := os.ReadFile(filepath.Join(x.Base, "after.txt")); string(b) != "five members" {
				t.Fatalf("%s lacks after.txt", x.Name)
			}
		}
		if lexists(filepath.Join(gone.Base, "after.txt")) {
			t.Fatalf("%s, off the list, received after.txt", gone.Name)
		}

		// Back on the list: it rejoins, and a resync brings it up to date.
		lab.OverlaySync(members)
		eventually(t, 10*time.Second, func() bool { return allSee(h, all) }, "%s not back in every list after vxlan.sh sync", gone.Name)
		if out := push(t, src, 0, "-r"); !strings.Contains(out, "after.txt") {
			t.Fatalf("resync did not send after.txt:\n%s", out)
		}
		sameTree(t, gone.Name, treeSnapshot(t, src.Base), gone.Base)
	}
	t.Logf("figure: overlay part of TestVXLAN took %v", time.Since(start).Round(100*time.Millisecond))
}

// hostNames returns the sorted hostnames of hosts.
func hostNames(hosts []*Host) []string {
	var names []string
	for _, h := range hosts {
		names = append(names, h.Name)
	}
	slices.Sort(names)
	return names
}

// segmentsAlone reports whether every host lists exactly its own
// segment's members.
func segmentsAlone(segs [][]*Host) bool {
	for _, seg := range segs {
		if !allSee(seg, hostNames(seg)) {
			return false
		}
	}
	return true
}
