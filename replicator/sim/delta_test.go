package sim

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/makuo/makuo/internal/mounttest"
)

// TestDeltaFromBasis: on each filesystem type, receivers holding an old
// version of a file build the new one from it. The copies share the
// basis's blocks where the filesystem has reflinks (the extent map says
// so) and are in-kernel copies elsewhere; the content ends byte-identical
// everywhere; and the receivers verify the delta chunk by chunk (their
// basis's index key proves its chunk list), which leaves the new file's
// chunk list in their index, so the next delta needs no read of it.
func TestDeltaFromBasis(t *testing.T) {
	const size = 8 << 20
	for _, fstype := range mounttest.Types {
		t.Run(fstype, func(t *testing.T) {
			mnt := mounttest.Mount(t, fstype)
			c, err := New(Config{Seed: 3, Receivers: 2, Dir: mnt})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			src := filepath.Join(c.Sender().Base, "big.bin")
			content := make([]byte, size)
			rand.NewChaCha8([32]byte{3}).Read(content)
			// Old mtimes: the receivers' reads of their copies are not
			// racy, so their index keys prove them.
			put := func(age time.Duration) {
				t.Helper()
				if err := os.WriteFile(src, content, 0o644); err != nil {
					t.Fatal(err)
				}
				mt := time.Now().Add(-age)
				if err := os.Chtimes(src, mt, mt); err != nil {
					t.Fatal(err)
				}
			}
			put(3 * time.Hour)
			pushFile(t, c)
			for i, at := range []int{size / 2, size / 5} {
				copy(content[at:], bytes.Repeat([]byte{byte('a' + i)}, 4096))
				put(2*time.Hour - time.Duration(i)*time.Minute)
				// A link outside the bases keeps each old version, so that
				// the blocks the new one shares with it stay shared.
				for _, r := range c.Receivers() {
					if err := os.Link(filepath.Join(r.Base, "big.bin"), filepath.Join(mnt, fmt.Sprintf("%s.%d", r.Name, i))); err != nil {
						t.Fatal(err)
					}
				}
				cloned := testutil.ToFloat64(c.Metrics().BasisBytes.WithLabelValues("cloned"))
				pushFile(t, c)
				if d := testutil.ToFloat64(c.Metrics().DeltaFallbacks); d != 0 {
					t.Fatalf("edit %d: %v deltas fell back to a whole fetch", i, d)
				}
				cloned = testutil.ToFloat64(c.Metrics().BasisBytes.WithLabelValues("cloned")) - cloned
				for _, r := range c.Receivers() {
					checkDeltaResult(t, r, fstype, content, cloned)
				}
			}
		})
	}
}

// pushFile pushes big.bin and fails t unless every receiver applied it.
func pushFile(t *testing.T, c *Cluster) {
	t.Helper()
	res := run(t, c, Push{Roots: []string{"big.bin"}})
	for _, o := range res.Outcomes {
		if o.Result == nil || o.Result.Failed != 0 {
			t.Fatalf("outcome %+v", o)
		}
	}
}

// checkDeltaResult checks receiver r's big.bin after a delta.
func checkDeltaResult(t *testing.T, r *Node, fstype string, want []byte, cloned float64) {
	t.Helper()
	p := filepath.Join(r.Base, "big.bin")
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s: content differs (%v)", r.Name, err)
	}
	x, err := mounttest.ExtentsOf(p)
	if err != nil && !(fstype == "tmpfs" && errors.Is(err, syscall.EOPNOTSUPP)) {
		t.Fatal(err) // tmpfs has no extents to map
	}
	if reflink := fstype == "xfs" || fstype == "btrfs"; reflink != (x.Shared >= int64(len(want))*9/10) || reflink != (cloned >= float64(len(want))*9/10) {
		t.Errorf("%s on %s: %d of %d bytes in shared extents, %.0f cloned by the push", r.Name, fstype, x.Shared, len(want), cloned)
	}
	e, ok := r.index.Lookup("big.bin")
	if !ok || len(e.Chunks) == 0 || e.Hash == 0 {
		t.Errorf("%s: the index holds no chunk list of the verified delta (%v, %d chunks)", r.Name, ok, len(e.Chunks))
	}
}
