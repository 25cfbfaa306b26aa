package metrics

import "github.com/prometheus/client_golang/prometheus"

// MemberStat is one member's state at scrape time.
type MemberStat struct {
	ID               string
	Hostname         string
	LastHeardSeconds float64
}

// MemberSource returns the current members (this daemon excluded). It is
// called at every scrape and must be safe for concurrent use.
type MemberSource func() []MemberStat

type memberCollector struct {
	source    MemberSource
	live      *prometheus.Desc
	up        *prometheus.Desc
	lastHeard *prometheus.Desc
}

// RegisterMembers registers a collector that reports per-member series from
// source at scrape time.
func RegisterMembers(reg prometheus.Registerer, source MemberSource) error {
	labels := []string{"member", "hostname"}
	return reg.Register(&memberCollector{
		source:    source,
		live:      prometheus.NewDesc(namespace+"_members_live", "Members currently heard, this daemon excluded.", nil, nil),
		up:        prometheus.NewDesc(namespace+"_member_up", "1 for every live member.", labels, nil),
		lastHeard: prometheus.NewDesc(namespace+"_member_last_heard_seconds", "Seconds since the member was last heard.", labels, nil),
	})
}

func (c *memberCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.live
	ch <- c.up
	ch <- c.lastHeard
}

func (c *memberCollector) Collect(ch chan<- prometheus.Metric) {
	members := c.source()
	ch <- prometheus.MustNewConstMetric(c.live, prometheus.GaugeValue, float64(len(members)))
	for _, m := range members {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1, m.ID, m.Hostname)
		ch <- prometheus.MustNewConstMetric(c.lastHeard, prometheus.GaugeValue, m.LastHeardSeconds, m.ID, m.Hostname)
	}
}
