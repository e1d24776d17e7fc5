#!/usr/bin/env python3
"""Issue 16's closing numbers for health checks and dependencies (not a test:
nothing is asserted; it prints what it measured).

  health   N services, each with a health check every second: the CPU time of
           the daemon (and of its spawn helper) over a window once all are
           healthy, as a percentage of one core. Target: under 5%.
  graph    N services in chains of 10 (each requires the one before) vs the
           same N services without dependencies, each ready at once
           (start_secs = 0): the time from the daemon's start to the last
           service running, in alternating runs. Target: within 1.2x.

The services are bench/children/tiny (static, no libc: `tiny p` blocks, `tiny`
exits 0 at once), built here unless --tiny names one.

  bench/lifecycle.py [--evmon build/cc/evmon] [--n 1000] [--window 20] [--reps 3]
"""
import argparse
import datetime
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def build_tiny(tmp):
    out = os.path.join(tmp, "tiny")
    subprocess.run(["cc", "-std=c11", "-O2", "-static", "-nostdlib", "-ffreestanding",
                    "-fno-stack-protector", "-fno-pie", "-no-pie", "-fno-asynchronous-unwind-tables",
                    "-s", "-o", out, os.path.join(ROOT, "bench/children/tiny.c")], check=True)
    return out


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def helpers_of(pid, exe):
    """The daemon's children that are evmon itself (its spawn helper), not services."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == pid and os.path.realpath(f"/proc/{p}/exe") == exe:
                out.append(int(p))
        except OSError:
            pass
    return out


class Daemon:
    def __init__(self, evmon, tmp, name, conf):
        self.evmon, self.sock = evmon, os.path.join(tmp, f"{name}.sock")
        cfg = os.path.join(tmp, f"{name}.ini")
        with open(cfg, "w") as f:
            f.write(conf)
        self.logpath = os.path.join(tmp, f"{name}.log")
        self.log = open(self.logpath, "wb")
        self.t0 = datetime.datetime.now(datetime.timezone.utc)
        self.p = subprocess.Popen([evmon, "daemon", "-c", cfg, "-S", self.sock],
                                  stdout=self.log, stderr=subprocess.STDOUT)

    def ctl(self, *args, timeout=600):
        return subprocess.run([self.evmon, "ctl", "-S", self.sock, *args], capture_output=True,
                              text=True, timeout=timeout)

    def wait_socket(self):
        while not os.path.exists(self.sock):
            if self.p.poll() is not None:
                sys.exit(f"daemon exited: {open(self.logpath).read()}")
            time.sleep(0.01)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(timeout=300)
        self.log.close()


def health(args, tiny, tmp):
    conf = ["[evmon]\nstop_timeout = 5\n"]
    for i in range(args.n):
        conf.append(f"[service:s{i}]\ncommand = {tiny} p\nstart_secs = 0\nhealth_cmd = {tiny}\n"
                    "health_interval = 1s\nhealth_timeout = 10s\n")
    d = Daemon(args.evmon, tmp, "health", "\n".join(conf))
    d.wait_socket()
    names = [f"s{i}" for i in range(args.n)]
    r = d.ctl("wait", *names, "--for", "healthy", "-t", "300")
    if r.returncode:
        sys.exit(f"not all healthy: {r.stderr}")
    exe = os.path.realpath(args.evmon)
    time.sleep(2)  # past the first round of checks
    pids = [d.p.pid] + helpers_of(d.p.pid, exe)
    before = {p: cpu_ticks(p) for p in pids}
    m0 = d.ctl("metrics").stdout
    t = time.monotonic()
    time.sleep(args.window)
    el = time.monotonic() - t
    after = {p: cpu_ticks(p) for p in pids}
    m1 = d.ctl("metrics").stdout
    runs = [sum(int(x) for x in re.findall(r"^evmon_service_health_checks_total\{[^}]*\} (\d+)", m, re.M))
            for m in (m0, m1)]
    d.stop()
    own = (after[d.p.pid] - before[d.p.pid]) / TICK / el * 100
    total = sum(after[p] - before[p] for p in pids) / TICK / el * 100
    print(f"health: {args.n} services, health_interval 1s: {(runs[1] - runs[0]) / el:.0f} checks/s; "
          f"daemon CPU {own:.1f}% of a core, with its spawn helper {total:.1f}% "
          f"(window {el:.0f} s; target < 5%)")


def all_running_at(path, n):
    """The time of the n-th service's first '-> running' line in the daemon's log."""
    seen, last = set(), None
    pat = re.compile(r"^(\S+) evmon daemon: service (\S+): \w+ -> running")
    with open(path) as f:
        for line in f:
            m = pat.match(line)
            if m and m[2] not in seen:
                seen.add(m[2])
                last = m[1]
    if len(seen) < n:
        return None
    return datetime.datetime.fromisoformat(last.replace("Z", "+00:00"))


def graph_run(args, tiny, tmp, deps, rep):
    conf = ["[evmon]\nstop_timeout = 5\n"]
    for c in range(args.n // 10):
        for i in range(10):
            conf.append(f"[service:c{c}_{i}]\ncommand = {tiny} p\nstart_secs = 0\n"
                        + (f"requires = c{c}_{i - 1}\n" if deps and i else ""))
    d = Daemon(args.evmon, tmp, f"graph{int(deps)}_{rep}", "\n".join(conf))
    d.wait_socket()
    n = args.n // 10 * 10
    deadline = time.monotonic() + 300
    while (t1 := all_running_at(d.logpath, n)) is None:
        if time.monotonic() > deadline:
            sys.exit("not all running")
        time.sleep(0.1)
    d.stop()
    return (t1 - d.t0).total_seconds()


def graph(args, tiny, tmp):
    res = {False: [], True: []}
    for rep in range(args.reps):
        for deps in (False, True):
            res[deps].append(graph_run(args, tiny, tmp, deps, rep))
    flat, dep = statistics.median(res[False]), statistics.median(res[True])
    ratios = [b / a for a, b in zip(res[False], res[True])]
    print(f"graph: {args.n} services, all running after {flat * 1000:.0f} ms without dependencies "
          f"(runs {', '.join(f'{x * 1000:.0f}' for x in res[False])}), {dep * 1000:.0f} ms in chains "
          f"of 10 (runs {', '.join(f'{x * 1000:.0f}' for x in res[True])}): ratio "
          f"{statistics.median(ratios):.2f} (median of pairs; target <= 1.2)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--evmon", default=os.path.join(ROOT, "build/cc/evmon"))
    ap.add_argument("--tiny")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--window", type=float, default=20)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", choices=["health", "graph"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="evmon-lifecycle-") as tmp:
        tiny = args.tiny or build_tiny(tmp)
        if args.only in (None, "graph"):
            graph(args, tiny, tmp)
        if args.only in (None, "health"):
            health(args, tiny, tmp)


if __name__ == "__main__":
    main()
