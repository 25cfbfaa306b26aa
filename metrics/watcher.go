package metrics

import "github.com/prometheus/client_golang/prometheus"

// WatcherStat is the watcher's state at scrape time.
type WatcherStat struct {
	Events, Batches, Overflows, Rescans, WatchErrors uint64
	Watches, Pending                                 int64
}

// RegisterWatcher registers the watcher's series, read from stat at every
// scrape (the watcher keeps its own counters; this package only names
// them).
func RegisterWatcher(reg prometheus.Registerer, stat func() WatcherStat) error {
	counter := func(name, help string, get func(WatcherStat) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Subsystem: "watcher", Name: name, Help: help},
			func() float64 { return float64(get(stat())) })
	}
	gauge := func(name, help string, get func(WatcherStat) int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "watcher", Name: name, Help: help},
			func() float64 { return float64(get(stat())) })
	}
	for _, c := range []prometheus.Collector{
		counter("events_total", "Filesystem events received from inotify.", func(s WatcherStat) uint64 { return s.Events }),
		counter("batches_total", "Debounced batches of changed paths handed to the replicator.", func(s WatcherStat) uint64 { return s.Batches }),
		counter("overflows_total", "Kernel event queue overflows (raise fs.inotify.max_queued_events); each causes a rescan.", func(s WatcherStat) uint64 { return s.Overflows }),
		counter("rescans_total", "Subtree rescans requested (overflow, watch limit, collapsed directories).", func(s WatcherStat) uint64 { return s.Rescans }),
		counter("watch_errors_total", "Failed watch additions (watch limit: raise fs.inotify.max_user_watches) and other inotify errors.", func(s WatcherStat) uint64 { return s.WatchErrors }),
		gauge("watches", "Directories watched.", func(s WatcherStat) int64 { return s.Watches }),
		gauge("pending_paths", "Changed paths waiting for their debounce period to end.", func(s WatcherStat) int64 { return s.Pending }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
