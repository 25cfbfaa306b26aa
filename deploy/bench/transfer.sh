#!/usr/bin/env bash
# transfer.sh: transfer benchmark of makuo against an rsync fan-out, in a
# network-namespace lab (deploy/lab/lab.sh). Prints figures; asserts nothing
# about timing. Needs root. See deploy/bench/README.md.
#
#   deploy/bench/transfer.sh              full run (256 MiB file, 5,000 files)
#   BENCH_QUICK=1 deploy/bench/transfer.sh  smoke run (32 MiB, 500 files)
#   KEEP=1 ...                            keep the temp dir (logs, trees)
#
# Scenarios (every one measured for makuo, rsync-seq and rsync-par):
#   a-cold    one file of random data, receivers empty
#   a-resync  the same again, nothing changed
#   b-cold    many 4 KiB files in 50 directories, receivers empty
#   b-resync  the same again, nothing changed
# with 3 receivers, sender egress unshaped and shaped to 500 Mbit/s, and
# a-cold/a-resync with 6 receivers shaped to 500 Mbit/s.
set -euo pipefail

die() { echo "transfer.sh: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"

here=$(dirname "$(realpath "$0")")
repo=$(realpath "$here/../..")
lab="$repo/deploy/lab/lab.sh"
[ -x "$lab" ] || die "lab script not found: $lab"

QUICK=${BENCH_QUICK:-0}
KEEP=${KEEP:-0}
SHAPE_MBIT=500
RUN_TIMEOUT=${BENCH_RUN_TIMEOUT:-300}
if [ "$QUICK" = 1 ]; then
  A_MIB=32
  B_FILES=500
else
  A_MIB=256
  B_FILES=5000
fi
B_DIRS=50
B_PER_DIR=$((B_FILES / B_DIRS))
B_FILES=$((B_PER_DIR * B_DIRS))
A_BYTES=$((A_MIB << 20))
B_BYTES=$((B_FILES * 4096))

LAB=$(printf 'bench%s' "$$" | cut -c1-12)
TMP=$(mktemp -d /tmp/makuo-bench.XXXXXX)
BIN=$TMP/bin
LOGS=$TMP/logs
mkdir -p "$BIN" "$LOGS"

PIDS=()      # makuosan and rsync daemons started by this script
MK_PIDS=()   # MK_PIDS[I]: makuosan pid of host I
DEAD=()      # DEAD[I]: 1 once host I's makuosan was reported dead
NHOSTS=0     # hosts in the current lab (1 sender + receivers)
ROWS=()      # table rows
PROBLEMS=()  # failures and mismatches, printed after the table
RUN_NO=0

cleanup() {
  local rc=$? pid
  set +e
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  "$lab" down "$LAB" 2>/dev/null
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
for t in ip tc b2sum timeout split; do
  command -v "$t" >/dev/null || die "$t is missing"
done
GO=${GO:-go}
command -v "$GO" >/dev/null || GO=/usr/local/go/bin/go
command -v "$GO" >/dev/null || die "go not found (set GO=...)"

log "building makuosan and msync into $BIN"
(cd "$repo" && "$GO" build -o "$BIN/" ./cmd/makuosan ./cmd/msync)
# The revision the binaries were built from (read-only git queries; "+dirty"
# when tracked files differ from it).
REV=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$REV" != unknown ] &&
  [ -n "$(git -C "$repo" --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  REV="$REV+dirty"
fi
log "makuo revision $REV"

# --- data set on the sender --------------------------------------------------

SRC=$TMP/h1/base
mkdir -p "$SRC" "$TMP/h1/state"
log "generating data: one ${A_MIB} MiB file, $B_FILES files of 4 KiB in $B_DIRS dirs"
head -c "$A_BYTES" /dev/urandom >"$SRC/big"
for d in $(seq -w 0 $((B_DIRS - 1))); do
  mkdir -p "$SRC/tree/d$d"
  head -c $((B_PER_DIR * 4096)) /dev/urandom | split -b 4096 -a 4 -d - "$SRC/tree/d$d/f"
done

# tree_sum ROOT REL: one hash over the names, types, modes, sizes, mtimes
# (whole seconds) and contents of ROOT/REL.
tree_sum() {
  (
    cd "$1" || exit 1
    [ -e "$2" ] || { echo missing; exit 0; }
    find "$2" \( -type f -printf 'f %p %m %s %T@\n' \) -o \( -type d -printf 'd %p %m\n' \) \
      -o -printf '%y %p %m %l\n' | sed -E 's/\.[0-9]+$//' | LC_ALL=C sort
    find "$2" -type f -print0 | LC_ALL=C sort -z | xargs -0 -r b2sum
  ) | b2sum | cut -c1-32
}
SUM_big=$(tree_sum "$SRC" big)
SUM_tree=$(tree_sum "$SRC" tree)

# --- cluster -----------------------------------------------------------------

addr() { "$lab" addr "$1"; }
ns() { echo "$LAB-h$1"; }

stop_cluster() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
  MK_PIDS=()
  DEAD=()
  "$lab" down "$LAB"
  NHOSTS=0
}

# start_cluster R: a lab of 1 sender + R receivers, a makuosan and an rsync
# daemon on each, and wait until the sender sees every member.
start_cluster() { # start_cluster RECEIVERS [MTU]
  local r=$1 n=$(($1 + 1)) mtu=${2:-1500} i a
  local dgram=()
  [ "$mtu" -ge 9000 ] && dgram=(--datagram-size $((mtu - 28)))
  [ "$NHOSTS" = 0 ] || stop_cluster
  log "lab $LAB: 1 sender + $r receivers, MTU $mtu"
  LAB_MTU=$mtu "$lab" up "$LAB" "$n"
  NHOSTS=$n
  for i in $(seq 1 "$n"); do
    a=$(addr "$i")
    mkdir -p "$TMP/h$i/base" "$TMP/h$i/state" "$TMP/h$i/rsync"
    ip netns exec "$(ns "$i")" "$BIN/makuosan" -n -b "$TMP/h$i/base" --state-dir "$TMP/h$i/state" \
      -i "$a" --hostname "h$i" --metrics-listen "$a:9758" "${dgram[@]}" >>"$LOGS/makuosan-h$i.log" 2>&1 &
    PIDS+=("$!")
    MK_PIDS[i]=$!
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
    if [ "$i" -gt 1 ]; then
      rm -f "$TMP/h$i/rsyncd.pid"
      ip netns exec "$(ns "$i")" rsync --daemon --no-detach --config="$TMP/h$i/rsyncd.conf" \
        --address="$a" >>"$LOGS/rsyncd-h$i.out" 2>&1 &
      PIDS+=("$!")
    fi
  done
  local deadline=$((SECONDS + 30)) out=""
  while :; do
    out=$(ip netns exec "$(ns 1)" "$BIN/msync" --members 2>&1 || true)
    grep -q "^Total: $n members" <<<"$out" && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$out" >&2
      die "the sender does not see $n members after 30 s (logs: $LOGS, KEEP=1 keeps them)"
    fi
    sleep 0.5
  done
  for i in $(seq 2 "$n"); do
    deadline=$((SECONDS + 15))
    until ip netns exec "$(ns 1)" rsync "rsync://$(addr "$i")/" >/dev/null 2>&1; do
      [ "$SECONDS" -lt "$deadline" ] || die "rsync daemon on h$i does not answer (see $LOGS/rsyncd-h$i.*)"
      sleep 0.2
    done
  done
  log "cluster up: $n makuosan members, $r rsync daemons"
}

set_shape() {
  SHAPED=$1
  if [ "$SHAPED" = none ]; then
    "$lab" shape "$LAB" 1 0
  else
    "$lab" shape "$LAB" 1 "$SHAPE_MBIT"
  fi
}

tx_bytes() { ip netns exec "$(ns 1)" cat /sys/class/net/eth0/statistics/tx_bytes; }
qdisc_drops() {
  ip netns exec "$(ns 1)" tc -s qdisc show dev eth0 | grep -o 'dropped [0-9]*' |
    awk '{ s += $2 } END { print s + 0 }'
}

# check_daemons WHEN: report, once, every makuosan that is no longer running.
check_daemons() {
  local i st
  for i in $(seq 1 "$NHOSTS"); do
    [ -z "${DEAD[i]:-}" ] || continue
    kill -0 "${MK_PIDS[i]}" 2>/dev/null && continue
    DEAD[i]=1
    st=$(wait "${MK_PIDS[i]}" 2>/dev/null; echo $?)
    printf '\n!!! DAEMON DIED: makuosan on h%s (pid %s, exit status %s), noticed after %s; last log lines (%s):\n' \
      "$i" "${MK_PIDS[i]}" "$st" "$1" "$LOGS/makuosan-h$i.log" >&2
    tail -n 40 "$LOGS/makuosan-h$i.log" | sed 's/^/    /' >&2
    PROBLEMS+=("DAEMON DIED makuosan h$i exit status $st, noticed after $1 (log $LOGS/makuosan-h$i.log)")
  done
}

# clear_receivers DIR: empty DIR (base or rsync) on every receiver.
clear_receivers() {
  local i
  for i in $(seq 2 "$NHOSTS"); do
    find "$TMP/h$i/$1" -mindepth 1 -delete
  done
}

# run_case SCENARIO TOOL: one measured run; appends a row to ROWS.
run_case() {
  local scen=$1 tool=$2 rel bytes want dir rc=0 i t0 t1 tx0 tx1 d0 d1 secs wire rate ok=yes bad=""
  local r=$((NHOSTS - 1))
  case $scen in
    a-*) rel=big bytes=$A_BYTES want=$SUM_big ;;
    b-*) rel=tree bytes=$B_BYTES want=$SUM_tree ;;
  esac
  if [ "$tool" = makuo ]; then dir=base; else dir=rsync; fi
  case $scen in *-cold) clear_receivers "$dir" ;; esac
  sync
  RUN_NO=$((RUN_NO + 1))
  local out
  out=$(printf '%s/%02d-%s-%s-%s-%dr.log' "$LOGS" "$RUN_NO" "$scen" "$tool" "$SHAPED" "$r")
  : >"$out"

  tx0=$(tx_bytes)
  d0=$(qdisc_drops)
  t0=$(date +%s.%N)
  case $tool in
    makuo)
      local args=("$SRC/$rel")
      [ "$rel" = tree ] && args=(-r "$SRC/$rel")
      timeout "$RUN_TIMEOUT" ip netns exec "$(ns 1)" "$BIN/msync" "${args[@]}" >"$out" 2>&1 || rc=$?
      ;;
    rsync-seq)
      for i in $(seq 2 "$NHOSTS"); do
        timeout "$RUN_TIMEOUT" ip netns exec "$(ns 1)" rsync -a "$SRC/$rel" "rsync://$(addr "$i")/base/" \
          >>"$out" 2>&1 || rc=$?
      done
      ;;
    rsync-par)
      local pids=() p
      for i in $(seq 2 "$NHOSTS"); do
        timeout "$RUN_TIMEOUT" ip netns exec "$(ns 1)" rsync -a "$SRC/$rel" "rsync://$(addr "$i")/base/" \
          >>"$out" 2>&1 &
        pids+=("$!")
      done
      for p in "${pids[@]}"; do wait "$p" || rc=$?; done
      ;;
  esac
  t1=$(date +%s.%N)
  tx1=$(tx_bytes)
  d1=$(qdisc_drops)

  for i in $(seq 2 "$NHOSTS"); do
    local got
    got=$(tree_sum "$TMP/h$i/$dir" "$rel")
    [ "$got" = "$want" ] || bad="$bad h$i"
  done
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  wire=$(awk -v a="$tx0" -v b="$tx1" 'BEGIN { printf "%.2f", (b - a) / 1048576 }')
  case $scen in
    *-cold) rate=$(awk -v n="$bytes" -v s="$secs" 'BEGIN { if (s > 0) printf "%.1f", n / 1048576 / s; else print "-" }') ;;
    *) rate=- ;;
  esac
  local label
  case $scen in
    a-*) label="a:${A_MIB}MiB-file-${scen#a-}" ;;
    b-*) label="b:${B_FILES}x4KiB-${scen#b-}" ;;
  esac
  if [ -n "$bad" ]; then
    ok=no
    printf '\n!!! MISMATCH: %s %s shaped=%s receivers=%d: tree differs from the sender on%s (log %s)\n\n' \
      "$label" "$tool" "$SHAPED" "$r" "$bad" "$out" >&2
    PROBLEMS+=("MISMATCH $label $tool shaped=$SHAPED receivers=$r on$bad")
  fi
  if [ "$rc" != 0 ]; then
    ok=no
    local what="exit status $rc"
    [ "$rc" = 124 ] && what="TIMEOUT after ${RUN_TIMEOUT}s"
    printf '\n!!! FAILED: %s %s shaped=%s receivers=%d: %s; last output:\n' "$label" "$tool" "$SHAPED" "$r" "$what" >&2
    tail -n 5 "$out" | sed 's/^/    /' >&2
    PROBLEMS+=("FAILED $label $tool shaped=$SHAPED receivers=$r: $what (log $out)")
  fi
  local extra=""
  [ "$tool" = makuo ] && extra="  msync: $(grep -E '^[0-9]+ members, ' "$out" | tail -n 1 || true)"
  [ "$SHAPED" != none ] && extra="$extra  qdisc drops: $((d1 - d0))"
  log "$(printf '%-22s %-9s %-5s %dr %7ss %8s MiB wire  correct=%s%s' "$label" "$tool" "$SHAPED" "$r" "$secs" "$wire" "$ok" "$extra")"
  check_daemons "$label $tool shaped=$SHAPED receivers=$r"
  [ "$ok" = yes ] || rate=-
  ROWS+=("$label|$tool|$SHAPED|$r|$secs|$rate|$wire|$ok")
}

