"""Soak: short-lived services restarting through `evmon daemon` until
EVMON_SOAK_EXITS processes have exited (by default 2,000 in `make test`, 1,000
under the sanitizers; 10,000 and 3,000 in `make test-scale`; `make soak` asks for
1,000,000), with every exit counted on the daemon's event stream.

What must hold at the end:
- every process the stream says was started has exactly one exit event
  (zero lost, zero reported twice), in order: start, then exit, per service;
- the exits are, pid for pid, the processes that really ran (each appends
  its pid to a file before it exits: a record kept outside the daemon; pids
  are reused many times over, so they are compared as multisets);
- after a warm-up of 5% of the run (stopped, then started again), the
  daemon's resident memory is flat to the end, its fd count is the same
  after the last stop as after the warm-up (and never above one pidfd per
  instance more), and no zombie is left.

With EVMON_SOAK_REPORT=FILE the figures are also written there as JSON
(docs/RELIABILITY.md quotes them)."""
import collections
import json
import os
import time

import pytest

from conftest import SAN, wait_for, zombies_of
from daemon_util import SLOW, Daemon
from reliability_util import EventStream, fds, rss_kb

if os.environ.get("EVMON_SOAK_EXITS"):
    RUNS = [int(os.environ["EVMON_SOAK_EXITS"])]
else:
    RUNS = [1000 if SAN else 2000, pytest.param(3000 if SAN else 10000, marks=pytest.mark.scale)]
INSTANCES = 16


def files(pid):
    """What the daemon has open, but its sockets, by fd number: a client connection the
    test just closed may not have been seen closed yet; a leak would be a pidfd, file or
    pipe. Nor the state record's temporary file: open while a write is under way (a
    snapshot caught one once, in CI)."""
    return {n: v for n, v in fds(pid).items()
            if not v.startswith("socket:") and not v.endswith(".state.tmp")}


def fd_diff(before, after):
    """The fds that differ, by number (a sorted list of names hides which one moved)."""
    return {n: (before.get(n), after.get(n)) for n in sorted(set(before) | set(after))
            if before.get(n) != after.get(n)}


class Stream(EventStream):
    """The soak's stream: also the exits with code 0 (pid -> exits), the lines read,
    and a warning event is an error."""

    def __init__(self, sock):
        super().__init__(sock)
        self.code0 = collections.Counter()  # pid -> exits with code 0
        self.lines = 0

    def on_exit(self, ev):
        if ev.get("code") == 0:
            self.code0[ev["pid"]] += 1

    def take(self, ev):
        self.lines += 1
        if ev.get("event") == "warning":
            self.error(f"warning: {ev}")
        super().take(ev)


@pytest.mark.parametrize("total", RUNS)
def test_soak(procs, tmp_path, total):
    pidlog = tmp_path / "pids"
    d = Daemon(procs, tmp_path, f"""
[evmon]
client_buffer = 1G
start_secs = 0
stable_secs = 0
backoff_initial = 0
backoff_max = 0
stop_timeout = 5

[service:churn]
command = HELPER pidlog {pidlog} exit 0
restart = always
instances = {INSTANCES}
stdout = null
stderr = null
autostart = false
""", start=False)
    # the daemon's log would be three lines per exit: not kept for the long run
    if total > 100000:
        d.logpath = os.devnull
    d.start()
    pid = d.p.pid
    stream = Stream.follow(d)

    # a first 5% as warm-up: what the daemon opens or allocates once (its /dev/null,
    # /proc status fd, buffers) is there before the figures are taken
    t0 = time.monotonic()
    assert d.request({"cmd": "start", "names": ["churn"]})["ok"]
    warm = max(1000, total // 20)
    wait_for(lambda: stream.exits >= warm, timeout=(warm / 50 + 120) * SLOW, interval=0.1,
             what=f"{warm} exits")
    assert d.request({"cmd": "stop", "names": ["churn"], "wait": True, "timeout": 60}, timeout=90)["ok"]
    wait_for(lambda: not stream.running, timeout=30 * SLOW, what="the warm-up's last exits")
    fd_idle = files(pid)
    assert d.request({"cmd": "start", "names": ["churn"]})["ok"]
    wait_for(lambda: stream.running, what="restarted")
    rss0, fd_max = rss_kb(pid), len(fds(pid))
    rss_max = rss0
    deadline = time.monotonic() + (total / 50 + 300) * SLOW
    while stream.exits < total:
        assert time.monotonic() < deadline, f"only {stream.exits} exits"
        assert d.p.poll() is None, "the daemon died"
        assert not stream.closed, "the daemon dropped the event stream"
        time.sleep(0.5)
        rss_max = max(rss_max, rss_kb(pid))
        fd_max = max(fd_max, len(fds(pid)))
    rss1 = rss_kb(pid)
    elapsed = time.monotonic() - t0
    r = d.request({"cmd": "stop", "names": ["churn"], "wait": True, "timeout": 60}, timeout=90)
    assert r["ok"], r
    # the stop's own exits reach us too; then the stream is quiet
    wait_for(lambda: not stream.running, timeout=30 * SLOW, what="the last exits")
    fd_end = files(pid)
    with stream.lock:
        spawns, exits, errors = stream.spawns, stream.exits, list(stream.errors)
        code0 = collections.Counter(stream.code0)
        anyexit = collections.Counter(stream.exited)
    ran = collections.Counter(int(line) for line in pidlog.read_text().split())
    zombies = zombies_of(pid)
    figures = {
        "exits": exits, "spawns": spawns, "lost": spawns - exits,
        "duplicates": sum(n - 1 for n in code0.values() if n > 1) - sum(n - 1 for n in ran.values() if n > 1),
        "ran": sum(ran.values()), "exits_code0": sum(code0.values()),
        "seconds": round(elapsed, 1), "exits_per_second": round(exits / elapsed),
        "rss_kb_start": rss0, "rss_kb_end": rss1, "rss_kb_max": rss_max,
        "fds_idle_start": len(fd_idle), "fds_idle_end": len(fd_end), "fds_max": fd_max,
        "instances": INSTANCES, "event_lines": stream.lines,
        "zombies": len(zombies), "san": SAN,
    }
    print("\nsoak:", json.dumps(figures))
    report = os.environ.get("EVMON_SOAK_REPORT")
    if report:
        with open(report, "w") as f:
            json.dump(figures, f, indent=1)
    assert not errors, errors
    assert spawns == exits, figures
    # every process that ran has its exit, and every exit with code 0 is one that ran;
    # only the two stops may kill a process between its pidlog and its exit
    assert not ran - anyexit and not code0 - ran, (ran - anyexit, code0 - ran)
    assert sum((ran - code0).values()) <= 2 * INSTANCES
    # at most: a pidfd per running instance, plus what is open for a moment: a spawn's
    # error pipe (2), the state record's temporary file, a /proc read, a client's socket
    assert sorted(fd_end.values()) == sorted(fd_idle.values()), fd_diff(fd_idle, fd_end)
    assert fd_max <= len(fd_idle) + INSTANCES + 6, figures
    if not SAN:  # ASan's quarantine holds freed memory on purpose
        assert rss1 - rss0 <= max(1024, rss0 // 10), figures
    assert not zombies
    stream.sock.close()
    d.stop()
