#!/usr/bin/env python3
"""The daemon while it starts (issue 18): with N services to start, how soon
the control socket answers and how soon a SIGTERM ends the start.

Each run starts `evmon daemon` on N `evm-helper pause` services and measures,
from the moment the control socket appears (polled every 1 ms):
- first ping: a raw `ping` sent as soon as the socket exists, until its answer;
- ping during the start: the longest gap between answers of a pinger that sends
  `ping` after `ping` on one connection until every service is started
  ("started: N services" in the daemon's log);
- time to all started;
then a second daemon gets SIGTERM --term-after seconds after its socket
appeared and the time to its exit (exit code 0 required) is measured.
Prints, asserts nothing; needs a quiet machine for numbers to publish.

    bench/startup.py --build build/cc [--n 10000] [--runs 3] [--cgroup no|auto]
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from daemonclient import Pinger


def wait_socket(path, proc, deadline=120):
    t0 = time.monotonic()
    while not os.path.exists(path):
        if proc.poll() is not None:
            sys.exit(f"daemon exited with {proc.returncode} before its socket appeared")
        if time.monotonic() - t0 > deadline:
            sys.exit("no control socket")
        time.sleep(0.001)
    return time.monotonic()


def ping_once(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(120)
    while True:
        try:
            s.connect(path)
            break
        except (ConnectionRefusedError, FileNotFoundError):
            time.sleep(0.001)  # bound but not yet listening
    s.sendall(b'{"cmd":"ping"}\n')
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            raise EOFError("closed")
        buf += chunk
    return s


def start(a, evmon, tmp, tag):
    helper = os.path.abspath(os.path.join(a.build, "tests", "evm-helper"))
    sock, cfg, log = (os.path.join(tmp, f"{tag}.{f}") for f in ("sock", "ini", "log"))
    with open(cfg, "w") as f:
        f.write(f"[evmon]\ncgroup = {a.cgroup}\nstart_secs = 0\nstop_timeout = 5\n\n"
                f"[service:s]\ncommand = {helper} pause\ninstances = {a.n}\n")
    logf = open(log, "wb")
    d = subprocess.Popen([evmon, "daemon", "-c", cfg, "-S", sock], stdout=logf,
                         stderr=subprocess.STDOUT, start_new_session=True)
    return d, sock, log, logf


def finish(d, logf):
    if d.poll() is None:
        d.terminate()
        try:
            d.wait(300)
        except subprocess.TimeoutExpired:
            d.kill()
            d.wait()
    logf.close()


def one_start(a, evmon, tmp, i):
    d, sock, log, logf = start(a, evmon, tmp, f"s{i}")
    try:
        t_sock = wait_socket(sock, d)
        ping_once(sock).close()
        first = time.monotonic() - t_sock
        p = Pinger(sock)
        p.start()
        want = f"started: {a.n} services"
        while want not in open(log, errors="replace").read():
            if d.poll() is not None or p.error:
                sys.exit(f"daemon {d.returncode} / pinger {p.error}")
            time.sleep(0.05)
        t_all = time.monotonic() - t_sock
        p.stop = True
        p.join(10)
        ans = [t_sock + first] + p.answers
        gap = max(b - c for c, b in zip(ans, ans[1:]))
        return first * 1000, gap * 1000, t_all
    finally:
        finish(d, logf)


def one_term(a, evmon, tmp, i):
    d, sock, log, logf = start(a, evmon, tmp, f"t{i}")
    try:
        t_sock = wait_socket(sock, d)
        time.sleep(max(0.0, t_sock + a.term_after - time.monotonic()))
        t0 = time.monotonic()
        d.send_signal(15)
        rc = d.wait(300)
        took = time.monotonic() - t0
        text = open(log, errors="replace").read()
        if rc != 0:
            sys.exit(f"exit {rc}: {text[-2000:]}")
        return took
    finally:
        finish(d, logf)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build/cc")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cgroup", default="no")
    ap.add_argument("--term-after", type=float, default=2.0)
    a = ap.parse_args()
    evmon = os.path.abspath(os.path.join(a.build, "evmon"))
    tmp = tempfile.mkdtemp(prefix="evmon-startup-")
    firsts, gaps, alls, terms = [], [], [], []
    for i in range(a.runs):
        f, g, t = one_start(a, evmon, tmp, i)
        firsts.append(f)
        gaps.append(g)
        alls.append(t)
        took = one_term(a, evmon, tmp, i)
        terms.append(took)
        print(f"run {i + 1}: first ping {f:.1f} ms, longest ping gap {g:.1f} ms, all started "
              f"{t:.2f} s; SIGTERM {a.term_after:g} s in -> exit {took * 1000:.0f} ms; "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
    med = statistics.median
    print(f"n={a.n} cgroup={a.cgroup}: first ping median {med(firsts):.1f} ms (max "
          f"{max(firsts):.1f}), longest gap median {med(gaps):.1f} ms (max {max(gaps):.1f}), all "
          f"started median {med(alls):.2f} s ({a.n / med(alls):.0f}/s), SIGTERM -> exit median "
          f"{med(terms) * 1000:.0f} ms (max {max(terms) * 1000:.0f}); load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
