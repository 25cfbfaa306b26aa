#!/usr/bin/env bash
# Runs every fuzz target of the module for a short time (make fuzz-short).
#
# A crasher fails the run. The fuzz engine also exits non-zero without a
# crasher (golang/go#51484: "context deadline exceeded" at the -fuzztime
# boundary; golang/go#56238: "process hung or terminated unexpectedly" with
# an input that replays clean). Such a run is told apart by replaying what it
# wrote: a written input that fails on replay, or an exit that is neither of
# those, fails the run; otherwise the target is fuzzed once more and that
# second run decides.
set -euo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# fuzz_once PKG TARGET: 0 = clean, 1 = crasher, 2 = spurious engine exit.
fuzz_once() {
	local pkg=$1 f=$2 dir input
	if "$GO" test -run '^$' -fuzz "^$f\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 10x "$pkg" >"$log" 2>&1; then
		return 0
	fi
	tail -n 25 "$log" >&2
	input=$(sed -n 's/.*Failing input written to testdata\/fuzz\/\([^ ]*\).*/\1/p' "$log" | tail -n 1)
	if [[ -n $input ]]; then
		dir=$("$GO" list -f '{{.Dir}}' "$pkg")
		if ! "$GO" test -count=1 -run "^$f\$/^${input#*/}\$" "$pkg" >&2; then
			echo "fuzz-short: $pkg $f: $dir/testdata/fuzz/$input fails on replay" >&2
			return 1
		fi
		echo "fuzz-short: $pkg $f: the written input replays clean (golang/go#56238); removing it" >&2
		rm -f "$dir/testdata/fuzz/$input"
		return 2
	fi
	if grep -q 'context deadline exceeded' "$log"; then
		return 2
	fi
	return 1
}

for pkg in $("$GO" list ./...); do
	for f in $("$GO" test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz $pkg $f"
		rc=0
		fuzz_once "$pkg" "$f" || rc=$?
		if ((rc == 2)); then
			echo "fuzz-short: $pkg $f: spurious fuzz engine exit; fuzzing it once more" >&2
			rc=0
			fuzz_once "$pkg" "$f" || rc=$?
		fi
		if ((rc != 0)); then
			echo "fuzz-short: $pkg $f failed" >&2
			exit 1
		fi
	done
done
