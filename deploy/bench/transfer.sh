#!/usr/bin/env bash
# transfer.sh: transfer benchmark of makuo against an rsync fan-out at the
# scales of issue 7, in network-namespace labs (deploy/lab/lab.sh). Prints a
# table and a targets block; asserts nothing about timing. Needs root. See
# deploy/bench/README.md for the scenarios, the knobs and the columns.
#
#   deploy/bench/transfer.sh                    full run (45-60 minutes on 2 CPUs, estimated)
#   BENCH_QUICK=1 deploy/bench/transfer.sh      smoke run, small sets (3-4 minutes)
#   BENCH_SCENARIOS="big scale" ...             a subset of: big mixed small huge scale loss
#   KEEP=1 ...                                  keep the temp dir (logs)
#
# Other knobs: BENCH_MTU, BENCH_SHAPE_MBIT, BENCH_SCALE, BENCH_SCALE_MBIT,
# BENCH_FS, BENCH_OFFLOAD, BENCH_MAKUOSAN_ARGS, BENCH_RUN_TIMEOUT, BENCH_TOOLS,
# BENCH_RATES, GO.
set -euo pipefail

die() { echo "transfer.sh: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"

here=$(dirname "$(realpath "$0")")
repo=$(realpath "$here/../..")
lab="$repo/deploy/lab/lab.sh"
[ -x "$lab" ] || die "lab script not found: $lab"

# --- knobs -------------------------------------------------------------------

QUICK=${BENCH_QUICK:-0}
KEEP=${KEEP:-0}
SCENARIOS=${BENCH_SCENARIOS:-big mixed small huge scale loss}
MTU=${BENCH_MTU:-1500}
SHAPE_MBIT=${BENCH_SHAPE_MBIT:-1000}
SCALE=${BENCH_SCALE:-2 4 8 16}
SCALE_MBIT=${BENCH_SCALE_MBIT:-300}
RUN_TIMEOUT=${BENCH_RUN_TIMEOUT:-900}
# BENCH_TOOLS and BENCH_RATES narrow the set runs (big mixed small huge) for
# quicker iterations: tools out of makuo rsync-seq rsync-par, rates in
# Mbit/s with 0 for unshaped.
TOOLS=${BENCH_TOOLS:-makuo rsync-seq rsync-par}
RATES=${BENCH_RATES:-0 $SHAPE_MBIT}
# BENCH_FS=tmpfs (default) keeps the receivers' directories in memory: on
# one machine every receiver would otherwise write to the same disk, and
# makuo's fsyncs make that disk the bound (about 400 MB/s here, for all
# receivers together), where real receivers each have their own. disk
# measures with that shared disk.
FS=${BENCH_FS:-tmpfs}
# BENCH_OFFLOAD=1 (default) builds the labs with LAB_OFFLOAD=1: offloaded
# sends stay whole up to the receiving socket, as NIC segmentation and GRO
# would make them cost on real hosts; the loss runs always use per-packet
# labs, where loss hits single datagrams as on a wire.
OFFLOAD=${BENCH_OFFLOAD:-1}
# BENCH_MAKUOSAN_ARGS: extra flags for every makuosan (e.g. "-d 1").
read -r -a EXTRA_ARGS <<<"${BENCH_MAKUOSAN_ARGS:-}"
RECEIVERS=4 # the main lab: 1 sender + 4 receivers
LOSS_PCT=5  # UDP loss at every receiver in the loss runs
SMALL_MAX=$((64 << 10))

posint() { if ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then die "$1 must be a positive integer: '$2'"; fi; }
posint BENCH_MTU "$MTU"
posint BENCH_SHAPE_MBIT "$SHAPE_MBIT"
posint BENCH_SCALE_MBIT "$SCALE_MBIT"
posint BENCH_RUN_TIMEOUT "$RUN_TIMEOUT"
case $FS in tmpfs | disk) ;; *) die "BENCH_FS must be tmpfs or disk: $FS" ;; esac
case $OFFLOAD in 0 | 1) ;; *) die "BENCH_OFFLOAD must be 0 or 1: $OFFLOAD" ;; esac
[ "$MTU" -ge 1280 ] || die "BENCH_MTU must be at least 1280: $MTU"
for r in $SCALE; do
  posint "a BENCH_SCALE receiver count" "$r"
  [ "$r" -le 199 ] || die "BENCH_SCALE counts must be at most 199 (lab.sh hosts 200): $r"
done
for t in $TOOLS; do
  case $t in makuo | rsync-seq | rsync-par) ;; *) die "unknown tool in BENCH_TOOLS: $t (want some of: makuo rsync-seq rsync-par)" ;; esac
