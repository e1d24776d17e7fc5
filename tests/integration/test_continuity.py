"""Continuity of `evmon daemon` (issue 15): after a crash (kill -9) a new
daemon on the same socket takes over the services still running (the state
record SOCKET.state: pid + start time + identity of the definition) instead
of starting a second copy; `adopt = no` kills and restarts them; a record
naming a reused pid, or a corrupt one, never touches an unrelated process."""
import os
import random
import signal

import pytest

from conftest import SLOW, wait_for
from daemon_util import Daemon, alive


def marker_pids(marker):
    """The processes whose command line ends with the marker argument."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
            with open(f"/proc/{d}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in args and state != "Z":
            out.append(int(d))
    return sorted(out)


def start_time(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def config(marker, n=10, cgroup="no", extra=""):
    return f"""
[evmon]
cgroup = {cgroup}
start_secs = 0
backoff_initial = 0.05
{extra}
[service:w]
command = sleep {marker}
instances = {n}
"""


def crash(d):
    """kill -9 the daemon: its services stay, re-parented."""
    d.p.kill()
    d.p.wait()
    d.logf.close()


def all_running(d, n):
    st = d.status()
    return len(st) == n and all(s["state"] == "running" for s in st.values()) and st


@pytest.fixture
def marker():
    m = "86400.%d" % random.randrange(1 << 40)  # a sleep as long as any, told apart by its digits
    yield m
    for p in marker_pids(m):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("cgroup", ["no", "auto"])
def test_crash_then_restart_adopts_without_duplicates(procs, tmp_path, marker, cgroup):
    d = Daemon(procs, tmp_path, config(marker, cgroup=cgroup))
    before = wait_for(lambda: all_running(d, 10), timeout=30 * SLOW, what="10 running")
    pids = sorted(s["pid"] for s in before.values())
    wait_for(lambda: os.path.exists(d.sock + ".state") and
             sorted(int(l.split()[2]) for l in open(d.sock + ".state") if l.startswith("service "))
             == pids, what="the record of the 10 pids")
    crash(d)
    assert marker_pids(marker) == pids
    d.start()
    after = wait_for(lambda: all_running(d, 10), timeout=30 * SLOW, what="10 running again")
    assert sorted(s["pid"] for s in after.values()) == pids
    assert all(s.get("adopted") for s in after.values()), after
    assert marker_pids(marker) == pids  # no second copy
    assert d.log().count("left running by daemon") == 10
    # supervised: a killed one is restarted by its policy, once
    victim = after["w:3"]["pid"]
    os.kill(victim, signal.SIGKILL)
    new = wait_for(lambda: (s := d.status("w:3")["w:3"])["state"] == "running" and
                   s["pid"] != victim and s, what="w:3 restarted")
    assert new["restarts"] == 1 and not new.get("adopted")
    assert new["last_exit"].get("adopted") and new["last_exit"]["pid"] == victim
    assert len(marker_pids(marker)) == 10
    d.stop()  # stops the adopted ones too
    assert marker_pids(marker) == []
    assert not os.path.exists(d.sock + ".state")


def test_adopt_no_kills_and_starts_fresh(procs, tmp_path, marker):
    d = Daemon(procs, tmp_path, config(marker, n=3, extra="adopt = no"))
    pids = sorted(s["pid"] for s in wait_for(lambda: all_running(d, 3), what="3 running").values())
    wait_for(lambda: os.path.exists(d.sock + ".state"), what="the record")
    crash(d)
    d.start()
    after = wait_for(lambda: all_running(d, 3), timeout=30 * SLOW, what="3 running again")
    assert not set(s["pid"] for s in after.values()) & set(pids)
    assert not any(alive(p) for p in pids)
    assert len(marker_pids(marker)) == 3
    assert d.log().count("killed (adopt = no)") == 3
    d.stop()


def test_changed_definition_is_not_adopted(procs, tmp_path, marker):
    d = Daemon(procs, tmp_path, config(marker, n=2))
    pids = sorted(s["pid"] for s in wait_for(lambda: all_running(d, 2), what="2 running").values())
    wait_for(lambda: os.path.exists(d.sock + ".state"), what="the record")
    crash(d)
    d.write(config(marker + "1", n=2))
    d.start()
    wait_for(lambda: all_running(d, 2), timeout=30 * SLOW, what="2 running again")
    assert not any(alive(p) for p in pids)
    assert "killed (its definition changed)" in d.log()
    assert len(marker_pids(marker + "1")) == 2
    d.stop()


def test_user_stopped_service_stays_stopped(procs, tmp_path, marker):
    d = Daemon(procs, tmp_path, config(marker, n=2))
    wait_for(lambda: all_running(d, 2), what="2 running")
    assert d.ctl("stop", "w:1").returncode == 0
    wait_for(lambda: " down\n" in open(d.sock + ".state").read(), what="w:1 recorded down")
    crash(d)
    d.start()
    d.wait_state("w:0", "running")
    assert d.status("w:1")["w:1"]["state"] == "stopped"
    assert len(marker_pids(marker)) == 1
    d.stop()


def test_reused_pid_is_not_adopted(procs, tmp_path, marker):
    """A record naming a live process with another start time (the pid was
    reused): that process is neither adopted nor killed."""
    d = Daemon(procs, tmp_path, config(marker, n=1))
    wait_for(lambda: all_running(d, 1), what="w running")
    wait_for(lambda: os.path.exists(d.sock + ".state"), what="the record")
    line = next(l for l in open(d.sock + ".state") if l.startswith("service w "))
    ident = line.split()[4]  # the identity of w's definition, as this daemon computes it
    d.stop()
    other = procs.spawn(["sleep", marker + "2"])
    wait_for(lambda: marker_pids(marker + "2"), what="the other process")
    for start in (start_time(other.pid) + 7, start_time(other.pid)):
        with open(d.sock + ".state", "w") as f:
            f.write(f"evmon-state 1\ndaemon 99999\nservice w {other.pid} {start} {ident} run\nend 1\n")
        d.start()
        st = wait_for(lambda: all_running(d, 1), what="w running")
        if start != start_time(other.pid):
            # the pid is another process's now: neither adopted nor killed
            assert st["w"]["pid"] != other.pid and not st["w"].get("adopted")
            assert "is gone (or is another process now)" in d.log()
            d.stop()
            assert alive(other.pid)
        else:
            # the control: the same record with the right start time is adopted
            assert st["w"]["pid"] == other.pid and st["w"].get("adopted")
            d.stop()
            wait_for(lambda: not alive(other.pid), what="the adopted process stopped")


@pytest.mark.parametrize("text,why", [
    ("evmon-state 1\ndaemon 1\nservice w 1 5 0 run\n", "truncated (no end line)"),
    ("evmon-state 1\ndaemon 1\nservice w 1 5 0 run\nend 2\n", "fewer services"),
    ("evmon-state 1\ndaemon 1\nservice w 1 5 0 ru", "cut short"),
    ("garbage\n", "not 'evmon-state 1'"),
    ("evmon-state 1\nservice w one 5 0 run\nend 1\n", "cannot read"),
])
def test_bad_record_is_said_and_ignored(procs, tmp_path, marker, text, why):
    d = Daemon(procs, tmp_path, config(marker, n=1), start=False)
    with open(d.sock + ".state", "w") as f:
        f.write(text)
    d.start()
    wait_for(lambda: all_running(d, 1), what="w running")
    assert why in d.log() and "ignored" in d.log(), d.log()
    # replaced by a good one
    wait_for(lambda: open(d.sock + ".state").read().endswith("end 1\n"), what="a new record")
    d.stop()