run_all() { # run_all SCENARIO...
  local tool scen
  for tool in makuo rsync-seq rsync-par; do
    for scen in "$@"; do run_case "$scen" "$tool"; done
  done
}

# --- the runs ----------------------------------------------------------------

start_time=$SECONDS
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
start_cluster 3
for shaping in none 500M; do
  set_shape "$shaping"
  run_all a-cold a-resync b-cold b-resync
done
start_cluster 6
set_shape 500M
run_all a-cold a-resync
# Jumbo frames: the per-datagram cost is what bounds makuo on one machine.
start_cluster 3 9000
set_shape none
SHAPED=jumbo
run_case a-cold makuo
run_case a-resync makuo

# --- report ------------------------------------------------------------------

echo
echo "makuo transfer benchmark ($( [ "$QUICK" = 1 ] && echo "BENCH_QUICK=1, " )$(nproc) CPUs, one kernel: all hosts share CPU, disk and page cache; load average at start $load_start)"
echo "makuo revision $REV; MiB/s = data set size / seconds (every receiver gets the whole set); wire MiB = sender eth0 tx bytes"
echo
{
  echo "scenario|tool|shaped|receivers|seconds|MiB/s|wire MiB|correct"
  printf '%s\n' "${ROWS[@]}"
} | awk -F'|' '{ for (i = 1; i <= NF; i++) { c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } n = NR; nf = NF }
  END { for (r = 1; r <= n; r++) { line = ""; for (i = 1; i <= nf; i++) {
          f = (i >= 5 && i <= 7) ? "%" w[i] "s" : "%-" w[i] "s"; line = line (i > 1 ? "  " : "") sprintf(f, c[r, i]) }
        sub(/ +$/, "", line); print line } }'
