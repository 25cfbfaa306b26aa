#!/usr/bin/env bash
# segments.sh: issue 15's figures in one run. A 256 MiB file and 5,000
# files of 4 KiB, pushed cold to 9 members over 3 segments of 3 (the
# sender one of them, in segment 1) behind a router without multicast
# routing, through relays (two candidates per segment), the router's
# egress into each segment shaped: time and bytes on each link; against
# the same push to the 3 members of one segment through a link shaped
# alike (and to 9 in one segment: the same daemons on the same CPUs
# without relays, what the lab costs), against an rsync fan-out to the 8 other members of the routed
# lab, and unicast mode (--peers-file, multicast dropped on the bridge)
# against rsync-par to 3 and to 8 receivers. Prints a table, the links and
# a targets block; asserts nothing about timing. Needs root. See
# deploy/bench/README.md.
#
#   deploy/bench/segments.sh                  full run
#   BENCH_QUICK=1 deploy/bench/segments.sh    smoke run, small sets
#   KEEP=1 ...                                keep the temp dir (logs)
#
# Other knobs: BENCH_RUNS, BENCH_LABS, BENCH_SEG_MBIT, BENCH_UNICAST_RECEIVERS,
# BENCH_UNICAST_MBIT, BENCH_FS, BENCH_OFFLOAD, BENCH_MAKUOSAN_ARGS,
# BENCH_RUN_TIMEOUT, GO.
set -euo pipefail

here=$(dirname "$(realpath "$0")")
repo=$(realpath "$here/../..")
# shellcheck source=lib/setup.sh
. "$here/lib/setup.sh"
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"

# --- knobs -------------------------------------------------------------------

QUICK=${BENCH_QUICK:-0}
KEEP=${KEEP:-0}
RUNS=${BENCH_RUNS:-3}
LABS=${BENCH_LABS:-segments oneseg unicast}
SEG_MBIT=${BENCH_SEG_MBIT:-200}
UNI_COUNTS=${BENCH_UNICAST_RECEIVERS:-3 8}
UNI_MBIT=${BENCH_UNICAST_MBIT:-0}
RUN_TIMEOUT=${BENCH_RUN_TIMEOUT:-900}
FS=${BENCH_FS:-tmpfs}
OFFLOAD=${BENCH_OFFLOAD:-1}
read -r -a EXTRA_ARGS <<<"${BENCH_MAKUOSAN_ARGS:-}"
MTU=1500
USE_UFTP=0
SEG_N=3 SEG_P=3      # the routed lab: segments, members in each (the sender is host 1 of segment 1)
ONESEG_RECEIVERS=2   # the one-segment lab of the issue's goal: a segment of SEG_P members, the sender one of them
# and one of as many members as the routed lab: the same daemons on the
# same CPUs without relays, which tells the relays' cost from the lab's.
SEG_R=$((SEG_N * SEG_P - 1)) # the routed lab's receivers
ONESEG_ALL=$SEG_R
GROUP=239.192.0.108  # routed lab and one-segment lab alike
DGRAM=1400           # room for a relay's envelope in a 1500-byte MTU (README: Relays between segments)
LINK_ONCE=1.25       # "carries the data once": at most this many times the payload on a link

posint() { if ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then die "$1 must be a positive integer: '$2'"; fi; }
posint BENCH_RUNS "$RUNS"
posint BENCH_SEG_MBIT "$SEG_MBIT"
posint BENCH_RUN_TIMEOUT "$RUN_TIMEOUT"
[[ $UNI_MBIT =~ ^(0|[1-9][0-9]*)$ ]] || die "BENCH_UNICAST_MBIT must be Mbit/s, 0 for unshaped: '$UNI_MBIT'"
[ -n "${UNI_COUNTS// /}" ] || die "BENCH_UNICAST_RECEIVERS is empty"
for r in $UNI_COUNTS; do
  posint "a BENCH_UNICAST_RECEIVERS count" "$r"
  [ "$r" -le 199 ] || die "receiver counts must be at most 199 (lab.sh hosts 200): $r"
