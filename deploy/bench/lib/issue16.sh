# shellcheck shell=bash
# issue16.sh, sourced by transfer.sh: the receivers' CPU per applied file
# and the targets of issue 16, read from the table. The receiver counts
# and rates of the targets are the issue's; a case that was not run (not
# in BENCH_RECEIVERS, BENCH_RATES, BENCH_TOOLS or BENCH_SCENARIOS) reads
# "n/a (not run)".

# spread_of SECONDS... YARDSTICK: "WORST LO HI", every run's seconds over
# YARDSTICK, the slowest run's ratio first.
spread_of() {
  awk -v s="$1" -v f="$2" 'BEGIN { n = split(s, a, " "); lo = hi = a[1]
    for (i = 2; i <= n; i++) { if (a[i] + 0 < lo + 0) lo = a[i]; if (a[i] + 0 > hi + 0) hi = a[i] }
    printf "%.2f %.2f %.2f %d", hi / f, lo / f, hi / f, n }'
}

print_cpu_per_file() {
  want files4k || return 0
  local label="${LABEL[files4k]}-cold" r mbit sh m f x
  {
    echo "receivers|shaped|makuo µs/file|floor µs/file|makuo/floor"
    for r in $RECV_COUNTS; do
      get f "$label" floor - "$r" "$F_US" || f=-
      for mbit in $RATES_NEW; do
        sh=$(shaped_name "$mbit")
        get m "$label" makuo "$sh" "$r" "$F_US" || m=-
        x=-
        [ "$m" = - ] || [ "$f" = - ] || x=$(ratio "$m" "$f")
        echo "$r|$sh|$m|$f|$x"
      done
    done
  } | {
    echo "receiver CPU per applied file, ${LABEL[files4k]} cold (medians of the runs): makuo = the busiest receiver's makuosan CPU / files; floor = its CPU per file and destination"
    table 1 5 | sed 's/^/  /'
  }
  echo
}

# targets_files4k: issue 16's targets on the 4 KiB files.
targets_files4k() {
  local l=${LABEL[files4k]}-cold r sh m f w x lo hi n link b m3 m12 q
  for r in 3 6; do
    for sh in none 500M; do
      local name="files4k cold, $r receivers, $sh: makuo / floor, every run"
      if get f "$l" floor - "$r" && get m "$l" makuo "$sh" "$r"; then
        read -r x lo hi n <<<"$(spread_of "${REP_SECS[$l|makuo|$sh|$r]}" "$f")"
        target "$name" "<= 1.15" le 1.15 "$x" "worst ${x}x (${lo}-${hi}x over $n run$([ "$n" = 1 ] || echo s); makuo median $m s, floor $f s)"
      else
        target "$name" "<= 1.15" le 1.15 "" "$WHY"
      fi
    done
  done
  for r in 3 6; do
    local name="files4k cold, $r receivers, 500M: makuo wire / payload"
    if get w "$l" makuo 500M "$r" "$F_WIRE"; then
      x=$(awk -v w="$w" -v b="${BYTES[files4k]}" 'BEGIN { printf "%.3f", w * 1048576 / b }')
      target "$name" "<= 1.1" le 1.1 "$x" "$w MiB / $(awk -v b="${BYTES[files4k]}" 'BEGIN { printf "%.2f", b / 1048576 }') MiB = $x"
    else
      target "$name" "<= 1.1" le 1.1 "" "$WHY"
    fi
  done
  for r in 3 6 12; do
    local name="receiver CPU per file, files4k cold, $r receivers, none: makuo / floor"
    if get m "$l" makuo none "$r" "$F_US" && get f "$l" floor - "$r" "$F_US"; then
      x=$(ratio "$m" "$f")
      target "$name" "<= 1.3" le 1.3 "$x" "$m µs / $f µs = $x"
    else
      target "$name" "<= 1.3" le 1.3 "" "$WHY"
    fi
  done
  local name="receiver CPU per file flat: makuo cpu(12) / cpu(3), none"
  if get m12 "$l" makuo none 12 "$F_US" && get m3 "$l" makuo none 3 "$F_US"; then
    x=$(ratio "$m12" "$m3")
    target "$name" "<= 1.2" le 1.2 "$x" "$m12 µs / $m3 µs = $x"
  else
    target "$name" "<= 1.2" le 1.2 "" "$WHY"
  fi
  link=$(link_secs "${BYTES[files4k]:-0}" 100)
  for r in 3 6 12; do
    local name="files4k cold, $r receivers, 100M: makuo / max(link time, floor)"
    if get m "$l" makuo 100M "$r" && get f "$l" floor - "$r"; then
      b=$(awk -v a="$link" -v f="$f" 'BEGIN { print (a > f) ? a : f }')
      x=$(ratio "$m" "$b")
      target "$name" "<= 1.15" le 1.15 "$x" "$m s / max($link s, $f s) = $x"
    else
      target "$name" "<= 1.15" le 1.15 "" "$WHY"
    fi
  done
  for r in 3 6; do
    local goal=2
    [ "$r" = 3 ] || goal=3.5
    local name="files4k cold, $r receivers, 100M: rsync-par / makuo"
    if get m "$l" makuo 100M "$r" && get q "$l" rsync-par 100M "$r"; then
      x=$(ratio "$q" "$m")
      target "$name" ">= $goal" ge "$goal" "$x" "$q s / $m s = ${x}x"
    else
      target "$name" ">= $goal" ge "$goal" "" "$WHY"
    fi
  done
  name="files4k cold, 100M: makuo time(12) / time(3)"
  if get m12 "$l" makuo 100M 12 && get m3 "$l" makuo 100M 3; then
    x=$(ratio "$m12" "$m3")
    target "$name" "<= 1.2" le 1.2 "$x" "$m12 s / $m3 s = $x"
  else
    target "$name" "<= 1.2" le 1.2 "" "$WHY"
  fi
}