done
for r in $RATES; do
  [[ $r =~ ^(0|[1-9][0-9]*)$ ]] || die "BENCH_RATES must hold Mbit/s figures, 0 for unshaped: '$r'"
done
for s in $SCENARIOS; do
  case $s in
    big | mixed | small | huge | scale | loss) ;;
    *) die "unknown scenario in BENCH_SCENARIOS: $s (want some of: big mixed small huge scale loss)" ;;
  esac
done
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }
if want scale && [ -z "${SCALE// /}" ]; then die "BENCH_SCALE is empty"; fi

if [ "$QUICK" = 1 ]; then
  BIG_BYTES=$((64 << 20)) HUGE_BYTES=$((128 << 20)) LOSS_BYTES=$((32 << 20))
  MIXED_N=1000 MIXED_DIRS=10
  SMALL_N=5000 SMALL_DIRS=50
else
  BIG_BYTES=$((1 << 30)) HUGE_BYTES=$((4 << 30)) LOSS_BYTES=$((256 << 20))
  MIXED_N=10000 MIXED_DIRS=100
  SMALL_N=100000 SMALL_DIRS=1000
fi

# size_label BYTES: 64MiB, 1GiB.
size_label() {
  local m=$(($1 >> 20))
  if [ "$m" -ge 1024 ] && [ $((m % 1024)) = 0 ]; then echo "$((m / 1024))GiB"; else echo "${m}MiB"; fi
}
# The data sets; each lives in a file or directory of its own name under the
# sender's base. "scale" is the big file again, named apart so its rows
# never collide with the main lab's.
declare -A LABEL=(
  [big]="big:$(size_label "$BIG_BYTES")"
  [mixed]="mixed:${MIXED_N}f"
  [small]="small:${SMALL_N}f"
  [huge]="huge:$(size_label "$HUGE_BYTES")"
  [scale]="scale:$(size_label "$BIG_BYTES")"
  [loss]="loss${LOSS_PCT}%:$(size_label "$LOSS_BYTES")"
)
declare -A BYTES=() # BYTES[SET]: the generated set's size, the payload of a cold run

LAB=$(printf 'bench%s' "$$" | cut -c1-12)
TMP=$(mktemp -d /tmp/makuo-bench.XXXXXX)
BIN=$TMP/bin
LOGS=$TMP/logs
SRC=$TMP/h1/base
mkdir -p "$BIN" "$LOGS" "$SRC"

PIDS=()     # makuosan and rsync daemons started by this script
MK_PIDS=()  # MK_PIDS[I]: makuosan pid of host I
MK_LOGS=()  # MK_LOGS[I]: its log
RS_PIDS=()  # RS_PIDS[I]: rsync daemon pid of receiver I
ADDRS=()    # ADDRS[I]: lab address of host I
DEAD=()     # DEAD[I]: 1 once host I's makuosan was reported dead
NHOSTS=0    # hosts in the current lab (1 sender + receivers)
LABNO=0     # labs started so far
NS1=""      # the sender's namespace
SHAPED=none # the sender's egress shaping: none or NM
ROWS=()     # table rows
PROBLEMS=() # failures and mismatches, printed after the table
RUN_NO=0
MODGEN=0 # last benchdata modify generation: every mod1 run changes files anew

cleanup() {
  local rc=$? pid
  set +e
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  "$lab" down "$LAB" 2>/dev/null
  if mountpoint -q "$TMP/rx" 2>/dev/null; then umount "$TMP/rx" 2>/dev/null || umount -l "$TMP/rx"; fi
  if [ "$KEEP" = 1 ]; then
    echo "kept $TMP (logs in $LOGS)"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[%s] %s\n' "$(date +%T)" "$*"; }

# --- prerequisites -----------------------------------------------------------

if ! command -v rsync >/dev/null 2>&1; then
  log "installing rsync"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq rsync >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq rsync >/dev/null; }
fi
command -v rsync >/dev/null || die "rsync is missing and could not be installed"
for t in ip tc b2sum timeout getconf; do
  command -v "$t" >/dev/null || die "$t is missing"
done
if want loss; then command -v nft >/dev/null || die "nft is missing (the loss scenario needs nftables)"; fi
GO=${GO:-go}
command -v "$GO" >/dev/null || GO=/usr/local/go/bin/go
command -v "$GO" >/dev/null || die "go not found (set GO=...)"
CLK_TCK=$(getconf CLK_TCK)