done
for l in $LABS; do
  case $l in segments | oneseg | unicast) ;; *) die "unknown lab in BENCH_LABS: $l (want some of: segments oneseg unicast)" ;; esac
done
case $FS in tmpfs | disk | xfs | btrfs | ext4) ;; *) die "BENCH_FS must be tmpfs, disk, xfs, btrfs or ext4: $FS" ;; esac
case $OFFLOAD in 0 | 1) ;; *) die "BENCH_OFFLOAD must be 0 or 1: $OFFLOAD" ;; esac

if [ "$QUICK" = 1 ]; then
  F256_BYTES=$((32 << 20)) F4K_N=500 F4K_DIRS=5
else
  F256_BYTES=$((256 << 20)) F4K_N=5000 F4K_DIRS=50
fi
SETS="file256 files4k"
declare -A LABEL=([file256]="$((F256_BYTES >> 20))MiB" [files4k]="${F4K_N}x4KiB")

bench_init seg

# shellcheck source=lib/data.sh
. "$here/lib/data.sh"
# shellcheck source=lib/cluster.sh
. "$here/lib/cluster.sh"
# shellcheck source=lib/run.sh
. "$here/lib/run.sh"
# shellcheck source=lib/scenarios.sh
. "$here/lib/scenarios.sh"
# shellcheck source=lib/report.sh
. "$here/lib/report.sh"

# MODE: the flags of the lab being built (host_args).
MODE=""

# host_args I: the flags of host I beyond start_cluster's. segments: the
# group, the datagram size, the segment and, for the last two hosts of
# each segment (relay candidates; not the sender), the other segments'
# candidates; oneseg: the group and the datagram size; unicast: a peers
# file of every host.
host_args() {
  local i=$1 s j
  HOST_ARGS=()
  if [ "$i" = 1 ]; then write_peer_files; fi
  case $MODE in
    segments)
      s=$(((i - 1) / SEG_P + 1)) j=$(((i - 1) % SEG_P + 1))
      HOST_ARGS=(-m "$GROUP" --datagram-size "$DGRAM" --segment "seg$s")
      [ "$j" -le $((SEG_P - 2)) ] || HOST_ARGS+=(--relay-peers "$TMP/relays-not-seg$s")
      ;;
    oneseg) HOST_ARGS=(-m "$GROUP" --datagram-size "$DGRAM") ;;
    unicast) HOST_ARGS=(--peers-file "$TMP/peers") ;;
  esac
}

# write_peer_files: $TMP/peers, every host's address, and in a routed lab
# $TMP/relays-not-segS, the relay candidates of the segments but S.
write_peer_files() {
  local i s j
  printf '%s\n' "${ADDRS[@]}" >"$TMP/peers"
  [ "$MODE" = segments ] || return 0
  for ((s = 1; s <= SEG_N; s++)); do
    : >"$TMP/relays-not-seg$s"
    for ((i = 1; i <= NHOSTS; i++)); do
      j=$(((i - 1) % SEG_P + 1))
      if [ $(((i - 1) / SEG_P + 1)) != "$s" ] && [ "$j" -gt $((SEG_P - 2)) ]; then echo "${ADDRS[i]}" >>"$TMP/relays-not-seg$s"; fi
    done
  done
}

# relay_roles: each relay candidate's role (msync --status), "hI:ROLE ...".
relay_roles() {
  local i out=""
  for ((i = 1; i <= NHOSTS; i++)); do
    [ $(((i - 1) % SEG_P + 1)) -gt $((SEG_P - 2)) ] || continue
    out="$out h$i:$("$BIN/msync" -c "unix:$TMP/h$i/state/makuosan.sock" --status 2>/dev/null | awk '$1 == "relay:" { print $2 }')"
  done
  echo "${out# }"
}

