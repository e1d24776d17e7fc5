"""Re-exec under load (issue 15 item 5): N services crash-looping and L
services writing numbered log lines while `evmon ctl reexec` runs K times
and clients keep pinging (50/5/5 in `make test`, 1,000/100/100 in
`make test-scale`).

What must hold at the end:
- one event stream, followed across every re-exec: each process it says
  was started has exactly one exit event, in order per service (none lost
  or reported twice), and the exits are, pid for pid, the processes that
  really ran (each appends its pid to a file first: a record kept outside
  the daemon; compared as multisets, pids being reused);
- every exit reaped by the daemon carries its status (the services stay its
  children across the exec): none is "status unknown";
- each logger's lines are 1, 2, 3, ... with none missing or repeated;
- every ping sent was answered, by the same daemon pid, and no connection
  was refused."""
import collections
import os
import threading
import time

import pytest

from conftest import HELPER, wait_for
from daemon_util import SLOW, Daemon
from reliability_util import EventStream

RUNS = [(50, 5, 5), pytest.param(1000, 100, 100, marks=pytest.mark.scale)]
PINGERS = 3


class Stream(EventStream):
    """The churn services' stream, which must stay open across re-execs: also the
    reexec events, and the exits whose status is unknown."""

    def __init__(self, sock):
        super().__init__(sock)
        self.reexecs = 0
        self.unknown = []

    def watched(self, svc):
        return bool(svc) and svc.startswith("churn")

    def on_exit(self, ev):
        if ev.get("status_unknown"):
            self.unknown.append(ev)

    def take(self, ev):
        if ev.get("event") == "reexec":
            self.reexecs += 1
        super().take(ev)


class Pinger(threading.Thread):
    """Pings on a fresh connection each time: every one must be answered."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.d, self.stop = d, False
        self.sent = self.answered = 0
        self.failures, self.pids = [], set()

    def run(self):
        while not self.stop:
            self.sent += 1
            try:
                r = self.d.request({"cmd": "ping"}, timeout=60)
                self.answered += 1
                self.pids.add(r["pid"])
            except Exception as e:  # refused, closed unanswered, timed out: all failures
                self.failures.append(repr(e))
            time.sleep(0.005)


def talk_lines(path):
    with open(path) as f:
        return [int(l.split()[1]) for l in f if l.startswith("line ")]


def reexec(d):
    """ctl reexec, once the daemon has started every service (it refuses before)."""
    def once():
        r = d.ctl("reexec", timeout=120)
        return ("still starting" not in r.stderr) and r
    return wait_for(once, timeout=60 * SLOW, interval=0.1, what="a re-exec")


@pytest.mark.parametrize("n,loggers,reexecs", RUNS)
def test_reexec_under_churn(procs, tmp_path, n, loggers, reexecs):
    pidlog, logs = tmp_path / "pids", tmp_path / "logs"
    os.makedirs(logs)
    d = Daemon(procs, tmp_path, f"""
[evmon]
client_buffer = 1G
cgroup = no
log_dir = {logs}
start_secs = 0
stable_secs = 0
backoff_initial = 0.05
backoff_max = 0.2
stop_timeout = 5

[service:churn]
command = {HELPER} pidlog {pidlog} sleep 50 exit 1
restart = always
instances = {n}
stdout = null
stderr = null
autostart = false

[service:talk]
command = {HELPER} talk 10
instances = {loggers}
stdout = log
""", start=False)
    d.logpath = os.devnull if n > 100 else d.logpath  # lines per exit: not kept at scale
    d.start()
    stream = Stream.follow(d)
    assert d.request({"cmd": "start", "names": ["churn"]})["ok"]  # followed from its first start
    pingers = [Pinger(d) for _ in range(PINGERS)]
    for p in pingers:
        p.start()
    try:
        wait_for(lambda: stream.exits >= n, timeout=120 * SLOW, what=f"{n} exits")
        for i in range(reexecs):
            before = stream.exits
            r = reexec(d)
            assert r.returncode == 0, r.stdout + r.stderr
            assert d.p.poll() is None
            # churn goes on between two: some exits after this one
            wait_for(lambda: stream.exits > before + n // 10, timeout=120 * SLOW,
                     what=f"exits after re-exec {i + 1}")
        wait_for(lambda: stream.reexecs == reexecs, what="every reexec event")
    finally:
        for p in pingers:
            p.stop = True
        for p in pingers:
            p.join()
    assert not stream.closed, "the event stream was closed"
    r = d.request({"cmd": "stop", "names": ["churn", "talk"], "wait": True, "timeout": 60},
                  timeout=120)
    assert r["ok"], r
    wait_for(lambda: not stream.running, timeout=30 * SLOW, what="the last exits")
    with stream.lock:
        errors, exited, spawns, exits = list(stream.errors), stream.exited.copy(), \
            stream.spawns, stream.exits
    ran = collections.Counter(int(l) for l in pidlog.read_text().split())
    print(f"\nreexec load: {reexecs} re-execs, {exits} exits, {sum(p.answered for p in pingers)} pings")
    assert not errors, errors
    assert spawns == exits
    # every process that ran exited once on the stream, and nothing else did; the
    # stop may kill one between its spawn and its pidlog
    assert not ran - exited, ran - exited
    assert sum((exited - ran).values()) <= n, exited - ran
    assert not stream.unknown, stream.unknown[:3]
    for i in range(loggers):
        lines = talk_lines(logs / f"talk:{i}.log")
        assert len(lines) > 10 and lines == list(range(1, len(lines) + 1)), \
            f"talk:{i}: lines lost or repeated"
    for p in pingers:
        assert not p.failures, p.failures[:5]
        assert p.answered == p.sent and p.pids == {d.p.pid}
    d.stop()
