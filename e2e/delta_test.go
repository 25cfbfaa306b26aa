package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// txBytes reads a host's eth0 transmit byte counter (the bytes it put on
// the wire, every header included).
func (h *Host) txBytes(t *testing.T) int64 {
	t.Helper()
	out, _, code := h.Run(t.Context(), "cat", "/sys/class/net/eth0/statistics/tx_bytes")
	if code != 0 {
		t.Fatalf("%s: read tx_bytes: exit %d", h.Name, code)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// pushCounted runs msync on h and returns the bytes h transmitted.
func pushCounted(t *testing.T, h *Host, args ...string) int64 {
	t.Helper()
	before := h.txBytes(t)
	push(t, h, 0, args...)
	return h.txBytes(t) - before
}

func editFile(t *testing.T, path string, edit func([]byte) []byte) {
	t.Helper()
	b := mustRead(t, path)
	must(t, os.WriteFile(path, edit(b), 0o644))
}

// TestDeltaEdits: receivers holding the old version of a 256 MiB file get
// an overwrite in the middle, an insertion near the start and an append
// for a few chunks' worth of bytes each, and end byte-identical.
func TestDeltaEdits(t *testing.T) {
	deltaEdits(t, NewLab(t, 4), 256*mib)
}

// deltaEdits is TestDeltaEdits's body, for a file of size bytes, on any
// lab of 4 hosts.
func deltaEdits(t *testing.T, lab *Lab, size int64) {
	t.Helper()
	lab.StartAll()
	h := lab.Hosts
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == 4 }, "members did not join")
	src := filepath.Join(h[0].Base, "big.bin")
	writeRandom(t, src, size, 11)
	push(t, h[0], 0, "big.bin")

	edits := []struct {
		name string
		edit func([]byte) []byte
	}{
		{"overwrite 4 KiB in the middle", func(b []byte) []byte {
			copy(b[len(b)/2:], strings.Repeat("x", 4096))
			return b
		}},
		{"insert 100 bytes near the start", func(b []byte) []byte {
			return append(b[:1000:1000], append([]byte(strings.Repeat("y", 100)), b[1000:]...)...)
		}},
		{"append 1 MiB", func(b []byte) []byte {
			return append(b, []byte(strings.Repeat("z", mib))...)
		}},
	}
	for _, e := range edits {
		editFile(t, src, e.edit)
		wire := pushCounted(t, h[0], "big.bin")
		t.Logf("figure: delta %s of a %d MiB file to 3 receivers: %d bytes on the wire (%.2f MiB)", e.name, size/mib, wire, float64(wire)/mib)
		want := fileSum(t, src)
		for _, r := range h[1:] {
			if got := fileSum(t, filepath.Join(r.Base, "big.bin")); got != want {
				t.Fatalf("%s after %s: content differs", r.Name, e.name)
			}
		}
		// One copy by multicast, one per receiver by unicast.
		if copies := int64(max(lab.copies, 1)); wire > copies*3*mib/2 {
			t.Errorf("%s cost %d bytes on the wire, want under %d × 1.5 MiB", e.name, wire, copies)
		}
	}
}

// TestDeltaMixedVersions: one receiver up to date, one an edit behind, one
// empty: all converge in one session.
func TestDeltaMixedVersions(t *testing.T) {
	deltaMixedVersions(t, NewLab(t, 4))
}

// deltaMixedVersions is TestDeltaMixedVersions's body, on any lab of 4
// hosts.
func deltaMixedVersions(t *testing.T, lab *Lab) {
	t.Helper()
	lab.StartAll()
	h := lab.Hosts
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == 4 }, "members did not join")
	src := filepath.Join(h[0].Base, "f.bin")
	writeRandom(t, src, 32*mib, 12)
	push(t, h[0], 0, "f.bin")                             // everyone has v1
	must(t, os.Remove(filepath.Join(h[3].Base, "f.bin"))) // h4: empty
	editFile(t, src, func(b []byte) []byte { copy(b[5*mib:], "edit one"); return b })
	push(t, h[0], 0, "-t", "h2", "f.bin") // h2: v2, h3: v1
	editFile(t, src, func(b []byte) []byte { copy(b[20*mib:], "edit two"); return b })
	copyFile(t, src, filepath.Join(h[1].Base, "f.bin")) // h2: up to date (v3) behind the daemon's back
	out := push(t, h[0], 0, "f.bin")
	if strings.Contains(out, "h2") {
		t.Fatalf("h2 was up to date but got the file:\n%s", out)
	}
	want := fileSum(t, src)
	for _, r := range h[1:] {
		if got := fileSum(t, filepath.Join(r.Base, "f.bin")); got != want {
			t.Fatalf("%s: content differs", r.Name)
		}
	}
}

// TestDeltaCorruptBasis: a receiver's basis corrupted behind the daemon's
// back (same size and mtime) is caught by the whole-file hash; the file is
// fetched whole and ends correct.
func TestDeltaCorruptBasis(t *testing.T) {
	deltaCorruptBasis(t, NewLab(t, 2))
}

// deltaCorruptBasis is TestDeltaCorruptBasis's body, on any lab of 2
// hosts.
func deltaCorruptBasis(t *testing.T, lab *Lab) {
	t.Helper()
	lab.StartAll()
	h := lab.Hosts
	eventually(t, 3*time.Second, func() bool { return len(h[0].Members()) == 2 }, "members did not join")
	src := filepath.Join(h[0].Base, "f.bin")
	writeRandom(t, src, 16*mib, 13)
	push(t, h[0], 0, "f.bin")
	dst := filepath.Join(h[1].Base, "f.bin")
	// Flip a byte in h2's copy, keeping size and mtime; the receiver then
	// has a basis whose chunk hashes it computes from corrupt content — but
	// its cached whole-file hash still says "same" unless ctime counts.
	fi, err := os.Stat(dst)
	must(t, err)
	f, err := os.OpenFile(dst, os.O_RDWR, 0)
	must(t, err)
	b := make([]byte, 1)
	_, err = f.ReadAt(b, 8*mib)
	must(t, err)
	b[0] ^= 0xff
	_, err = f.WriteAt(b, 8*mib)
	must(t, err)
	must(t, f.Close())
	must(t, os.Chtimes(dst, fi.ModTime(), fi.ModTime()))
	// A change on the sender elsewhere in the file: a delta whose basis is
	// the corrupt copy.
	editFile(t, src, func(b []byte) []byte { copy(b[2*mib:], "sender edit"); return b })
	push(t, h[0], 0, "f.bin")
	if got, want := fileSum(t, dst), fileSum(t, src); got != want {
		t.Fatal("receiver content differs after a delta from a corrupt basis")
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b := mustRead(t, src)
	fi, err := os.Stat(src)
	must(t, err)
	must(t, os.WriteFile(dst, b, fi.Mode()))
	must(t, os.Chtimes(dst, fi.ModTime(), fi.ModTime()))
}
