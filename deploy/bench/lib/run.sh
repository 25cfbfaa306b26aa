# shellcheck shell=bash
# run.sh, sourced by transfer.sh and segments.sh: one measured run of a
# tool (run_case for makuo, rsync and uftp, run_floor for the floor) and
# measure, which repeats one and adds its row to the table.
#
# A row is SCENARIO|TOOL|SHAPED|RECEIVERS|SECONDS|SPREAD|MiB/s|WIRE|SEND CPU|
# RECV CPU|RECV µs/FILE|SEND RSS|RECV RSS|CORRECT, in a routed lab followed
# by the MiB the router sent into each segment; the F_* constants number
# its fields.

F_SECS=5 F_SPREAD=6 F_RATE=7 F_WIRE=8 F_RCPU=10 F_US=11 F_SRSS=12 F_RRSS=13 F_OK=14 F_LINKS=15

secs_of_ticks() { awk -v t="$1" -v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }'; }
mib_of_kib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# tool_dir TOOL: the receivers' directory TOOL writes into.
tool_dir() {
  case $1 in
    makuo) echo base ;;
    rsync-*) echo rsync ;;
    *) echo "$1" ;;
  esac
}

# uftp_uid ADDR: the client id uftpd takes by default, its IPv4 address
# as 0xnnnnnnnn.
uftp_uid() {
  local a b c d
  IFS=. read -r a b c d <<<"$1"
  printf '0x%02x%02x%02x%02x' "$a" "$b" "$c" "$d"
}

# change_set SET RUN: before a mod1 or patch run, change SET on the sender
# (a new generation each time, so every tool pushes a real change); the
# paths that changed go to $TMP/changed. Sets MODINFO.
change_set() {
  MODINFO=""
  case $2 in
    mod1)
      MODGEN=$((MODGEN + 1))
      MODINFO=$("$BIN/benchdata" modify -list "$TMP/changed" "$SRC/$1" 1 "$MODGEN")
      ;;
    patch)
      PATCHGEN=$((PATCHGEN + 1))
      MODINFO=$("$BIN/benchdata" patch "$SRC/$1" "$PATCH_BYTES" "$PATCHGEN")
      ;;
  esac
}

# finish_row WHAT OUT MODE RC: the correctness verdict of a run whose
# trees check_trees compared: sets OK, reports a mismatch or failure.
finish_row() {
  local what=$1 out=$2 mode=$3 rc=$4
  OK=yes
  if [ -n "$BAD" ]; then
    OK=no
    printf '\n!!! MISMATCH: %s: tree differs from the sender on%s (%s check; log %s)\n\n' \
      "$what" "$BAD" "$mode" "$out" >&2
    PROBLEMS+=("MISMATCH $what on$BAD ($mode check)")
  fi
  if [ "$rc" != 0 ]; then
    OK=no
    local why="exit status $rc"
    [ "$rc" = 124 ] && why="TIMEOUT after ${RUN_TIMEOUT}s"
    printf '\n!!! FAILED: %s: %s; last output:\n' "$what" "$why" >&2
    tail -n 5 "$out" | sed 's/^/    /' >&2
    PROBLEMS+=("FAILED $what: $why (log $out)")
  fi
}

