#!/usr/bin/env bash
# lab.sh: a multi-host lab on one machine, made of network namespaces.
#
#   lab.sh up NAME N         create hosts NAME-h1..NAME-hN on a bridge
#   lab.sh down NAME         remove the lab (idempotent)
#   lab.sh exec NAME I CMD…  run CMD on host I
#   lab.sh addr I            print host I's address
#   lab.sh addr6 I           print host I's IPv6 address
#   lab.sh loss NAME I PCT   drop PCT% of UDP arriving at host I (0 removes)
#   lab.sh cut NAME I on|off partition host I (drop all its traffic) or heal it
#   lab.sh shape NAME I MBIT egress rate limit on host I (0 removes)
#   lab.sh nomcast NAME on|off  drop every multicast frame (IGMP, MLD,
#                            the group's datagrams) on the lab's bridges,
#                            as a cloud's network or a container bridge
#                            without multicast does; IPv6 neighbour
#                            discovery still passes; `nomcast NAME count`
#                            prints how many frames were dropped
#   lab.sh list              list labs
#
# A routed lab: segments joined by one multicast router.
#   lab.sh routed-up NAME S P     S segments of P hosts each, one router
#   lab.sh mroute NAME on|off     start or stop the router's smcrouted
#   lab.sh shape-link NAME S MBIT rate limit the router's egress into
#                                 segment S (0 removes)
#   lab.sh routed-addr S J        print host J of segment S's address
# (down, exec, loss, cut and shape work on routed labs too.)
#
# LAB_MTU=9000 lab.sh up ... builds a jumbo-frame lab. LAB_NOMCAST=1
# lab.sh up|routed-up ... builds it with nomcast on. LAB_MROUTE=off
# lab.sh routed-up ... leaves the router without multicast routing: it
# forwards unicast only, as a cloud's or a campus's network without PIM
# does (smcrouted need not be installed; lab.sh mroute NAME on starts it).
# Every host's eth0 cuts segmentation-offload sends into packets before they
# leave (gso_max_segs 1), so that the bridge, loss and partitions act on
# single datagrams as on a real wire. LAB_OFFLOAD=1 keeps such sends whole
# up to the receiving socket: a model of NIC offload at both ends (where
# the segmenting and coalescing happen in hardware) for performance runs;
# loss then hits whole bursts.
# The bridge lives in its own namespace NAME-br, so nothing touches the
# machine's own network. Host I is 10.77.0.(10+I)/24 on its eth0; the /24
# exists only inside these namespaces, and every lab reuses it, since labs
# never share a bridge. Host I also has fd77::(10+I)/64 (a unique local
# prefix, as private as the /24) and its link-local address, both usable
# as soon as the link is up (no duplicate address detection: the lab
# assigns every address), for IPv6 groups (-m ff02::108 -i eth0). Needs
# root, iproute2 and, for loss/cut, nftables.
#
# In a routed lab each segment S has its bridge in NAME-brS and the /24
# 10.77.S.0 (S from 1, so never the flat lab's 10.77.0.0/24, though labs
# never share a namespace anyway); host J of segment S is 10.77.S.(10+J),
# named NAME-hI with I = (S-1)*P + J, so exec, loss, cut and shape address
# it as in a flat lab. The router NAME-rt has ethS = 10.77.S.1 on each
# segment, forwards unicast (ip_forward) and, through smcrouted (Debian
# package smcroute), the multicast group LAB_GROUP (default 239.192.0.108;
# a GROUP/LEN forwards a range) from every segment to every other. Hosts
# route everything via their segment's router. smcrouted's config, pid file,
# socket and log are under /run/makuo-lab/NAME/, so labs never collide.
set -euo pipefail

SUBNET=10.77.0
# LAB_MTU sets every link's MTU (9000 for jumbo-frame runs); default 1500.
MTU=${LAB_MTU:-1500}
OFFLOAD=${LAB_OFFLOAD:-0}
NOMCAST=${LAB_NOMCAST:-0}
case "$NOMCAST" in 0 | 1) ;; *) echo "lab.sh: LAB_NOMCAST must be 0 or 1: $NOMCAST" >&2; exit 2 ;; esac
MROUTE=${LAB_MROUTE:-on}
GROUP=${LAB_GROUP:-239.192.0.108}
RUNDIR=/run/makuo-lab
die() { echo "lab.sh: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"

addr() { echo "$SUBNET.$((10 + $1))"; }
# The same digits as the IPv4 address's last byte, read as hex.
addr6() { echo "fd77::$((10 + $1))"; }

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
    # Before the link is up, so the link-local address it then gets is
    # usable at once, not tentative for a second or two.
    ip netns exec "$h" sysctl -qw net.ipv6.conf.eth0.accept_dad=0
    ip -n "$h" addr add "$(addr6 "$i")/64" dev eth0 nodad
    [ "$OFFLOAD" = 1 ] || ip -n "$h" link set eth0 gso_max_segs 1
    ip -n "$h" link set eth0 up
    ip -n "$h" route add 224.0.0.0/4 dev eth0
  done
  [ "$NOMCAST" = 0 ] || nomcast "$name" on
}

