#!/usr/bin/env bash
# strace-recv.sh: what a makuo receiver spends per applied small file, in
# system calls by name and in CPU time, next to the floor
# (deploy/bench/floor). Needs root, strace and iproute2.
#
#   deploy/bench/strace-recv.sh                 defaults below
#   N=5000 CPU_N=5000 deploy/bench/strace-recv.sh
#   KEEP=1 deploy/bench/strace-recv.sh          keep the temp dir (logs)
#
# It builds makuosan, msync, benchdata and floor, starts a 2-host lab
# (deploy/lab/lab.sh, name $LAB), a makuosan on each host, the receiver's
# base on a fresh ext4 file system of its own (a loop device on the temp
# dir's disk: syncs cost what they do on a disk, and neither other work's
# dirty data nor an inode table full of recently deleted inodes, which
# makes ext4's inode allocation several times dearer, weighs on it; every
# floor run gets a fresh one too), and then:
#
#  1. strace: pushes N files of exactly 4 KiB (in DIRS directories) cold
#     from host 1 to host 2 while `strace -f -c` is attached to the
#     receiver's makuosan (every thread), and prints the receiver's system
#     calls per applied file by name. The same is counted for the floor:
#     its run with two destinations minus its run with one is what one
#     destination costs, without its reading of the source. An idle count
#     of the receiver over the same wall time shows what is not the push.
#  2. cpu: pushes CPU_N other 4 KiB files cold without strace and prints
#     the receiver's CPU (utime+stime of /proc/PID/stat, all threads) per
#     file, next to the floor's CPU per file and destination.
#
# Knobs: N (default 2000), CPU_N (5000), CPU_RUNS (3: cpu pushes, each of
# new files, each followed by a floor run on a fresh file system; the
# medians are printed too), DIRS (N/100, at least 1), REPO (see below), LAB
# (sd), FS (loop, or dir: the temp dir's file system as it is),
# MAKUOSAN_ARGS (extra flags for both daemons), MBIT (shape the sender's
# link to MBIT Mbit/s with tbf for every push: datagrams then trickle in
# instead of coming in bursts, which costs a receiver wake-ups; 0, the
# default, leaves it unshaped), PERF=1 (perf record
# the receiver during the cpu push and print its hottest functions; the
# CPU figure then includes perf's sampling), PPROF=1 (a Go CPU profile of
# the receiver, and one of the sender, over the cpu pushes, from their
# --pprof listeners: the top entries are printed, the profiles kept as
# recv.pprof and send.pprof with KEEP=1), KEEP,
# GO. It asserts nothing
# about the figures; it fails only when it cannot measure.
set -euo pipefail