# The receivers' tmpfs: room for 4 copies of the huge file or 16 of the big
# one, whichever the chosen scenarios need, plus slack.
if [ "$FS" = tmpfs ]; then
  need=$((64 << 20))
  declare -A SET_BYTES=([big]=$BIG_BYTES [huge]=$HUGE_BYTES [loss]=$LOSS_BYTES
    [mixed]=$((MIXED_N * (512 << 10) / 20)) [small]=$((SMALL_N * (SMALL_MAX / 2 + 4096))))
  for s in big mixed small huge loss; do
    if want "$s"; then
      b=$((RECEIVERS * SET_BYTES[$s]))
      need=$((need > b ? need : b))
    fi
  done
  if want scale; then
    maxr=0
    for r in $SCALE; do [ "$r" -le "$maxr" ] || maxr=$r; done
    need=$((need > maxr * BIG_BYTES ? need : maxr * BIG_BYTES))
  fi
  need=$((need + need / 8))
  avail=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo) # KiB
  avail=$((avail << 10))
  [ "$need" -le $((avail - (2 << 30))) ] ||
    die "BENCH_FS=tmpfs needs $((need >> 20)) MiB of memory for the receivers, $((avail >> 20)) MiB available: use BENCH_FS=disk or fewer scenarios"
  mkdir -p "$TMP/rx"
  mount -t tmpfs -o size="$need" makuo-bench "$TMP/rx" || die "cannot mount a tmpfs on $TMP/rx"
fi

log "building makuosan, msync and benchdata into $BIN"
(cd "$repo" && "$GO" build -o "$BIN/" ./cmd/makuosan ./cmd/msync ./deploy/bench/benchdata)
# The revision the binaries were built from (read-only git queries; "+dirty"
# when tracked files differ from it).
REV=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$REV" != unknown ] &&
  [ -n "$(git -C "$repo" --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  REV="$REV+dirty"
fi
log "makuo revision $REV"

# --- data sets ---------------------------------------------------------------

# gen_data SET: write SET under the sender's base (just before its runs, so
# at most one set takes disk space at a time) and flush it to disk.
gen_data() {
  local set=$1 t0=$SECONDS
  case $set in
    big | scale) "$BIN/benchdata" file "$SRC/$set" "$BIG_BYTES" ;;
    huge) "$BIN/benchdata" file "$SRC/$set" "$HUGE_BYTES" ;;
    loss) "$BIN/benchdata" file "$SRC/$set" "$LOSS_BYTES" ;;
    mixed) "$BIN/benchdata" mixed "$SRC/$set" "$MIXED_N" "$MIXED_DIRS" ;;
    small) "$BIN/benchdata" small "$SRC/$set" "$SMALL_N" "$SMALL_DIRS" "$SMALL_MAX" ;;
  esac
  BYTES[$set]=$(find "$SRC/$set" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
  sync
  log "generated ${LABEL[$set]}: $(find "$SRC/$set" -type f | wc -l) files, ${BYTES[$set]} bytes, $((SECONDS - t0)) s"
}

# drop_data SET: remove SET from the sender and everything from the receivers.
drop_data() {
  rm -rf "${SRC:?}/$1"
  clear_receivers base
  clear_receivers rsync
}

# tree_sum ROOT REL MODE: one hash over the names, types, modes, sizes and
# mtimes (whole seconds) of ROOT/REL and, with MODE content, the contents.
tree_sum() {
  (
    cd "$1" || exit 1
    [ -e "$2" ] || { echo missing; exit 0; }
    find "$2" \( -type f -printf 'f %p %m %s %T@\n' \) -o \( -type d -printf 'd %p %m\n' \) \
      -o -printf '%y %p %m %l\n' | sed -E 's/\.[0-9]+$//' | LC_ALL=C sort
    if [ "$3" = content ]; then
      find "$2" -type f -print0 | LC_ALL=C sort -z | xargs -0 -r b2sum
    fi
  ) | b2sum | cut -c1-32
}

# check_trees DIR SET MODE: hash the sender's SET and every receiver's
# DIR/SET at once; BAD lists the receivers that differ.
check_trees() {
  local dir=$1 set=$2 mode=$3 i p ref got pids=()
  tree_sum "$SRC" "$set" "$mode" >"$TMP/sum.h1" &
  pids+=("$!")
  for ((i = 2; i <= NHOSTS; i++)); do
    tree_sum "$TMP/h$i/$dir" "$set" "$mode" >"$TMP/sum.h$i" &
    pids+=("$!")
  done
  for p in "${pids[@]}"; do wait "$p" || true; done
  ref=$(<"$TMP/sum.h1")
  BAD=""
  for ((i = 2; i <= NHOSTS; i++)); do
    got=$(<"$TMP/sum.h$i")
    [ -n "$got" ] && [ "$got" = "$ref" ] || BAD="$BAD h$i"
  done
}

