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
  # Each member its own control socket: the default path is shared by
  # every namespace of this machine.
  "$lab" exec "$name" "$i" "$bin/makuosan" -n -b "$root/h$i/base" --state-dir "$root/h$i/state" \
    -U "$root/h$i/state/makuosan.sock" -i "$("$lab" addr "$i")" --hostname "h$i" --watch >"$root/h$i/makuosan.log" 2>&1 &
done
sleep 2
cat <<MSG
Demo cluster up: 4 members h1..h4, each watching its base directory
$root/hN/base (logs: $root/hN/makuosan.log). Any file written under one
base appears under the others within a fraction of a second. Try, in
another shell:

  echo hello > $root/h2/base/hello.txt; cat $root/h4/base/hello.txt
  $lab exec $name 1 $bin/msync -c $root/h1/state/makuosan.sock --members
  $lab exec $name 1 $bin/msync -c $root/h1/state/makuosan.sock -r --check

Every 5 s this writes clock.txt on h1 and shows h4's copy (Ctrl-C stops):
MSG
"$lab" exec "$name" 1 "$bin/msync" -c "$root/h1/state/makuosan.sock" --members || true
while true; do
  date +%T.%N >"$root/h1/base/clock.txt"
  sleep 1
  echo "h1 wrote $(cat "$root/h1/base/clock.txt"); h4 has $(cat "$root/h4/base/clock.txt" 2>/dev/null || echo nothing)"
  sleep 4
done
