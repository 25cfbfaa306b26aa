#!/usr/bin/env bash
# demo.sh BIN: a local demo cluster of 4 makuosan members, each in its own
# network namespace, until Ctrl-C. Needs root.
set -euo pipefail
bin=$(realpath "${1:-bin}")
here=$(dirname "$(realpath "$0")")
lab="$here/lab.sh"
name=demo
root=/tmp/makuo-demo
n=4

cleanup() {
  echo
  echo "stopping the demo cluster"
  jobs -p | xargs -r kill 2>/dev/null || true
  wait 2>/dev/null || true
  "$lab" down "$name"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

"$lab" up "$name" "$n"
rm -rf "$root"
for i in $(seq 1 "$n"); do
  mkdir -p "$root/h$i/base" "$root/h$i/state"
  "$lab" exec "$name" "$i" "$bin/makuosan" -n -b "$root/h$i/base" --state-dir "$root/h$i/state" \
    -i "$("$lab" addr "$i")" --hostname "h$i" >"$root/h$i/makuosan.log" 2>&1 &
done
sleep 2
cat <<MSG
Demo cluster up: 4 members h1..h4, base directories $root/hN/base,
logs $root/hN/makuosan.log. Try, in another shell:

  $lab exec $name 1 $bin/msync --members
  $lab exec $name 2 $bin/msync --status

Membership as h1 sees it, every 5 s (Ctrl-C stops the cluster):
MSG
while true; do
  echo "--- $(date +%T)"
  "$lab" exec "$name" 1 "$bin/msync" --members || true
  sleep 5
done