# clear_receivers DIR: empty DIR (base or rsync) on every receiver.
clear_receivers() {
  local i pids=()
  for ((i = 2; i <= NHOSTS; i++)); do
    find "$TMP/h$i/$1" -mindepth 1 -delete &
    pids+=("$!")
  done
  for i in "${pids[@]}"; do wait "$i"; done
}

# --- cluster -----------------------------------------------------------------

stop_cluster() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=() MK_PIDS=() MK_LOGS=() RS_PIDS=() ADDRS=() DEAD=()
  "$lab" down "$LAB"
  NHOSTS=0
}

# is_proc PID NAME: PID runs NAME (ip netns exec execs its command, so $! is
# the daemon itself, whose /proc the CPU and RSS columns read).
is_proc() {
  local comm=""
  read -r comm <"/proc/$1/comm" 2>/dev/null || true
  [ "$comm" = "$2" ]
}

# start_cluster RECEIVERS: a fresh lab of 1 sender + RECEIVERS receivers
# (new state directories, receivers' directories empty; the sender keeps its
# data), a makuosan on each host and an rsync daemon on each receiver; waits
# until the sender sees every member and every makuosan has indexed its base.
start_cluster() {
  local r=$1 n=$(($1 + 1)) offload=${2:-$OFFLOAD} i a
  local dgram=()
  [ "$MTU" -ge 9000 ] && dgram=(--datagram-size $((MTU - 28)))
  [ "$NHOSTS" = 0 ] || stop_cluster
  LABNO=$((LABNO + 1))
  log "lab $LAB: 1 sender + $r receivers, MTU $MTU, LAB_OFFLOAD=$offload${dgram[*]:+, makuosan ${dgram[*]}}"
  LAB_MTU=$MTU LAB_OFFLOAD=$offload "$lab" up "$LAB" "$n"
  NHOSTS=$n
  NS1=$LAB-h1
  SHAPED=none
  for ((i = 1; i <= n; i++)); do
    a=$("$lab" addr "$i")
    ADDRS[i]=$a
    # Stale state would make a makuosan push what changed while it was down.
    if [ "$i" -gt 1 ] && [ "$FS" = tmpfs ] && [ ! -L "$TMP/h$i" ]; then
      mkdir -p "$TMP/rx/h$i"
      ln -s "$TMP/rx/h$i" "$TMP/h$i"
    fi
    rm -rf "$TMP/h$i/state" "$TMP/h$i/rsync"
    [ "$i" = 1 ] || rm -rf "$TMP/h$i/base"
    mkdir -p "$TMP/h$i/base" "$TMP/h$i/state" "$TMP/h$i/rsync"
    MK_LOGS[i]=$LOGS/lab$LABNO-makuosan-h$i.log
    ip netns exec "$LAB-h$i" "$BIN/makuosan" -n -b "$TMP/h$i/base" --state-dir "$TMP/h$i/state" -U "$TMP/h$i/state/makuosan.sock" \
      -i "$a" --hostname "h$i" --metrics-listen "$a:9758" "${dgram[@]}" "${EXTRA_ARGS[@]}" >"${MK_LOGS[i]}" 2>&1 &
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

tx_bytes() { ip netns exec "$NS1" cat /sys/class/net/eth0/statistics/tx_bytes; }

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
qdisc_drops() {
  ip netns exec "$NS1" tc -s qdisc show dev eth0 | grep -o 'dropped [0-9]*' |
    awk '{ s += $2 } END { print s + 0 }'
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
# rsync daemon's cutime+cstime (its reaped per-connection children). The
# shell's own figure is read last before a run and first after it.
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
    reap_wait "${RS_PIDS[i]}"
    proc_ticks "${RS_PIDS[i]}" 16 17
    snap[i]=$TICKS
  done
  if [ "$3" = before ]; then proc_ticks $$ 16 17 && snap[1]=$TICKS; fi
}

secs_of_ticks() { awk -v t="$1" -v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }'; }
mib_of_kib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# --- one measured run --------------------------------------------------------

# run_case SET RUN TOOL: one measured run (RUN: cold, resync, mod1 or
# resync2); appends a row to ROWS.
run_case() {
  local set=$1 run=$2 tool=$3 dir=rsync rc=0 i p out modinfo="" ok=yes
  local r=$((NHOSTS - 1)) label="${LABEL[$set]}-$run"
  [ "$tool" = makuo ] && dir=base
  [ "$run" = cold ] && clear_receivers "$dir"
  if [ "$run" = mod1 ]; then
    MODGEN=$((MODGEN + 1))
    modinfo=$("$BIN/benchdata" modify "$SRC/$set" 1 "$MODGEN")
  fi
  sync
  RUN_NO=$((RUN_NO + 1))
  out=$(printf '%s/%03d-%s-%s-%s-%s-%dr.log' "$LOGS" "$RUN_NO" "$set" "$run" "$tool" "$SHAPED" "$r")
  : >"$out"
  local margs=("$SRC/$set")
  [ -d "$SRC/$set" ] && margs=(-r "$SRC/$set")
  if [ "$tool" = makuo ]; then
    # Reset each makuosan's peak RSS (VmHWM) to its current RSS.
    for ((i = 1; i <= NHOSTS; i++)); do echo 5 2>/dev/null >"/proc/${MK_PIDS[i]}/clear_refs" || true; done
  fi

  local tx0 tx1 d0 d1 t0 t1 c0=() c1=() pids=()
  tx0=$(tx_bytes)
  d0=$(qdisc_drops)
  local drops0=(0 0) drops1=(0 0)
  [ "$tool" != makuo ] || read -r -a drops0 <<<"$(rx_drops)"
  cpu_snapshot c0 "$tool" before
  t0=$EPOCHREALTIME
  case $tool in
    makuo)
      timeout "$RUN_TIMEOUT" ip netns exec "$NS1" "$BIN/msync" -c "unix:$TMP/h1/state/makuosan.sock" "${margs[@]}" >"$out" 2>&1 || rc=$?
      ;;
    rsync-seq)
      for ((i = 2; i <= NHOSTS; i++)); do
        timeout "$RUN_TIMEOUT" ip netns exec "$NS1" rsync -a "$SRC/$set" "rsync://${ADDRS[i]}/base/" \
          >>"$out" 2>&1 || rc=$?
      done
      ;;
    rsync-par)
      for ((i = 2; i <= NHOSTS; i++)); do
        timeout "$RUN_TIMEOUT" ip netns exec "$NS1" rsync -a "$SRC/$set" "rsync://${ADDRS[i]}/base/" \
          >>"$out" 2>&1 &
        pids+=("$!")
      done
      for p in "${pids[@]}"; do wait "$p" || rc=$?; done
      ;;
  esac
  t1=$EPOCHREALTIME
  cpu_snapshot c1 "$tool" after
  tx1=$(tx_bytes)
  d1=$(qdisc_drops)
  [ "$tool" != makuo ] || read -r -a drops1 <<<"$(rx_drops)"

  # CPU and RSS columns: the sender, and the maximum over the receivers.
  local scpu=- rcpu=- srss=- rrss=- best=-1 d
  if [ -n "${c0[1]:-}" ] && [ -n "${c1[1]:-}" ]; then scpu=$(secs_of_ticks $((c1[1] - c0[1]))); fi
  for ((i = 2; i <= NHOSTS; i++)); do
    if [ -z "${c0[i]:-}" ] || [ -z "${c1[i]:-}" ]; then continue; fi
    d=$((c1[i] - c0[i]))
    [ "$d" -le "$best" ] || best=$d
  done
  [ "$best" -lt 0 ] || rcpu=$(secs_of_ticks "$best")
  if [ "$tool" = makuo ]; then
    vm_hwm "${MK_PIDS[1]}"
    [ -z "$HWM" ] || srss=$(mib_of_kib "$HWM")
    best=-1
    for ((i = 2; i <= NHOSTS; i++)); do
      vm_hwm "${MK_PIDS[i]}"
      [ -z "$HWM" ] || [ "$HWM" -le "$best" ] || best=$HWM
    done
    [ "$best" -lt 0 ] || rrss=$(mib_of_kib "$best")
  fi

  # Contents after the runs that move data; names, sizes and mtimes after
  # the no-change runs (hashing 100k files five times is slow).
  local mode=content
  case $run in resync*) mode=meta ;; esac
  check_trees "$dir" "$set" "$mode"

  local secs wire rate=-
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  wire=$(awk -v a="$tx0" -v b="$tx1" 'BEGIN { printf "%.2f", (b - a) / 1048576 }')
  if [ "$run" = cold ]; then
    rate=$(awk -v n="${BYTES[$set]}" -v s="$secs" 'BEGIN { if (s > 0) printf "%.1f", n / 1048576 / s; else print "-" }')
  fi
  local what="$label $tool shaped=$SHAPED receivers=$r"
  if [ -n "$BAD" ]; then
    ok=no
    printf '\n!!! MISMATCH: %s: tree differs from the sender on%s (%s check; log %s)\n\n' \
      "$what" "$BAD" "$mode" "$out" >&2
    PROBLEMS+=("MISMATCH $what on$BAD ($mode check)")
  fi
  if [ "$rc" != 0 ]; then
    ok=no
    local why="exit status $rc"
    [ "$rc" = 124 ] && why="TIMEOUT after ${RUN_TIMEOUT}s"
    printf '\n!!! FAILED: %s: %s; last output:\n' "$what" "$why" >&2
    tail -n 5 "$out" | sed 's/^/    /' >&2
    PROBLEMS+=("FAILED $what: $why (log $out)")
  fi
  local extra=""
  [ -z "$modinfo" ] || extra="  $modinfo"
  [ "$tool" != makuo ] || extra="$extra  msync: $(grep -E '^[0-9]+ members, ' "$out" | tail -n 1 || true)"
  [ "$SHAPED" = none ] || extra="$extra  qdisc drops: $((d1 - d0))"
  [ "$tool" != makuo ] || extra="$extra  receiver drops: kernel $((drops1[0] - drops0[0])), queue $((drops1[1] - drops0[1]))"
  log "$(printf '%-22s %-9s %-5s %2dr %7ss %8s MiB wire  cpu %s/%s s  rss %s/%s MiB  correct=%s%s' \
    "$label" "$tool" "$SHAPED" "$r" "$secs" "$wire" "$scpu" "$rcpu" "$srss" "$rrss" "$ok" "$extra")"
  check_daemons "$what"
  [ "$ok" = yes ] || rate=-
  ROWS+=("$label|$tool|$SHAPED|$r|$secs|$rate|$wire|$scpu|$rcpu|$srss|$rrss|$ok")
}

