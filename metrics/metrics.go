package metrics

import (
	"net/http"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "makuosan"

// Drop reasons for DatagramsDropped. ONLY APPEND: dashboards and alerts
// refer to them.
const (
	DropMalformed = "malformed"   // not a makuo datagram, or a payload that does not decode
	DropVersion   = "bad_version" // a protocol version this daemon does not speak
	DropAuth      = "auth"        // failed authentication, or sealed/unsealed mismatch with our key setting
	DropReplay    = "replay"      // a sequence number already seen or too old
	DropOversize  = "oversize"    // larger than the receive buffer (truncated by the kernel)
	DropQueueFull = "queue_full"  // the processing queue was full: the receiver is overloaded
	DropPath      = "path_refused"
	// DropUnknownMember: a session message from a node that is not a live
	// member (no heartbeat heard): sessions are accepted from members only.
	DropUnknownMember = "unknown_member"
	// DropSessionLimit: an offer for one session more than a sending node
	// may run at once on this member.
	DropSessionLimit = "session_limit"
	// DropSessionMemory: an offer past the memory every receive session
	// may hold together (--max-session-memory).
	DropSessionMemory = "session_memory"
	// DropMemberLimit: a heartbeat of a new member while the member table
	// is full (membership.Config.MaxMembers).
	DropMemberLimit = "member_limit"
	// DropDuplicateID: a datagram carrying this daemon's own node id but
	// another incarnation: another daemon uses the same id.
	DropDuplicateID = "duplicate_id"
	// DropPeerLimit: in unicast mode, a heartbeat or a peer list naming a
	// new peer address while the table of learned peers is full (see
	// --peer).
	DropPeerLimit = "peer_limit"
	// DropRelayQueue: a datagram a relay was to forward while its
	// forwarding queue was full (the inter-segment link or the relay is
	// overloaded).
	DropRelayQueue = "relay_queue_full"
	// DropRelayRefused: a relay envelope or hello from an address that is
	// not a listed relay, one this member has no use for, or one whose
	// origin or size is wrong.
	DropRelayRefused = "relay_refused"
	// DropRelayNoRoute: an answer a relay was to carry toward a push's
	// origin it has no route to: one not heard through another
	// segment's live active relay (a member's answer), or not heard on
	// its own group (another segment's). Never forwarded blindly.
	DropRelayNoRoute = "relay_no_route"
)

// DropReasons lists every drop reason, in a fixed order.
func DropReasons() []string {
	return []string{DropMalformed, DropVersion, DropAuth, DropReplay, DropOversize, DropQueueFull, DropPath,
		DropMemberLimit, DropDuplicateID, DropUnknownMember, DropSessionLimit, DropSessionMemory, DropPeerLimit,
		DropRelayQueue, DropRelayRefused, DropRelayNoRoute}
}

// ConflictResolutions lists how the watcher's conflict rule settles a
// concurrent edit, for Conflicts. ONLY APPEND.
func ConflictResolutions() []string { return []string{"kept_local", "conflict_copy"} }

// Metrics holds the daemon's collectors. Build it with New.
type Metrics struct {
	DatagramsSent     prometheus.Counter
	DatagramsReceived prometheus.Counter
	BytesSent         prometheus.Counter
	BytesReceived     prometheus.Counter
	DatagramsDropped  *prometheus.CounterVec
	Retransmits       prometheus.Counter
	Sessions          *prometheus.CounterVec
	FilesApplied      prometheus.Counter
	BytesApplied      prometheus.Counter
	DeltaFallbacks    prometheus.Counter
	ChunksSent        prometheus.Counter
	ChunksReused      prometheus.Counter
	BasisBytes        *prometheus.CounterVec
	NacksSent         prometheus.Counter
	NacksReceived     prometheus.Counter
	MembersDropped    prometheus.Counter
	SessionSeconds    prometheus.Histogram
	ApplyErrors       *prometheus.CounterVec
	Conflicts         *prometheus.CounterVec
	// DuplicateIDs counts the fresh node ids this daemon took because
	// another daemon with a newer incarnation used the same one.
	DuplicateIDs prometheus.Counter
	// Peers is the size of unicast mode's peer table by kind: listed
	// (--peer, --peers-file, their DNS answers) and learned (heard from,
	// or named by a peer's list); 0 in multicast mode.
	Peers *prometheus.GaugeVec
	// PeerSendErrors counts unicast copies the kernel refused to send
	// to a peer (no route, a firewall's reject); the other peers still
	// get theirs.
	PeerSendErrors prometheus.Counter
	// Relayed counts the datagrams a relay forwarded, by way: out (one
	// per copy to another segment's relay), in (re-multicast on its own
	// group), and the answers it carried: answers_out (toward another
	// segment's relay, its own and its segment's members') and
	// answers_in (delivered to an origin in its segment).
	Relayed *prometheus.CounterVec
	// RelayActive is 1 while this member is its segment's active relay.
	RelayActive prometheus.Gauge
}

// RelayWays lists the ways of Relayed. ONLY APPEND.
func RelayWays() []string { return []string{"out", "in", "answers_out", "answers_in"} }

// PeerKinds lists the kinds of Peers. ONLY APPEND.
func PeerKinds() []string { return []string{"listed", "learned"} }

// BasisCopyWays lists how a receiver takes reused chunks from its older
// copy, for BasisBytes. ONLY APPEND.
func BasisCopyWays() []string { return []string{"cloned", "copied", "written"} }

// Apply error reasons for ApplyErrors. ONLY APPEND.
func ApplyErrorReasons() []string {
	return []string{"io", "no_space", "permission", "path_refused", "content_mismatch", "type_conflict", "owner_differs", "other"}
}

// New creates the collectors and registers them, with the Go runtime and
// process collectors and build info, on reg. Every series of a labelled
// collector is there from the start, at 0.
func New(reg prometheus.Registerer, version string) *Metrics {
	r := registrar{reg}
	m := &Metrics{
		DatagramsSent:     r.counter("transport", "datagrams_sent_total", "Datagrams written to the multicast group."),
		DatagramsReceived: r.counter("transport", "datagrams_received_total", "Datagrams read from the multicast group, before any check."),
		BytesSent:         r.counter("transport", "bytes_sent_total", "UDP payload bytes written to the multicast group."),
		BytesReceived:     r.counter("transport", "bytes_received_total", "UDP payload bytes read from the multicast group."),
		DatagramsDropped:  r.counterVec("transport", "datagrams_dropped_total", "Datagrams refused, by reason.", "reason", DropReasons()),
		Retransmits:       r.counter("transfer", "retransmitted_datagrams_total", "Data datagrams sent again because a receiver reported them missing."),
		Sessions:          r.counterVec("transfer", "sessions_total", "Send sessions finished, by outcome (ok: every member applied everything).", "outcome", []string{"ok", "failed", "aborted"}),
		FilesApplied:      r.counter("transfer", "files_applied_total", "Files received and renamed into place."),
		BytesApplied:      r.counter("transfer", "bytes_applied_total", "Content bytes of the files received and renamed into place."),
		DeltaFallbacks:    r.counter("transfer", "delta_fallbacks_total", "Files whose delta did not reproduce the offered hash (a changed or corrupted basis) and were fetched whole."),
		ChunksSent:        r.counter("transfer", "chunks_sent_total", "Chunks of delta-transferred files sent because some member lacked them."),
		ChunksReused:      r.counter("transfer", "chunks_reused_total", "Chunks a receiver copied from its own older copy instead of fetching them."),
		BasisBytes:        r.counterVec("transfer", "basis_bytes_total", "Bytes of reused chunks a receiver took from its older copy, by how: cloned (blocks shared, reflinks on XFS or btrfs), copied (in the kernel, copy_file_range), written (read and written back).", "how", BasisCopyWays()),
		NacksSent:         r.counter("transfer", "nacks_sent_total", "Nacks (lists of missing blocks, possibly empty) sent in answer to polls."),
		NacksReceived:     r.counter("transfer", "nacks_received_total", "Nacks received by send sessions."),
		MembersDropped:    r.counter("transfer", "members_dropped_total", "Members dropped from a send session because they stopped answering or left."),
		SessionSeconds:    r.histogram("transfer", "session_duration_seconds", "Duration of send sessions, scan included.", prometheus.ExponentialBuckets(0.005, 2.5, 12)),
		ApplyErrors:       r.counterVec("transfer", "apply_errors_total", "Entries this member could not apply, by reason.", "reason", ApplyErrorReasons()),
		Conflicts:         r.counterVec("transfer", "conflicts_total", "Concurrent edits settled by the watcher's conflict rule on this member, by resolution (kept_local: this member's newer version stayed; conflict_copy: a losing unreplicated edit was kept under a conflict name). Not errors.", "resolution", ConflictResolutions()),
		DuplicateIDs:      r.counter("membership", "duplicate_ids_total", "Fresh node ids taken because another daemon (a cloned state directory) used this one's."),
		Peers:             r.gaugeVec("transport", "peers", "Unicast mode's peer addresses, by kind (listed: --peer, --peers-file and their DNS answers; learned: from heartbeats and peers' lists).", "kind", PeerKinds()),
		PeerSendErrors:    r.counter("transport", "peer_send_errors_total", "Unicast copies of a datagram the kernel refused to send to one peer (no route, rejected); the other peers got theirs."),
		Relayed:           r.counterVec("transport", "relayed_total", "Datagrams this relay forwarded, by way (out: a copy to another segment's relay; in: re-multicast on its group; answers_out: an answer toward another segment's relay; answers_in: an answer delivered to an origin in its segment).", "way", RelayWays()),
		RelayActive:       r.gauge("transport", "relay_active", "1 while this member is its segment's active relay."),
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Build information; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	reg.MustRegister(buildInfo, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// registrar makes New's collectors in the daemon's namespace and registers
// each as it is made.
type registrar struct{ reg prometheus.Registerer }

func (r registrar) counter(sub, name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: name, Help: help})
	r.reg.MustRegister(c)
	return c
}

// counterVec is a counter by label, with a series for each of values.
func (r registrar) counterVec(sub, name, help, label string, values []string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: name, Help: help}, []string{label})
	for _, v := range values {
		c.WithLabelValues(v)
	}
	r.reg.MustRegister(c)
	return c
}

func (r registrar) gauge(sub, name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: sub, Name: name, Help: help})
	r.reg.MustRegister(g)
	return g
}

// gaugeVec is a gauge by label, with a series for each of values.
func (r registrar) gaugeVec(sub, name, help, label string, values []string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: sub, Name: name, Help: help}, []string{label})
	for _, v := range values {
		g.WithLabelValues(v)
	}
	r.reg.MustRegister(g)
	return g
}

func (r registrar) histogram(sub, name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Subsystem: sub, Name: name, Help: help, Buckets: buckets})
	r.reg.MustRegister(h)
	return h
}

// Drop counts one dropped datagram.
func (m *Metrics) Drop(reason string) { m.DatagramsDropped.WithLabelValues(reason).Inc() }

// Handler serves the metrics gathered from g in the Prometheus text format.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
