#!/usr/bin/env bash
# vxlan.sh: an L2 overlay for makuosan across a network that routes only
# unicast (no multicast routing: clouds, campuses without PIM). A Linux
# VXLAN interface with head-end replication carries makuosan's multicast
# unchanged: every broadcast or multicast frame goes by unicast to each
# member of a static list, so the members form one link-local segment and
# makuosan keeps its default group 224.0.0.108 (TTL 1).
#
#   vxlan.sh up   --dev DEV --vni VNI --local IP --addr IP/LEN MEMBERS [--port PORT] [--mtu MTU]
#   vxlan.sh sync --dev DEV MEMBERS      re-read the list: add and remove peers, no restart
#   vxlan.sh show --dev DEV              print the peers DEV floods to, one a line
#   vxlan.sh down --dev DEV              remove DEV (nothing to do if it is not there)
#
# MEMBERS is --peers-file FILE (one underlay IPv4 address a line, '#'
# starts a comment; the same file on every member, so it names this host
# too, whose own address is skipped) or one --peer IP per other member.
#
#   --dev DEV      the overlay interface, e.g. vxlan0
#   --vni VNI      VXLAN network identifier, 1-16777215, the same on every member
#   --local IP     this host's underlay address (assigned here): tunnels start from it
#   --addr IP/LEN  this host's overlay address, e.g. 10.108.0.11/24: a private
#                  subnet of its own, the same LEN on every member
#   --port PORT    underlay UDP port, default 4789 (IANA's VXLAN port)
#   --mtu MTU      overlay MTU, default the underlay interface's MTU minus
#                  50 (outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14)
#
# up then prints the makuosan flags the overlay needs: -i DEV, and
# --datagram-size MTU-28 when makuosan's default 1472 does not fit (1422
# for a 1500-byte underlay): a larger datagram would be IP-fragmented on DEV.
# up is idempotent (again with the same VNI, local address and port it only
# brings address, MTU and peers up to date); so is down, which removes only
# a device vxlan.sh made (it marks it with an alias).
#
# Each member's DEV gets the MAC 02:4d:A:B:C:D from its underlay address
# A.B.C.D, so every member knows where each other's MAC is without
# learning: unicast (makuosan's answers, ARP replies) goes to that member
# only, and only broadcast and multicast are replicated to all. A member
# whose MAC is otherwise is still reached, through the flood entries.
#
# The list decides where this host sends, not whom it hears: the kernel
# takes VXLAN from any source. Let only members reach PORT (firewall), and
# seal makuosan's datagrams with -k.
#
# Exit status: 0 done, 1 the system refused or the device is in the way,
# 2 bad arguments. Needs root and iproute2 (ip, bridge).
set -euo pipefail

readonly ALIAS="makuo overlay (vxlan.sh)"
readonly OVERHEAD=50      # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
readonly UDP_IP=28        # IPv4 20 + UDP 8: what a datagram adds to its payload
readonly DEFAULT_DGRAM=1472
readonly MIN_DGRAM=512    # makuosan's --datagram-size range: 512..65507
readonly FLOOD=00:00:00:00:00:00

usage() { echo "usage: vxlan.sh up|sync|show|down --dev DEV ... (vxlan.sh help)" >&2; exit 2; }
die() { echo "vxlan.sh: $*" >&2; exit 2; }
fail() { echo "vxlan.sh: $*" >&2; exit 1; }
note() { echo "vxlan.sh: $*" >&2; }