# --- scenarios ---------------------------------------------------------------

# run_set SET: a fresh main lab, SET generated, then for each shaping and
# tool SET's runs in order; SET removed afterwards. The Go runtime keeps
# freed heap for a while, so fresh daemons per set keep one set's peak RSS
# out of the next set's figures.
run_set() {
  local set=$1 mbit tool run runs=(cold resync)
  [ "$set" = small ] && runs=(cold resync mod1 resync2)
  start_cluster "$RECEIVERS"
  gen_data "$set"
  for mbit in $RATES; do
    set_shape "$mbit"
    for tool in $TOOLS; do
      for run in "${runs[@]}"; do run_case "$set" "$run" "$tool"; done
      # Keep one copy per receiver on disk, not one per tool.
      if [ "$tool" = makuo ]; then clear_receivers base; else clear_receivers rsync; fi
    done
  done
  drop_data "$set"
}

# run_loss: makuo, cold, LOSS_PCT% of UDP dropped at every receiver; shaped
# and unshaped.
run_loss() {
  local i
  start_cluster "$RECEIVERS" 0
  gen_data loss
  for ((i = 2; i <= NHOSTS; i++)); do "$lab" loss "$LAB" "$i" "$LOSS_PCT"; done
  set_shape "$SHAPE_MBIT"
  run_case loss cold makuo
  set_shape 0
  run_case loss cold makuo
  for ((i = 2; i <= NHOSTS; i++)); do "$lab" loss "$LAB" "$i" 0; done
  drop_data loss
}

