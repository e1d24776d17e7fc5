#!/bin/sh
# evmon under valgrind memcheck, for `make valgrind-test` (mk/reliability.mk):
# the tests run this as $EVMON_BUILD/evmon. @...@ are filled in by make.
real=@REAL@
# evmon behaves as evmon-init when called by that name: keep the name
case "$0" in *evmon-init) real=@DIR@/real/evmon-init ;; esac
# the pid alone is not unique: tests run daemons in pid namespaces of their own, and a
# log of another uid's process of the same pid could not be written (sticky directory)
exec valgrind @FLAGS@ --log-file=@DIR@/logs/%p.$(date +%s%N).log "$real" "$@"