# is_ipv4 accepts a dotted quad of 0-255 without leading zeros.
is_ipv4() {
  local o
  [[ "$1" =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || return 1
  for o in "${BASH_REMATCH[@]:1}"; do
    [[ "$o" =~ ^(0|[1-9][0-9]*)$ ]] && [ "$o" -le 255 ] || return 1
  done
}

ip2int() {
  local IFS=.
  # shellcheck disable=SC2086
  set -- $1
  echo $((($1 << 24) | ($2 << 16) | ($3 << 8) | $4))
}

# check_unicast accepts an address a host can have: not 0.0.0.0/8,
# loopback, multicast or reserved/broadcast.
check_unicast() {
  local what=$1 a=$2 first
  is_ipv4 "$a" || die "$what: not an IPv4 address: '$a'"
  first=${a%%.*}
  { [ "$first" -ne 0 ] && [ "$first" -ne 127 ] && [ "$first" -lt 224 ]; } ||
    die "$what: $a is not a unicast host address"
}

mac_of() {
  local IFS=.
  # shellcheck disable=SC2086
  set -- $1
  printf '02:4d:%02x:%02x:%02x:%02x' "$1" "$2" "$3" "$4"
}

check_dev() {
  [ -n "$1" ] || die "--dev is required (e.g. --dev vxlan0)"
  [[ "$1" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$ ]] ||
    die "--dev: '$1' is not an interface name (1-15 letters, digits, '_', '.', '-')"
}

# Parsed arguments.
DEV="" VNI="" LOCAL="" ADDR="" PORT="" MTU="" FILE=""
PEERS_GIVEN=0
declare -a PEER_ARGS=()

parse() {
  local seen=" "
  while [ $# -gt 0 ]; do
    local opt=$1
    case "$opt" in
      --dev | --vni | --local | --addr | --port | --mtu | --peers-file | --peer)
        [ $# -ge 2 ] && [ -n "$2" ] || die "$opt needs a value"
        case "$opt" in
          --peer) PEER_ARGS+=("$2"); PEERS_GIVEN=1 ;;
          *)
            [[ "$seen" != *" $opt "* ]] || die "$opt given twice"
            seen="$seen$opt "
            case "$opt" in
              --dev) DEV=$2 ;;
              --vni) VNI=$2 ;;
              --local) LOCAL=$2 ;;
              --addr) ADDR=$2 ;;
              --port) PORT=$2 ;;
              --mtu) MTU=$2 ;;
              --peers-file) FILE=$2; PEERS_GIVEN=1 ;;
            esac
            ;;
        esac
        shift 2
        ;;
      *) die "unknown argument '$opt' (vxlan.sh help)" ;;
    esac
  done
  check_dev "$DEV"
}

# only_flags fails if a flag outside the allowed list was given.
only_flags() {
  local cmd=$1
  shift
  local f v name
  for f in vni local addr port mtu peers; do
    case "$f" in
      vni) v=$VNI ;; local) v=$LOCAL ;; addr) v=$ADDR ;; port) v=$PORT ;; mtu) v=$MTU ;;
      peers) v=${PEERS_GIVEN#0} ;;
    esac
    name="--$f"
    [ "$f" != peers ] || name="member list (--peers-file, --peer)"
    [ -z "$v" ] || [[ " $* " == *" $f "* ]] || die "$cmd takes no $name"
  done
}

check_number() {
  local what=$1 v=$2 lo=$3 hi=$4
  [[ "$v" =~ ^[1-9][0-9]{0,8}$ ]] && [ "$v" -ge "$lo" ] && [ "$v" -le "$hi" ] ||
    die "$what must be a number from $lo to $hi: '$v'"
}

# check_addr validates --addr and sets NET_LO/NET_HI, the overlay subnet.
NET_LO=0 NET_HI=0
check_addr() {
  [ -n "$ADDR" ] || die "--addr is required (this host's overlay address, e.g. 10.108.0.11/24)"
  [[ "$ADDR" =~ ^([^/]+)/([0-9]{1,2})$ ]] || die "--addr: want IP/LEN, e.g. 10.108.0.11/24: '$ADDR'"
  local a=${BASH_REMATCH[1]} len=${BASH_REMATCH[2]}
  check_unicast --addr "$a"
  [ "$len" -ge 8 ] && [ "$len" -le 30 ] || die "--addr: prefix length must be 8 to 30: /$len"
  local n mask
  n=$(ip2int "$a")
  mask=$(((0xffffffff << (32 - len)) & 0xffffffff))
  NET_LO=$((n & mask))
  NET_HI=$((NET_LO | (~mask & 0xffffffff)))
  [ "$n" -ne "$NET_LO" ] && [ "$n" -ne "$NET_HI" ] ||
    die "--addr: $ADDR is the subnet's network or broadcast address"
}

in_overlay() {
  local n
  n=$(ip2int "$1")
  [ "$n" -ge "$NET_LO" ] && [ "$n" -le "$NET_HI" ]
}

