#!/usr/bin/env python3
"""The re-exec pause (issue 15): how long `evmon ctl reexec` keeps the daemon
from serving, with N services running.

One daemon runs N `evm-helper pause` services. A pinger thread sends `ping`
after `ping` on one connection (handed over by every re-exec) and notes when
each answer arrives. Each run sends `reexec` on another connection; the pause
is the longest gap between two answers from just before the request to well
after the re-exec's answer: from the last request served by the old image to
the first served by the new one. Also printed: the daemon's CPU across each
run (utime + stime, in clock ticks: with the pinger it includes answering
the pings; with --no-ping, no pause is measured and it is the re-exec's
alone) and the phases the new image logs
("re-exec: ... ms"). Prints, asserts nothing; needs a quiet machine for
numbers to publish (note `uptime` with them).

    bench/reexec.py --build build/cc [--n 1000] [--runs 5] [--cgroup no|auto]
                    [--stdout null|log] [--compare BUILD_B [--rounds 3]]

With --compare, one daemon (N services started once) runs from a copy of the
binary that each round swaps: A (--build), then B, --rounds times. After each
swap one re-exec crosses from the other build (not counted: its old image is
the other one, and the state may be passed in an older format) and --runs
re-execs are measured with the same build on both sides of the exec: the
same services, the same machine minutes, alternated (A B A B ...).
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from daemonclient import Pinger, request


def cpu_ms(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def main():
    # SIGTERM (timeout(1), a CI job) ends us through the finally below, which stops the daemon
    # and its N services: Python's default would leave them running
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build/cc")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cgroup", default="no")
    ap.add_argument("--stdout", default="null", help="the services' stdout: null or log (pipes)")
    ap.add_argument("--perf", metavar="FILE", help="perf record the daemon across the runs into FILE")
    ap.add_argument("--no-ping", action="store_true", help="no pinger (to profile the re-exec alone)")
    ap.add_argument("--compare", metavar="BUILD_B", help="alternate with this build's evmon in one daemon")
    ap.add_argument("--rounds", type=int, default=3, help="with --compare: A B rounds")
    a = ap.parse_args()
    evmon = os.path.abspath(os.path.join(a.build, "evmon"))
    helper = os.path.abspath(os.path.join(a.build, "tests", "evm-helper"))
    tmp = tempfile.mkdtemp(prefix="evmon-reexec-")
    builds = [("A", evmon)]
    if a.compare:
        builds.append(("B", os.path.abspath(os.path.join(a.compare, "evmon"))))
        evmon = os.path.join(tmp, "evmon")  # the one path the daemon runs and re-execs

        def install(src):
            subprocess.run(["cp", src, evmon + ".new"], check=True)
            os.replace(evmon + ".new", evmon)

        install(builds[0][1])
    sock, cfg, log = (os.path.join(tmp, f) for f in ("d.sock", "d.ini", "d.log"))
    with open(cfg, "w") as f:
        f.write(f"[evmon]\ncgroup = {a.cgroup}\nlog_dir = {tmp}/logs\nstart_secs = 0\n\n"
                f"[service:p]\ncommand = {helper} pause\ninstances = {a.n}\n"
                f"stdout = {a.stdout}\nstderr = stdout\n")
    logf = open(log, "wb")
    d = subprocess.Popen([evmon, "daemon", "-c", cfg, "-S", sock], stdout=logf,
                         stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t0 = time.monotonic()
        while True:
            if d.poll() is not None:
                sys.exit(f"daemon exited: {open(log).read()[-2000:]}")
            try:
                st = request(sock, {"cmd": "status"})
                if sum(s["state"] == "running" for s in st["services"]) == a.n:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        print(f"{a.n} services running after {time.monotonic() - t0:.1f} s; "
              f"load {os.getloadavg()[0]:.1f}")
        p = Pinger(sock, timeout=60)
        if a.no_ping:
            p.answers.append(0.0)
            p.stop = True
        p.start()
        perf = subprocess.Popen(["perf", "record", "-F", "2000", "--call-graph", "dwarf,16384", "-o", a.perf, "-p",
                                 str(d.pid)], stdout=subprocess.DEVNULL) if a.perf else None
        res = {k: ([], [], []) for k, _ in builds}  # pauses, CPU, phase lines

        def reexec(label, into):
            """One re-exec: its pause (ms) and the daemon's CPU across it, printed"""
            time.sleep(1)
            c0, at = cpu_ms(d.pid), time.monotonic()
            r = request(sock, {"cmd": "reexec"})
            done = time.monotonic()
            if not r.get("ok"):
                sys.exit(f"reexec: {r}")
            time.sleep(0.5)
            cpu = cpu_ms(d.pid) - c0
            if p.error:
                sys.exit(f"pinger: {p.error}")
            got = [t for t in p.answers if at - 0.05 <= t <= done + 0.4]
            gap = max((b - c for c, b in zip(got, got[1:])), default=float("nan"))
            print(f"{label}: pause {gap * 1000:.1f} ms, reexec answered in "
                  f"{(done - at) * 1000:.1f} ms, daemon CPU {cpu:.0f} ms, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
            phase = re.findall(r"re-exec: .*ms.*", open(log, errors="replace").read())
            if into:
                into[0].append(gap * 1000)
                into[1].append(cpu)
                into[2].append(phase[-1] if phase else "")

        for rnd in range(a.rounds if a.compare else 1):
            for key, path in builds:
                if a.compare:
                    install(path)
                    reexec(f"{key} round {rnd + 1}, crossing into it (not counted)", None)
                for i in range(a.runs):
                    reexec(f"{key + ' ' if a.compare else ''}run {i + 1}", res[key])
        p.stop = True
        p.join(5)
        if perf:
            perf.send_signal(2)
            perf.wait(60)
        for key, path in builds:
            pauses, cpus, phases = res[key]
            for line in phases:
                print(f"  {key + ' ' if a.compare else ''}{line}")
            print(f"{key + ' = ' + path + ': ' if a.compare else ''}n={a.n} cgroup={a.cgroup} "
                  f"stdout={a.stdout}: pause median "
                  f"{statistics.median(pauses):.1f} ms (min {min(pauses):.1f}, max {max(pauses):.1f}), "
                  f"daemon CPU median {statistics.median(cpus):.0f} ms"
                  f"{' (pings included)' if not a.no_ping else ''}; load {os.getloadavg()[0]:.1f}")
        if a.compare:
            print(f"B/A pause medians: {statistics.median(res['B'][0]) / statistics.median(res['A'][0]):.2f}")
    finally:
        d.terminate()
        try:
            d.wait(300)
        except subprocess.TimeoutExpired:
            d.kill()
            d.wait()
        logf.close()


if __name__ == "__main__":
    main()
