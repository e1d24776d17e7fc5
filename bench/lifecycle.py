#!/usr/bin/env python3
"""Issue 16's closing numbers for health checks and dependencies (not a test:
nothing is asserted; it prints what it measured).

  health   N services, each with a health check every second: the CPU time of
           the daemon (and of its spawn helper) over a window once all are
           healthy, as a percentage of one core. Target: under 5%. Each kind
           of check in turn (--kinds, alternated over --reps): health_cmd (a
           process per check), health_tcp and health_http (probes the daemon
           makes itself, to a small server in this process).
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
import json
import os
import re
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def build_tiny(tmp):
    out = os.path.join(tmp, "tiny")
    subprocess.run(["cc", "-std=c11", "-O2", "-static", "-nostdlib", "-ffreestanding",
                    "-fno-stack-protector", "-fno-pie", "-no-pie", "-fno-asynchronous-unwind-tables",
                    "-s", "-o", out, os.path.join(ROOT, "bench/children/tiny.c")], check=True)
    return out


def cpu_ticks(pid, children=False):
    """utime + stime of pid, or with children its reaped children's (cutime + cstime)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[13]) + int(fields[14]) if children else int(fields[11]) + int(fields[12])


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
    def __init__(self, evmon, tmp, name, conf, env=None):
        self.evmon, self.sock = evmon, os.path.join(tmp, f"{name}.sock")
        cfg = os.path.join(tmp, f"{name}.ini")
        with open(cfg, "w") as f:
            f.write(conf)
        self.logpath = os.path.join(tmp, f"{name}.log")
        self.log = open(self.logpath, "wb")
        self.t0 = datetime.datetime.now(datetime.timezone.utc)
        self.p = subprocess.Popen([evmon, "daemon", "-c", cfg, "-S", self.sock],
                                  stdout=self.log, stderr=subprocess.STDOUT, env=env)

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


def raw_floor(tmp, tiny, runs=2000):
    """The bare loop's CPU per spawn here (raw_bench clone3-epoll, one at a time): what
    a process per check costs at the least on this machine, before any monitor logic."""
    exe = os.path.join(tmp, "raw_bench")
    subprocess.run(["cc", "-std=c11", "-O2", "-D_GNU_SOURCE", "-o", exe,
                    os.path.join(ROOT, "bench/harness/raw_bench.c")], check=True)
    out = subprocess.run([exe, "clone3-epoll", "spawn", tiny, str(runs), "1"], capture_output=True,
                         text=True, check=True).stdout
    m = re.search(r"self_cpu_us=([\d.]+)", out)
    return float(m[1]) / runs if m else None


def health_checks_run(d, n):
    """The checks run so far, all services together (health_check.runs of `ctl status
    --json`: one reply, built at once). Not `ctl metrics`, whose reply is streamed a piece
    per loop turn: with 1,000 services checked every second it took 60 s and more (ctl gave
    up: exit 3, nothing on stdout), then 29 s, then 0.8 s, while this took 2.6-3.7 s (load
    8-13, 2026-12-04); the empty answer read as "0 checks/s" (issue 16's closing notes).
    Since 6a08562 (at most 16 checks start per loop iteration) it takes ~2 s."""
    r = d.ctl("--json", "status")
    if r.returncode:
        sys.exit(f"ctl status: exit {r.returncode}: {r.stderr.strip()}")
    svcs = json.loads(r.stdout)["services"]
    if len(svcs) != n:
        sys.exit(f"ctl status: {len(svcs)} services, not {n}")
    return sum(s.get("health_check", {}).get("runs", 0) for s in svcs)


def health_window(args, d, exe):
    """One window: checks/s that ran, the CPU of the daemon, of its spawn helper and of the
    checks themselves (the daemon's reaped children: the services never exit here)."""
    # The rate comes from two counts taken by `ctl status` calls, which take a while
    # (seconds on a busy machine: a reply of 1,000 services) outside the CPU window: so
    # it is the count's change over the time between the calls' starts (the daemon
    # takes its snapshot as a call begins), not over the window (that made the rate,
    # and so the checks the CPU is divided by, up to 30% too high at load 20-40).
    a0 = time.monotonic()
    r0 = health_checks_run(d, args.n)  # before the CPU is read: its reply is not a check's
    pids = [d.p.pid] + helpers_of(d.p.pid, exe)
    before = {p: cpu_ticks(p) for p in pids}
    kids0 = cpu_ticks(d.p.pid, children=True)
    t = time.monotonic()
    time.sleep(args.window)
    el = time.monotonic() - t
    after = {p: cpu_ticks(p) for p in pids if os.path.exists(f"/proc/{p}")}
    kids = cpu_ticks(d.p.pid, children=True) - kids0
    a1 = time.monotonic()
    rate = (health_checks_run(d, args.n) - r0) / (a1 - a0)
    checks = rate * el
    if checks <= 0:
        sys.exit(f"no health check ran in {time.monotonic() - t:.0f} s: nothing to measure")
    own = (after[d.p.pid] - before[d.p.pid]) / TICK
    helper = sum(after[p] - before[p] for p in after if p != d.p.pid) / TICK
    return {"rate": rate, "checks": checks, "daemon": own / el * 100,
            "helper": helper / el * 100, "kids": kids / TICK / el * 100,
            "us": (own + helper) / max(checks, 1) * 1e6, "el": el}