# run_scale: makuo, the big file cold, a fresh lab per receiver count.
run_scale() {
  local r
  gen_data scale
  for r in $SCALE; do
    start_cluster "$r"
    set_shape "$SCALE_MBIT"
    run_case scale cold makuo
    clear_receivers base
  done
  drop_data scale
}

# --- the runs ----------------------------------------------------------------

start_time=$SECONDS
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for s in big mixed small huge; do
  if want "$s"; then run_set "$s"; fi
done
if want loss; then run_loss; fi
if want scale; then run_scale; fi
total_time=$((SECONDS - start_time))

# --- report ------------------------------------------------------------------

# table: align '|'-separated lines; columns FIRST..LAST right-aligned.
table() {
  awk -F'|' -v first="$1" -v last="$2" '
    { for (i = 1; i <= NF; i++) { c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } n = NR; if (NF > nf) nf = NF }
    END { for (r = 1; r <= n; r++) { line = ""; for (i = 1; i <= nf; i++) {
            f = (i >= first && i <= last) ? "%" w[i] "s" : "%-" w[i] "s"
            line = line (i > 1 ? "  " : "") sprintf(f, c[r, i]) }
          sub(/ +$/, "", line); print line } }'
}

# field SCENARIO TOOL SHAPED RECEIVERS COLUMN: a cell of the table, empty
# when there is no such row. Columns: 5 seconds, 7 wire MiB, 12 correct.
field() {
  local row
  for row in "${ROWS[@]}"; do
    if [[ "$row" == "$1|$2|$3|$4|"* ]]; then cut -d'|' -f"$5" <<<"$row"; return; fi
  done
}

