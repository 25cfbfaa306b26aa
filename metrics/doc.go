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
//	makuosan_transport_peers{kind}                             unicast mode's peers: listed, learned
//	makuosan_transport_peer_send_errors_total                  unicast copies refused for one peer
//	makuosan_transport_relayed_total{way}                      datagrams a relay forwarded: out, in, answers_out, answers_in
//	makuosan_transport_relay_active                            1 on its segment's active relay
//	makuosan_membership_duplicate_ids_total                   fresh node ids taken because another daemon used ours
//	makuosan_transfer_sessions_total{outcome}                  send sessions: ok, failed, aborted
//	makuosan_transfer_session_duration_seconds                 histogram of send session durations
//	makuosan_transfer_files_applied_total                      files received and renamed into place
//	makuosan_transfer_bytes_applied_total                      content bytes of those files
//	makuosan_transfer_retransmitted_datagrams_total            data blocks sent again after a nack
//	makuosan_transfer_nacks_sent_total / _received_total       poll answers sent (receiver) / received (sender)
//	makuosan_transfer_chunks_sent_total                        delta chunks sent because a member lacked them
//	makuosan_transfer_chunks_reused_total                      chunks a receiver copied from its older copy
//	makuosan_transfer_basis_bytes_total{how}                   their bytes: cloned, copied (in the kernel), written
//	makuosan_transfer_delta_fallbacks_total                    deltas that failed their hash and were fetched whole
//	makuosan_transfer_members_dropped_total                    members dropped from a session (silent or gone)
//	makuosan_transfer_apply_errors_total{reason}               entries this member could not apply
//	makuosan_watcher_events_total, _batches_total, _overflows_total, _rescans_total,
//	makuosan_watcher_watch_errors_total, _watches, _pending_paths   (with --watch)
//	makuosan_members_live                                      members currently heard, this daemon excluded
//	makuosan_member_up{member,hostname,segment}                1 for every live member
//	makuosan_member_last_heard_seconds{member,hostname,segment} seconds since the member was last heard
//	makuosan_member_in_sync{member,hostname,segment}           1 if its tree root equals ours (absent while unknown)
//	makuosan_member_lag_seconds{member,hostname,segment}       how long its root has differed from ours
package metrics
