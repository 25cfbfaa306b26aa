#!/usr/bin/env bash
# lab.sh: a multi-host lab on one machine, made of network namespaces.
#
#   lab.sh up NAME N         create hosts NAME-h1..NAME-hN on a bridge
#   lab.sh down NAME         remove the lab (idempotent)
#   lab.sh exec NAME I CMD…  run CMD on host I
#   lab.sh addr I            print host I's address
#   lab.sh loss NAME I PCT   drop PCT% of UDP arriving at host I (0 removes)
#   lab.sh cut NAME I on|off partition host I (drop all its traffic) or heal it
#   lab.sh shape NAME I MBIT egress rate limit on host I (0 removes)
#   lab.sh list              list labs
#
# LAB_MTU=9000 lab.sh up ... builds a jumbo-frame lab.
# Every host's eth0 cuts segmentation-offload sends into packets before they
# leave (gso_max_segs 1), so that the bridge, loss and partitions act on
# single datagrams as on a real wire. LAB_OFFLOAD=1 keeps such sends whole
# up to the receiving socket: a model of NIC offload at both ends (where
# the segmenting and coalescing happen in hardware) for performance runs;
# loss then hits whole bursts.
# The bridge lives in its own namespace NAME-br, so nothing touches the
# machine's own network. Host I is 10.77.0.(10+I)/24 on its eth0; the /24
# exists only inside these namespaces, and every lab reuses it, since labs
# never share a bridge. Needs root, iproute2 and, for loss/cut, nftables.
set -euo pipefail

SUBNET=10.77.0
# LAB_MTU sets every link's MTU (9000 for jumbo-frame runs); default 1500.
MTU=${LAB_MTU:-1500}
OFFLOAD=${LAB_OFFLOAD:-0}
die() { echo "lab.sh: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"

addr() { echo "$SUBNET.$((10 + $1))"; }

check_name() {
  [[ "$1" =~ ^[a-zA-Z0-9_]{1,12}$ ]] || die "lab name must be 1-12 letters, digits or _: $1"
}

up() {
  local name=$1 n=$2 i
  check_name "$name"
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "host count must be 1-200: $n"
  down "$name"
  ip netns add "$name-br"
  ip -n "$name-br" link add br0 type bridge
  # Snooping would need an IGMP querier; without one, flooding is what a
  # small switch does and what the tests want.
  ip -n "$name-br" link set br0 type bridge mcast_snooping 0
  ip -n "$name-br" link set br0 mtu "$MTU" up
  ip -n "$name-br" link set lo up
  for i in $(seq 1 "$n"); do
    local h="$name-h$i"
    ip netns add "$h"
    ip link add eth0 netns "$h" mtu "$MTU" type veth peer name "v$i" netns "$name-br" mtu "$MTU"
    ip -n "$name-br" link set "v$i" master br0
    ip -n "$name-br" link set "v$i" up
    ip -n "$h" link set lo up
    ip -n "$h" addr add "$(addr "$i")/24" dev eth0
    [ "$OFFLOAD" = 1 ] || ip -n "$h" link set eth0 gso_max_segs 1
    ip -n "$h" link set eth0 up
    ip -n "$h" route add 224.0.0.0/4 dev eth0
  done
}

down() {
  local name=$1 ns
  check_name "$name"
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$name-(br|h[0-9]+)$" || true); do
    # Kill what still runs inside, or the namespace lingers.
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns"
  done
}

nft_host() {
  local name=$1 i=$2
  shift 2
  ip netns exec "$name-h$i" nft "$@"
}

loss() {
  local name=$1 i=$2 pct=$3
  nft_host "$name" "$i" delete table inet lablossy 2>/dev/null || true
  [ "$pct" = 0 ] && return 0
  nft_host "$name" "$i" -f - <<NFT
table inet lablossy {
  chain input {
    type filter hook input priority 0; policy accept;
    meta l4proto udp numgen random mod 100 < $pct counter drop
  }
}
NFT
}

cut() {
  local name=$1 i=$2 mode=$3
  nft_host "$name" "$i" delete table inet labcut 2>/dev/null || true
  [ "$mode" = off ] && return 0
  [ "$mode" = on ] || die "cut: want on or off"
  nft_host "$name" "$i" -f - <<NFT
table inet labcut {
  chain input { type filter hook input priority -10; policy accept; iifname "eth0" drop; }
  chain output { type filter hook output priority -10; policy accept; oifname "eth0" drop; }
}
NFT
}

shape() {
  local name=$1 i=$2 mbit=$3
  ip netns exec "$name-h$i" tc qdisc del dev eth0 root 2>/dev/null || true
  [ "$mbit" = 0 ] && return 0
  ip netns exec "$name-h$i" tc qdisc add dev eth0 root tbf rate "${mbit}mbit" burst 256kb latency 50ms
}

cmd=${1:-}
shift || true
case "$cmd" in
  up) [ $# = 2 ] || die "usage: lab.sh up NAME N"; up "$@" ;;
  down) [ $# = 1 ] || die "usage: lab.sh down NAME"; down "$1" ;;
  exec) [ $# -ge 3 ] || die "usage: lab.sh exec NAME I CMD..."; name=$1 i=$2; shift 2; exec ip netns exec "$name-h$i" "$@" ;;
  addr) [ $# = 1 ] || die "usage: lab.sh addr I"; addr "$1" ;;
  loss) [ $# = 3 ] || die "usage: lab.sh loss NAME I PCT"; loss "$@" ;;
  cut) [ $# = 3 ] || die "usage: lab.sh cut NAME I on|off"; cut "$@" ;;
  shape) [ $# = 3 ] || die "usage: lab.sh shape NAME I MBIT"; shape "$@" ;;
  list) ip netns list | awk '{print $1}' | sed -n 's/-br$//p' ;;
  *) die "usage: lab.sh up|down|exec|addr|loss|cut|shape|list ..." ;;
esac
