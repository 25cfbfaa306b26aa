# shellcheck shell=bash
# report.sh, sourced by transfer.sh: the header, the table, the scale and
# loss lines and the targets of issue 7, and the helpers that read the
# table and write targets lines (also used by issue16.sh and segments.sh).

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
# when there is no such row (COLUMN: one of the F_* numbers).
field() {
  local row
  for row in "${ROWS[@]}"; do
    if [[ "$row" == "$1|$2|$3|$4|"* ]]; then cut -d'|' -f"$5" <<<"$row"; return; fi
  done
}

# secs_ok SCENARIO TOOL SHAPED RECEIVERS [COLUMN]: the row's seconds (or
# COLUMN) if it exists and is correct; else prints why not and fails.
secs_ok() {
  local ok
  ok=$(field "$1" "$2" "$3" "$4" "$F_OK")
  case $ok in
    yes) field "$1" "$2" "$3" "$4" "${5:-$F_SECS}" ;;
    "") echo "n/a (not run)"; return 1 ;;
    *) echo "n/a (run failed)"; return 1 ;;
  esac
}

# rss_max SET-PREFIX: the largest makuosan peak RSS (send or receive) over the
# correct makuo rows whose scenario starts with SET-PREFIX; empty if none.
rss_max() {
  printf '%s\n' "${ROWS[@]}" | awk -F'|' -v p="$1" -v s="$F_SRSS" -v r="$F_RRSS" -v ok="$F_OK" '
    index($1, p) == 1 && $2 == "makuo" && $ok == "yes" {
      for (i = s; i <= r; i++) if ($i != "-" && (m == "" || $i + 0 > m + 0)) m = $i }
    END { print m }'
}

# shaped_name MBIT: the shaped column of rows at MBIT Mbit/s.
shaped_name() { if [ "$1" = 0 ]; then echo none; else echo "${1}M"; fi; }

# get VAR SCENARIO TOOL SHAPED RECEIVERS [COLUMN]: VAR = the correct row's
# seconds (or COLUMN); else fails with WHY saying why not.
get() {
  local -n val=$1
  if val=$(secs_ok "$2" "$3" "$4" "$5" "${6:-$F_SECS}"); then
    [ "$val" = - ] || return 0
    WHY="n/a (no figure: $3, $4, $5 receivers)"
    return 1
  fi
  WHY="$val: $3, $4, $5 receivers"
  return 1
}

# target NAME GOAL OP LIMIT VALUE MEASURED: one line of the block; VALUE
# empty: MEASURED says why there is no verdict.
target() {
  local v=-
  [ -z "$5" ] || v=$(verdict "$5" "$3" "$4")
  echo "$1|$6|$2|$v"
}

# verdict VALUE OP LIMIT: met or MISSED (OP: le, lt, gt, ge).
verdict() {
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
    ok = (op == "le") ? v <= l : (op == "lt") ? v < l : (op == "gt") ? v > l : v >= l
    print ok ? "met" : "MISSED" }'
}

# ratio A B: A / B with 2 decimals (0 when B is 0).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print 0 }'; }

# link_secs BYTES MBIT: the time BYTES take at MBIT Mbit/s.
link_secs() { awk -v b="$1" -v r="$2" 'BEGIN { printf "%.2f", b * 8 / (r * 1e6) }'; }

