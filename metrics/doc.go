// Package metrics is makuosan's Prometheus vocabulary: every metric name and
// help text lives here, registered on a registry the caller owns (never the
// global one). It imports nothing from this module, so every other package
// may depend on it.
//
// Names follow makuosan_<subsystem>_<name>_<unit>[_total]. Label values that
// are known in advance (drop reasons) are created up front so they read 0
// before the first event. Per-member series are produced at scrape time from
// a snapshot (see MemberSource), so a member that leaves disappears from the
// output by itself.
//
//	makuosan_build_info{version,goversion}                     always 1
//	makuosan_transport_datagrams_sent_total                    datagrams written to the group
//	makuosan_transport_datagrams_received_total                datagrams read from the group (before checks)
//	makuosan_transport_bytes_sent_total                        bytes written, UDP payload
//	makuosan_transport_bytes_received_total                    bytes read, UDP payload
//	makuosan_transport_datagrams_dropped_total{reason}         datagrams refused, by reason
//	makuosan_members_live                                      members currently heard, this daemon excluded
//	makuosan_member_up{member,hostname}                        1 for every live member
//	makuosan_member_last_heard_seconds{member,hostname}        seconds since the member was last heard
package metrics