def health_line(label, w):
    at_1000 = w["us"] * 1000 / 1e6 * 100
    return (f"{label}{w['rate']:.0f} checks/s; daemon CPU {w['daemon']:.1f}% of a core, with its "
            f"spawn helper {w['daemon'] + w['helper']:.1f}% = {w['us']:.0f} us a check "
            f"({at_1000:.1f}% at 1,000 checks/s; target < 5%); the checks themselves "
            f"{w['kids']:.1f}% (window {w['el']:.0f} s)")


class ProbeServer:
    """What the probes of --kinds tcp/http talk to: a listener on 127.0.0.1 served by one
    thread (selectors): a connection is read until its request ends (or closed at its EOF:
    a TCP probe closes at once) and answered 200. Its CPU is not the daemon's."""

    REPLY = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"

    def __init__(self):
        self.s = socket.socket()
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(4096)
        self.s.setblocking(False)
        self.port = self.s.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.s, selectors.EVENT_READ)
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        bufs = {}
        while not self.stop:
            for key, _ in self.sel.select(0.2):
                if key.fileobj is self.s:
                    while True:
                        try:
                            c, _ = self.s.accept()
                        except (BlockingIOError, OSError):
                            break
                        c.setblocking(False)
                        bufs[c] = b""
                        self.sel.register(c, selectors.EVENT_READ)
                    continue
                c = key.fileobj
                try:
                    data = c.recv(4096)
                except OSError:
                    data = b""
                bufs[c] += data
                if data and b"\r\n\r\n" not in bufs[c]:
                    continue
                if data:
                    try:
                        c.send(self.REPLY)
                    except OSError:
                        pass
                self.sel.unregister(c)
                del bufs[c]
                c.close()

    def close(self):
        self.stop = True
        self.t.join()
        self.s.close()


def health_kinds(args, tiny, tmp):
    """Each kind of check of --kinds in turn, a daemon of N services each, alternated
    over --reps: the CPU a check costs the daemon (with its spawn helper)."""
    kinds = args.kinds.split(",")
    srv = ProbeServer() if set(kinds) & {"tcp", "http"} else None
    check = {"cmd": f"health_cmd = {tiny}\n",
             "tcp": f"health_tcp = 127.0.0.1:{srv.port if srv else 0}\n",
             "http": f"health_http = http://127.0.0.1:{srv.port if srv else 0}/healthz\n"}
    exe = os.path.realpath(args.evmon)
    res = {k: [] for k in kinds}
    try:
        floor = raw_floor(tmp, tiny)
        print(f"health: {args.n} services, health_interval 1s, kinds {', '.join(kinds)}; the bare "
              f"clone3+exec+waitid loop costs {floor or 0:.0f} us of CPU a spawn here (raw_bench "
              "clone3-epoll, its own CPU)", flush=True)
        for rep in range(args.reps):
            for kind in kinds:
                conf = ["[evmon]\nstop_timeout = 5\n"]
                for i in range(args.n):
                    conf.append(f"[service:s{i}]\ncommand = {tiny} p\nstart_secs = 0\n{check[kind]}"
                                "health_interval = 1s\nhealth_timeout = 10s\n")
                env = dict(os.environ, **({"EVM_SPAWN_MODE": args.spawn_mode} if args.spawn_mode else {}))
                d = Daemon(args.evmon, tmp, f"health_{kind}_{rep}", "\n".join(conf), env=env)
                try:
                    d.wait_socket()
                    r = d.ctl("wait", *[f"s{i}" for i in range(args.n)], "--for", "healthy", "-t", "600",
                              timeout=660)
                    if r.returncode:
                        sys.exit(f"{kind}: not all healthy: {r.stderr}")
                    time.sleep(2)  # past the first round of checks
                    w = health_window(args, d, exe)
                finally:
                    d.stop()
                res[kind].append(w)
                print(health_line(f"  {kind:4} run {rep + 1}: ", w), flush=True)
    finally:
        if srv:
            srv.close()
    for kind in kinds:
        ws = res[kind]
        print(f"  {kind}: median {statistics.median(w['us'] for w in ws):.1f} us a check, "
              f"{statistics.median(w['rate'] for w in ws):.0f} checks/s, daemon + helper "
              f"{statistics.median(w['daemon'] + w['helper'] for w in ws):.2f}% of a core "
              f"= {statistics.median(w['us'] for w in ws) / 10:.2f}% at 1,000 checks/s")
    if "cmd" in res:
        for kind in kinds:
            if kind != "cmd":
                ratios = [b["us"] / a["us"] for a, b in zip(res["cmd"], res[kind])]
                print(f"  {kind}/cmd CPU a check: {statistics.median(ratios):.3f} (pairs: "
                      f"{', '.join(f'{x:.3f}' for x in ratios)})")


