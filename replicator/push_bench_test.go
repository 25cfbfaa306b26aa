package replicator

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/makuo/makuo/replicator/control"
	"github.com/makuo/makuo/replicator/transport/transporttest"
)

// BenchmarkHubSmallFiles pushes 2,000 files of 4 KiB from one engine to
// three on the in-memory hub: the engines' and the filesystem's cost per
// file without the network's (profile it with -cpuprofile).
func BenchmarkHubSmallFiles(b *testing.B) {
	hub := transporttest.NewHub(1, transporttest.Faults{})
	nodes := startHubNodes(b, hub, 4, nil)
	content := make([]byte, 4096)
	for i := range b.N {
		dir := filepath.Join(nodes[0].base, fmt.Sprintf("run%d", i))
		for k := range 2000 {
			p := filepath.Join(dir, fmt.Sprintf("d%02d", k%20), fmt.Sprintf("f%04d", k))
			if k < 20 {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					b.Fatal(err)
				}
			}
			content[0], content[1] = byte(k), byte(i)
			if err := os.WriteFile(p, content, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		sum, fails := pushReq(b, nodes[0], control.PushRequest{Paths: []string{dir}, Recursive: true})
		if len(fails) > 0 || sum.Changed < 2000 {
			b.Fatalf("summary %+v, failures %v", sum, fails)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*2000), "µs/file")
}
