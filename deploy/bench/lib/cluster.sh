# shellcheck shell=bash
# cluster.sh, sourced by transfer.sh and segments.sh: the labs (a
# makuosan on every host, an rsync daemon and, when uftp is among the
# tools, a uftpd on every receiver), shaping, the sender's and the
# router's counters, and the per-process CPU and memory readings.

stop_cluster() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=() MK_PIDS=() MK_LOGS=() RS_PIDS=() UF_PIDS=() ADDRS=() DEAD=()
  "$lab" down "$LAB"
  NHOSTS=0 SEGS=0
}

# host_args I: HOST_ARGS = the makuosan flags of host I beyond those every
# host gets; none here, a script that sources this file may redefine it.
host_args() { HOST_ARGS=(); }

# is_proc PID NAME: PID runs NAME (ip netns exec execs its command, so $! is
# the daemon itself, whose /proc the CPU and RSS columns read).
is_proc() {
  local comm=""
  read -r comm <"/proc/$1/comm" 2>/dev/null || true
  [ "$comm" = "$2" ]
}

# start_cluster RECEIVERS: a fresh lab of 1 sender + RECEIVERS receivers
# (new state directories, receivers' directories empty; the sender keeps its
# data), a makuosan on each host, an rsync daemon on each receiver and,
# with USE_UFTP=1, a uftpd on each receiver; waits until the sender sees
# every member and every makuosan has indexed its base. With ROUTED="S P"
# the lab is S segments of P hosts (S * P = RECEIVERS + 1) behind a router
# that forwards unicast only (lab.sh routed-up, LAB_MROUTE=off), host I
# being lab.sh's hI, the sender host 1 of segment 1; with NOMCAST=1 its
# bridges drop multicast (LAB_NOMCAST=1). host_args adds each host's own
# makuosan flags.
start_cluster() {
  local r=$1 n=$(($1 + 1)) offload=${2:-$OFFLOAD} i a per=0
  local dgram=() kind="1 sender + $1 receivers"
  [ "$MTU" -ge 9000 ] && dgram=(--datagram-size $((MTU - 28)))
  [ "$NHOSTS" = 0 ] || stop_cluster
  LABNO=$((LABNO + 1))
  [ -z "$ROUTED" ] || read -r SEGS per <<<"$ROUTED"
  [ "$SEGS" = 0 ] || [ $((SEGS * per)) = "$n" ] || die "ROUTED=$ROUTED does not hold 1 + $r hosts"
  [ "$SEGS" = 0 ] || kind="$SEGS segments of $per hosts (1 sender + $r receivers) behind a router without multicast routing"
  [ "$NOMCAST" = 0 ] || kind="$kind, multicast dropped"
  log "lab $LAB: $kind, MTU $MTU, LAB_OFFLOAD=$offload${dgram[*]:+, makuosan ${dgram[*]}}"
  if [ "$SEGS" = 0 ]; then
    LAB_MTU=$MTU LAB_OFFLOAD=$offload LAB_NOMCAST=$NOMCAST "$lab" up "$LAB" "$n"
  else
    LAB_MTU=$MTU LAB_OFFLOAD=$offload LAB_NOMCAST=$NOMCAST LAB_MROUTE=off "$lab" routed-up "$LAB" "$SEGS" "$per"
  fi
  NHOSTS=$n
  NS1=$LAB-h1
  SHAPED=none
  for ((i = 1; i <= n; i++)); do
    if [ "$SEGS" = 0 ]; then
      a=$("$lab" addr "$i")
    else
      a=$("$lab" routed-addr $(((i - 1) / per + 1)) $(((i - 1) % per + 1)))
    fi
    ADDRS[i]=$a
    # Stale state would make a makuosan push what changed while it was down.
    if [ "$i" -gt 1 ] && [ "$FS" != disk ] && [ ! -L "$TMP/h$i" ]; then
      mkdir -p "$TMP/rx/h$i"
      [ "$FS" = tmpfs ] || mount_rx_host "$i"
      ln -s "$TMP/rx/h$i" "$TMP/h$i"
    fi
    rm -rf "$TMP/h$i/state" "$TMP/h$i/rsync" "$TMP/h$i/floor" "$TMP/h$i/uftp"
    [ "$i" = 1 ] || rm -rf "$TMP/h$i/base"
    mkdir -p "$TMP/h$i/base" "$TMP/h$i/state" "$TMP/h$i/rsync"
    [ "$i" = 1 ] || mkdir -p "$TMP/h$i/floor"
    MK_LOGS[i]=$LOGS/lab$LABNO-makuosan-h$i.log
  done
  # Every address is known now: a host's flags may name the others.
  for ((i = 1; i <= n; i++)); do
    a=${ADDRS[i]}
    host_args "$i"
    ip netns exec "$LAB-h$i" "$BIN/makuosan" -n -b "$TMP/h$i/base" --state-dir "$TMP/h$i/state" -U "$TMP/h$i/state/makuosan.sock" \
      -i "$a" --hostname "h$i" --metrics-listen "$a:9758" "${dgram[@]}" "${HOST_ARGS[@]}" "${EXTRA_ARGS[@]}" >"${MK_LOGS[i]}" 2>&1 &
    PIDS+=("$!")
    MK_PIDS[i]=$!
    [ "$i" -gt 1 ] || continue
    cat >"$TMP/h$i/rsyncd.conf" <<CONF
use chroot = no
uid = root
gid = root
pid file = $TMP/h$i/rsyncd.pid
log file = $LOGS/rsyncd-h$i.log
[base]
    path = $TMP/h$i/rsync
    read only = no
CONF
    rm -f "$TMP/h$i/rsyncd.pid"
    ip netns exec "$LAB-h$i" rsync --daemon --no-detach --config="$TMP/h$i/rsyncd.conf" \
      --address="$a" >>"$LOGS/rsyncd-h$i.out" 2>&1 &
    PIDS+=("$!")
    RS_PIDS[i]=$!
    [ "$USE_UFTP" = 1 ] || continue
    # Straight into its directory: with a temp directory (-T) uftpd
    # checks the temp directory in sync mode, and a resync sends
    # everything again.
    mkdir -p "$TMP/h$i/uftp"
    ip netns exec "$LAB-h$i" uftpd -d -I eth0 -D "$TMP/h$i/uftp" -x 1 \
      >"$LOGS/lab$LABNO-uftpd-h$i.log" 2>&1 &
    PIDS+=("$!")
    UF_PIDS[i]=$!
  done
  local deadline=$((SECONDS + 60)) out=""
  while :; do
    # Every lab daemon has its own control socket (a path is shared by
    # every namespace), so msync is told where to go. Members are
    # counted by their lines: msync's Total left out the local daemon
    # before makuo 0.1 (the original's count) and counted it earlier.
    out=$(ip netns exec "$NS1" "$BIN/msync" -c "unix:$TMP/h1/state/makuosan.sock" --members 2>&1 || true)
    [ "$(grep -cE '^h[0-9]+ ' <<<"$out")" = "$n" ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$out" >&2
      die "the sender does not see $n members after 60 s (logs: $LOGS, KEEP=1 keeps them)"
    fi
    sleep 0.5
  done
  for ((i = 1; i <= n; i++)); do
    is_proc "${MK_PIDS[i]}" makuosan || die "pid ${MK_PIDS[i]} is not makuosan on h$i"
    deadline=$((SECONDS + 120))
    until grep -q 'base directory indexed' "${MK_LOGS[i]}"; do
      [ "$SECONDS" -lt "$deadline" ] || die "makuosan on h$i did not index its base in 120 s (${MK_LOGS[i]})"
      sleep 0.2
    done
    [ "$i" -gt 1 ] || continue
    is_proc "${RS_PIDS[i]}" rsync || die "pid ${RS_PIDS[i]} is not the rsync daemon on h$i"
    if [ "$USE_UFTP" = 1 ]; then is_proc "${UF_PIDS[i]}" uftpd || die "pid ${UF_PIDS[i]} is not uftpd on h$i"; fi
    deadline=$((SECONDS + 15))
    until ip netns exec "$NS1" rsync "rsync://${ADDRS[i]}/" >/dev/null 2>&1; do
      [ "$SECONDS" -lt "$deadline" ] || die "rsync daemon on h$i does not answer (see $LOGS/rsyncd-h$i.*)"
      sleep 0.2
    done
  done
  log "cluster up: $n makuosan members, $r rsync daemons"
}

# set_shape MBIT: shape the sender's egress to MBIT Mbit/s, 0 removes it.
set_shape() {
  "$lab" shape "$LAB" 1 "$1"
  if [ "$1" = 0 ]; then SHAPED=none; else SHAPED=${1}M; fi
}

# shape_links MBIT: in a routed lab, shape the router's egress into every
# segment to MBIT Mbit/s (lab.sh shape-link), 0 removes it.
shape_links() {
  local s
  for ((s = 1; s <= SEGS; s++)); do "$lab" shape-link "$LAB" "$s" "$1"; done
  if [ "$1" = 0 ]; then SHAPED=none; else SHAPED=${1}M-links; fi
}

tx_bytes() { ip netns exec "$NS1" cat /sys/class/net/eth0/statistics/tx_bytes; }

# link_tx: in a routed lab, the bytes the router has sent into each
# segment so far (its ethS tx_bytes), "S1 S2 ..."; nothing in a flat lab.
link_tx() {
  local s out=""
  for ((s = 1; s <= SEGS; s++)); do out="$out $(ip netns exec "$LAB-rt" cat "/sys/class/net/eth$s/statistics/tx_bytes")"; done
  echo "$out"
}

# rx_drops: datagrams the receivers dropped so far, summed, as "KERNEL
# QUEUE": UDP receive-buffer overflows (RcvbufErrors) and makuosan's
# full queues (makuosan_transport_datagrams_dropped_total{reason=
# "queue_full"}). Where repairs come from when no loss is injected.
rx_drops() {
  local i k=0 q=0 v
  for ((i = 2; i <= NHOSTS; i++)); do
    v=$(ip netns exec "$LAB-h$i" awk '/^Udp:/ { if (!h) { for (j = 1; j <= NF; j++) n[j] = $j; h = 1 }
      else for (j = 1; j <= NF; j++) if (n[j] == "RcvbufErrors") print $j }' /proc/net/snmp)
    k=$((k + ${v:-0}))
    v=$(ip netns exec "$NS1" curl -s --max-time 2 "http://${ADDRS[i]}:9758/metrics" |
      awk '/^makuosan_transport_datagrams_dropped_total\{reason="queue_full"\}/ { printf "%d", $2 }' || true)
    q=$((q + ${v:-0}))
  done
  echo "$k $q"
}
# qdisc_drops: the packets the sender's qdiscs and, in a routed lab, the
# router's have dropped so far, summed.
qdisc_drops() {
  {
    ip netns exec "$NS1" tc -s qdisc show dev eth0
    [ "$SEGS" = 0 ] || ip netns exec "$LAB-rt" tc -s qdisc show
  } | grep -o 'dropped [0-9]*' | awk '{ s += $2 } END { print s + 0 }'
}

# check_daemons WHEN: report, once, every makuosan that is no longer running.
check_daemons() {
  local i st
  for ((i = 1; i <= NHOSTS; i++)); do
    [ -z "${DEAD[i]:-}" ] || continue
    kill -0 "${MK_PIDS[i]}" 2>/dev/null && continue
    DEAD[i]=1
    st=$(wait "${MK_PIDS[i]}" 2>/dev/null; echo $?)
    printf '\n!!! DAEMON DIED: makuosan on h%s (pid %s, exit status %s), noticed after %s; last log lines (%s):\n' \
      "$i" "${MK_PIDS[i]}" "$st" "$1" "${MK_LOGS[i]}" >&2
    tail -n 40 "${MK_LOGS[i]}" | sed 's/^/    /' >&2
    PROBLEMS+=("DAEMON DIED makuosan h$i exit status $st, noticed after $1 (log ${MK_LOGS[i]})")
  done
}

# --- per-process CPU and memory ----------------------------------------------
# Builtins only below: a forked helper would be a reaped child of this shell,
# and this shell's reaped children's CPU is what the rsync rows measure.

# proc_ticks PID F1 F2: TICKS = fields F1 + F2 of /proc/PID/stat (numbered as
# in proc(5)), empty when PID is gone.
proc_ticks() {
  local line="" f
  TICKS=""
  read -r line 2>/dev/null <"/proc/$1/stat" || true
  [ -n "$line" ] || return 0
  read -r -a f <<<"${line##*) }" # field 3 (state) onwards
  TICKS=$((f[$2 - 3] + f[$3 - 3]))
}

# vm_hwm PID: HWM = VmHWM of PID in KiB, empty when PID is gone.
vm_hwm() {
  local k v rest
  HWM=""
  [ -r "/proc/$1/status" ] || return 0
  while read -r k v rest; do
    if [ "$k" = VmHWM: ]; then HWM=$v; return 0; fi
  done 2>/dev/null <"/proc/$1/status" || true
}

# reap_wait PID: until PID (an rsync daemon) has no child processes, so that
# the connection it served is in its cutime/cstime (at most 10 s).
reap_wait() {
  local i kids
  for ((i = 0; i < 100; i++)); do
    kids=""
    read -r kids 2>/dev/null <"/proc/$1/task/$1/children" || true
    [ -n "$kids" ] || return 0
    sleep 0.1
  done
}

# cpu_snapshot ARRAY TOOL WHEN: ARRAY[1] the sending side's CPU, ARRAY[I]
# receiver I's, in clock ticks. makuo: each makuosan's utime+stime. rsync:
# this shell's cutime+cstime (the rsync clients it ran and reaped) and each
# rsync daemon's cutime+cstime (its reaped per-connection children). uftp:
# this shell's cutime+cstime (the uftp client) and each uftpd's
# utime+stime. The shell's own figure is read last before a run and first
# after it.
# shellcheck disable=SC2034 # snap names the caller's array
cpu_snapshot() {
  local -n snap=$1
  local i
  snap=()
  if [ "$2" = makuo ]; then
    for ((i = 1; i <= NHOSTS; i++)); do
      proc_ticks "${MK_PIDS[i]}" 14 15
      snap[i]=$TICKS
    done
    return
  fi
  if [ "$3" = after ]; then proc_ticks $$ 16 17 && snap[1]=$TICKS; fi
  for ((i = 2; i <= NHOSTS; i++)); do
    if [ "$2" = uftp ]; then
      proc_ticks "${UF_PIDS[i]}" 14 15
      snap[i]=$TICKS
      continue
    fi
    reap_wait "${RS_PIDS[i]}"
    proc_ticks "${RS_PIDS[i]}" 16 17
    snap[i]=$TICKS
  done
  if [ "$3" = before ]; then proc_ticks $$ 16 17 && snap[1]=$TICKS; fi
}

