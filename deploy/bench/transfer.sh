#!/usr/bin/env bash
# transfer.sh: transfer benchmark of makuo against an rsync fan-out, the
# floor (deploy/bench/floor) and, when installed, uftp, in network-namespace
# labs (deploy/lab/lab.sh): the scenarios of issue 7 and, with
# BENCH_SUITE=issue16, those of issue 16. Prints a table and targets
# blocks; asserts nothing about timing. Needs root. See
# deploy/bench/README.md for the scenarios, the knobs and the columns.
#
#   deploy/bench/transfer.sh                    issue 7's scenarios
#   BENCH_QUICK=1 deploy/bench/transfer.sh      smoke run, small sets
#   BENCH_SUITE=issue16 deploy/bench/transfer.sh   issue 16's scenarios
#   BENCH_SCENARIOS="big scale" ...             a subset of: big mixed small huge scale loss
#                                               files4k delta file256 files4k-loss noop100k
#   KEEP=1 ...                                  keep the temp dir (logs)
#
# Other knobs: BENCH_MTU, BENCH_SHAPE_MBIT, BENCH_SCALE, BENCH_SCALE_MBIT,
# BENCH_FS, BENCH_OFFLOAD, BENCH_MAKUOSAN_ARGS, BENCH_RUN_TIMEOUT, BENCH_TOOLS,
# BENCH_RATES, BENCH_RECEIVERS, BENCH_RUNS, GO.
set -euo pipefail

here=$(dirname "$(realpath "$0")")
repo=$(realpath "$here/../..")
# shellcheck source=lib/setup.sh
. "$here/lib/setup.sh"
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"

# --- knobs -------------------------------------------------------------------

OLD_SCENARIOS="big mixed small huge scale loss"
NEW_SCENARIOS="files4k delta file256 files4k-loss noop100k"
QUICK=${BENCH_QUICK:-0}
KEEP=${KEEP:-0}
# BENCH_SUITE=issue16 selects issue 16's scenarios and tools (explicit
# BENCH_SCENARIOS and BENCH_TOOLS still win).
SUITE=${BENCH_SUITE:-}
case $SUITE in "" | issue16) ;; *) die "BENCH_SUITE must be empty or issue16: $SUITE" ;; esac
if [ "$SUITE" = issue16 ]; then
  SCENARIOS=${BENCH_SCENARIOS:-$NEW_SCENARIOS loss}
else
  SCENARIOS=${BENCH_SCENARIOS:-$OLD_SCENARIOS}
