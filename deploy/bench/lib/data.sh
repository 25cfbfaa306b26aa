# shellcheck shell=bash
# data.sh, sourced by transfer.sh and segments.sh: the data sets on the
# sender, the trees on the receivers and their comparison, and the
# receivers' tmpfs.

# mount_rx: with BENCH_FS=tmpfs, mount the receivers' tmpfs, sized for the
# chosen scenarios: room for one copy of the largest set on each receiver
# of the largest lab (two copies of a single file, which a delta run
# rewrites beside the old version), plus slack. The mixed set averages
# 1 MiB per 20 files; a file of 4 KiB takes 8 KiB (a page and the inode),
# a smaller one a page.
mount_rx() {
  [ "$FS" != disk ] || return 0
  local need=$((64 << 20)) s b maxr=0 r
  for r in $RECV_COUNTS; do [ "$r" -le "$maxr" ] || maxr=$r; done
  declare -A set_bytes=([big]=$((RECEIVERS * BIG_BYTES)) [huge]=$((RECEIVERS * HUGE_BYTES))
    [loss]=$((RECEIVERS * LOSS_BYTES)) [mixed]=$((RECEIVERS * MIXED_N * ((1 << 20) / 20 + 4096)))
    [small]=$((RECEIVERS * SMALL_N * (SMALL_MAX / 2 + 4096)))
    [files4k]=$((maxr * F4K_N * 8192)) [files4k-loss]=$((maxr * F4K_N * 8192))
    [file256]=$((maxr * 2 * F256_BYTES)) [delta]=$((maxr * 2 * F256_BYTES))
    [noop100k]=$((maxr * NOOP_N * 8192)))
  for s in "${!set_bytes[@]}"; do
    if want "$s"; then
      b=${set_bytes[$s]}
      need=$((need > b ? need : b))
    fi
  done
  if want scale; then
    maxr=0
    for r in $SCALE; do [ "$r" -le "$maxr" ] || maxr=$r; done
    need=$((need > maxr * BIG_BYTES ? need : maxr * BIG_BYTES))
  fi
  rx_fs $((need + need / 8))
}

# rx_fs BYTES: with BENCH_FS=tmpfs, mount a tmpfs of BYTES on $TMP/rx for
# the receivers (refused without the memory); with xfs, btrfs or ext4,
# RX_IMAGE_BYTES is BYTES, the size of each receiver's sparse image
# (mount_rx_host).
rx_fs() {
  local need=$1
  case $FS in
    disk) return 0 ;;
    xfs | btrfs | ext4)
      local pkg
      case $FS in xfs) pkg=xfsprogs ;; btrfs) pkg=btrfs-progs ;; ext4) pkg=e2fsprogs ;; esac
      command -v "mkfs.$FS" >/dev/null || die "BENCH_FS=$FS needs mkfs.$FS (apt-get install $pkg)"
      ;;
  esac
  if [ "$FS" != tmpfs ]; then
    RX_IMAGE_BYTES=$((need > (1 << 30) ? need : 1 << 30)) # XFS wants 300 MB at least
    mkdir -p "$TMP/rx" "$TMP/rx-img"
    return 0
  fi
  local avail
  avail=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo) # KiB
  avail=$((avail << 10))
  [ "$need" -le $((avail - (2 << 30))) ] ||
    die "BENCH_FS=tmpfs needs $((need >> 20)) MiB of memory for the receivers, $((avail >> 20)) MiB available: use BENCH_FS=disk or fewer scenarios"
  mkdir -p "$TMP/rx"
  mount -t tmpfs -o size="$need" makuo-bench "$TMP/rx" || die "cannot mount a tmpfs on $TMP/rx"
}

# mount_rx_host I: make receiver I's filesystem (BENCH_FS, reflinks on
# where it has them) in
# a sparse image of RX_IMAGE_BYTES and mount it on $TMP/rx/hI. Each
# receiver has its own, as separate hosts would: a receiver's syncfs
# flushes its own writes only.
mount_rx_host() {
  local img=$TMP/rx-img/h$1.img
  truncate -s "$RX_IMAGE_BYTES" "$img"
  case $FS in
    xfs) mkfs.xfs -q -f -m reflink=1 "$img" ;;
    btrfs) mkfs.btrfs -q -f "$img" >/dev/null ;;
    ext4) mkfs.ext4 -q -F "$img" ;;
  esac || die "mkfs.$FS $img failed"
  mount -o loop "$img" "$TMP/rx/h$1" || die "cannot loop-mount $img on $TMP/rx/h$1"
}

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
    files4k | files4k-loss) "$BIN/benchdata" fixed "$SRC/$set" "$F4K_N" "$F4K_DIRS" 4096 ;;
    file256) "$BIN/benchdata" file "$SRC/$set" "$F256_BYTES" ;;
    noop100k) "$BIN/benchdata" fixed "$SRC/$set" "$NOOP_N" "$NOOP_DIRS" 4096 ;;
  esac
  BYTES[$set]=$(find "$SRC/$set" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
  FILES[$set]=$(find "$SRC/$set" -type f | wc -l)
  sync
  log "generated $set: ${FILES[$set]} files, ${BYTES[$set]} bytes, $((SECONDS - t0)) s"
}

# drop_data SET: remove SET from the sender and everything from the receivers.
drop_data() {
  local d
  rm -rf "${SRC:?}/$1"
  for d in base rsync floor uftp; do clear_receivers "$d"; done
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

# clear_receivers DIR: empty DIR (base, rsync, floor or uftp) on every
# receiver.
clear_receivers() {
  local i pids=()
  for ((i = 2; i <= NHOSTS; i++)); do
    [ -d "$TMP/h$i/$1" ] || continue
    find "$TMP/h$i/$1" -mindepth 1 -delete &
    pids+=("$!")
  done
  for i in "${pids[@]}"; do wait "$i"; done
}