def health(args, tiny, tmp):
    """N services checked every second (health_cmd; --kinds tcp or http: that probe). With
    --compare B: one daemon, its binary swapped
    between A (--evmon) and B in place with ctl reexec before each window (A B A B ...:
    the same services, the same machine minutes), a ratio per pair."""
    bindir = os.path.join(tmp, "bin")
    os.makedirs(bindir, exist_ok=True)
    exe = os.path.join(bindir, "evmon")  # the one path the daemon runs (and re-execs)

    def install(src):
        subprocess.run(["cp", src, exe + ".new"], check=True)
        os.replace(exe + ".new", exe)

    install(args.evmon)
    kind = args.kinds if args.kinds in ("cmd", "tcp", "http") else "cmd"
    srv = ProbeServer() if kind != "cmd" else None
    check = {"cmd": f"health_cmd = {tiny}\n",
             "tcp": f"health_tcp = 127.0.0.1:{srv.port if srv else 0}\n",
             "http": f"health_http = http://127.0.0.1:{srv.port if srv else 0}/healthz\n"}[kind]
    conf = ["[evmon]\nstop_timeout = 5\n"]
    for i in range(args.n):
        conf.append(f"[service:s{i}]\ncommand = {tiny} p\nstart_secs = 0\n{check}"
                    "health_interval = 1s\nhealth_timeout = 10s\n")
    env = dict(os.environ)
    if args.spawn_mode:
        env["EVM_SPAWN_MODE"] = args.spawn_mode
    d = Daemon(exe, tmp, "health", "\n".join(conf), env=env)
    try:
        d.wait_socket()
        names = [f"s{i}" for i in range(args.n)]

        def settle():
            r = d.ctl("wait", *names, "--for", "healthy", "-t", "600", timeout=660)
            if r.returncode:
                sys.exit(f"not all healthy: {r.stderr}")
            time.sleep(2)  # past the first round of checks

        settle()
        floor = raw_floor(tmp, tiny)
        print(f"health: {args.n} services, health_{kind}, health_interval 1s, spawn mode "
              f"{args.spawn_mode or 'auto'}; "
              f"the bare clone3+exec+waitid loop costs {floor or 0:.0f} us of CPU a spawn here "
              "(raw_bench clone3-epoll, its own CPU)")
        builds = [("A", args.evmon)] + ([("B", args.compare)] if args.compare else [])
        res = {k: [] for k, _ in builds}
        for rep in range(args.reps if args.compare else 1):
            for key, path in builds:
                if args.compare:
                    install(path)
                    r = d.ctl("reexec")
                    if r.returncode:
                        sys.exit(f"reexec: {r.stdout}{r.stderr}")
                    settle()
                w = health_window(args, d, os.path.realpath(exe))
                res[key].append(w)
                print(health_line(f"  {key} run {rep + 1}: " if args.compare else "  ", w), flush=True)
    finally:
        d.stop()  # also when it failed: no daemon left running
        if srv:
            srv.close()
    if args.compare:
        for key, path in builds:
            print(f"  {key} = {path}: median {statistics.median(w['us'] for w in res[key]):.0f} us "
                  f"a check, {statistics.median(w['rate'] for w in res[key]):.0f} checks/s")
        ratios = [b["us"] / a["us"] for a, b in zip(res["A"], res["B"])]
        print(f"  B/A CPU a check: {statistics.median(ratios):.2f} (median of pairs: "
              f"{', '.join(f'{x:.2f}' for x in ratios)})")


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
    try:
        d.wait_socket()
        n = args.n // 10 * 10
        deadline = time.monotonic() + 300
        while (t1 := all_running_at(d.logpath, n)) is None:
            if time.monotonic() > deadline:
                sys.exit("not all running")
            time.sleep(0.1)
    finally:
        d.stop()  # also when it failed: no daemon left running
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
    ap.add_argument("--compare", metavar="EVMON_B",
                    help="health: alternate windows between --evmon and this binary (ctl reexec)")
    ap.add_argument("--kinds", default="cmd,tcp,http",
                    help="health: the kinds of check, in turn (cmd: health_cmd; tcp, http: probes)")
    ap.add_argument("--spawn-mode", choices=["auto", "direct", "helper"],
                    help="health: EVM_SPAWN_MODE for the daemon")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="evmon-lifecycle-") as tmp:
        tiny = args.tiny or build_tiny(tmp)
        if args.only in (None, "graph"):
            graph(args, tiny, tmp)
        if args.only in (None, "health"):
            if args.compare:
                health(args, tiny, tmp)
            else:
                health_kinds(args, tiny, tmp)


if __name__ == "__main__":
    main()