fi
MTU=${BENCH_MTU:-1500}
SHAPE_MBIT=${BENCH_SHAPE_MBIT:-1000}
SCALE=${BENCH_SCALE:-2 4 8 16}
SCALE_MBIT=${BENCH_SCALE_MBIT:-300}
RUN_TIMEOUT=${BENCH_RUN_TIMEOUT:-900}
# uftp takes part where uftp and uftpd are installed; asked for without
# them, it is left out with a note in the header.
UFTP_NOTE=""
HAVE_UFTP=0
if command -v uftp >/dev/null 2>&1 && command -v uftpd >/dev/null 2>&1; then HAVE_UFTP=1; fi
# BENCH_TOOLS and BENCH_RATES narrow the set runs for quicker iterations:
# tools out of makuo floor rsync-seq rsync-par uftp, rates in Mbit/s with 0
# for unshaped. Unset, issue 7's sets (big mixed small huge) run makuo and
# both rsyncs unshaped and at BENCH_SHAPE_MBIT; issue 16's (files4k delta
# file256) makuo, the floor, rsync-par and uftp at 0, 500 and 100 Mbit/s.
TOOLS_OLD=${BENCH_TOOLS:-makuo rsync-seq rsync-par}
TOOLS_NEW=${BENCH_TOOLS:-makuo floor rsync-par uftp}
RATES_OLD=${BENCH_RATES:-0 $SHAPE_MBIT}
RATES_NEW=${BENCH_RATES:-0 500 100}
# BENCH_RECEIVERS: the receiver counts each issue-16 scenario runs with, a
# fresh lab for each; BENCH_RUNS: how often each of their measured runs is
# repeated (the table shows the median and the spread).
RECV_COUNTS=${BENCH_RECEIVERS:-3 6 12}
RUNS=${BENCH_RUNS:-5}
# BENCH_FS=tmpfs (default) keeps the receivers' directories in memory: on
# one machine every receiver would otherwise write to the same disk, and
# makuo's fsyncs make that disk the bound (about 400 MB/s here, for all
# receivers together), where real receivers each have their own. disk
# measures with that shared disk, and with syncs that cost what they do.
# xfs, btrfs and ext4 give every receiver a filesystem of its own of that
# type (reflinks on where the type has them), loop-mounted from a sparse
# image on the temp dir's disk: its syncs reach that disk, but flush that
# receiver's writes only; on xfs and btrfs a delta shares the old
# version's blocks. Issue 16's suite defaults to ext4: its figures are
# about durable writes, and this lab's root disk can be an ext4 without a
# journal, whose inode allocation right after a run's deletes costs
# several times what it does on a journaled one (what hosts run).
if [ "$SUITE" = issue16 ]; then FS=${BENCH_FS:-ext4}; else FS=${BENCH_FS:-tmpfs}; fi
# BENCH_OFFLOAD=1 (default) builds the labs with LAB_OFFLOAD=1: offloaded
# sends stay whole up to the receiving socket, as NIC segmentation and GRO
# would make them cost on real hosts; the loss runs always use per-packet
# labs, where loss hits single datagrams as on a wire.
OFFLOAD=${BENCH_OFFLOAD:-1}
# BENCH_MAKUOSAN_ARGS: extra flags for every makuosan (e.g. "-d 1").
read -r -a EXTRA_ARGS <<<"${BENCH_MAKUOSAN_ARGS:-}"
RECEIVERS=4 # the main lab of issue 7's scenarios: 1 sender + 4 receivers
LOSS_PCT=5  # UDP loss at every receiver in the loss runs
F4K_LOSS_PCT=1 # and in the files4k-loss runs
FILE_MIN_MBIT=500 # file256 and delta skip the shaped rates below this
PATCH_BYTES=4096 # what a delta run overwrites in the middle of the file
SMALL_MAX=$((64 << 10))

posint() { if ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then die "$1 must be a positive integer: '$2'"; fi; }
posint BENCH_MTU "$MTU"
posint BENCH_SHAPE_MBIT "$SHAPE_MBIT"
posint BENCH_SCALE_MBIT "$SCALE_MBIT"
posint BENCH_RUN_TIMEOUT "$RUN_TIMEOUT"
posint BENCH_RUNS "$RUNS"
case $FS in tmpfs | disk | xfs | btrfs | ext4) ;; *) die "BENCH_FS must be tmpfs, disk, xfs, btrfs or ext4: $FS" ;; esac
case $OFFLOAD in 0 | 1) ;; *) die "BENCH_OFFLOAD must be 0 or 1: $OFFLOAD" ;; esac
[ "$MTU" -ge 1280 ] || die "BENCH_MTU must be at least 1280: $MTU"
for r in $SCALE $RECV_COUNTS; do
  posint "a BENCH_SCALE or BENCH_RECEIVERS receiver count" "$r"
  [ "$r" -le 199 ] || die "receiver counts must be at most 199 (lab.sh hosts 200): $r"
done
for t in $TOOLS_OLD $TOOLS_NEW; do
  case $t in makuo | floor | rsync-seq | rsync-par | uftp) ;; *) die "unknown tool in BENCH_TOOLS: $t (want some of: makuo floor rsync-seq rsync-par uftp)" ;; esac
done
for r in $RATES_OLD $RATES_NEW; do
  [[ $r =~ ^(0|[1-9][0-9]*)$ ]] || die "BENCH_RATES must hold Mbit/s figures, 0 for unshaped: '$r'"
done
for s in $SCENARIOS; do
  case " $OLD_SCENARIOS $NEW_SCENARIOS " in
    *" $s "*) ;;
    *) die "unknown scenario in BENCH_SCENARIOS: $s (want some of: $OLD_SCENARIOS $NEW_SCENARIOS)" ;;
  esac