# wait_relays: until each segment has one active relay, the same for 3 s
# running (60 s at most).
wait_relays() {
  local deadline=$((SECONDS + 60)) roles same=0 last="" s n
  while :; do
    roles=$(relay_roles)
    n=0
    for ((s = 1; s <= SEG_N; s++)); do
      local a=0 i
      for ((i = (s - 1) * SEG_P + 1; i <= s * SEG_P; i++)); do
        [[ " $roles " != *" h$i:active "* ]] || a=$((a + 1))
      done
      [ "$a" != 1 ] || n=$((n + 1))
    done
    if [ "$n" = "$SEG_N" ] && [ "$roles" = "$last" ]; then same=$((same + 1)); else same=0; fi
    last=$roles
    [ "$same" -lt 6 ] || break
    [ "$SECONDS" -lt "$deadline" ] || die "no stable active relay in every segment after 60 s: $roles (logs: $LOGS, KEEP=1 keeps them)"
    sleep 0.5
  done
  log "relays: $roles"
}

# relay_counters: what the lab's relays did and refused so far, from
# every member's metrics, summed: "relayed out N, in N; dropped
# relay_queue_full N, relay_refused N, replay N".
relay_counters() {
  local i
  for ((i = 1; i <= NHOSTS; i++)); do
    ip netns exec "$NS1" curl -s --max-time 2 "http://${ADDRS[i]}:9758/metrics" || true
  done | awk '
    /^makuosan_transport_relayed_total\{way="out"\}/ { o += $2 }
    /^makuosan_transport_relayed_total\{way="in"\}/ { n += $2 }
    /^makuosan_transport_datagrams_dropped_total\{reason="relay_queue_full"\}/ { q += $2 }
    /^makuosan_transport_datagrams_dropped_total\{reason="relay_refused"\}/ { r += $2 }
    /^makuosan_transport_datagrams_dropped_total\{reason="replay"\}/ { p += $2 }
    END { printf "relayed out %d, in %d; dropped relay_queue_full %d, relay_refused %d, replay %d\n", o, n, q, r, p }'
}

# push_sets PREFIX TOOL: TOOL's cold runs of every set, rows PREFIX:SET-cold.
push_sets() {
  local set
  for set in $SETS; do tool_runs "$set" "$RUNS" "$2" "cold::$1:${LABEL[$set]}-cold"; done
}

# run_segments: the routed lab, its links shaped: makuo through the
# relays, then rsync-par from the sender to every other member.
run_segments() {
  MODE=segments ROUTED="$SEG_N $SEG_P" NOMCAST=0
  start_cluster "$SEG_R"
  wait_relays
  shape_links "$SEG_MBIT"
  push_sets segments makuo
  log "relays after the makuo runs: $(relay_roles); $(relay_counters)"
  push_sets segments rsync-par
}

# run_oneseg: one segment of SEG_P members, then one of all the routed
# lab's, the sender's link shaped as the router's are in the routed lab.
run_oneseg() {
  local r
  for r in "$ONESEG_RECEIVERS" "$ONESEG_ALL"; do
    MODE=oneseg ROUTED="" NOMCAST=0
    start_cluster "$r"
    set_shape "$SEG_MBIT"
    push_sets oneseg makuo
  done
}

# run_unicast: for each count, a flat lab whose bridge drops multicast,
# makuo in unicast mode against rsync-par.
run_unicast() {
  local r
  for r in $UNI_COUNTS; do
    MODE=unicast ROUTED="" NOMCAST=1
    start_cluster "$r"
    set_shape "$UNI_MBIT"
    push_sets unicast makuo
    push_sets unicast rsync-par
    log "lab $LAB: $("$lab" nomcast "$LAB" count) multicast frames dropped on the bridge"
  done
}

# --- report ------------------------------------------------------------------

