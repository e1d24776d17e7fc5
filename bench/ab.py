#!/usr/bin/python3
"""ab.py - S1 (spawn+reap of `tiny`) for a few harnesses side by side, alternated
within each round (A B C A B C ...), with medians and each one's ratio to the last:
two builds of evmon against each other and the bare loop in one run, which is how
issue 17's ratios are meant to be read (docs/BENCHMARKS.md, "Where the time goes").

    bench/ab.py [--levels 16,64] [--reps 7] [--runs 20000] [--tiny PATH] NAME=CMD ...

Each NAME=CMD is a harness command line before its `spawn` arguments, with optional
leading VAR=VALUE environment words, for example

    bench/ab.py "old=/tmp/old/build/cc/bench/evmon_bench" \\
                "new=EVM_SPAWN_MODE=auto build/cc/bench/evmon_bench" \\
                "reaper=EVMON_BENCH_REAPER=1 build/cc/bench/evmon_bench" \\
                "bare=build/cc/bench/raw_bench clone3-epoll"

(an old build: `git worktree add /tmp/old REV && make -C /tmp/old build/cc/bench/evmon_bench`).
Prints, asserts nothing; numbers to compare need a quiet machine.
"""
import argparse
import os
import shlex
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_monitor(arg):
    name, sep, cmd = arg.partition("=")
    if not sep or not name or not cmd.strip():
        sys.exit(f"ab.py: {arg!r}: expected NAME=COMMAND")
    words, env = shlex.split(cmd), {}
    while words and "=" in words[0] and not words[0].startswith(("/", ".")):
        k, _, v = words.pop(0).partition("=")
        env[k] = v
    if not words:
        sys.exit(f"ab.py: {arg!r}: no command")
    return name, words, env


def run_one(argv, env, tiny, runs, k):
    r = subprocess.run(argv + ["spawn", tiny, str(runs), str(k)], env=dict(os.environ, **env),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    for line in r.stdout.splitlines():
        if line.startswith("ok "):
            kv = dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)
            return float(kv["per_sec"])
    sys.exit(f"ab.py: {' '.join(argv)}: no result (exit {r.returncode}): {r.stderr.strip()}")


def main():
    ap = argparse.ArgumentParser(description="S1 side by side: medians and ratios to the last")
    ap.add_argument("--levels", default="16,64", help="children in flight, comma-separated")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--runs", type=int, default=20000, help="children per measurement")
    ap.add_argument("--tiny", default=os.path.join(ROOT, "build/cc/bench/tiny"))
    ap.add_argument("monitors", nargs="+", metavar="NAME=CMD")
    a = ap.parse_args()
    if not os.access(a.tiny, os.X_OK):
        sys.exit(f"ab.py: {a.tiny}: not built (make bench-build)")
    mons = [parse_monitor(m) for m in a.monitors]
    base = mons[-1][0]
    for k in (int(x) for x in a.levels.split(",")):
        res = {name: [] for name, _, _ in mons}
        for rep in range(a.reps):
            for name, argv, env in mons:
                res[name].append(run_one(argv, env, a.tiny, a.runs, k))
            print(f"{k} in flight, round {rep + 1}/{a.reps}: " +
                  ", ".join(f"{n}={v[-1]:.0f}/s" for n, v in res.items()), flush=True)
        ref = statistics.median(res[base])
        for name, vals in res.items():
            m = statistics.median(vals)
            print(f"{k} in flight: {name:>10} median {m:8.0f}/s ({min(vals):.0f}-{max(vals):.0f})"
                  f"  {m / ref:.3f}x {base}", flush=True)


if __name__ == "__main__":
    main()