echo

find_field() { # find_field LABEL TOOL SHAPED RECEIVERS COLUMN
  local row
  for row in "${ROWS[@]}"; do
    [[ "$row" == "$1|$2|$3|$4|"* ]] && { cut -d'|' -f"$5" <<<"$row"; return; }
  done
  echo ""
}
find_secs() { find_field "$1" "$2" "$3" "$4" 5; }
alabel="a:${A_MIB}MiB-file-cold"
for tool in makuo rsync-seq rsync-par; do
  s3=$(find_secs "$alabel" "$tool" 500M 3)
  s6=$(find_secs "$alabel" "$tool" 500M 6)
  ratio=$(awk -v a="$s3" -v b="$s6" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "n/a" }')
  ok3=$(find_field "$alabel" "$tool" 500M 3 8)
  ok6=$(find_field "$alabel" "$tool" 500M 6 8)
  [ "$ok3" = yes ] && [ "$ok6" = yes ] || ratio="n/a (a run failed)"
  printf '6-vs-3 receivers, %s %s shaped 500M: %ss / %ss = %s\n' "$alabel" "$tool" "$s6" "$s3" "$ratio"
done
awk -v m="$A_MIB" -v r="$SHAPE_MBIT" 'BEGIN {
  t = "link time at " r " Mbit/s (reference): "
  if (m != 256) t = t sprintf("%d MiB = %.2f s; ", m, m * 8 * 1048576 / (r * 1e6))
  printf "%s256 MiB = %.2f s\n", t, 256 * 8 * 1048576 / (r * 1e6) }'
echo "total benchmark time: $((SECONDS - start_time)) s"
if [ "${#PROBLEMS[@]}" -gt 0 ]; then
  echo
  echo "PROBLEMS (${#PROBLEMS[@]}):"
  printf '  %s\n' "${PROBLEMS[@]}"
fi
