#!/usr/bin/env python3
"""Issue 14's containment targets, evmon alone: how long a stop takes to end
a big process tree, and whether many services, each in its own cgroup,
start and stop cleanly.

tree: one service whose main process forks --n processes, all ignoring
SIGTERM (`evm-helper ignore 15 group N pause`), stop_timeout --timeout.
`ctl stop` is sent; printed: when it answered and when the last process of
the tree was gone (polled in /proc every 5 ms), both after the stop
timeout, i.e. the time the SIGKILL takes to end the tree (issue 14's target:
under 1 s at 1,000 processes). With cgroups that is cgroup.kill and the
populated watch; without, the session's SIGKILL sweep through /proc.

many: --n services of `evm-helper pause` (instances), cgroup = auto: the
time from the daemon's start until all are running (status polled every
second), then the time of `ctl stop` of them all (with wait) and what is
left (processes of the services' sessions and in their cgroups), then the
daemon's exit (SIGTERM until it exited) and the cgroup directories left
under its base.

Prints, asserts nothing; numbers to publish need a quiet machine (note
`uptime` with them). Run alone: each forks thousands of processes.

    bench/containment.py --build build/cc tree [--n 1000] [--cgroup auto|no] [--runs 3]
    bench/containment.py --build build/cc many [--n 10000]
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from daemonclient import request


def stat(pid):
    """(state, session) of pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[3])


def session_members(sids):
    """Every live (not zombie) process whose session is in sids."""
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            st = stat(int(e))
            if st and st[0] != "Z" and st[1] in sids:
                out.append(int(e))
    return out


def own_cgroup_base(sock):
    """Where the daemon's base would be: <our cgroup>/evmon.<socket path with - for />."""
    mount = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            if right.split()[0] == "cgroup2":
                mount = left.split()[4]
                break
    with open("/proc/self/cgroup") as f:
        rel = [ln.split(":", 2)[2].strip() for ln in f if ln.startswith("0::")]
    if not mount or not rel:
        return None
    return os.path.join(mount + rel[0], "evmon." + sock.lstrip("/").replace("/", "-"))