# run_case SET RUN TOOL [LABEL]: one measured run of makuo, rsync-seq,
# rsync-par or uftp (RUN: cold, resync, mod1, resync2 or patch); the row
# goes to ROW. LABEL names the row's scenario (default: SET's label-RUN).
run_case() {
  local set=$1 run=$2 tool=$3 label=${4:-${LABEL[$1]}-$2} dir rc=0 i p out
  local r=$((NHOSTS - 1))
  dir=$(tool_dir "$tool")
  [ "$run" = cold ] && clear_receivers "$dir"
  change_set "$set" "$run"
  sync
  RUN_NO=$((RUN_NO + 1))
  out=$(printf '%s/%03d-%s-%s-%s-%s-%dr.log' "$LOGS" "$RUN_NO" "$set" "$run" "$tool" "$SHAPED" "$r")
  : >"$out"
  local margs=("$SRC/$set")
  [ -d "$SRC/$set" ] && margs=(-r "$SRC/$set")
  local uargs=()
  if [ "$tool" = uftp ]; then
    # A closed group of the receivers, the sender's rate set to the
    # shaped link's (unshaped: as fast as the interface allows), blocks
    # sized to the MTU, and sync mode (-z: files a receiver holds with the
    # same mtime and size are declined), uftp's way of a resync.
    local hosts=""
    for ((i = 2; i <= NHOSTS; i++)); do hosts="$hosts${hosts:+,}$(uftp_uid "${ADDRS[i]}")"; done
    uargs=(-I eth0 -H "$hosts" -R -1 -b $((MTU - 100 < 8800 ? MTU - 100 : 8800)) -z -q -x 1)
    [ "$SHAPED" = none ] || uargs[5]=$((${SHAPED%M} * 1000))
  fi
  if [ "$tool" = makuo ]; then
    # Reset each makuosan's peak RSS (VmHWM) to its current RSS.
    for ((i = 1; i <= NHOSTS; i++)); do echo 5 2>/dev/null >"/proc/${MK_PIDS[i]}/clear_refs" || true; done
  elif [ "$tool" = uftp ]; then
    for ((i = 2; i <= NHOSTS; i++)); do echo 5 2>/dev/null >"/proc/${UF_PIDS[i]}/clear_refs" || true; done
  fi

  local tx0 tx1 d0 d1 t0 t1 c0=() c1=() pids=() l0=() l1=()
  tx0=$(tx_bytes)
  read -r -a l0 <<<"$(link_tx)"
  d0=$(qdisc_drops)
  local drops0=(0 0) drops1=(0 0)
  [ "$tool" != makuo ] || read -r -a drops0 <<<"$(rx_drops)"
  cpu_snapshot c0 "$tool" before
  t0=$EPOCHREALTIME
  case $tool in
    makuo)
      # msync talks to its daemon over a unix socket: like an operator on
      # the host, it runs outside the lab's namespace (ip netns exec would
      # add its own set-up to every push, a lab artifact).
      timeout "$RUN_TIMEOUT" "$BIN/msync" -c "unix:$TMP/h1/state/makuosan.sock" "${margs[@]}" >"$out" 2>&1 || rc=$?
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
    uftp)
      timeout "$RUN_TIMEOUT" ip netns exec "$NS1" uftp "${uargs[@]}" "$SRC/$set" >"$out" 2>&1 || rc=$?
      ;;
  esac
  t1=$EPOCHREALTIME
  cpu_snapshot c1 "$tool" after
  tx1=$(tx_bytes)
  read -r -a l1 <<<"$(link_tx)"
  d1=$(qdisc_drops)
  [ "$tool" != makuo ] || read -r -a drops1 <<<"$(rx_drops)"

  # CPU and RSS columns: the sender, and the maximum over the receivers.
  local scpu=- rcpu=- srss=- rrss=- us=- best=-1 d
  if [ -n "${c0[1]:-}" ] && [ -n "${c1[1]:-}" ]; then scpu=$(secs_of_ticks $((c1[1] - c0[1]))); fi
  for ((i = 2; i <= NHOSTS; i++)); do
    if [ -z "${c0[i]:-}" ] || [ -z "${c1[i]:-}" ]; then continue; fi
    d=$((c1[i] - c0[i]))
    [ "$d" -le "$best" ] || best=$d
  done
  if [ "$best" -ge 0 ]; then
    rcpu=$(secs_of_ticks "$best")
    # Per file only where there are many: for one file it would be the
    # cost of its bytes.
    if [ "$run" = cold ] && [ "${FILES[$set]:-0}" -gt 1 ]; then
      us=$(awk -v t="$best" -v h="$CLK_TCK" -v n="${FILES[$set]}" 'BEGIN { printf "%.1f", t / h * 1e6 / n }')
    fi
  fi
  if [ "$tool" = makuo ]; then
    vm_hwm "${MK_PIDS[1]}"
    [ -z "$HWM" ] || srss=$(mib_of_kib "$HWM")
  fi
  if [ "$tool" = makuo ] || [ "$tool" = uftp ]; then
    best=-1
    for ((i = 2; i <= NHOSTS; i++)); do
      if [ "$tool" = makuo ]; then vm_hwm "${MK_PIDS[i]}"; else vm_hwm "${UF_PIDS[i]}"; fi
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
  local links="" k
  for k in "${!l1[@]}"; do
    links="$links|$(awk -v a="${l0[k]}" -v b="${l1[k]}" 'BEGIN { printf "%.2f", (b - a) / 1048576 }')"
  done
  local what="$label $tool shaped=$SHAPED receivers=$r"
  finish_row "$what" "$out" "$mode" "$rc"
  local extra=""
  [ -z "$MODINFO" ] || extra="  $MODINFO"
  [ "$tool" != makuo ] || extra="$extra  msync: $(grep -E '^[0-9]+ members, ' "$out" | tail -n 1 || true)"
  [ "$SHAPED" = none ] || extra="$extra  qdisc drops: $((d1 - d0))"
  [ "$tool" != makuo ] || extra="$extra  receiver drops: kernel $((drops1[0] - drops0[0])), queue $((drops1[1] - drops0[1]))"
  [ -z "$links" ] || extra="$extra  router into segments: ${links//|/ } MiB"
  log "$(printf '%-22s %-9s %-5s %2dr %7ss %8s MiB wire  cpu %s/%s s  rss %s/%s MiB  correct=%s%s' \
    "$label" "$tool" "$SHAPED" "$r" "$secs" "$wire" "$scpu" "$rcpu" "$srss" "$rrss" "$OK" "$extra")"
  check_daemons "$what"
  [ "$OK" = yes ] || rate=-
  ROW="$label|$tool|$SHAPED|$r|$secs|-|$rate|$wire|$scpu|$rcpu|$us|$srss|$rrss|$OK$links"
}