down() {
  local name=$1 ns
  check_name "$name"
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$name-(br[0-9]*|h[0-9]+|rt)$" || true); do
    # Kill what still runs inside, or the namespace lingers.
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns"
  done
  rm -rf "${RUNDIR:?}/$name"
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

routed_addr() { echo "10.77.$1.$((10 + $2))"; }

# routed_up builds segments 1..S of p hosts each and the router, then
# starts the router's smcrouted (unless LAB_MROUTE=off).
routed_up() {
  local name=$1 segs=$2 p=$3 s j
  check_name "$name"
  # The kernel has 32 multicast VIFs per table.
  [[ "$segs" =~ ^[0-9]+$ ]] && [ "$segs" -ge 1 ] && [ "$segs" -le 30 ] || die "segment count must be 1-30: $segs"
  [[ "$p" =~ ^[0-9]+$ ]] && [ "$p" -ge 1 ] && [ "$p" -le 200 ] || die "hosts per segment must be 1-200: $p"
  case "$MROUTE" in on | off) ;; *) die "LAB_MROUTE must be on or off: $MROUTE" ;; esac
  [ "$MROUTE" = off ] || command -v smcrouted >/dev/null || die "smcrouted not installed (apt-get install smcroute)"
  down "$name"
  local rt="$name-rt"
  ip netns add "$rt"
  ip -n "$rt" link set lo up
  ip netns exec "$rt" sysctl -qw net.ipv4.ip_forward=1
  for s in $(seq 1 "$segs"); do
    local br="$name-br$s"
    ip netns add "$br"
    ip -n "$br" link add br0 type bridge
    ip -n "$br" link set br0 type bridge mcast_snooping 0 # as in up
    ip -n "$br" link set br0 mtu "$MTU" up
    ip -n "$br" link set lo up
    ip link add "eth$s" netns "$rt" mtu "$MTU" type veth peer name rt netns "$br" mtu "$MTU"
    ip -n "$br" link set rt master br0
    ip -n "$br" link set rt up
    ip -n "$rt" addr add "10.77.$s.1/24" dev "eth$s"
    [ "$OFFLOAD" = 1 ] || ip -n "$rt" link set "eth$s" gso_max_segs 1
    ip -n "$rt" link set "eth$s" up
    for j in $(seq 1 "$p"); do
      local h="$name-h$(((s - 1) * p + j))"
      ip netns add "$h"
      ip link add eth0 netns "$h" mtu "$MTU" type veth peer name "v$j" netns "$br" mtu "$MTU"
      ip -n "$br" link set "v$j" master br0
      ip -n "$br" link set "v$j" up
      ip -n "$h" link set lo up
      ip -n "$h" addr add "$(routed_addr "$s" "$j")/24" dev eth0
      [ "$OFFLOAD" = 1 ] || ip -n "$h" link set eth0 gso_max_segs 1
      ip -n "$h" link set eth0 up
      ip -n "$h" route add default via "10.77.$s.1"
      ip -n "$h" route add 224.0.0.0/4 dev eth0
    done
  done
  mkdir -p "$RUNDIR/$name"
  {
    echo "# lab $name: forward $GROUP between every pair of its $segs segments"
    for s in $(seq 1 "$segs"); do echo "phyint eth$s enable"; done
    for s in $(seq 1 "$segs"); do
      local to=""
      for j in $(seq 1 "$segs"); do [ "$j" = "$s" ] || to="$to eth$j"; done
      [ -z "$to" ] || echo "mroute from eth$s group $GROUP to$to"
    done
  } >"$RUNDIR/$name/smcroute.conf"
  [ "$MROUTE" = off ] || mroute "$name" on
  [ "$NOMCAST" = 0 ] || nomcast "$name" on
}

# nomcast drops multicast frames in the forward path of every bridge of
# the lab (a frame a host sends to a group never reaches another host),
# except IPv6 neighbour discovery, without which IPv6 unicast would not
# work either (clouds answer it for the hosts). The counter counts the
# frames dropped; "count" prints their sum over the bridges.
nomcast() {
  local name=$1 mode=$2 br total=0 n
  check_name "$name"
  local brs
  brs=$(ip netns list | awk '{print $1}' | grep -E "^$name-br[0-9]*$" || true)
  [ -n "$brs" ] || die "no lab $name"
  for br in $brs; do
    case "$mode" in
      on)
        ip netns exec "$br" nft delete table bridge labnomcast 2>/dev/null || true
        ip netns exec "$br" nft -f - <<NFT