# secs_ok SCENARIO TOOL SHAPED RECEIVERS: the row's seconds if it exists and
# is correct; else prints why not and fails.
secs_ok() {
  local ok
  ok=$(field "$@" 12)
  case $ok in
    yes) field "$@" 5 ;;
    "") echo "n/a (not run)"; return 1 ;;
    *) echo "n/a (run failed)"; return 1 ;;
  esac
}

# rss_max SET-PREFIX: the largest makuosan peak RSS (send or receive) over the
# correct makuo rows whose scenario starts with SET-PREFIX; empty if none.
rss_max() {
  printf '%s\n' "${ROWS[@]}" | awk -F'|' -v p="$1" '
    index($1, p) == 1 && $2 == "makuo" && $12 == "yes" {
      for (i = 10; i <= 11; i++) if ($i != "-" && (m == "" || $i + 0 > m + 0)) m = $i }
    END { print m }'
}

# verdict VALUE OP LIMIT: met or MISSED (OP: le, lt, ge).
verdict() {
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
    ok = (op == "le") ? v <= l : (op == "lt") ? v < l : v >= l
    print ok ? "met" : "MISSED" }'
}

shaped=${SHAPE_MBIT}M
echo
echo "makuo transfer benchmark ($([ "$QUICK" = 1 ] && echo "BENCH_QUICK=1, ")$(nproc) CPUs, MTU $MTU, one kernel: all hosts share CPU, disk and page cache; load average at start $load_start)"
echo "receivers' directories on $FS; LAB_OFFLOAD=$OFFLOAD (loss runs: 0)$([ "$OFFLOAD" = 1 ] && echo "; with offload, tx bytes count an offloaded burst's headers once")"
echo "makuo revision $REV; scenarios: $SCENARIOS; MiB/s = data set size / seconds (every receiver gets the whole set); wire MiB = sender eth0 tx bytes"
echo "CPU s = user+system seconds during the run: send = makuosan on h1, or the rsync clients; recv = the busiest receiver's makuosan, or rsync daemon with its children"
echo "RSS MiB = makuosan peak resident set during the run (VmHWM; recv: the largest receiver); - for rsync"
echo
{
  echo "scenario|tool|shaped|receivers|seconds|MiB/s|wire MiB|send CPU s|recv CPU s|send RSS MiB|recv RSS MiB|correct"
  printf '%s\n' "${ROWS[@]}"
} | table 5 11
echo

if want scale; then
  scale_min=$(tr ' ' '\n' <<<"$SCALE" | grep . | sort -n | head -n1)
  scale_max=$(tr ' ' '\n' <<<"$SCALE" | grep . | sort -n | tail -n1)
  scale_ratio="n/a"
  if smin=$(secs_ok "${LABEL[scale]}-cold" makuo "${SCALE_MBIT}M" "$scale_min") &&
    smax=$(secs_ok "${LABEL[scale]}-cold" makuo "${SCALE_MBIT}M" "$scale_max"); then
    scale_ratio=$(awk -v a="$smin" -v b="$smax" 'BEGIN { printf "%.2f", b / a }')
  fi
  printf 'scale: %s cold, makuo, sender shaped to %s Mbit/s: time(%s)/time(%s) = %s; link time of %s at %s Mbit/s = %s s\n\n' \
    "${LABEL[scale]}" "$SCALE_MBIT" "$scale_max" "$scale_min" "$scale_ratio" "$(size_label "$BIG_BYTES")" "$SCALE_MBIT" \
    "$(awk -v b="$BIG_BYTES" -v r="$SCALE_MBIT" 'BEGIN { printf "%.2f", b * 8 / (r * 1e6) }')"
fi
if want loss; then
  for sh in "$shaped" none; do
    w=$(field "${LABEL[loss]}-cold" makuo "$sh" "$RECEIVERS" 7)
    [ -z "$w" ] && continue
    printf 'loss: %s cold, makuo, %s%% UDP loss at every receiver, shaped %s: wire/payload = %s MiB / %s MiB = %s\n' \
      "${LABEL[loss]}" "$LOSS_PCT" "$sh" "$w" "$((LOSS_BYTES >> 20))" \
      "$(awk -v w="$w" -v b="$LOSS_BYTES" 'BEGIN { printf "%.3f", w * 1048576 / b }')"
  done
  echo
fi