# targets_file256: issue 16's targets on the 256 MiB file and its delta.
targets_file256() {
  local l=${LABEL[file256]}-cold d=${LABEL[delta]}-patch r m f q u x link m3 m6 name
  for r in $RECV_COUNTS; do
    name="delta ($((PATCH_BYTES >> 10)) KiB in the middle), $r receivers, none: makuo / durable floor (the whole file)"
    if get m "$d" makuo none "$r" && get f "$d" floor - "$r"; then
      x=$(ratio "$m" "$f")
      target "$name" "<= 1.2" le 1.2 "$x" "$m s / $f s = $x"
    else
      target "$name" "<= 1.2" le 1.2 "" "$WHY"
    fi
    if [ "$FS" = xfs ] || [ "$FS" = btrfs ]; then
      name="delta, $r receivers, none, on $FS (reflinks): makuo"
      if get m "$d" makuo none "$r"; then
        target "$name" "<= 0.4 s" le 0.4 "$m" "$m s"
      else
        target "$name" "<= 0.4 s" le 0.4 "" "$WHY"
      fi
    fi
    name="delta, $r receivers, none: rsync-par / makuo"
    if get m "$d" makuo none "$r" && get q "$d" rsync-par none "$r"; then
      x=$(ratio "$q" "$m")
      target "$name" "> 1 (makuo ahead)" gt 1 "$x" "$q s / $m s = ${x}x"
    else
      target "$name" "> 1 (makuo ahead)" gt 1 "" "$WHY"
    fi
  done
  link=$(link_secs "${BYTES[file256]:-0}" 500)
  for r in $RECV_COUNTS; do
    name="file256 cold, $r receivers, 500M: makuo / link time"
    if get m "$l" makuo 500M "$r"; then
      x=$(ratio "$m" "$link")
      target "$name" "<= 1.1" le 1.1 "$x" "$m s / $link s = $x"
    else
      target "$name" "<= 1.1" le 1.1 "" "$WHY"
    fi
  done
  name="file256 cold, 500M: makuo time(6) / time(3)"
  if get m6 "$l" makuo 500M 6 && get m3 "$l" makuo 500M 3; then
    x=$(ratio "$m6" "$m3")
    target "$name" "<= 1.1" le 1.1 "$x" "$m6 s / $m3 s = $x"
  else
    target "$name" "<= 1.1" le 1.1 "" "$WHY"
  fi
  for r in $RECV_COUNTS; do
    name="file256 cold, $r receivers, none: makuo / rsync-par"
    if get m "$l" makuo none "$r" && get q "$l" rsync-par none "$r"; then
      x=$(ratio "$m" "$q")
      target "$name" "<= 1" le 1 "$x" "$m s / $q s = $x"
    else
      target "$name" "<= 1" le 1 "" "$WHY"
    fi
  done
  [[ " $TOOLS_NEW " == *" uftp "* ]] || return 0
  for r in $RECV_COUNTS; do
    name="file256 cold, $r receivers, 500M: uftp / makuo"
    if get m "$l" makuo 500M "$r" && get u "$l" uftp 500M "$r"; then
      x=$(ratio "$u" "$m")
      target "$name" "> 1 (makuo ahead)" gt 1 "$x" "$u s / $m s = ${x}x"
    else
      target "$name" "> 1 (makuo ahead)" gt 1 "" "$WHY"
    fi
  done
}

