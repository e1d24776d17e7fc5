#!/usr/bin/env python3
"""Idle wake-ups of `evmon daemon` with N ready services (issue 16's target:
readiness adds no polling). Starts a daemon with N services of one ready kind,
waits until all are running (ready), then counts the daemon's context switches
(voluntary + involuntary, every thread, /proc/PID/task/*/status) and CPU time
(/proc/PID/stat) over a quiet window.

    bench/ready_idle.py [--n 1000] [--kind notify|started|fd|exec] [--secs 10]
                        [--build build/cc]

Not part of `make test`: a measurement, not an assertion.
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def switches(pid):
    n = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{t}/status") as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    n += int(line.split()[1])
    return n


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--kind", default="notify")
    ap.add_argument("--secs", type=float, default=10)
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "cc"))
    a = ap.parse_args()
    evmon = os.path.join(a.build, "evmon")
    helper = os.path.join(a.build, "tests", "evm-helper")
    cmd = {"notify": f"{helper} notify READY=1 pause", "started": f"{helper} pause",
           "fd": f'{helper} fdprint 3 "" pause', "exec": f"{helper} pause"}[a.kind]
    ready = {"notify": "notify", "started": "started", "fd": "fd:3",
             "exec": "exec:/bin/true"}[a.kind]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "bench.ini")
        with open(cfg, "w") as f:
            f.write("[evmon]\nstop_timeout = 5\nstart_secs = 0\n")
            for i in range(a.n):
                f.write(f"[service:s{i}]\ncommand = {cmd}\nready = {ready}\n")
        sock = os.path.join(tmp, "d.sock")
        d = subprocess.Popen([evmon, "daemon", "-c", cfg, "-S", sock],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            t0 = time.monotonic()
            while True:
                r = subprocess.run([evmon, "ctl", "-S", sock, "wait", "s0", f"s{a.n - 1}",
                                    "--for", "ready", "-t", "600"], capture_output=True)
                if r.returncode == 0:
                    break
                time.sleep(0.2)
            out = subprocess.run([evmon, "ctl", "-S", sock, "status"], capture_output=True,
                                 text=True).stdout
            running = out.count(" running ")
            if running != a.n:
                time.sleep(1)
                out = subprocess.run([evmon, "ctl", "-S", sock, "status"], capture_output=True,
                                     text=True).stdout
                running = out.count(" running ")
            ready_s = time.monotonic() - t0
            time.sleep(1)  # the last STATUS= timer (1 s) and stragglers
            s0, c0 = switches(d.pid), cpu_ticks(d.pid)
            time.sleep(a.secs)
            s1, c1 = switches(d.pid), cpu_ticks(d.pid)
            hz = os.sysconf("SC_CLK_TCK")
            print(f"kind={a.kind} services={a.n} running={running} all-ready-after={ready_s:.1f}s "
                  f"idle-window={a.secs:.0f}s context-switches={s1 - s0} "
                  f"cpu={(c1 - c0) / hz * 1000:.0f}ms")
        finally:
            d.send_signal(signal.SIGTERM)
            d.wait(timeout=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