table bridge labnomcast {
  chain forward {
    type filter hook forward priority 0; policy accept;
    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept
    meta pkttype multicast counter drop
  }
}
NFT
        ;;
      off) ip netns exec "$br" nft delete table bridge labnomcast 2>/dev/null || true ;;
      count)
        n=$(ip netns exec "$br" nft list table bridge labnomcast 2>/dev/null |
          sed -n 's/.*counter packets \([0-9]*\) .*/\1/p' | head -n 1)
        total=$((total + ${n:-0}))
        ;;
      *) die "nomcast: want on, off or count" ;;
    esac
  done
  [ "$mode" != count ] || echo "$total"
}

# mroute starts or stops the router's smcrouted. Stopping it closes its
# multicast routing socket, and the kernel then drops every route and VIF:
# the segments are cut off from each other's multicast (unicast still goes).
mroute() {
  local name=$1 mode=$2 dir="$RUNDIR/$1" i
  check_name "$name"
  [ -f "$dir/smcroute.conf" ] || die "$name is not a routed lab"
  case "$mode" in
    on)
      if [ -s "$dir/smcroute.pid" ] && kill -0 "$(cat "$dir/smcroute.pid")" 2>/dev/null; then return 0; fi
      rm -f "$dir/smcroute.pid" "$dir/smcroute.sock"
      # -N: only the phyint interfaces become VIFs (not lo).
      setsid ip netns exec "$name-rt" smcrouted -n -N -f "$dir/smcroute.conf" -i "makuolab-$name" \
        -P "$dir/smcroute.pid" -u "$dir/smcroute.sock" -l info </dev/null >>"$dir/smcroute.log" 2>&1 &
      # Ready once its socket answers and every (*,G) route is in.
      local want
      want=$(grep -c '^mroute' "$dir/smcroute.conf" || true)
      for i in $(seq 1 100); do
        if [ "$(smcroutectl -u "$dir/smcroute.sock" -pt show routes 2>/dev/null | grep -c '(\*, ')" -ge "$want" ] &&
          [ -s "$dir/smcroute.pid" ]; then
          return 0
        fi
        sleep 0.05
      done
      die "smcrouted for $name did not come up; $dir/smcroute.log:
$(tail -n 20 "$dir/smcroute.log")"
      ;;
    off)
      [ -s "$dir/smcroute.pid" ] || return 0
      local pid
      pid=$(cat "$dir/smcroute.pid")
      kill "$pid" 2>/dev/null || true
      for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$dir/smcroute.pid"; return 0; }
        sleep 0.05
      done
      die "smcrouted for $name (pid $pid) did not stop"
      ;;
    *) die "mroute: want on or off" ;;
  esac
}

shape_link() {
  local name=$1 s=$2 mbit=$3
  ip netns exec "$name-rt" tc qdisc del dev "eth$s" root 2>/dev/null || true
  [ "$mbit" = 0 ] && return 0
  ip netns exec "$name-rt" tc qdisc add dev "eth$s" root tbf rate "${mbit}mbit" burst 256kb latency 50ms
}

cmd=${1:-}
shift || true
case "$cmd" in
  up) [ $# = 2 ] || die "usage: lab.sh up NAME N"; up "$@" ;;
  down) [ $# = 1 ] || die "usage: lab.sh down NAME"; down "$1" ;;
  exec) [ $# -ge 3 ] || die "usage: lab.sh exec NAME I CMD..."; name=$1 i=$2; shift 2; exec ip netns exec "$name-h$i" "$@" ;;
  addr) [ $# = 1 ] || die "usage: lab.sh addr I"; addr "$1" ;;
  addr6) [ $# = 1 ] || die "usage: lab.sh addr6 I"; addr6 "$1" ;;
  loss) [ $# = 3 ] || die "usage: lab.sh loss NAME I PCT"; loss "$@" ;;
  cut) [ $# = 3 ] || die "usage: lab.sh cut NAME I on|off"; cut "$@" ;;
  shape) [ $# = 3 ] || die "usage: lab.sh shape NAME I MBIT"; shape "$@" ;;
  nomcast) [ $# = 2 ] || die "usage: lab.sh nomcast NAME on|off|count"; nomcast "$@" ;;
  list) ip netns list | awk '{print $1}' | sed -n -e 's/-br$//p' -e 's/-rt$//p' ;;
  routed-up) [ $# = 3 ] || die "usage: lab.sh routed-up NAME SEGMENTS PER_SEGMENT"; routed_up "$@" ;;
  mroute) [ $# = 2 ] || die "usage: lab.sh mroute NAME on|off"; mroute "$@" ;;
  shape-link) [ $# = 3 ] || die "usage: lab.sh shape-link NAME S MBIT"; shape_link "$@" ;;
  routed-addr) [ $# = 2 ] || die "usage: lab.sh routed-addr S J"; routed_addr "$@" ;;
  *) die "usage: lab.sh up|down|exec|addr|addr6|loss|cut|shape|nomcast|list|routed-up|mroute|shape-link|routed-addr ..." ;;
esac