class Daemon:
    def __init__(self, build, conf, tmp):
        self.evmon = os.path.abspath(os.path.join(build, "evmon"))
        self.sock, self.cfg, self.log = (os.path.join(tmp, f) for f in ("d.sock", "d.ini", "d.log"))
        with open(self.cfg, "w") as f:
            f.write(conf)
        self.logf = open(self.log, "wb")
        self.p = subprocess.Popen([self.evmon, "daemon", "-c", self.cfg, "-S", self.sock],
                                  stdout=self.logf, stderr=subprocess.STDOUT, start_new_session=True)

    def status(self):
        while True:
            if self.p.poll() is not None:
                sys.exit(f"daemon exited: {open(self.log).read()[-2000:]}")
            try:
                return {s["name"]: s for s in request(self.sock, {"cmd": "status"})["services"]}
            except OSError:
                time.sleep(0.1)

    def close(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(600)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.logf.close()


def tree(a, helper, tmp):
    timeout = a.timeout
    d = Daemon(a.build, f"[evmon]\ncgroup = {a.cgroup}\nstart_secs = 0\nstop_timeout = {timeout}\n\n"
               f"[service:t]\ncommand = {helper} ignore 15 group {a.n} pause\nstdout = null\n"
               f"restart = never\nautostart = false\n", tmp)
    try:
        d.status()  # the control socket answers
        for run in range(a.runs):
            r = request(d.sock, {"cmd": "start", "names": ["t"], "wait": True, "timeout": 60})
            if not r.get("ok"):
                sys.exit(f"start: {r}")
            main = d.status()["t"]["pid"]
            while len(members := session_members({main})) < a.n + 1:
                time.sleep(0.05)
            time.sleep(0.5)
            load = os.getloadavg()[0]
            t0 = time.monotonic()
            r = request(d.sock, {"cmd": "stop", "names": ["t"], "wait": True, "timeout": 600})
            answered = time.monotonic() - t0
            left = members
            while left:
                left = [p for p in left if (st := stat(p)) and st[0] != "Z"]
                if left:
                    time.sleep(0.005)
            gone = time.monotonic() - t0
            print(f"run {run + 1}: {a.n + 1} processes, cgroup={a.cgroup}: ctl stop answered "
                  f"{answered - timeout:.3f} s after the stop timeout ({timeout} s), the last "
                  f"process gone {gone - timeout:.3f} s after it; state {d.status()['t']['state']}; "
                  f"load {load:.1f} -> {os.getloadavg()[0]:.1f}")
    finally:
        d.close()


def cgroup_count(base):
    """(service cgroup directories under base, processes in them)."""
    dirs = procs = 0
    for root, subdirs, files in os.walk(base or "/nonexistent"):
        if os.path.basename(root) == "evmon.daemon":
            continue
        if root != base:
            dirs += 1
        try:
            with open(os.path.join(root, "cgroup.procs")) as f:
                procs += sum(1 for _ in f) if root != base else 0
        except OSError:
            pass
    return dirs, procs


def many(a, helper, tmp):
    d = Daemon(a.build, f"[evmon]\ncgroup = auto\nstart_secs = 0\nstop_timeout = 10\n\n"
               f"[service:s]\ncommand = {helper} pause\ninstances = {a.n}\nstdout = null\n", tmp)
    base = own_cgroup_base(d.sock)
    try:
        t0 = time.monotonic()
        load0 = os.getloadavg()[0]
        while True:
            st = d.status()
            up = sum(s["state"] == "running" for s in st.values())
            if up == a.n:
                break
            time.sleep(1)
        t_up = time.monotonic() - t0
        pids = [s["pid"] for s in st.values()]
        incg = sum(1 for p in pids if open(f"/proc/{p}/cgroup").read().strip().endswith(".service"))
        dirs, inside = cgroup_count(base)
        print(f"{a.n} services running {t_up:.1f} s after the daemon was started (status polled "
              f"every second; {incg} mains in a .service cgroup, {dirs} service cgroups holding "
              f"{inside} processes); load {load0:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)
        time.sleep(2)
        load1 = os.getloadavg()[0]
        t1 = time.monotonic()
        r = request(d.sock, {"cmd": "stop", "names": ["s"], "wait": True, "timeout": 1200}, 1300)
        t_stop = time.monotonic() - t1
        st = d.status()
        stopped = sum(s["state"] == "stopped" for s in st.values())
        left = session_members(set(pids))
        dirs, inside = cgroup_count(base)
        print(f"ctl stop of all: answered ok={r.get('ok')} after {t_stop:.1f} s; {stopped} stopped; "
              f"processes left {len(left)} (of the services' sessions), {inside} in service cgroups "
              f"({dirs} service cgroup directories while the daemon runs); "
              f"load {load1:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)
        time.sleep(2)
        load2 = os.getloadavg()[0]
        t2 = time.monotonic()
        d.p.send_signal(signal.SIGTERM)
        d.p.wait(1200)
        t_down = time.monotonic() - t2
        left = session_members(set(pids))
        dirs, inside = cgroup_count(base)
        swept = "killed the processes left" in open(d.log).read()
        print(f"daemon exit (SIGTERM to exit, status {d.p.returncode}): {t_down:.1f} s; processes "
              f"left {len(left)}; base cgroup left: {bool(base and os.path.isdir(base))} "
              f"({dirs} directories under it); the exit's sweep of the base killed something: "
              f"{swept}; load {load2:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)
        for p in left:
            os.kill(p, signal.SIGKILL)
    finally:
        d.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build/cc")
    ap.add_argument("what", choices=["tree", "many"])
    ap.add_argument("--n", type=int)
    ap.add_argument("--cgroup", default="auto")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=1, help="tree: stop_timeout in seconds")
    a = ap.parse_args()
    a.n = a.n or (1000 if a.what == "tree" else 10000)
    helper = os.path.abspath(os.path.join(a.build, "tests", "evm-helper"))
    tmp = tempfile.mkdtemp(prefix="evmon-contain-")
    try:
        (tree if a.what == "tree" else many)(a, helper, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