# The targets of issue 7, each with the measured value.
{
  echo "target|measured|goal|verdict"
  if want big; then
    label="${LABEL[big]}-cold"
    link=$(awk -v b="$BIG_BYTES" -v r="$SHAPE_MBIT" 'BEGIN { printf "%.2f", b * 8 / (r * 1e6) }')
    if s=$(secs_ok "$label" makuo "$shaped" "$RECEIVERS"); then
      over=$(awk -v s="$s" -v l="$link" 'BEGIN { printf "%.1f", (s / l - 1) * 100 }')
      echo "big cold, $RECEIVERS receivers, $shaped: makuo vs link time|${s} s = +${over}% over ${link} s|<= +15%|$(verdict "$over" le 15)"
    else
      echo "big cold, $RECEIVERS receivers, $shaped: makuo vs link time|$s|<= +15%|-"
    fi
  fi
  if want mixed; then
    label="${LABEL[mixed]}-cold"
    for sh in none "$shaped"; do
      if m=$(secs_ok "$label" makuo "$sh" "$RECEIVERS") && q=$(secs_ok "$label" rsync-seq "$sh" "$RECEIVERS"); then
        x=$(awk -v q="$q" -v m="$m" 'BEGIN { if (m > 0) printf "%.2f", q / m; else print 0 }')
        echo "mixed cold, $sh: rsync-seq / makuo|${q} s / ${m} s = ${x}x|>= 5x|$(verdict "$x" ge 5)"
      else
        echo "mixed cold, $sh: rsync-seq / makuo|n/a (a run missing or failed)|>= 5x|-"
      fi
    done
  fi
  if want scale; then
    if [ "$scale_ratio" = n/a ]; then v=-; else v=$(verdict "$scale_ratio" lt 1.3); fi
    echo "scale: time($scale_max)/time($scale_min), ${SCALE_MBIT}M|$scale_ratio|< 1.3|$v"
  fi
  if want small; then
    label="${LABEL[small]}-resync"
    for sh in none "$shaped"; do
      if s=$(secs_ok "$label" makuo "$sh" "$RECEIVERS"); then
        echo "small resync (no change), $sh: makuo|${s} s|< 2 s|$(verdict "$s" lt 2)"
      else
        echo "small resync (no change), $sh: makuo|$s|< 2 s|-"
      fi
    done
    m=$(rss_max "${LABEL[small]}-")
    if [ -n "$m" ]; then
      echo "RSS: makuosan peak in the small runs ($SMALL_N files)|${m} MiB|< 150 MiB|$(verdict "$m" lt 150)"
    else
      echo "RSS: makuosan peak in the small runs ($SMALL_N files)|n/a|< 150 MiB|-"
    fi
  fi
  if want huge && want big; then
    h=$(rss_max "${LABEL[huge]}-")
    b=$(rss_max "${LABEL[big]}-")
    if [ -n "$h" ] && [ -n "$b" ]; then
      x=$(awk -v h="$h" -v b="$b" 'BEGIN { printf "%.2f", h / b }')
      echo "RSS: makuosan peak, huge vs big runs|$h MiB vs $b MiB = ${x}x|not growing (<= 1.2x)|$(verdict "$x" le 1.2)"
    else
      echo "RSS: makuosan peak, huge vs big runs|n/a|not growing (<= 1.2x)|-"
    fi
  fi
  if want loss; then
    for sh in "$shaped" none; do
      w=$(field "${LABEL[loss]}-cold" makuo "$sh" "$RECEIVERS" 7)
      ok=$(field "${LABEL[loss]}-cold" makuo "$sh" "$RECEIVERS" 12)
      if [ "$ok" = yes ]; then
        x=$(awk -v w="$w" -v b="$LOSS_BYTES" 'BEGIN { printf "%.3f", w * 1048576 / b }')
        echo "loss ${LOSS_PCT}%, $sh: wire / payload|$x|< 1.3|$(verdict "$x" lt 1.3)"
      else
        echo "loss ${LOSS_PCT}%, $sh: wire / payload|n/a (run failed)|< 1.3|-"
      fi
    done
  fi
} | {
  echo "targets (issue 7)$([ "$QUICK" = 1 ] && echo "; BENCH_QUICK=1: small sets, so fixed costs weigh more than the targets assume")":
  table 0 0 | sed 's/^/  /'
}
echo
echo "total benchmark time: $total_time s"
if [ "${#PROBLEMS[@]}" -gt 0 ]; then
  echo
  echo "PROBLEMS (${#PROBLEMS[@]}):"
  printf '  %s\n' "${PROBLEMS[@]}"
fi