done
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }
want_new() { local s; for s in $NEW_SCENARIOS; do if want "$s"; then return 0; fi; done; return 1; }
if want scale && [ -z "${SCALE// /}" ]; then die "BENCH_SCALE is empty"; fi
if want_new && [ -z "${RECV_COUNTS// /}" ]; then die "BENCH_RECEIVERS is empty"; fi
# uftp only where it is installed.
if [ "$HAVE_UFTP" = 0 ]; then
  TOOLS_OLD=$(tr ' ' '\n' <<<"$TOOLS_OLD" | grep -vx uftp | paste -sd' ' || true)
  TOOLS_NEW=$(tr ' ' '\n' <<<"$TOOLS_NEW" | grep -vx uftp | paste -sd' ' || true)
  UFTP_NOTE="uftp: not installed (uftp and uftpd), left out"
fi
USE_UFTP=0
if [[ " $TOOLS_OLD $TOOLS_NEW " == *" uftp "* ]]; then USE_UFTP=1; fi

if [ "$QUICK" = 1 ]; then
  BIG_BYTES=$((64 << 20)) HUGE_BYTES=$((128 << 20)) LOSS_BYTES=$((32 << 20))
  MIXED_N=1000 MIXED_DIRS=10
  SMALL_N=5000 SMALL_DIRS=50
  F4K_N=500 F4K_DIRS=5 F256_BYTES=$((32 << 20)) NOOP_N=5000 NOOP_DIRS=50
else
  BIG_BYTES=$((1 << 30)) HUGE_BYTES=$((4 << 30)) LOSS_BYTES=$((256 << 20))
  MIXED_N=10000 MIXED_DIRS=100
  SMALL_N=100000 SMALL_DIRS=1000
  F4K_N=5000 F4K_DIRS=50 F256_BYTES=$((256 << 20)) NOOP_N=100000 NOOP_DIRS=1000
fi

# size_label BYTES: 64MiB, 1GiB.
size_label() {
  local m=$(($1 >> 20))
  if [ "$m" -ge 1024 ] && [ $((m % 1024)) = 0 ]; then echo "$((m / 1024))GiB"; else echo "${m}MiB"; fi
}
# The rows' scenario names. Each data set lives in a file or directory of
# its own name under the sender's base. "scale" is the big file again,
# named apart so its rows never collide with the main lab's; file256 and
# delta share the file file256; files4k-loss's runs without loss are
# files4k-noloss's.
declare -A LABEL=(
  [big]="big:$(size_label "$BIG_BYTES")"
  [mixed]="mixed:${MIXED_N}f"
  [small]="small:${SMALL_N}f"
  [huge]="huge:$(size_label "$HUGE_BYTES")"
  [scale]="scale:$(size_label "$BIG_BYTES")"
  [loss]="loss${LOSS_PCT}%:$(size_label "$LOSS_BYTES")"
  [files4k]="files4k:${F4K_N}f"
  [file256]="file256:$(size_label "$F256_BYTES")"
  [delta]="delta:$(size_label "$F256_BYTES")"
  [files4k-loss]="files4k-loss${F4K_LOSS_PCT}%:${F4K_N}f"
  [files4k-noloss]="files4k-loss0%:${F4K_N}f"
  [noop100k]="noop100k:${NOOP_N}f"
)
bench_init bench

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
# shellcheck source=lib/issue16.sh
. "$here/lib/issue16.sh"

# --- prerequisites -----------------------------------------------------------

bench_prereqs
if want loss || want files4k-loss; then command -v nft >/dev/null || die "nft is missing (the loss scenarios need nftables)"; fi
mount_rx

bench_build

# --- the runs ----------------------------------------------------------------

start_time=$SECONDS
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for s in big mixed small huge; do
  if want "$s"; then run_set "$s"; fi
done
if want loss; then run_loss; fi
if want scale; then run_scale; fi
if want files4k; then run_files4k; fi
if want file256 || want delta; then run_file256; fi
if want files4k-loss; then run_files4k_loss; fi
if want noop100k; then run_noop100k; fi
total_time=$((SECONDS - start_time))

# --- report ------------------------------------------------------------------

print_header
print_table
print_summaries
print_targets7
if [ "$SUITE" = issue16 ] || want_new; then
  print_cpu_per_file
  print_targets16
fi
echo "total benchmark time: $total_time s"
if [ "${#PROBLEMS[@]}" -gt 0 ]; then
  echo
  echo "PROBLEMS (${#PROBLEMS[@]}):"
  printf '  %s\n' "${PROBLEMS[@]}"
fi