# run_floor SET RUN [LABEL]: one run of the floor (RUN: cold, mod1 or
# patch) in the root namespace, from a tree of hard links to what the run
# writes (all of SET; for mod1 the files benchdata modify changed; for patch
# the whole file, rewritten durably over the old version as makuo does
# without reflinks) into the floor directory of every receiver of the lab,
# one destination each, on the receivers' filesystem. The row's seconds
# are floor's wall time (reading the source into memory is not timed),
# recv CPU its CPU / receivers, µs/file its CPU per file and destination.
run_floor() {
  local set=$1 run=$2 label=${3:-${LABEL[$1]}-$2} r=$((NHOSTS - 1)) i rc=0 out line
  local fsrc=$TMP/floorsrc dsts=()
  rm -rf "$fsrc"
  mkdir -p "$fsrc"
  [ "$run" = cold ] && clear_receivers floor
  change_set "$set" "$run"
  if [ "$run" = mod1 ]; then
    mkdir -p "$fsrc/$set"
    (cd "$SRC/$set" && xargs -r -d '\n' cp -al --parents -t "$fsrc/$set" <"$TMP/changed")
  else
    cp -al "$SRC/$set" "$fsrc/"
  fi
  for ((i = 2; i <= NHOSTS; i++)); do dsts+=("$TMP/h$i/floor"); done
  sync
  RUN_NO=$((RUN_NO + 1))
  out=$(printf '%s/%03d-%s-%s-floor-%dr.log' "$LOGS" "$RUN_NO" "$set" "$run" "$r")
  timeout "$RUN_TIMEOUT" "$BIN/floor" "$fsrc" "${dsts[@]}" >"$out" 2>&1 || rc=$?
  rm -rf "$fsrc"
  check_trees floor "$set" content
  line=$(grep '^floor: ' "$out" | tail -n 1 || true)
  local secs=- rcpu=- us=- rate=-
  if [ -n "$line" ]; then
    read -r secs rcpu us < <(awk -v r="$r" '{
      for (i = 1; i <= NF; i++) {
        if ($i == "wall") w = $(i + 1); if ($i == "user") u = $(i + 1); if ($i == "sys") s = $(i + 1)
        if ($i == "cpu" && $(i + 1) == "per") us = $(i - 2) }
      printf "%.2f %.2f %s\n", w, (u + s) / r, us }' <<<"$line")
    [ "$run" = cold ] && [ "${FILES[$set]:-0}" -gt 1 ] || us=-
  fi
  [ "$run" != cold ] || [ "$secs" = - ] ||
    rate=$(awk -v n="${BYTES[$set]}" -v s="$secs" 'BEGIN { if (s > 0) printf "%.1f", n / 1048576 / s; else print "-" }')
  local what="$label floor receivers=$r"
  finish_row "$what" "$out" content "$rc"
  [ -n "$line" ] || [ "$OK" = no ] || { OK=no; PROBLEMS+=("FAILED $what: no floor: line (log $out)"); }
  log "$(printf '%-22s %-9s %-5s %2dr %7ss  cpu %s s per receiver, %s µs per file  correct=%s%s' \
    "$label" floor - "$r" "$secs" "$rcpu" "$us" "$OK" "${MODINFO:+  $MODINFO}")"
  [ "$OK" = yes ] || rate=-
  ROW="$label|floor|-|$r|$secs|-|$rate|-|-|$rcpu|$us|-|-|$OK"
}