print_header() {
  echo
  echo "makuo transfer benchmark ($([ "$QUICK" = 1 ] && echo "BENCH_QUICK=1, ")$(nproc) CPUs, MTU $MTU, one kernel: all hosts share CPU, disk and page cache; load average at start $load_start)"
  echo "makuo revision $REV (the figures below come from binaries built from it)${SUITE:+; BENCH_SUITE=$SUITE}"
  echo "receivers' directories on $FS$(case $FS in xfs | btrfs | ext4) echo " (one loop-mounted filesystem per receiver$([ "$FS" = ext4 ] || echo ", reflinks on"), its image on the temp dir's disk)" ;; esac); LAB_OFFLOAD=$OFFLOAD (loss runs: 0)$([ "$OFFLOAD" = 1 ] && echo "; with offload, tx bytes count an offloaded burst's headers once")"
  if [ "$FS" = tmpfs ]; then
    echo "BENCH_FS=tmpfs: fsync and syncfs cost nothing on tmpfs (makuo's and the floor's durable writes are free here); issue 16's figures are taken with BENCH_FS=ext4 (its suite's default)"
  fi
  echo "scenarios: $SCENARIOS; MiB/s = data set size / seconds (every receiver gets the whole set); wire MiB = sender eth0 tx bytes"
  if want_new; then
    echo "issue 16's scenarios: receivers $RECV_COUNTS (a fresh lab each), rates $RATES_NEW (file256/delta: 0 and >= $FILE_MIN_MBIT), tools $TOOLS_NEW; BENCH_RUNS=$RUNS runs of each measured case: seconds = their median, spread = fastest-slowest"
  fi
  echo "CPU s = user+system seconds during the run: send = makuosan on h1, or the rsync/uftp clients; recv = the busiest receiver's makuosan, rsync daemon with its children, or uftpd"
  echo "recv µs/file (cold runs) = busiest receiver's CPU / files; floor: its CPU per file and destination"
  [[ " $TOOLS_OLD $TOOLS_NEW " != *" floor "* ]] ||
    echo "floor = deploy/bench/floor in the root namespace, one destination per receiver on the receivers' filesystem: seconds = its wall time, recv CPU = its CPU / receivers; no row for no-change runs"
  echo "RSS MiB = makuosan (recv: or uftpd) peak resident set during the run (VmHWM; recv: the largest receiver); - for rsync"
  [ -z "$UFTP_NOTE" ] || echo "$UFTP_NOTE"
  echo
}

# print_table: the rows, without the spread and µs/file columns when no
# row has one.
print_table() {
  {
    echo "scenario|tool|shaped|receivers|seconds|spread|MiB/s|wire MiB|send CPU s|recv CPU s|recv µs/file|send RSS MiB|recv RSS MiB|correct"
    printf '%s\n' "${ROWS[@]}"
  } | awk -F'|' -v OFS='|' -v sp="$F_SPREAD" -v us="$F_US" '
    { l[NR] = $0; if (NR > 1) { if ($sp != "-") keep[sp] = 1; if ($us != "-") keep[us] = 1 } }
    END { for (r = 1; r <= NR; r++) { n = split(l[r], c, "|"); out = ""
            for (i = 1; i <= n; i++) if ((i != sp && i != us) || keep[i]) out = out (out == "" ? "" : "|") c[i]
            print out } }' | table 5 13
  echo
}

# print_summaries: the scale line and the loss lines, when run.
print_summaries() {
  shaped=${SHAPE_MBIT}M
  scale_ratio="n/a"
  if want scale; then
    scale_min=$(tr ' ' '\n' <<<"$SCALE" | grep . | sort -n | head -n1)
    scale_max=$(tr ' ' '\n' <<<"$SCALE" | grep . | sort -n | tail -n1)
    if smin=$(secs_ok "${LABEL[scale]}-cold" makuo "${SCALE_MBIT}M" "$scale_min") &&
      smax=$(secs_ok "${LABEL[scale]}-cold" makuo "${SCALE_MBIT}M" "$scale_max"); then
      scale_ratio=$(awk -v a="$smin" -v b="$smax" 'BEGIN { printf "%.2f", b / a }')
    fi
    printf 'scale: %s cold, makuo, sender shaped to %s Mbit/s: time(%s)/time(%s) = %s; link time of %s at %s Mbit/s = %s s\n\n' \
      "${LABEL[scale]}" "$SCALE_MBIT" "$scale_max" "$scale_min" "$scale_ratio" "$(size_label "$BIG_BYTES")" "$SCALE_MBIT" \
      "$(link_secs "$BIG_BYTES" "$SCALE_MBIT")"
  fi
  if want loss; then
    local sh w
    for sh in "$shaped" none; do
      w=$(field "${LABEL[loss]}-cold" makuo "$sh" "$RECEIVERS" "$F_WIRE")
      [ -z "$w" ] && continue
      printf 'loss: %s cold, makuo, %s%% UDP loss at every receiver, shaped %s: wire/payload = %s MiB / %s MiB = %s\n' \
        "${LABEL[loss]}" "$LOSS_PCT" "$sh" "$w" "$((LOSS_BYTES >> 20))" \
        "$(awk -v w="$w" -v b="$LOSS_BYTES" 'BEGIN { printf "%.3f", w * 1048576 / b }')"
    done
    echo
  fi
}

# print_targets7: the targets of issue 7, each with the measured value, when
# one of its scenarios ran.
print_targets7() {
  local s any=0 label link over m q x sh v h b w ok
  for s in $OLD_SCENARIOS; do if want "$s"; then any=1; fi; done
  [ "$any" = 1 ] || return 0
  {
    echo "target|measured|goal|verdict"
    if want big; then
      label="${LABEL[big]}-cold"
      link=$(link_secs "$BIG_BYTES" "$SHAPE_MBIT")
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
          x=$(ratio "$q" "$m")
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
        x=$(ratio "$h" "$b")
        echo "RSS: makuosan peak, huge vs big runs|$h MiB vs $b MiB = ${x}x|not growing (<= 1.2x)|$(verdict "$x" le 1.2)"
      else
        echo "RSS: makuosan peak, huge vs big runs|n/a|not growing (<= 1.2x)|-"
      fi
    fi
    if want loss; then
      for sh in "$shaped" none; do
        w=$(field "${LABEL[loss]}-cold" makuo "$sh" "$RECEIVERS" "$F_WIRE")
        ok=$(field "${LABEL[loss]}-cold" makuo "$sh" "$RECEIVERS" "$F_OK")
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
}
