package tree

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// makeTree creates files files of minSize to maxSize random bytes spread
// over dirs directories under a new temp dir, and returns it with the
// total content size.
func makeTree(b *testing.B, files, dirs, minSize, maxSize int) (string, int64) {
	b.Helper()
	dir := b.TempDir()
	r := rand.New(rand.NewPCG(uint64(files), uint64(dirs)))
	buf := make([]byte, maxSize)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	for d := range dirs {
		if err := os.Mkdir(filepath.Join(dir, fmt.Sprintf("d%04d", d)), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	var total int64
	for i := range files {
		n := minSize + r.IntN(maxSize-minSize+1)
		buf[0] = byte(i) // no two files alike, cheaply
		p := filepath.Join(dir, fmt.Sprintf("d%04d/f%06d", i%dirs, i))
		if err := os.WriteFile(p, buf[:n], 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(n)
	}
	return dir, total
}

// heapAlloc returns the live heap after a full collection.
func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkScanNoChange measures a rescan of an unchanged tree with a
// warm index: one directory listing per directory and one fstatat per
// entry, no content read. It also reports the first (hashing) scan and
// the heap the index holds.
func BenchmarkScanNoChange(b *testing.B) {
	for _, c := range []struct {
		name             string
		files, dirs      int
		minSize, maxSize int
	}{
		{"files=5000", 5000, 50, 4096, 4096},
		{"files=100000", 100000, 1000, 0, 4096},
	} {
		b.Run(c.name, func(b *testing.B) {
			dir, total := makeTree(b, c.files, c.dirs, c.minSize, c.maxSize)
			before := heapAlloc()
			// The racy guard is off: these files were all written just now,
			// and the steady state this measures has none so recent.
			x := newIndex(b, dir, Options{RacyWindow: -1})
			start := time.Now()
			st, err := x.Scan(context.Background())
			first := time.Since(start)
			if err != nil || st.BytesRead != total {
				b.Fatalf("first scan: %+v, %v; want %d bytes", st, err, total)
			}
			x.Root()
			st.Changed = nil // the first scan's list of every path is not the index's
			heap := heapAlloc() - before
			for b.Loop() {
				st, err := x.Scan(context.Background())
				if err != nil || st.BytesRead != 0 || st.Changed != nil {
					b.Fatalf("rescan: %+v, %v", st, err)
				}
			}
			b.ReportMetric(float64(x.Len()), "entries")
			b.ReportMetric(first.Seconds(), "first-scan-s")
			b.ReportMetric(float64(heap)/(1<<20), "index-MiB")
			b.ReportMetric(float64(heap)/float64(x.Len()), "index-B/entry")
			runtime.KeepAlive(x)
		})
	}
}

// BenchmarkRootAfterUpdate measures a change to one file of a
// 100,000-file tree: write it, Update it, recompute the root. The
// update-ns and root-ns figures split out the last two.
func BenchmarkRootAfterUpdate(b *testing.B) {
	dir, _ := makeTree(b, 100000, 1000, 0, 4096)
	x := newIndex(b, dir, Options{RacyWindow: -1})
	if _, err := x.Scan(context.Background()); err != nil {
		b.Fatal(err)
	}
	x.Root()
	rel := "d0500/f050500"
	abs := filepath.Join(dir, rel)
	var update, root time.Duration
	i := 0
	for b.Loop() {
		i++
		if err := os.WriteFile(abs, fmt.Appendf(nil, "version %d", i), 0o644); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		st, err := x.Update(rel)
		t1 := time.Now()
		h := x.Root()
		root += time.Since(t1)
		update += t1.Sub(t0)
		if err != nil || st.Modified != 1 || h == 0 {
			b.Fatalf("Update: %+v, %v", st, err)
		}
	}
	b.ReportMetric(float64(update.Nanoseconds())/float64(i), "update-ns")
	b.ReportMetric(float64(root.Nanoseconds())/float64(i), "root-ns")
}
