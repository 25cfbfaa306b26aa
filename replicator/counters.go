package replicator

import (
	dto "github.com/prometheus/client_model/go"

	"github.com/makuo/makuo/metrics"
)

// counters reads the transport counters for msync --status, from the same
// collectors Prometheus scrapes, so the two never disagree.
func (n *Node) counters() map[string]uint64 {
	read := func(c interface{ Write(*dto.Metric) error }) uint64 {
		var m dto.Metric
		if c.Write(&m) != nil || m.Counter == nil {
			return 0
		}
		return uint64(m.Counter.GetValue())
	}
	out := map[string]uint64{
		"datagrams_sent":     read(n.met.DatagramsSent),
		"datagrams_received": read(n.met.DatagramsReceived),
		"bytes_sent":         read(n.met.BytesSent),
		"bytes_received":     read(n.met.BytesReceived),
	}
	for _, r := range metrics.DropReasons() {
		out["dropped_"+r] = read(n.met.DatagramsDropped.WithLabelValues(r))
	}
	return out
}