die() { echo "strace-recv.sh: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces, strace -p)"
command -v strace >/dev/null || die "strace is not installed (apt-get install strace)"

here=$(dirname "$(realpath "$0")")
lab="$(realpath "$here/../..")/deploy/lab/lab.sh"
# REPO: the checkout whose makuosan is measured (another revision's, to
# compare); this script, its lab and the floor stay this checkout's.
repo=$(realpath "${REPO:-$here/../..}")
[ -f "$repo/go.mod" ] || die "REPO is not a checkout of makuo: $repo"
N=${N:-2000}
CPU_N=${CPU_N:-5000}
DIRS=${DIRS:-$(((N + 99) / 100))}
LAB=${LAB:-sd}
KEEP=${KEEP:-0}
read -r -a EXTRA <<<"${MAKUOSAN_ARGS:-}"
[[ "$N" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number: $N"
[[ "$CPU_N" =~ ^[0-9]+$ ]] || die "CPU_N must be a number: $CPU_N"
CPU_RUNS=${CPU_RUNS:-3}
[[ "$CPU_RUNS" =~ ^[1-9][0-9]*$ ]] || die "CPU_RUNS must be a positive number: $CPU_RUNS"
[[ "$DIRS" =~ ^[1-9][0-9]*$ ]] || die "DIRS must be a positive number: $DIRS"
MBIT=${MBIT:-0}
[[ "$MBIT" =~ ^[0-9]+$ ]] || die "MBIT must be a number of Mbit/s, 0 for unshaped: $MBIT"
FS=${FS:-loop}
case $FS in loop | dir) ;; *) die "FS must be loop or dir: $FS" ;; esac
GO=${GO:-go}
command -v "$GO" >/dev/null || GO=/usr/local/go/bin/go
CLK_TCK=$(getconf CLK_TCK)

TMP=$(mktemp -d /var/tmp/makuo-strace.XXXXXX)
PIDS=()
MOUNTS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  "$lab" down "$LAB" 2>/dev/null || true
  for p in "${MOUNTS[@]}"; do umount "$p" 2>/dev/null || true; done
  if [ "$KEEP" = 1 ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

log "building into $TMP/bin"
(cd "$repo" && "$GO" build -o "$TMP/bin/" ./cmd/makuosan ./cmd/msync)
(cd "$here" && "$GO" build -o "$TMP/bin/" ./benchdata ./floor)
BIN=$TMP/bin

# fresh_fs DIR: DIR empty, on a new ext4 file system with FS=loop (an
# image of 8 KiB per file and inode for 3 times the files pushed, plus
# room for the journal).
fresh_fs() {
  [ "$FS" = loop ] || { rm -rf "$1"; mkdir -p "$1"; return 0; }
  local img=$TMP/$(basename "$1").img
  if mountpoint -q "$1"; then umount "$1"; fi
  mkdir -p "$1"
  rm -f "$img"
  truncate -s $(((N + CPU_N * CPU_RUNS) * 3 * 8 + 256 * 1024))K "$img"
  mkfs.ext4 -q -F -i 8192 "$img"
  mount -o loop "$img" "$1"
  MOUNTS+=("$1")
}

"$lab" up "$LAB" 2
"$lab" shape "$LAB" 1 "$MBIT"
mkdir -p "$TMP/h1/base"
fresh_fs "$TMP/h2/base"
if [ "${PPROF:-0}" = 1 ]; then EXTRA+=(--pprof); fi
for i in 1 2; do
  mkdir -p "$TMP/h$i/state"
  ip netns exec "$LAB-h$i" "$BIN/makuosan" -n -b "$TMP/h$i/base" --state-dir "$TMP/h$i/state" \
    -U "$TMP/h$i/state/makuosan.sock" -i "$("$lab" addr "$i")" --hostname "h$i" "${EXTRA[@]}" \
    >"$TMP/makuosan-h$i.log" 2>&1 &
  PIDS+=("$!")
done
RPID=${PIDS[1]}
msync() { ip netns exec "$LAB-h1" "$BIN/msync" -c "unix:$TMP/h1/state/makuosan.sock" "$@"; }
deadline=$((SECONDS + 60))
until [ "$(msync --members 2>/dev/null | grep -cE '^h[0-9]+ ')" = 2 ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "the sender does not see 2 members after 60 s ($TMP/makuosan-h*.log)"
  sleep 0.3
done
for i in 1 2; do
  until grep -q 'base directory indexed' "$TMP/makuosan-h$i.log"; do
    [ "$SECONDS" -lt "$deadline" ] || die "makuosan on h$i did not index its base"
    sleep 0.2
  done
done
[ "$(cat "/proc/$RPID/comm")" = makuosan ] || die "pid $RPID is not makuosan"
log "lab $LAB up; receiver makuosan pid $RPID"

# count_files DIR: regular files below DIR.
count_files() { find "$1" -type f | wc -l; }

# push SET COUNT: msync SET cold and check that the receiver has COUNT files.
push() {
  msync -r "$TMP/h1/base/$1" >"$TMP/msync-$1.log" 2>&1 || die "msync $1 failed ($TMP/msync-$1.log)"
  local got
  got=$(count_files "$TMP/h2/base/$1")
  [ "$got" = "$2" ] || die "receiver has $got of $2 files of $1 ($TMP/msync-$1.log)"
}

# strace_attach OUT PID: attach strace -f -c to PID (all threads) in the
# background; STRACE_PID is strace's pid. strace_stop ends it.
strace_attach() {
  strace -f -c -o "$1" -p "$2" 2>"$1.err" &
  STRACE_PID=$!
  PIDS+=("$STRACE_PID")
  local n=0
  # Attached once the tracer shows in the target's status.
  until [ "$(awk '/^TracerPid:/ { print $2 }' "/proc/$2/status")" = "$STRACE_PID" ]; do
    n=$((n + 1))
    [ "$n" -lt 100 ] || die "strace did not attach to $2 ($1.err)"
    sleep 0.05
  done
  sleep 0.2
}
strace_stop() {
  kill -INT "$STRACE_PID"
  wait "$STRACE_PID" || true
}

# calls FILE: "NAME CALLS" lines of a strace -c summary.
calls() {
  awk '/^-----/ { sep++; next } sep == 1 && NF >= 5 { print $NF, $4 }' "$1"
}

# --- 1. system calls per file ------------------------------------------------

log "strace: $N files of 4 KiB in $DIRS dirs"
"$BIN/benchdata" fixed "$TMP/h1/base/s" "$N" "$DIRS" 4096 >/dev/null
sync
t0=$EPOCHREALTIME
strace_attach "$TMP/recv.strace" "$RPID"
push s "$N"
sleep 0.3 # the batch's last renames and index updates run after the result
strace_stop
t1=$EPOCHREALTIME
wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')

log "strace: the receiver idle for $wall s"
strace_attach "$TMP/idle.strace" "$RPID"
sleep "$wall"
strace_stop

log "strace: the floor, one and two destinations"
fresh_fs "$TMP/floor"
strace -f -c -o "$TMP/floor1.strace" "$BIN/floor" "$TMP/h1/base/s" "$TMP/floor/a" >/dev/null
fresh_fs "$TMP/floor"
strace -f -c -o "$TMP/floor2.strace" "$BIN/floor" "$TMP/h1/base/s" "$TMP/floor/b" "$TMP/floor/c" >/dev/null

{
  calls "$TMP/recv.strace" | sed 's/^/r /'
  calls "$TMP/idle.strace" | sed 's/^/i /'
  calls "$TMP/floor1.strace" | sed 's/^/f1 /'
  calls "$TMP/floor2.strace" | sed 's/^/f2 /'
} | awk -v n="$N" -v wall="$wall" '
  { c[$1, $2] = $3; names[$2] = 1 }
  END {
    printf "system calls per applied file, %d files of 4 KiB cold, 1 receiver (push and idle: %s s each)\n", n, wall
    printf "  %-18s %10s %10s %10s\n", "syscall", "receiver", "idle", "floor"
    for (s in names) {
      r = c["r", s] / n; i = c["i", s] / n; f = (c["f2", s] - c["f1", s]) / n
      tr += r; ti += i; tf += f
      if (r < 0.005 && f < 0.005) continue
      printf "  %-18s %10.2f %10.2f %10.2f\n", s, r, i, f | "sort -k2,2nr"
    }
    close("sort -k2,2nr")
    printf "  %-18s %10.2f %10.2f %10.2f\n", "total", tr, ti, tf
  }'
echo

# --- 2. CPU per file -----------------------------------------------------------

[ "$CPU_N" -gt 0 ] || exit 0
ticks() { local f; read -r -a f <<<"$(sed 's/^.*) //' "/proc/$1/stat")"; echo $((f[11] + f[12])); }
# switches PID: context switches of all of PID's threads, voluntary or not.
switches() { cat "/proc/$1/task/"*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches/ { s += $2 } END { print s + 0 }'; }
if [ "${PERF:-0}" = 1 ]; then
  perf record -e cpu-clock -F 999 -g -o "$TMP/perf.data" -p "$RPID" 2>"$TMP/perf.err" &
  PERF_PID=$!
  PIDS+=("$PERF_PID")
  sleep 0.5
fi
if [ "${PPROF:-0}" = 1 ]; then
  # Long enough for the cpu pushes; the idle rest adds no samples.
  ip netns exec "$LAB-h2" curl -sf -o "$TMP/recv.pprof" \
    "http://127.0.0.1:9758/debug/pprof/profile?seconds=$((CPU_RUNS * 5 + 5))" &
  PPROF_PID=$!
  PIDS+=("$PPROF_PID")
  ip netns exec "$LAB-h1" curl -sf -o "$TMP/send.pprof" \
    "http://127.0.0.1:9758/debug/pprof/profile?seconds=$((CPU_RUNS * 5 + 5))" &
  SPROF_PID=$!
  PIDS+=("$SPROF_PID")
  sleep 0.5
fi
US=() FLOOR=()
for ((run = 1; run <= CPU_RUNS; run++)); do
  log "cpu $run/$CPU_RUNS: $CPU_N files of 4 KiB, no strace"
  "$BIN/benchdata" fixed "$TMP/h1/base/c$run" "$CPU_N" "$(((CPU_N + 99) / 100))" 4096 >/dev/null
  sync
  c0=$(ticks "$RPID")
  w0=$(switches "$RPID")
  t0=$EPOCHREALTIME
  push "c$run" "$CPU_N"
  t1=$EPOCHREALTIME
  sleep 0.3 # the batch's last renames and index updates run after the result
  c1=$(ticks "$RPID")
  w1=$(switches "$RPID")
  fresh_fs "$TMP/floor"
  floor=$("$BIN/floor" "$TMP/h1/base/c$run" "$TMP/floor/c")
  US+=("$(awk -v d=$((c1 - c0)) -v h="$CLK_TCK" -v n="$CPU_N" 'BEGIN { printf "%.1f", d / h * 1e6 / n }')")
  FLOOR+=("$(sed -E 's/.* ([0-9.]+) µs cpu per file and destination$/\1/' <<<"$floor")")
  awk -v d=$((c1 - c0)) -v h="$CLK_TCK" -v n="$CPU_N" -v a="$t0" -v b="$t1" -v f="${FLOOR[-1]}" -v w=$((w1 - w0)) 'BEGIN {
    printf "cpu run: makuosan %.1f µs/file (%.2f s CPU, push %.2f s, %.2f context switches/file); floor %s µs/file\n", d / h * 1e6 / n, d / h, b - a, w / n, f }'
done
if [ "${PERF:-0}" = 1 ]; then
  kill -INT "$PERF_PID"
  wait "$PERF_PID" || true
  echo "receiver profile of the cpu pushes (perf report --no-children, top 40):"
  perf report -i "$TMP/perf.data" --no-children --percent-limit 0.5 --stdio -g none 2>/dev/null |
    grep -E '^ +[0-9]' | head -40
fi
if [ "${PPROF:-0}" = 1 ]; then
  wait "$PPROF_PID" || die "no Go profile from the receiver"
  echo "receiver Go profile of the cpu pushes (go tool pprof -top, cumulative, top 45):"
  "$GO" tool pprof -top -cum -nodecount 45 "$BIN/makuosan" "$TMP/recv.pprof" 2>/dev/null | sed 's/^/  /'
  echo "flat, top 30:"
  "$GO" tool pprof -top -nodecount 30 "$BIN/makuosan" "$TMP/recv.pprof" 2>/dev/null | tail -n +6 | sed 's/^/  /'
  wait "$SPROF_PID" || die "no Go profile from the sender"
  echo "sender Go profile of the cpu pushes (go tool pprof -top, cumulative, top 45):"
  "$GO" tool pprof -top -cum -nodecount 45 "$BIN/makuosan" "$TMP/send.pprof" 2>/dev/null | sed 's/^/  /'
fi
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
m=$(median "${US[@]}")
f=$(median "${FLOOR[@]}")
awk -v m="$m" -v f="$f" -v n="$CPU_N" -v r="$CPU_RUNS" 'BEGIN {
  printf "receiver CPU per applied file, %d files of 4 KiB cold, median of %d: makuosan %s µs, floor %s µs (per file and destination): %.2fx\n", n, r, m, f, m / f }'
