# shellcheck shell=bash
# setup.sh, sourced by transfer.sh and segments.sh first: what both do
# around their runs: messages, the temp dir, the lab's name and the
# daemons' bookkeeping, the clean-up on exit, the tools they need, the
# build. Expects here (deploy/bench) and repo; sets lab.

SCRIPT=$(basename "$0")
lab="$repo/deploy/lab/lab.sh"

die() { echo "$SCRIPT: $*" >&2; exit 2; }
log() { printf '[%s] %s\n' "$(date +%T)" "$*"; }

# bench_init PREFIX: the temp dir ($TMP: bin/, logs/, the sender's h1/base),
# the lab's name (PREFIX and this process's id, at most 12 characters)
# and the empty bookkeeping of the labs; on exit (also on error, SIGINT
# and SIGTERM) the daemons, the lab, the receivers' mounts and the temp
# dir are removed (the temp dir stays with KEEP=1, without the receivers' images).
bench_init() {
  [ -x "$lab" ] || die "lab script not found: $lab"
  LAB=$(printf '%s%s' "$1" "$$" | cut -c1-12)
  TMP=$(mktemp -d /tmp/makuo-bench.XXXXXX)
  BIN=$TMP/bin
  LOGS=$TMP/logs
  SRC=$TMP/h1/base
  mkdir -p "$BIN" "$LOGS" "$SRC"
  PIDS=()     # makuosan, rsync and uftp daemons started by this script
  MK_PIDS=()  # MK_PIDS[I]: makuosan pid of host I
  MK_LOGS=()  # MK_LOGS[I]: its log
  RS_PIDS=()  # RS_PIDS[I]: rsync daemon pid of receiver I
  UF_PIDS=()  # UF_PIDS[I]: uftpd pid of receiver I
  ADDRS=()    # ADDRS[I]: lab address of host I
  DEAD=()     # DEAD[I]: 1 once host I's makuosan was reported dead
  NHOSTS=0    # hosts in the current lab (1 sender + receivers)
  LABNO=0     # labs started so far
  NS1=""      # the sender's namespace
  SHAPED=none # the shaping of the runs: none, NM (the sender's egress) or a routed lab's
  ROUTED=""   # the next lab: "" a flat one, "S P" S segments of P hosts (start_cluster)
  NOMCAST=0   # the next lab's bridges drop multicast (LAB_NOMCAST)
  SEGS=0      # the current lab's segments, 0 for a flat lab
  ROWS=()     # table rows
  PROBLEMS=() # failures and mismatches, printed after the table
  RUN_NO=0
  MODGEN=0   # last benchdata modify generation: every mod1 run changes files anew
  PATCHGEN=0 # last benchdata patch generation, the same for the patch runs
  declare -gA BYTES=()    # BYTES[SET]: the generated set's size, the payload of a cold run
  declare -gA FILES=()    # FILES[SET]: its regular files
  declare -gA REP_SECS=() # REP_SECS[SCENARIO|TOOL|SHAPED|RECEIVERS]: every run's seconds
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

cleanup() {
  local rc=$? pid d
  set +e
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  "$lab" down "$LAB" 2>/dev/null
  for d in "$TMP"/rx/h* "$TMP/rx"; do
    if mountpoint -q "$d" 2>/dev/null; then umount "$d" 2>/dev/null || umount -l "$d"; fi
  done
  if [ "$KEEP" = 1 ]; then
    # The receivers' filesystem images hold every byte the runs wrote
    # there (tens of GiB after a suite): they go even so.
    rm -rf "$TMP/rx-img"
    echo "kept $TMP (logs in $LOGS)"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}

# bench_prereqs: rsync (installed when missing), iproute2, coreutils and
# Go (GO); sets GO and CLK_TCK.
bench_prereqs() {
  local t
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
  GO=${GO:-go}
  command -v "$GO" >/dev/null || GO=/usr/local/go/bin/go
  command -v "$GO" >/dev/null || die "go not found (set GO=...)"
  CLK_TCK=$(getconf CLK_TCK)
}

# bench_build: makuosan, msync, benchdata and floor into $BIN; REV is the
# revision they were built from, "+dirty" when tracked files differ from
# it (read-only git queries).
bench_build() {
  log "building makuosan, msync, benchdata and floor into $BIN"
  (cd "$repo" && "$GO" build -o "$BIN/" ./cmd/makuosan ./cmd/msync ./deploy/bench/benchdata ./deploy/bench/floor)
  REV=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
  if [ "$REV" != unknown ] &&
    [ -n "$(git -C "$repo" --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    REV="$REV+dirty"
  fi
  log "makuo revision $REV"
}
