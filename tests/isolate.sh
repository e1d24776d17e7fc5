#!/bin/bash
# isolate.sh - run one test program so that nothing it starts outlives it, or us.
#
#   tests/isolate.sh CMD [ARGS...]        exit status: CMD's (128+N if killed by signal N)
#
# CMD runs in a new PID namespace whose PID 1 is a shell that waits for it.
# When CMD ends, or when whoever started us dies (even by kill -9: make, the
# CI job, a terminal), that PID 1 exits and the kernel SIGKILLs every process
# left in the namespace: daemons, their services, orphans, stopped processes,
# processes that ignore SIGTERM. The chain that guarantees it:
#
#   our parent -> isolate.sh (pdeath KILL) -> unshare (pdeath KILL) -> sh, PID 1
#   (--kill-child: pdeath KILL) -> CMD
#
# CMD is PID 1's child, not PID 1 itself: the kernel does not deliver a signal
# with the default action to a namespace's PID 1 (alarm() of a unit test
# would never fire, SIGTERM would be ignored), and the shell reaps the orphans
# that end up there.
#
# SIGTERM, SIGINT or SIGHUP to isolate.sh ends the namespace at once (unshare
# itself ignores them). A time limit is `timeout -s KILL N tests/isolate.sh ...`
# or plain `timeout N`.
#
# Privileges: as root, --pid directly. Otherwise inside a user namespace
# (unshare -r) where the kernel allows it: CMD then sees uid 0 with a single
# uid mapped, so tests that need real root (other uids, chown, setuid services)
# must check /proc/self/uid_map, not the euid (conftest.REAL_ROOT, needs_root).
# Without either (user namespaces disabled) CMD runs as is, with a warning:
# the degraded mode, where only CMD itself gets the parent-death signal and
# the runner's own cleanup (conftest: subreaper, end_descendants, watchdog)
# has to find the rest. EVMON_ISOLATE=0 chooses that mode (e.g. to attach gdb
# to host pids).
#
# Inside, EVMON_ISOLATED is set to "pid", "userns" or "none".
set -u

# 1. die with our parent, whoever it is (make, a shell, CI): re-exec under setpriv
if [ "${EVMON_ISOLATE_PDEATH:-}" != "$PPID" ]; then
	EVMON_ISOLATE_PDEATH=$PPID exec setpriv --pdeathsig KILL "$BASH" "$0" "$@"
fi
unset EVMON_ISOLATE_PDEATH
[ $# -gt 0 ] || { echo "usage: isolate.sh CMD [ARGS...]" >&2; exit 2; }

# 2. how: a PID namespace, in a user namespace when not root, or nothing
ns=(--pid --fork --kill-child --mount-proc)
if [ "${EVMON_ISOLATE:-1}" = 0 ]; then
	how=none
elif [ "$(id -u)" = 0 ] && unshare "${ns[@]}" true 2>/dev/null; then
	how=pid
elif unshare -r "${ns[@]}" true 2>/dev/null; then
	how=userns
	ns=(-r "${ns[@]}")
else
	how=none
	echo "isolate.sh: no PID namespace here (not root, no user namespaces): running $1 without one;" \
		"what it leaves behind is only ended by the runner's own cleanup" >&2
fi
export EVMON_ISOLATED=$how

# 3. run it as a job with its own process group: a background job of a shell
# without job control would start with SIGINT and SIGQUIT ignored, and that
# disposition would reach every process of the test
set -m
if [ "$how" = none ]; then
	setpriv --pdeathsig KILL "$@" &
else
	# PID 1 runs CMD in the foreground: it cannot exec it (see above)
	setpriv --pdeathsig KILL unshare "${ns[@]}" /bin/sh -c '"$@"; exit $?' isolate "$@" &
fi
job=$!
trap 'kill -KILL $job 2>/dev/null' TERM INT HUP
while :; do
	wait $job
	rc=$?
	kill -0 $job 2>/dev/null || break
done
exit $rc
