#!/usr/bin/env python3
"""The metrics endpoint at scale (issue 19): how long an HTTP scrape of N
services takes, and how long the daemon's loop is held meanwhile.

One daemon runs N `evm-helper pause` services (cgroup = no by default) with
metrics_listen on 127.0.0.1. After all are running, a pinger thread sends
`ping` after `ping` on one connection; the longest gap between two answers is
how long the loop could not have handled anything else, an exit included (an
exit's pidfd or SIGCHLD waits for the same loop). Printed per scrape: the
scrape's wall time (connect to the last byte, http.client), its size, and the
longest ping gap during it; and the same gap over an idle window of the same
length before the scrapes. Prints, asserts nothing; needs a quiet machine for
numbers to publish (note `uptime` with them).

    bench/metrics.py --build build/cc [--n 10000] [--scrapes 8] [--cgroup no|auto]
                     [--perf FILE]
"""
import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time

from daemonclient import Pinger, request


def gap_ms(answers, t0, t1):
    """The longest gap between answers that falls in [t0, t1] (ms)."""
    ins = [t for t in answers if t0 <= t <= t1]
    after = [t for t in answers if t > t1][:1]
    before = [t for t in answers if t < t0][-1:]
    pts = before + ins + after
    return max((b - c for c, b in zip(pts, pts[1:])), default=float("nan")) * 1000


def scrape(addr):
    host, port = addr.rsplit(":", 1)
    t0 = time.monotonic()
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    c.request("GET", "/metrics")
    r = c.getresponse()
    body = r.read()
    t1 = time.monotonic()
    c.close()
    if r.status != 200:
        sys.exit(f"scrape: HTTP {r.status}")
    return t0, t1, len(body)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build/cc")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--scrapes", type=int, default=8)
    ap.add_argument("--cgroup", default="no")
    ap.add_argument("--perf", metavar="FILE", help="perf record the daemon across the scrapes into FILE")
    a = ap.parse_args()
    evmon = os.path.abspath(os.path.join(a.build, "evmon"))
    helper = os.path.abspath(os.path.join(a.build, "tests", "evm-helper"))
    tmp = tempfile.mkdtemp(prefix="evmon-metrics-")
    sock, cfg, log = (os.path.join(tmp, f) for f in ("d.sock", "d.ini", "d.log"))
    with open(cfg, "w") as f:
        f.write(f"[evmon]\ncgroup = {a.cgroup}\nstart_secs = 0\nmetrics_listen = 127.0.0.1:0\n\n"
                f"[service:p]\ncommand = {helper} pause\ninstances = {a.n}\n")
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
        addr = request(sock, {"cmd": "ping"}).get("metrics")
        if not addr:
            sys.exit("the daemon names no metrics address in its ping reply")
        print(f"{a.n} services running after {time.monotonic() - t0:.1f} s; metrics on {addr}; "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
        p = Pinger(sock, timeout=60)
        p.start()
        perf = subprocess.Popen(["perf", "record", "-F", "1000", "--call-graph", "dwarf,16384", "-o", a.perf, "-p", str(d.pid)],
                                stdout=subprocess.DEVNULL) if a.perf else None
        time.sleep(1.0)
        walls, gaps, sizes = [], [], []
        idle = []
        for i in range(a.scrapes):
            s0, s1, size = scrape(addr)
            walls.append((s1 - s0) * 1000)
            sizes.append(size)
            time.sleep(0.3)
            gaps.append(gap_ms(p.answers, s0, s1))
            # an idle window as long as the scrape, right after it
            i0 = time.monotonic()
            time.sleep(s1 - s0)
            idle.append(gap_ms(p.answers, i0, time.monotonic()))
            print(f"scrape {i + 1}: {walls[-1]:.0f} ms, {size / 1e6:.2f} MB, longest ping gap "
                  f"{gaps[-1]:.1f} ms (idle window after it: {idle[-1]:.1f} ms); "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
            time.sleep(0.3)
        if perf:
            perf.send_signal(2)
            perf.wait(60)
        p.stop = True
        p.join(10)
        if p.error:
            sys.exit(f"pinger: {p.error}")
        med = statistics.median
        print(f"n={a.n} cgroup={a.cgroup}: scrape median {med(walls):.0f} ms (max {max(walls):.0f}), "
              f"longest ping gap during a scrape median {med(gaps):.1f} ms (max {max(gaps):.1f}), "
              f"idle windows median {med(idle):.1f} ms (max {max(idle):.1f}); "
              f"load {os.getloadavg()[0]:.1f}")
    finally:
        if d.poll() is None:
            d.terminate()
            try:
                d.wait(300)
            except subprocess.TimeoutExpired:
                d.kill()
                d.wait()
        logf.close()


if __name__ == "__main__":
    main()
