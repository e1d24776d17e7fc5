#!/usr/bin/env python3
"""The daemon under churn (issues 15 and 17): how many exits per second N
crash-looping services reach, and how long the loop takes to answer a ping
meanwhile.

One daemon runs N services that each run `evm-helper sleep MS exit 1` and
are restarted at once (restart = always, backoff 0.05-0.2 s, start_secs 0,
cgroup = no: test_reexec_load's churn). After a warm-up, for --secs seconds:
one connection sends `ping` after `ping` (each round trip is a sample), an
event stream counts the exits, and the daemon's CPU (its own and its spawn
helper's, a child of it) is read from /proc. With --strace, `strace -T` on
the loop thread alone (not -f: neither the spawn helper nor the children)
for a second window: how long the loop spends in the system calls that wait
for a child's exec (clone3 in direct mode, the recvmsg of the helper's reply
in helper mode); then, in helper mode, on the spawn helper alone for a third
window: its clone3 lasts from the clone to the child's exec, what a helper
that clones one child at a time spends per spawn. ptrace slows the traced
process, so exits/s and ping come from the first window, untraced.

Prints, asserts nothing; numbers to publish need a quiet machine (note the
load printed with them).

    tests/isolate.sh bench/churn.py --build build/cc [--n 1000] [--secs 20]
                     [--spawn-mode direct|helper] [--strace] [--sleep-ms 50]

(isolate.sh: nothing the run starts outlives it, even if it is interrupted.)
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from daemonclient import Pinger, connect, request


class Exits(threading.Thread):
    """Counts the exit events of the daemon's event stream."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.s = connect(path)
        self.s.settimeout(None)
        self.s.sendall(b'{"cmd":"events"}\n')
        first = b""
        while not first.endswith(b"\n"):
            first += self.s.recv(1)
        self.exits = 0

    def run(self):
        buf = b""
        while True:
            try:
                chunk = self.s.recv(1 << 20)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            *lines, buf = buf.split(b"\n")
            self.exits += sum(b'"event":"exit"' in l.replace(b" ", b"") for l in lines)


def ticks(pid):
    """utime + stime of pid, and of its children that are evmon (the spawn helper)."""
    def one(p):
        with open(f"/proc/{p}/stat") as f:
            st = f.read()
        rest = st[st.rfind(")") + 2:].split()
        return int(rest[11]) + int(rest[12]), int(rest[1]), st[st.index("(") + 1:st.rfind(")")]
    own = one(pid)[0]
    helper = 0
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != pid:
            try:
                t, ppid, comm = one(name)
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid and comm.startswith("evmon"):
                helper += t
    return own, helper


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def helper_pid(pid):
    """The daemon's spawn helper: its child named evmon (None in direct mode)."""
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rfind(")") + 2:].split()
        if int(rest[1]) == pid and st[st.index("(") + 1:st.rfind(")")].startswith("evmon"):
            return int(name)
    return None


