# shellcheck shell=bash
# scenarios.sh, sourced by transfer.sh: the scenarios, each a sequence of
# labs, data sets and measured runs.

# tool_runs SET N TOOL RUNS...: each run of RUNS (cold:K for K runs, K
# defaulting to N) of TOOL on SET, then TOOL's copies removed from the
# receivers (the disk holds one copy per receiver, not one per tool). A run
# may name its row's scenario: cold:K:LABEL.
tool_runs() {
  local set=$1 n=$2 tool=$3 spec run k label
  shift 3
  for spec in "$@"; do
    IFS=: read -r run k label <<<"$spec"
    measure "${k:-$n}" "$set" "$run" "$tool" "$label"
  done
  clear_receivers "$(tool_dir "$tool")"
}

# set_tools SET N RATES TOOLS RUNS...: in the current lab, the floor's runs
# once (it does not use the network), then for each rate of RATES and each
# other tool of TOOLS the runs, as tool_runs.
set_tools() {
  local set=$1 n=$2 rates=$3 tools=$4 mbit tool
  shift 4
  if [[ " $tools " == *" floor "* ]]; then tool_runs "$set" "$n" floor "$@"; fi
  for mbit in $rates; do
    set_shape "$mbit"
    for tool in $tools; do
      [ "$tool" = floor ] || tool_runs "$set" "$n" "$tool" "$@"
    done
  done
}

# run_set SET: a fresh main lab, SET generated, then for each shaping and
# tool SET's runs in order; SET removed afterwards. The Go runtime keeps
# freed heap for a while, so fresh daemons per set keep one set's peak RSS
# out of the next set's figures.
run_set() {
  local set=$1 runs=(cold resync)
  [ "$set" = small ] && runs=(cold resync mod1 resync2)
  start_cluster "$RECEIVERS"
  gen_data "$set"
  set_tools "$set" 1 "$RATES_OLD" "$TOOLS_OLD" "${runs[@]}"
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
  measure 1 loss cold makuo
  set_shape 0
  measure 1 loss cold makuo
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
    measure 1 scale cold makuo
    clear_receivers base
  done
  drop_data scale
}

# run_files4k: the 4 KiB files, for each receiver count a fresh lab, every
# tool and rate: cold, no-change resync, a 1% change.
run_files4k() {
  local r
  gen_data files4k
  for r in $RECV_COUNTS; do
    start_cluster "$r"
    set_tools files4k "$RUNS" "$RATES_NEW" "$TOOLS_NEW" cold resync mod1
  done
  drop_data files4k
}

# run_file256: the 256 MiB file (file256 and delta share it), for each
# receiver count a fresh lab, every tool, the rates of at least
# FILE_MIN_MBIT and unshaped: file256's cold runs (delta alone: one cold
# run, to have something to change), then delta's: 4 KiB overwritten in
# the middle and pushed again.
run_file256() {
  local r mbit rates="" runs=()
  for mbit in $RATES_NEW; do
    if [ "$mbit" = 0 ] || [ "$mbit" -ge "$FILE_MIN_MBIT" ]; then rates="$rates $mbit"; fi
  done
  if [ -z "$rates" ]; then
    log "file256/delta: no rate of BENCH_RATES is 0 or at least $FILE_MIN_MBIT Mbit/s: skipped"
    return 0
  fi
  if want file256; then runs+=(cold); else runs+=("cold:1:${LABEL[delta]}-cold"); fi
  if want delta; then runs+=("patch::${LABEL[delta]}-patch"); fi
  gen_data file256
  for r in $RECV_COUNTS; do
    start_cluster "$r"
    set_tools file256 "$RUNS" "$rates" "$TOOLS_NEW" "${runs[@]}"
  done
  drop_data file256
}

# run_files4k_loss: makuo, the 4 KiB files cold in a per-packet lab,
# unshaped, without loss and then with F4K_LOSS_PCT% of the UDP arriving
# at every receiver dropped.
run_files4k_loss() {
  local r i
  gen_data files4k-loss
  for r in $RECV_COUNTS; do
    start_cluster "$r" 0
    set_shape 0
    measure "$RUNS" files4k-loss cold makuo "${LABEL[files4k-noloss]}-cold"
    for ((i = 2; i <= NHOSTS; i++)); do "$lab" loss "$LAB" "$i" "$F4K_LOSS_PCT"; done
    measure "$RUNS" files4k-loss cold makuo
    for ((i = 2; i <= NHOSTS; i++)); do "$lab" loss "$LAB" "$i" 0; done
    clear_receivers base
  done
  drop_data files4k-loss
}

# run_noop100k: makuo, unshaped, for each receiver count a fresh lab: one
# cold push of the 100,000 files (the receivers' peak RSS of a push that
# size), then no-change resyncs.
run_noop100k() {
  local r
  gen_data noop100k
  for r in $RECV_COUNTS; do
    start_cluster "$r"
    set_shape 0
    measure 1 noop100k cold makuo
    measure "$RUNS" noop100k resync makuo
    clear_receivers base
  done
  drop_data noop100k
}
