package metrics

import "github.com/prometheus/client_golang/prometheus"

// MemberStat is one member's state at scrape time.
type MemberStat struct {
	ID               string
	Hostname         string
	Segment          string // --segment, "" for none
	LastHeardSeconds float64
	InSync           bool    // its tree root equals this daemon's
	RootKnown        bool    // both roots are known (false right after start)
	LagSeconds       float64 // how long its root has differed; 0 when in sync
}

// MemberSource returns the current members (this daemon excluded). It is
// called at every scrape and must be safe for concurrent use.
type MemberSource func() []MemberStat

type memberCollector struct {
	source    MemberSource
	live      *prometheus.Desc
	up        *prometheus.Desc
	lastHeard *prometheus.Desc
	inSync    *prometheus.Desc
	lag       *prometheus.Desc
}

// RegisterMembers registers a collector that reports per-member series from
// source at scrape time.
func RegisterMembers(reg prometheus.Registerer, source MemberSource) error {
	labels := []string{"member", "hostname", "segment"}
	return reg.Register(&memberCollector{
		source:    source,
		live:      prometheus.NewDesc(namespace+"_members_live", "Members currently heard, this daemon excluded.", nil, nil),
		up:        prometheus.NewDesc(namespace+"_member_up", "1 for every live member.", labels, nil),
		lastHeard: prometheus.NewDesc(namespace+"_member_last_heard_seconds", "Seconds since the member was last heard.", labels, nil),
		inSync:    prometheus.NewDesc(namespace+"_member_in_sync", "1 if the member's tree root hash equals this daemon's, else 0 (absent while unknown).", labels, nil),
		lag:       prometheus.NewDesc(namespace+"_member_lag_seconds", "How long the member's tree root has differed from this daemon's; 0 when in sync.", labels, nil),
	})
}

func (c *memberCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.live
	ch <- c.up
	ch <- c.lastHeard
	ch <- c.inSync
	ch <- c.lag
}

func (c *memberCollector) Collect(ch chan<- prometheus.Metric) {
	members := c.source()
	ch <- prometheus.MustNewConstMetric(c.live, prometheus.GaugeValue, float64(len(members)))
	for _, m := range members {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1, m.ID, m.Hostname, m.Segment)
		ch <- prometheus.MustNewConstMetric(c.lastHeard, prometheus.GaugeValue, m.LastHeardSeconds, m.ID, m.Hostname, m.Segment)
		if m.RootKnown {
			v := 0.0
			if m.InSync {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.inSync, prometheus.GaugeValue, v, m.ID, m.Hostname, m.Segment)
		}
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, m.LagSeconds, m.ID, m.Hostname, m.Segment)
	}
}
