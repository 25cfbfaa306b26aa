package stage

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
	"time"
)

// BenchmarkSmallFiles applies 4 KiB files as a receiver does, without its
// network and without the syncs (OpenUnsynced: on a shared disk they
// would measure the other work's dirty data): Lstat of the missing
// target (through a LstatCache, as decide does), CreateTemp, WriteAt, Truncate to the size written, Ready, and
// CommitAll for every 1,000, in 20 directories. It reports the time per
// file; strace -c of it counts the system calls per file.
func BenchmarkSmallFiles(b *testing.B) {
	d, err := OpenUnsynced(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	c := d.LstatCache()
	defer c.Close()
	content := make([]byte, 4096)
	meta := Meta{Mode: 0o644, Mtime: time.Unix(1_700_000_000, 0)}
	const batch = 1000
	ts := make([]*Temp, 0, batch)
	commit := func() {
		for _, err := range d.CommitAll(ts) {
			if err != nil {
				b.Fatal(err)
			}
		}
		ts = ts[:0]
	}
	for i := range b.N {
		rel := fmt.Sprintf("d%02d/f%08d", i/batch%20, i)
		if i%batch == 0 {
			if err := d.Mkdir(rel[:3], Meta{Mode: fs.ModeDir | 0o755}); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := c.Lstat(rel); !errors.Is(err, fs.ErrNotExist) {
			b.Fatalf("Lstat(%s) = %v", rel, err)
		}
		t, err := d.CreateTemp(rel)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := t.WriteAt(content, 0); err != nil {
			b.Fatal(err)
		}
		if err := t.Truncate(int64(len(content))); err != nil {
			b.Fatal(err)
		}
		if err := t.Ready(meta); err != nil {
			b.Fatal(err)
		}
		if ts = append(ts, t); len(ts) == batch {
			commit()
		}
	}
	commit()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "µs/file")
}
