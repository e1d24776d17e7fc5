#!/bin/sh
# summary.sh TARGET LOG - one line of figures from a libFuzzer run's log
# (-print_final_stats=1): executions, seconds, executions per second, edges
# covered, corpus size, peak RSS. `summary.sh --header` prints the columns.
if [ "$1" = --header ]; then
	printf '%-10s %12s %8s %10s %8s %8s %8s\n' target execs seconds execs/s cov corpus rss_mb
	exit 0
fi
awk -v t="$1" '
	/^stat::number_of_executed_units:/ { execs = $2 }
	/^stat::average_exec_per_sec:/ { eps = $2 }
	/^stat::peak_rss_mb:/ { rss = $2 }
	/^Done [0-9]+ runs in [0-9]+ second/ { secs = $5 }
	/ cov: / { for (i = 1; i < NF; i++) { if ($i == "cov:") cov = $(i + 1); if ($i == "corp:") corp = $(i + 1) } }
	END { printf "%-10s %12s %8s %10s %8s %8s %8s\n", t, execs, secs, eps, cov, corp, rss }
' "$2"