print_header() {
  echo
  echo "makuo segments benchmark, issue 15 ($([ "$QUICK" = 1 ] && echo "BENCH_QUICK=1, ")$(nproc) CPUs, MTU $MTU, one kernel: all hosts share CPU, disk and page cache; load average at start $load_start)"
  echo "makuo revision $REV (the figures below come from binaries built from it); receivers' directories on $FS; LAB_OFFLOAD=$OFFLOAD; BENCH_RUNS=$RUNS runs of each case: seconds = their median, spread = fastest-slowest"
  echo "members count the sender: $((SEG_R + 1)) members = $SEG_N segments of $SEG_P, the sender one of segment 1's, $SEG_R receivers"
  echo "segments: $SEG_N x $SEG_P behind a router without multicast routing (lab.sh routed-up, LAB_MROUTE=off), router egress into each segment tbf ${SEG_MBIT} Mbit/s, segments unshaped;"
  echo "  makuo -m $GROUP --datagram-size $DGRAM --segment segS, relay candidates hosts 2 and 3 of each segment (--relay-peers: the other segments' candidates); rsync-par from the sender to the $SEG_R others"
  echo "oneseg: one segment of $((ONESEG_RECEIVERS + 1)) members ($ONESEG_RECEIVERS receivers), then one of $((ONESEG_ALL + 1)) (the routed lab's daemons on the same CPUs, no relays), the sender's egress tbf ${SEG_MBIT} Mbit/s (the link into the segment), makuo -m $GROUP --datagram-size $DGRAM"
  echo "unicast: one bridge dropping every multicast frame (LAB_NOMCAST=1), receivers $UNI_COUNTS (a fresh lab each), makuo --peers-file (every member), sender $([ "$UNI_MBIT" = 0 ] && echo unshaped || echo "shaped to $UNI_MBIT Mbit/s"); rsync-par to the same receivers"
  echo "every run: cold (receivers emptied), daemons up, msync (or rsync) from the sender timed, then every receiver's tree compared with the sender's (names, modes, sizes, mtimes, contents)"
  echo "wire MiB = sender eth0 tx bytes; into segS MiB = the router's ethS tx bytes (routed lab only); CPU s: send = makuosan on h1 or the rsync clients, recv = the busiest receiver"
  echo
}

print_rows() {
  {
    echo "scenario|tool|shaped|members|receivers|seconds|spread|MiB/s|wire MiB|into seg1 MiB|into seg2 MiB|into seg3 MiB|send CPU s|recv CPU s|send RSS MiB|recv RSS MiB|correct"
    printf '%s\n' "${ROWS[@]}" | awk -F'|' -v OFS='|' '{
      print $1, $2, $3, $4 + 1, $4, $5, $6, $7, $8, ($15 == "" ? "-" : $15), ($16 == "" ? "-" : $16), ($17 == "" ? "-" : $17),
        $9, $10, $12, $13, $14 }'
  } | table 4 16
  echo
}

# link_ratio MIB BYTES: MIB (MiB) over BYTES, 3 decimals.
link_ratio() { awk -v m="$1" -v b="$2" 'BEGIN { printf "%.3f", m * 1048576 / b }'; }

# print_links: every routed-lab row's bytes on each link over the payload.
print_links() {
  local set tool row s mib
  {
    echo "set|tool|into seg1|into seg2|into seg3"
    for set in $SETS; do
      for tool in makuo rsync-par; do
        row=$(field "segments:${LABEL[$set]}-cold" "$tool" "${SEG_MBIT}M-links" "$SEG_R" "$F_OK")
        [ -n "$row" ] || continue
        local line="${LABEL[$set]}|$tool"
        for ((s = 0; s < SEG_N; s++)); do
          mib=$(field "segments:${LABEL[$set]}-cold" "$tool" "${SEG_MBIT}M-links" "$SEG_R" $((F_LINKS + s)))
          line="$line|$mib MiB = $(link_ratio "$mib" "${BYTES[$set]}") x payload"
        done
        echo "$line"
      done
    done
  } | {
    echo "router egress per link, medians of the runs (payload: the set's bytes; seg1 is the sender's: answers and heartbeats from the others):"
    table 0 0 | sed 's/^/  /'
  }
  echo
}

# secs_ratio NAME GOAL OP LIMIT ROW ROW: the target line of the first
# row's seconds over the second's, each ROW four words: scenario, tool,
# shaped, receivers.
secs_ratio() {
  local name=$1 goal=$2 op=$3 limit=$4 num den x
  shift 4
  if get num "$1" "$2" "$3" "$4" && get den "$5" "$6" "$7" "$8"; then
    x=$(ratio "$num" "$den")
    target "$name" "$goal" "$op" "$limit" "$x" "$num s / $den s = $x"
  else
    target "$name" "$goal" "$op" "$limit" "" "$WHY"
  fi
}