# read_peers fills PEERS with the member list minus LOCAL, and sets
# SELF_LISTED to whether the file named LOCAL.
declare -a PEERS=()
SELF_LISTED=0
read_peers() {
  local -A seen=()
  local line a n=0
  PEERS=()
  SELF_LISTED=0
  [ "$PEERS_GIVEN" = 1 ] || die "give the members: --peers-file FILE or --peer IP (once per other member)"
  if [ -n "$FILE" ]; then
    [ ${#PEER_ARGS[@]} = 0 ] || die "give --peers-file or --peer, not both"
    [ -f "$FILE" ] && [ -r "$FILE" ] || die "--peers-file: cannot read '$FILE'"
    while IFS= read -r line || [ -n "$line" ]; do
      n=$((n + 1))
      line=${line%%#*}
      line=${line//[[:space:]]/}
      [ -n "$line" ] || continue
      is_ipv4 "$line" || die "$FILE:$n: not an IPv4 address: '$line'"
      add_peer "$FILE:$n" "$line"
    done <"$FILE"
  else
    for a in "${PEER_ARGS[@]}"; do add_peer --peer "$a"; done
  fi
}

add_peer() {
  local where=$1 a=$2
  check_unicast "$where" "$a"
  [ -z "${seen[$a]:-}" ] || die "$where: $a listed twice"
  seen[$a]=1
  if [ "$a" = "$LOCAL" ]; then
    SELF_LISTED=1
    return
  fi
  ! in_overlay "$a" || die "$where: $a lies in the overlay subnet of --addr $ADDR: tunnels would route into $DEV"
  PEERS+=("$a")
}

# link_info prints `ip -d link show` of DEV, or nothing if it is not there.
link_info() { ip -d link show dev "$DEV" 2>/dev/null || true; }

# ours checks that DEV (given its link_info) is a VXLAN device vxlan.sh made.
ours() {
  local info=$1
  [[ "$info" == *" vxlan id "* ]] || fail "$DEV exists and is not a VXLAN device: leaving it alone"
  [[ "$info" == *"alias $ALIAS"* ]] || fail "$DEV is a VXLAN device vxlan.sh did not make: leaving it alone"
}

field() { # field INFO WORD: the word after WORD in INFO
  awk -v w="$2" '{ for (i = 1; i < NF; i++) if ($i == w) { print $(i + 1); exit } }' <<<"$1"
}

# underlay_mtu prints the MTU of the interface holding LOCAL.
underlay_mtu() {
  local dev
  dev=$(ip -o -4 addr show | awk -v a="$LOCAL" '{ split($4, p, "/"); if (p[1] == a) { print $2; exit } }')
  [ -n "$dev" ] || die "--local: $LOCAL is not an address of this host (ip -4 addr)"
  field "$(ip -o link show dev "$dev")" mtu
}

# current_peers prints the addresses DEV floods to.
current_peers() {
  bridge fdb show dev "$DEV" | awk -v z="$FLOOD" '$1 == z && $2 == "dst" { print $3 }'
}

# apply_peers makes DEV's flood and MAC entries those of PEERS.
apply_peers() {
  local -A want=() have=()
  local a added=() removed=()
  for a in "${PEERS[@]}"; do want[$a]=1; done
  for a in $(current_peers); do have[$a]=1; done
  for a in "${!have[@]}"; do
    [ -n "${want[$a]:-}" ] && continue
    bridge fdb del "$FLOOD" dev "$DEV" dst "$a" || fail "remove peer $a from $DEV"
    bridge fdb del "$(mac_of "$a")" dev "$DEV" dst "$a" 2>/dev/null || true
    removed+=("$a")
  done
  for a in "${PEERS[@]}"; do
    if [ -z "${have[$a]:-}" ]; then
      bridge fdb append "$FLOOD" dev "$DEV" dst "$a" || fail "add peer $a to $DEV"
      added+=("$a")
    fi
    bridge fdb replace "$(mac_of "$a")" dev "$DEV" dst "$a" || fail "add $a's MAC to $DEV"
  done
  echo "$DEV: ${#PEERS[@]} peers (added ${#added[@]}${added:+: ${added[*]}}; removed ${#removed[@]}${removed:+: ${removed[*]}})"
}

cmd_up() {
  only_flags up vni local addr port mtu peers
  [ -n "$VNI" ] || die "--vni is required (the same VXLAN id on every member, e.g. --vni 108)"
  check_number --vni "$VNI" 1 16777215
  PORT=${PORT:-4789}
  check_number --port "$PORT" 1 65535
  [ -n "$LOCAL" ] || die "--local is required (this host's underlay address)"
  check_unicast --local "$LOCAL"
  local umtu max
  umtu=$(underlay_mtu)
  check_addr
  ! in_overlay "$LOCAL" || die "--local $LOCAL lies in the overlay subnet of --addr $ADDR: take a subnet of its own"
  read_peers
  [ -z "$FILE" ] || [ "$SELF_LISTED" = 1 ] ||
    die "--local $LOCAL is not in $FILE: the member list names every member, this host too"
  max=$((umtu - OVERHEAD))
  if [ -n "$MTU" ]; then
    check_number --mtu "$MTU" $((MIN_DGRAM + UDP_IP)) "$max"
  else
    MTU=$max
    [ "$MTU" -ge $((MIN_DGRAM + UDP_IP)) ] ||
      die "underlay MTU $umtu leaves $MTU for the overlay, below makuosan's smallest datagram ($MIN_DGRAM + $UDP_IP)"
  fi

  local info
  info=$(link_info)
  if [ -n "$info" ]; then
    ours "$info"
    local v l p
    v=$(field "$info" id) l=$(field "$info" local) p=$(field "$info" dstport)
    [ "$v" = "$VNI" ] && [ "$l" = "$LOCAL" ] && [ "$p" = "$PORT" ] ||
      fail "$DEV exists with vni $v, local $l, port $p (not $VNI, $LOCAL, $PORT): vxlan.sh down --dev $DEV first"
  else
    ip link add "$DEV" type vxlan id "$VNI" dstport "$PORT" local "$LOCAL" nolearning ||
      fail "create $DEV (does the kernel have VXLAN?)"
    # A half-made device would only be in the way of the next up.
    trap 'ip link del "$DEV" 2>/dev/null' EXIT
  fi
  ip link set dev "$DEV" alias "$ALIAS" || fail "mark $DEV"
  # No IPv6 link-local address: it would flood router solicitations and
  # MLD reports to every member for nothing.
  ip link set dev "$DEV" addrgenmode none || fail "turn IPv6 off on $DEV"
  ip link set dev "$DEV" address "$(mac_of "$LOCAL")" mtu "$MTU" || fail "set $DEV's MAC and MTU"
  if ! ip -o -4 addr show dev "$DEV" | awk '{ print $4 }' | grep -qxF "$ADDR"; then
    ip -4 addr flush dev "$DEV" || fail "clear $DEV's old address"
    ip addr add "$ADDR" dev "$DEV" || fail "give $DEV the address $ADDR"
  fi
  ip link set dev "$DEV" up || fail "bring $DEV up"
  echo "$DEV: vni $VNI, local $LOCAL, port $PORT, address $ADDR, mtu $MTU (underlay $umtu)"
  apply_peers
  trap - EXIT
  local dgram=$((MTU - UDP_IP))
  if [ "$dgram" -lt "$DEFAULT_DGRAM" ]; then
    echo "makuosan flags: -i $DEV --datagram-size $dgram"
  else
    echo "makuosan flags: -i $DEV (the default --datagram-size $DEFAULT_DGRAM fits; up to $dgram does)"
  fi
}

# existing checks that DEV is there and ours, and reads its local address
# (to skip it in the list) and its overlay subnet (to check the list against).
existing() {
  local info
  info=$(link_info)
  [ -n "$info" ] || fail "$DEV is not there: vxlan.sh up first"
  ours "$info"
  LOCAL=$(field "$info" local)
  ADDR=$(ip -o -4 addr show dev "$DEV" | awk '{ print $4; exit }')
  if [ -n "$ADDR" ]; then check_addr; fi
}

cmd_sync() {
  only_flags sync peers
  existing
  read_peers
  if [ -n "$FILE" ] && [ "$SELF_LISTED" = 0 ]; then
    # Taken off the list: a member no longer, it floods to no one.
    note "$LOCAL is not in $FILE: this host is no longer a member, $DEV floods to no one"
    PEERS=()
  fi
  apply_peers
}

cmd_show() {
  only_flags show
  existing
  current_peers
}

cmd_down() {
  only_flags down
  local info
  info=$(link_info)
  if [ -z "$info" ]; then
    echo "$DEV: not there, nothing to do"
    return 0
  fi
  ours "$info"
  ip link del "$DEV" || fail "remove $DEV"
  echo "$DEV: removed"
}

cmd=${1:-}
shift || true
case "$cmd" in
  help | -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
  up | sync | show | down) ;;
  *) usage ;;
esac
parse "$@"
[ "$(id -u)" = 0 ] || die "must run as root (it changes network interfaces)"
for tool in ip bridge; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install iproute2)"
done
"cmd_$cmd"