def strace_window(pid, secs):
    """strace -T of one thread (the loop, or the spawn helper) for secs: {syscall: [seconds]}."""
    out = tempfile.mktemp(prefix="evmon-churn-strace-")
    st = subprocess.Popen(["strace", "-T", "-e", "trace=clone3,clone,recvmsg,sendmsg,epoll_wait",
                           "-o", out, "-p", str(pid)], stderr=subprocess.DEVNULL)
    time.sleep(secs)
    st.send_signal(2)
    st.wait(30)
    calls = {}
    with open(out, errors="replace") as f:
        for line in f:
            m = re.match(r"(\w+)\((.*)<([0-9.]+)>$", line.strip())
            if not m:
                continue
            name, dur = m.group(1), float(m.group(3))
            calls.setdefault(name, []).append(dur)
    os.unlink(out)
    return calls


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build/cc")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--secs", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--sleep-ms", type=int, default=50, help="how long each run lasts")
    ap.add_argument("--spawn-mode", choices=("auto", "direct", "helper"), default="auto")
    ap.add_argument("--strace", action="store_true", help="also a window under strace -T")
    a = ap.parse_args()
    evmon = os.path.abspath(os.path.join(a.build, "evmon"))
    helper = os.path.abspath(os.path.join(a.build, "tests", "evm-helper"))
    tmp = tempfile.mkdtemp(prefix="evmon-churn-")
    sock, cfg, log = (os.path.join(tmp, f) for f in ("d.sock", "d.ini", "d.log"))
    with open(cfg, "w") as f:
        f.write(f"[evmon]\ncgroup = no\nlog_dir = {tmp}/logs\nstart_secs = 0\nstable_secs = 0\n"
                f"backoff_initial = 0.05\nbackoff_max = 0.2\nstop_timeout = 5\n\n"
                f"[service:churn]\ncommand = {helper} sleep {a.sleep_ms} exit 1\n"
                f"restart = always\ninstances = {a.n}\nstdout = null\nstderr = null\n")
    env = dict(os.environ)
    if a.spawn_mode != "auto":
        env["EVM_SPAWN_MODE"] = a.spawn_mode
    logf = open(log, "wb")
    d = subprocess.Popen([evmon, "daemon", "-c", cfg, "-S", sock], stdout=logf,
                         stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        while True:
            if d.poll() is not None:
                sys.exit(f"daemon exited: {open(log).read()[-2000:]}")
            try:
                request(sock, {"cmd": "ping"})
                break
            except OSError:
                time.sleep(0.1)
        ex = Exits(sock)
        ex.start()
        p = Pinger(sock, interval=0.01, measuring=False)
        p.start()
        time.sleep(a.warmup)
        e0, c0, t0 = ex.exits, ticks(d.pid), time.monotonic()
        p.measuring = True
        time.sleep(a.secs)
        p.measuring = False
        e1, c1, t1 = ex.exits, ticks(d.pid), time.monotonic()
        if p.error:
            sys.exit(f"pinger: {p.error}")
        hz = os.sysconf("SC_CLK_TCK")
        wall = t1 - t0
        rtt = [x * 1000 for x in p.rtts]
        print(f"n={a.n} spawn-mode={a.spawn_mode} sleep={a.sleep_ms} ms, {wall:.1f} s, "
              f"load {os.getloadavg()[0]:.1f}: {(e1 - e0) / wall:.0f} exits/s; "
              f"ping ms median {statistics.median(rtt):.1f} p90 {pct(rtt, 0.9):.1f} "
              f"max {max(rtt):.1f} ({len(rtt)} pings); CPU daemon "
              f"{(c1[0] - c0[0]) / hz / wall * 100:.0f}% helper {(c1[1] - c0[1]) / hz / wall * 100:.0f}%")
        traced = [("the loop", d.pid)]
        hp = helper_pid(d.pid)
        if hp:
            traced.append(("the spawn helper", hp))
        for what, pid in traced if a.strace else ():
            e2, t2 = ex.exits, time.monotonic()
            calls = strace_window(pid, a.secs)
            w2 = time.monotonic() - t2
            print(f"  {what} under strace -T ({w2:.1f} s, {(ex.exits - e2) / w2:.0f} exits/s, "
                  f"load {os.getloadavg()[0]:.1f}):")
            for name, ds in sorted(calls.items()):
                ms = [x * 1000 for x in ds]
                print(f"    {name:15} {len(ms):6} calls  median {statistics.median(ms):7.2f} ms  "
                      f"p90 {pct(ms, 0.9):7.2f}  max {max(ms):7.2f}  total {sum(ms) / 1000:6.2f} s "
                      f"({sum(ms) / 10 / w2:.0f}% of the window)")
        p.stop = True
    finally:
        try:
            request(sock, {"cmd": "stop", "names": ["churn"], "wait": True, "timeout": 30})
        except Exception:  # noqa: BLE001 (the daemon is stopped below anyway)
            pass
        d.terminate()
        try:
            d.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(d.pid, 9)
            d.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