# targets_rest: loss, no-change pushes, memory.
targets_rest() {
  local r m z x name sh w rss best=""
  for r in $RECV_COUNTS; do
    name="files4k-loss cold, $r receivers, none: ${F4K_LOSS_PCT}% loss / no loss"
    if get m "${LABEL[files4k-loss]}-cold" makuo none "$r" && get z "${LABEL[files4k-noloss]}-cold" makuo none "$r"; then
      x=$(ratio "$m" "$z")
      target "$name" "<= 1.2" le 1.2 "$x" "$m s / $z s = $x"
    else
      target "$name" "<= 1.2" le 1.2 "" "$WHY"
    fi
  done
  for r in $RECV_COUNTS; do
    name="noop: files4k resync, $r receivers, none: makuo"
    if get m "${LABEL[files4k]}-resync" makuo none "$r"; then
      target "$name" "<= 0.1 s" le 0.1 "$m" "$m s"
    else
      target "$name" "<= 0.1 s" le 0.1 "" "$WHY"
    fi
  done
  for r in $RECV_COUNTS; do
    name="noop: noop100k resync ($NOOP_N files), $r receivers, none: makuo"
    if get m "${LABEL[noop100k]}-resync" makuo none "$r"; then
      target "$name" "<= 1 s" le 1 "$m" "$m s"
    else
      target "$name" "<= 1 s" le 1 "" "$WHY"
    fi
  done
  for sh in "${SHAPE_MBIT}M" none; do
    name="loss ${LOSS_PCT}% ($RECEIVERS receivers), $sh: makuo wire / payload"
    if get w "${LABEL[loss]}-cold" makuo "$sh" "$RECEIVERS" "$F_WIRE"; then
      x=$(awk -v w="$w" -v b="$LOSS_BYTES" 'BEGIN { printf "%.3f", w * 1048576 / b }')
      target "$name" "<= 1.3" le 1.3 "$x" "$x"
    else
      target "$name" "<= 1.3" le 1.3 "" "$WHY"
    fi
  done
  WHY="n/a (not run)"
  for r in $RECV_COUNTS; do
    if get rss "${LABEL[noop100k]}-cold" makuo none "$r" "$F_RRSS"; then
      best=$(awk -v a="$best" -v b="$rss" 'BEGIN { print (a == "" || b + 0 > a + 0) ? b : a }')
    fi
  done
  name="receiver RSS during a $NOOP_N-file push (noop100k cold, largest over the receiver counts)"
  if [ -n "$best" ]; then
    target "$name" "<= 150 MiB" le 150 "$best" "$best MiB"
  else
    target "$name" "<= 150 MiB" le 150 "" "$WHY"
  fi
}

print_targets16() {
  {
    echo "target|measured|goal|verdict"
    targets_files4k
    targets_file256
    targets_rest
  } | {
    echo "targets (issue 16), makuo revision $REV$([ "$QUICK" = 1 ] && echo "; BENCH_QUICK=1: small sets, so fixed costs weigh more than the targets assume")$([ "$FS" = tmpfs ] && echo "; BENCH_FS=tmpfs: syncs are free, the issue's figures want disk")":
    table 0 0 | sed 's/^/  /'
  }
  echo
}