# measure N SET RUN TOOL [LABEL]: N runs of TOOL (run_case or run_floor;
# the floor has nothing to do in a no-change run, which is skipped), one
# row in ROWS: seconds, MiB/s, wire and CPU the median of the runs, spread
# their fastest-slowest seconds, RSS the largest, correct only if every
# run was, the router's links (in a routed lab) the medians.
# REP_SECS[SCENARIO|TOOL|SHAPED|RECEIVERS] keeps every run's seconds.
measure() {
  local n=$1 k rows=() key
  shift
  if [ "$3" = floor ]; then
    case $2 in resync*) return 0 ;; esac
  fi
  for ((k = 1; k <= n; k++)); do
    if [ "$3" = floor ]; then run_floor "$1" "$2" "${4:-}"; else run_case "$@"; fi
    rows+=("$ROW")
  done
  ROW=$(printf '%s\n' "${rows[@]}" | aggregate)
  ROWS+=("$ROW")
  key=$(cut -d'|' -f1-4 <<<"$ROW")
  REP_SECS[$key]=$(printf '%s\n' "${rows[@]}" | cut -d'|' -f"$F_SECS" | paste -sd' ')
}

# aggregate: the rows of one case's runs on stdin, their summary row out.
aggregate() {
  awk -F'|' -v OFS='|' '
    { n++; for (i = 1; i <= NF; i++) v[n, i] = $i; nf = NF; if ($14 != "yes") bad = 1 }
    # med(COL, FMT): the median of the numeric values of column COL.
    function med(col, fmt,   a, m, i, j, t) {
      m = 0
      for (i = 1; i <= n; i++) if (v[i, col] ~ /^[0-9.]+$/) a[++m] = v[i, col] + 0
      if (m == 0) return "-"
      for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
      lo = a[1]; hi = a[m]
      return sprintf(fmt, (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2)
    }
    function maxof(col,   m, i) {
      m = "-"
      for (i = 1; i <= n; i++) if (v[i, col] ~ /^[0-9.]+$/ && (m == "-" || v[i, col] + 0 > m + 0)) m = v[i, col]
      return m
    }
    END {
      if (n == 1) { for (i = 1; i <= nf; i++) printf "%s%s", v[1, i], (i < nf ? OFS : "\n"); exit }
      secs = med(5, "%.2f"); spread = (secs == "-") ? "-" : sprintf("%.2f-%.2f", lo, hi)
      links = ""
      for (i = 15; i <= nf; i++) links = links OFS med(i, "%.2f")
      print v[1, 1], v[1, 2], v[1, 3], v[1, 4], secs, spread, bad ? "-" : med(7, "%.1f"), med(8, "%.2f"),
        med(9, "%.2f"), med(10, "%.2f"), med(11, "%.1f"), maxof(12), maxof(13), (bad ? "no" : "yes") links
    }'
}