# target_lines: the lines of the targets block.
target_lines() {
  local set l r x lk s name links=${SEG_MBIT}M-links uni
  uni=$(shaped_name "$UNI_MBIT")
  for set in $SETS; do
    l=${LABEL[$set]}-cold
    secs_ratio "$l: $((SEG_R + 1)) members over $SEG_N segments / $((ONESEG_RECEIVERS + 1)) in one segment, ${SEG_MBIT}M" \
      "<= 1.2" le 1.2 "segments:$l" makuo "$links" "$SEG_R" "oneseg:$l" makuo "${SEG_MBIT}M" "$ONESEG_RECEIVERS"
    secs_ratio "$l: $((SEG_R + 1)) members over $SEG_N segments / $((ONESEG_ALL + 1)) in one segment, ${SEG_MBIT}M (lab check: no relays, same CPUs)" \
      "<= 1.2 (not the issue's)" le 1.2 "segments:$l" makuo "$links" "$SEG_R" "oneseg:$l" makuo "${SEG_MBIT}M" "$ONESEG_ALL"
    for ((s = 2; s <= SEG_N; s++)); do
      name="$l: bytes on the link into segment $s / payload, makuo"
      if get lk "segments:$l" makuo "$links" "$SEG_R" $((F_LINKS + s - 1)); then
        x=$(link_ratio "$lk" "${BYTES[$set]}")
        target "$name" "once (<= $LINK_ONCE)" le "$LINK_ONCE" "$x" "$lk MiB / $(awk -v b="${BYTES[$set]}" 'BEGIN { printf "%.2f", b / 1048576 }') MiB = $x"
      else
        target "$name" "once (<= $LINK_ONCE)" le "$LINK_ONCE" "" "$WHY"
      fi
    done
    secs_ratio "$l: rsync-par / makuo, $((SEG_R + 1)) members over $SEG_N segments" "none set (> 1: makuo ahead)" gt 1 \
      "segments:$l" rsync-par "$links" "$SEG_R" "segments:$l" makuo "$links" "$SEG_R"
    for r in $UNI_COUNTS; do
      secs_ratio "$l: rsync-par / makuo unicast, $r receivers, $uni" "none set (> 1: makuo ahead)" gt 1 \
        "unicast:$l" rsync-par "$uni" "$r" "unicast:$l" makuo "$uni" "$r"
    done
  done
}

print_targets() {
  {
    echo "target|measured|goal|verdict"
    target_lines
  } | {
    echo "targets (issue 15), makuo revision $REV$([ "$QUICK" = 1 ] && echo "; BENCH_QUICK=1: small sets, so fixed costs weigh more than the targets assume")":
    table 0 0 | sed 's/^/  /'
  }
  echo
}

# --- the runs ----------------------------------------------------------------

bench_prereqs
command -v nft >/dev/null || die "nft is missing (the unicast lab drops multicast with nftables)"
command -v curl >/dev/null || die "curl is missing (the relays' counters are read from /metrics)"
maxr=$SEG_R
for r in $UNI_COUNTS; do [ "$r" -le "$maxr" ] || maxr=$r; done
# One copy of the larger set per receiver of the largest lab, and slack.
need=$((maxr * (F256_BYTES > F4K_N * 8192 ? F256_BYTES : F4K_N * 8192)))
rx_fs $((need + need / 8 + (64 << 20)))
bench_build

start_time=$SECONDS
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for set in $SETS; do gen_data "$set"; done
for l in segments oneseg unicast; do
  if [[ " $LABS " == *" $l "* ]]; then "run_$l"; fi
done
total_time=$((SECONDS - start_time))

print_header
print_rows
print_links
print_targets
echo "total benchmark time: $total_time s"
if [ "${#PROBLEMS[@]}" -gt 0 ]; then
  echo
  echo "PROBLEMS (${#PROBLEMS[@]}):"
  printf '  %s\n' "${PROBLEMS[@]}"
fi
