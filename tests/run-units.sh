#!/bin/bash
# run-units.sh - run unit test binaries, every one of them, then report.
#
#   EVMON_BUILD=build/cc tests/run-units.sh BIN...
#
# Each binary runs in its own PID namespace (tests/isolate.sh) under a time
# limit (UNIT_TIMEOUT seconds, default 300, 1800 with EVMON_TEST_SCALE=1, times
# the slowness factor: EVMON_TEST_SLOW, and 3 under the sanitizers), so a hung
# or crashed binary takes nothing with it and hides nothing after it: a
# failure is recorded and the next binary runs. At the end a summary lists
# the failed binaries with their failed tests, and every skipped test with
# the reason it printed ("SKIP ..." / "XFAIL ..." lines, see evmtest.h
# T_SKIP); the exit status is 1 if anything failed.
#
# Output of each binary goes to the terminal and to $EVMON_BUILD/unit-logs/.
# Killing us (make, kill -9, Ctrl-C) kills the binary running and its children.
set -u

# die with our parent (make): the binary running dies with us through isolate.sh
if [ "${RUN_UNITS_PDEATH:-}" != "$PPID" ]; then
	RUN_UNITS_PDEATH=$PPID exec setpriv --pdeathsig KILL "$BASH" "$0" "$@"
fi
unset RUN_UNITS_PDEATH

here=$(cd "$(dirname "$0")" && pwd)
: "${EVMON_BUILD:?set EVMON_BUILD to the build directory}"
export EVMON_BUILD
slow=${EVMON_TEST_SLOW:-1}
case $slow in '' | *[!0-9]*) echo "run-units.sh: EVMON_TEST_SLOW must be a whole number" >&2; exit 2 ;; esac
[ "$slow" -ge 1 ] || slow=1
[ -n "${EVMON_SAN:-}" ] && slow=$((slow * 3))
if [ -n "${EVMON_TEST_SCALE:-}" ]; then
	limit=$((${UNIT_TIMEOUT:-1800} * slow))
	what="scale"
else
	limit=$((${UNIT_TIMEOUT:-300} * slow))
	what="unit"
fi
logs=$EVMON_BUILD/unit-logs${EVMON_TEST_SCALE:+-scale}
mkdir -p "$logs"

failed=() skipped=() ran=0 t0=$SECONDS
for bin in "$@"; do
	name=$(basename "$bin")
	log=$logs/$name.log
	echo "== $name"
	start=$SECONDS
	setpriv --pdeathsig KILL timeout --foreground -s KILL "$limit" \
		"$here/isolate.sh" "$bin" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	ran=$((ran + 1))
	secs=$((SECONDS - start))
	# the names cmocka lists as failed/skipped (a test run once per mode is listed once)
	fails=$(sed -n 's/^\[  FAILED  \] \(test_[A-Za-z0-9_]*\).*/\1/p' "$log" | sort -u | tr '\n' ' ')
	skips=$(sed -n 's/^\[  SKIPPED \] \(test_[A-Za-z0-9_]*\).*/\1/p' "$log" | sort -u | tr '\n' ' ')
	if [ "$rc" -ne 0 ]; then
		case $rc in
		137) why="killed (time limit of ${limit} s?)" ;;
		*) why="exit $rc" ;;
		esac
		failed+=("$name: $why after ${secs} s${fails:+; failed: $fails}")
		echo "== $name: FAILED ($why, ${secs} s)"
	else
		echo "== $name: ok (${secs} s)"
	fi
	if [ -n "$skips" ]; then
		reasons=$(grep -E '^(SKIP|XFAIL)' "$log" | sort -u | sed 's/^/      /')
		skipped+=("$name: $skips${reasons:+
$reasons}")
	fi
done

echo
echo "== $what test summary: $ran binaries in $((SECONDS - t0)) s, ${#failed[@]} failed"
for s in "${skipped[@]}"; do echo "skipped  $s"; done
for f in "${failed[@]}"; do echo "FAILED   $f"; done
[ ${#failed[@]} -eq 0 ]
