"""Continuity of `evmon daemon` (issue 15): after a crash (kill -9) a new
daemon on the same socket takes over the services still running (the state
record SOCKET.state: pid + start time + identity of the definition) instead
of starting a second copy; `adopt = no` kills and restarts them; a record
naming a reused pid, or a corrupt one, never touches an unrelated process.
`evmon ctl reexec` execs the daemon's binary in place: same pids, the
listener and the log pipes kept, a broken binary refused with the daemon
carrying on."""
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import EVMON, ROOT, SLOW, live_args, proc_state, wait_for
from daemon_util import (Daemon, LineReader, alive, hand_over, read_line, stops_slowly,
                         wait_signal_state)


def marker_pids(marker):
    """The processes whose command line ends with the marker argument."""
    return sorted(pid for pid, args in live_args() if marker.encode() in args)


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


def execd(pid):
    """The process has exec'd its command: with start_secs = 0 a service is
    reported running as the spawn returns, while its child may still be the
    daemon's fork (whose cmdline a marker count would miss)."""
    try:
        return os.readlink(f"/proc/{pid}/exe") != os.path.realpath(EVMON)
    except OSError:
        return False


def all_running(d, n):
    st = d.status()
    return (len(st) == n and all(s["state"] == "running" and execd(s["pid"]) for s in st.values())
            and st)


def recorded_pids(d):
    """The pids of the daemon's state record's service lines (none before it is written)."""
    try:
        with open(d.sock + ".state") as f:
            return sorted(int(l.split()[2]) for l in f if l.startswith("service "))
    except FileNotFoundError:
        return []


def wait_recorded(d, pids):
    """Until the record names exactly these pids: while services start, the
    daemon spaces its writes, so a record may exist before it names them all."""
    wait_for(lambda: recorded_pids(d) == sorted(pids), what=f"the record of pids {sorted(pids)}")


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
    wait_recorded(d, pids)
    # start_secs = 0 reports running as the spawn returns: an exec may still be under way
    wait_for(lambda: marker_pids(marker) == pids, what="every exec")
    d.crash()
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
    # start_secs = 0 reports running as the spawn returns: the exec may still be under way
    wait_for(lambda: new["pid"] in marker_pids(marker), what="the restarted w:3's exec")
    assert len(marker_pids(marker)) == 10
    d.stop()  # stops the adopted ones too
    assert marker_pids(marker) == []
    assert not os.path.exists(d.sock + ".state")


@pytest.mark.parametrize("cgroup", ["no", "auto"])
def test_adopted_after_a_crash_then_reexec(procs, tmp_path, marker, cgroup):
    """Services adopted after a crash are not the daemon's children: a
    re-exec passes their pidfds all the same, and the new image takes them
    over as what they are (EVM_ADOPT_KEPT: another's child, so an exit of
    unknown status, never reaped by us); they are restarted by their policy
    and stopped with the daemon like any other."""
    d = Daemon(procs, tmp_path, config(marker, n=3, cgroup=cgroup))
    pids = sorted(s["pid"] for s in wait_for(lambda: all_running(d, 3), what="3 running").values())
    wait_recorded(d, pids)
    d.crash()
    d.start()
    adopted = wait_for(lambda: all_running(d, 3), what="3 adopted")
    assert sorted(s["pid"] for s in adopted.values()) == pids
    r = d.ctl("reexec")
    assert r.returncode == 0 and "3 of 3 services kept running" in r.stdout, r.stdout + r.stderr
    after = d.status()
    assert {k: v["pid"] for k, v in after.items()} == {k: v["pid"] for k, v in adopted.items()}
    assert all(v.get("adopted") and v["state"] == "running" for v in after.values()), after
    assert marker_pids(marker) == pids
    victim = after["w:1"]["pid"]
    os.kill(victim, signal.SIGKILL)
    new = wait_for(lambda: (s := d.status("w:1")["w:1"])["state"] == "running" and
                   s["pid"] != victim and s, what="w:1 restarted")
    last = new["last_exit"]
    assert last["pid"] == victim and last.get("adopted") and last.get("status_unknown"), last
    assert new["restarts"] == 1 and not new.get("adopted")
    wait_for(lambda: new["pid"] in marker_pids(marker), what="the restarted w:1's exec")
    assert len(marker_pids(marker)) == 3
    d.stop()
    assert marker_pids(marker) == []


def test_adopt_no_kills_and_starts_fresh(procs, tmp_path, marker):
    d = Daemon(procs, tmp_path, config(marker, n=3, extra="adopt = no"))
    pids = sorted(s["pid"] for s in wait_for(lambda: all_running(d, 3), what="3 running").values())
    wait_recorded(d, pids)
    d.crash()
    d.start()
    after = wait_for(lambda: all_running(d, 3), timeout=30 * SLOW, what="3 running again")
    assert not set(s["pid"] for s in after.values()) & set(pids)
    assert not any(alive(p) for p in pids)
    # start_secs = 0 reports running as the spawn returns: the exec may still be under way
    wait_for(lambda: len(marker_pids(marker)) >= 3, what="the 3 new processes' exec")
    found = {p: proc_state(p) for p in marker_pids(marker)}
    assert len(found) == 3, (found, pids, after, d.log())
    assert d.log().count("killed (adopt = no)") == 3
    d.stop()


def test_changed_definition_is_not_adopted(procs, tmp_path, marker):
    d = Daemon(procs, tmp_path, config(marker, n=2))
    pids = sorted(s["pid"] for s in wait_for(lambda: all_running(d, 2), what="2 running").values())
    wait_recorded(d, pids)
    d.crash()
    d.write(config(marker + "1", n=2))
    d.start()
    wait_for(lambda: all_running(d, 2), timeout=30 * SLOW, what="2 running again")
    assert not any(alive(p) for p in pids)
    assert "killed (its definition changed)" in d.log()
    wait_for(lambda: len(marker_pids(marker + "1")) >= 2, what="the 2 new processes' exec")
    assert len(marker_pids(marker + "1")) == 2
    d.stop()


def recorded_down(d, name):
    try:
        with open(d.sock + ".state") as f:
            return any(l.split()[1:2] == [name] and l.split()[5] == "down" for l in f)
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("hand_overs", [["crash"], ["reexec", "reexec"], ["crash", "crash"],
                                        ["reexec", "crash"]])
def test_user_stopped_service_stays_stopped(procs, tmp_path, marker, hand_overs):
    """A service stopped with ctl stop stays stopped across takeovers: the one taken
    over was no longer "stopped by a user" to the library, so the next record said
    "run", and the second takeover started it."""
    d = Daemon(procs, tmp_path, config(marker, n=2))
    wait_for(lambda: all_running(d, 2), what="2 running")
    assert d.ctl("stop", "w:1").returncode == 0
    wait_for(lambda: recorded_down(d, "w:1"), what="w:1 recorded down")
    starts = len(re.findall("service w:1: stopped -> (running|starting)", d.log()))
    for i, how in enumerate(hand_overs):
        if i:  # a record of the new daemon's own, by a change the next one reads
            pid = d.status("w:0")["w:0"]["pid"]
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: d.status("w:0")["w:0"].get("pid") not in (None, pid) and
                     recorded_pids(d) == [0, d.status("w:0")["w:0"]["pid"]],
                     what="w:0 restarted and recorded")
            assert recorded_down(d, "w:1")
        hand_over(d, how)
        d.wait_state("w:0", "running")
        assert d.status("w:1")["w:1"]["state"] == "stopped"
    wait_for(lambda: marker_pids(marker), what="w:0's exec")
    assert len(marker_pids(marker)) == 1
    assert len(re.findall("service w:1: stopped -> (running|starting)", d.log())) == starts
    d.stop()


def test_reused_pid_is_not_adopted(procs, tmp_path, marker):
    """A record naming a live process with another start time (the pid was
    reused): that process is neither adopted nor killed."""
    d = Daemon(procs, tmp_path, config(marker, n=1))
    st = wait_for(lambda: all_running(d, 1), what="w running")
    wait_recorded(d, [st["w"]["pid"]])
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


@pytest.mark.parametrize("flag", ["stopping", "run"])
def test_a_stop_under_way_whose_process_died_stays_stopped(procs, tmp_path, marker, flag):
    """A record says w was being stopped by a daemon that crashed, and its process
    died meanwhile (its exit lost with the daemon): it stays stopped, as an adopted
    one does at the end of its stop, and as one to stop once its dependents are down
    ("stop", format 7) did already (a stopping one was started again). The control
    (run): started again."""
    d = Daemon(procs, tmp_path, config(marker, n=1))
    st = wait_for(lambda: all_running(d, 1), what="w running")
    wait_recorded(d, [st["w"]["pid"]])
    line = next(l for l in open(d.sock + ".state") if l.startswith("service w "))
    ident = line.split()[4]
    d.stop()
    gone = procs.spawn(["sleep", marker + "2"])
    pid, start = gone.pid, start_time(gone.pid)
    gone.kill()
    gone.wait()
    with open(d.sock + ".state", "w") as f:
        f.write(f"evmon-state 1\ndaemon 99999\nservice w {pid} {start} {ident} {flag}\nend 1\n")
    d.start()
    wait_for(lambda: "is gone (or is another process now)" in d.log(), what="the takeover")
    if flag == "run":
        wait_for(lambda: all_running(d, 1), what="w started again")
    else:
        time.sleep(0.3 * SLOW)  # a start would come in the takeover's iteration or the next
        assert d.status("w")["w"]["state"] == "stopped", d.log()
        assert not marker_pids(marker)
    d.stop()


def test_crash_kills_a_process_missing_from_the_record(procs, tmp_path, marker):
    """Without cgroups, a process started in the daemon's last loop iteration before a crash
    is missing from the record (written at most once an iteration): the new daemon finds it
    by the EVMON_DAEMON_ID in its environment, which every process of that line of daemons
    carries (the record keeps it), kills it and starts the service afresh: it never runs
    twice. A process with the service's name but another id is not touched. Here the
    record is made to miss one service by hand. The service's environment = cannot
    replace the id (it did: then nothing told its processes for the daemon's)."""
    d = Daemon(procs, tmp_path, config(marker, n=3) + "environment = EVMON_DAEMON_ID=" + "0" * 16 + "\n")
    st = wait_for(lambda: all_running(d, 3), what="3 running")
    wait_recorded(d, [s["pid"] for s in st.values()])
    lines = open(d.sock + ".state").read().splitlines()
    ident = next(w[3:] for w in lines[1].split() if w.startswith("id="))
    with open(f"/proc/{st['w:1']['pid']}/environ", "rb") as f:
        assert f"EVMON_DAEMON_ID={ident}".encode() in f.read().split(b"\0")
    stranger = procs.spawn(["sleep", marker + "9"],
                           env=dict(os.environ, EVMON_SERVICE="w:1", EVMON_DAEMON_ID="0" * 16))
    d.crash()
    with open(d.sock + ".state", "w") as f:
        kept = [l for l in lines if not l.startswith(("service w:1 ", "end "))]
        f.write("\n".join(kept) + "\nend 2\n")
    d.start()
    after = wait_for(lambda: all_running(d, 3), what="3 running again")
    assert after["w:1"]["pid"] != st["w:1"]["pid"] and not after["w:1"].get("adopted"), after
    assert not alive(st["w:1"]["pid"])
    assert f"service w:1: pid {st['w:1']['pid']}, started by daemon" in d.log(), d.log()
    wait_for(lambda: after["w:1"]["pid"] in marker_pids(marker), what="the new w:1's exec")
    assert len(marker_pids(marker)) == 3  # (the stranger's argument is another)
    assert alive(stranger.pid)
    d.stop()
    assert marker_pids(marker) == [] and alive(stranger.pid)


@pytest.mark.parametrize("tail", ["", " start", " restart", " frobnicate 7"])
def test_a_format_2_line_may_end_with_more(procs, tmp_path, marker, tail):
    """A format-2 service line may end with more after NEXT_START: format 7's flag, which
    the record on disk carries that way (what a service waited for), or what a later
    release adds. Never a reason to ignore the record (an evmon that reads format 2 ignores
    the rest of the line). A hand-written "start" beside a live process: the process is
    adopted, not left to run beside a second copy."""
    d = Daemon(procs, tmp_path, config(marker, n=1))
    st = wait_for(lambda: all_running(d, 1), what="w running")
    wait_recorded(d, [st["w"]["pid"]])
    # up to NEXT_START ("service", the name and the 10 fields of format 2): what follows
    # (since=, health=, ...) is what a later format adds, which the tail stands for
    words = next(l for l in open(d.sock + ".state") if l.startswith("service w ")).split()[:12]
    d.stop()
    other = procs.spawn(["sleep", marker + "2"])
    wait_for(lambda: marker_pids(marker + "2"), what="the other process")
    words[2:4] = [str(other.pid), str(start_time(other.pid))]
    with open(d.sock + ".state", "w") as f:
        f.write(f"evmon-state 2\ndaemon 99999\n{' '.join(words)}{tail}\nend 1\n")
    d.start()
    if tail == " restart":  # the restart it waited for: its process stopped, w started anew
        st = wait_for(lambda: (s := all_running(d, 1)) and s["w"]["pid"] != other.pid and s,
                      what="w started again")
        wait_for(lambda: not alive(other.pid), what="the adopted process stopped")
    else:
        st = wait_for(lambda: all_running(d, 1), what="w running")
        assert st["w"]["pid"] == other.pid and st["w"].get("adopted"), st
    assert "ignored" not in d.log()
    d.stop()
    assert not alive(other.pid)


@pytest.mark.parametrize("text,why", [
    ("evmon-state 1\ndaemon 1\nservice w 1 5 0 run\n", "truncated (no end line)"),
    ("evmon-state 1\ndaemon 1\nservice w 1 5 0 run\nend 2\n", "fewer services"),
    ("evmon-state 1\ndaemon 1\nservice w 1 5 0 ru", "cut short"),
    ("garbage\n", "line 1: not 'evmon-state N' (N from 1 to "),
    ("evmon-state 1\ndaemon 1\nadded {}\nend 0\n", "cannot read 'added {}'"),
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


# ------------------------------------------------------------------ reexec

TALKER = """
[service:talk]
command = sh -c 'i=0; while :; do i=$((i+1)); echo "line $i"; sleep 0.005; done'
stdout = log
"""


def talk_lines(d):
    """The talker's numbered lines, in the order of its log."""
    with open(os.path.join(str(d.dir), "logs", "talk.log")) as f:
        return [int(l.split()[1]) for l in f if l.startswith("line ")]


def reexec_config(marker, n):
    return config(marker, n=n, cgroup="auto", extra="log_dir = logs") + TALKER


def own_copy(tmp_path, version=None):
    """A copy of evmon for the daemon to run (and to replace: an upgrade),
    optionally with another version string."""
    with open(EVMON, "rb") as f:
        data = f.read()
    if version:
        old = open(os.path.join(ROOT, "VERSION")).read().strip().encode() + b"\0"
        assert data.count(old) == 1 and len(version) == len(old) - 1
        data = data.replace(old, version.encode() + b"\0")
    path = str(tmp_path / "bin" / "evmon")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o755)
    os.rename(tmp, path)  # over a running one: its inode stays, the path names the new one
    return path


def start_with(d, exe):
    d.logf = open(d.logpath, "ab")
    d.p = d.procs.spawn([exe, "daemon", "-c", d.cfg, "-S", d.sock] + d.args,
                        stdout=d.logf, stderr=subprocess.STDOUT, env=d.env)
    wait_for(lambda: d.answers() or d.p.poll() is not None, timeout=20 * SLOW, what="the socket")
    assert d.p.poll() is None, d.log()


class Pinger(threading.Thread):
    """Connects and pings in a loop: a refused connection is a failure; a
    connection the exec closed before its answer is retried."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.d, self.stop, self.refused, self.answers, self.pids = d, False, [], 0, set()

    def run(self):
        while not self.stop:
            try:
                r = self.d.request({"cmd": "ping"}, timeout=30)
                self.answers += 1
                self.pids.add(r["pid"])
            except (ConnectionRefusedError, FileNotFoundError) as e:
                self.refused.append(repr(e))
            except (EOFError, ConnectionResetError, BrokenPipeError):
                pass


def test_reexec_keeps_every_service_and_line(procs, tmp_path, marker):
    n = 100
    d = Daemon(procs, tmp_path, reexec_config(marker, n), start=False)
    os.makedirs(tmp_path / "logs")
    exe = own_copy(tmp_path)
    start_with(d, exe)
    before = wait_for(lambda: all_running(d, n + 1), timeout=60 * SLOW, what="all running")
    wait_for(lambda: len(talk_lines(d)) > 20, what="the talker's lines")
    pinger = Pinger(d)
    pinger.start()
    try:
        r = d.ctl("reexec")
        assert r.returncode == 0, r.stderr + d.log()
        assert f"{n + 1} of {n + 1} services kept running" in r.stdout
        after = d.status()
        # the same processes, none restarted, all taken over
        assert {k: v["pid"] for k, v in after.items()} == {k: v["pid"] for k, v in before.items()}
        assert all(v["restarts"] == 0 and v["state"] == "running" and v.get("adopted")
                   for v in after.values()), after
        assert len(marker_pids(marker)) == n
        count = len(talk_lines(d))
        wait_for(lambda: len(talk_lines(d)) > count + 20, what="lines after the reexec")
    finally:
        pinger.stop = True
        pinger.join()
    assert not pinger.refused, pinger.refused  # the listener never closed
    assert pinger.answers > 0 and pinger.pids == {d.p.pid}
    lines = talk_lines(d)
    assert lines == list(range(1, len(lines) + 1))  # no line lost or repeated
    # still supervised, now with exit codes (the services are still our children)
    victim = after["w:7"]["pid"]
    os.kill(victim, signal.SIGKILL)
    st = wait_for(lambda: (s := d.status("w:7")["w:7"])["pid"] != victim and
                  s["state"] == "running" and s, what="w:7 restarted")
    assert st["last_exit"]["signal_name"] == "KILL" and not st["last_exit"].get("status_unknown")
    d.stop()
    assert marker_pids(marker) == []


def test_reexec_into_an_upgrade(procs, tmp_path, marker):
    d = Daemon(procs, tmp_path, reexec_config(marker, 3), start=False)
    os.makedirs(tmp_path / "logs")
    exe = own_copy(tmp_path)
    start_with(d, exe)
    before = wait_for(lambda: all_running(d, 4), what="all running")
    own_copy(tmp_path, version="9.9.9")
    r = d.ctl("reexec")
    assert r.returncode == 0 and "evmon daemon 9.9.9" in r.stdout, r.stdout + r.stderr
    assert d.request({"cmd": "ping"})["version"] == "9.9.9"
    assert {k: v["pid"] for k, v in d.status().items()} == \
        {k: v["pid"] for k, v in before.items()}
    d.stop()


def inotify_fds(pid):
    """The inotify fds of pid, each with the descriptors of its watches."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                out[int(fd)] = sorted(int(l.split()[1][3:], 16) for l in f
                                      if l.startswith("inotify wd:"))
        except OSError:  # closed meanwhile
            pass
    return out


def test_reexec_keeps_the_cgroup_watches(procs, tmp_path, marker):
    """With cgroups, the new image takes the old one's cgroup watches over
    (the inotify fd kept across the exec, each watch by its descriptor)
    instead of watching every cgroup again: the same fd with the same
    watches after the exec, a gap left by a removed service included (a
    fresh inotify fd would number them 1, 2, 3). The watches still work: a
    service killed after the exec is restarted and a stop waits for every
    cgroup to empty; no service inherits the fd."""
    d = Daemon(procs, tmp_path, config(marker, n=2, cgroup="auto"))
    wait_for(lambda: all_running(d, 2), what="all running")
    assert d.ctl("add", "gone", "--", "sleep", marker).returncode == 0
    assert d.ctl("remove", "gone").returncode == 0
    assert d.ctl("add", "kept", "--", "sleep", marker).returncode == 0
    before = wait_for(lambda: all_running(d, 3), what="w:0, w:1 and kept running")
    fds = inotify_fds(d.p.pid)
    assert len(fds) == 1 and len(next(iter(fds.values()))) == 3, fds
    assert next(iter(fds.values())) != [1, 2, 3], fds  # the gap: else the test proves nothing
    r = d.ctl("reexec")
    assert r.returncode == 0, r.stdout + r.stderr + d.log()
    assert inotify_fds(d.p.pid) == fds, d.log()
    assert "cannot take over the cgroup watches" not in d.log()
    after = d.status()
    assert {k: v["pid"] for k, v in after.items()} == {k: v["pid"] for k, v in before.items()}
    victim = after["kept"]["pid"]
    os.kill(victim, signal.SIGKILL)
    new = wait_for(lambda: (s := d.status("kept")["kept"])["state"] == "running" and
                   s["pid"] != victim and execd(s["pid"]) and s, what="kept restarted")
    assert not inotify_fds(new["pid"]) and not inotify_fds(after["w:0"]["pid"])
    assert inotify_fds(d.p.pid) == fds
    d.stop()
    assert marker_pids(marker) == []


def test_reexec_drops_the_watches_no_service_takes_back(procs, tmp_path, marker):
    """A service gone from the config at a re-exec is killed, and its cgroup
    watch, which no service of the new image takes back, is removed from
    the kept inotify fd (else every such watch would count against
    fs.inotify.max_user_watches until the daemon exits, re-exec after
    re-exec)."""
    d = Daemon(procs, tmp_path, config(marker, n=3, cgroup="auto"))
    before = wait_for(lambda: all_running(d, 3), what="all running")
    fds = inotify_fds(d.p.pid)
    assert len(fds) == 1 and len(next(iter(fds.values()))) == 3, fds
    with open(d.cfg, "w") as f:
        f.write(config(marker, n=2, cgroup="auto"))  # w:2 gone from the file
    assert d.ctl("reexec").returncode == 0, d.log()
    wait_for(lambda: marker_pids(marker) == sorted(before[k]["pid"] for k in ("w:0", "w:1")),
             what="w:2 killed")
    after = wait_for(lambda: len(w := inotify_fds(d.p.pid)) == 1 and
                     len(next(iter(w.values()))) == 2 and w, what="w:2's watch removed")
    assert after.keys() == fds.keys() and set(after[next(iter(fds))]) < set(fds[next(iter(fds))])
    d.stop()
    assert marker_pids(marker) == []


# evmon, as a re-exec runs it, with the old image's state changed on the way:
# each "exec cg NAME made WD POPULATED OOM" of PLAN gets another WD (another
# service's, or a number)
REWRITE = r"""#!{python}
import os, sys
real, plan = {real!r}, {plan!r}
fd = os.environ.get("EVMON_REEXEC_STATE")
if fd:
    fd, data = int(fd), b""
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 65536):
        data += chunk
    lines = data.decode().split("\n")
    # "exec cg NAME made WD POPULATED OOM [INO DEV]": the descriptor rewritten, not the file
    wds = {{f[2]: f[4] for f in map(str.split, lines) if f[:2] == ["exec", "cg"] and len(f) >= 7}}
    assert set(plan) <= set(wds), (plan, wds)
    # format 6: each watch's file is named
    assert all(len(f) == 9 for f in map(str.split, lines) if f[:2] == ["exec", "cg"] and
               f[3] == "made" and f[4] != "-1"), lines
    for i, f in enumerate(map(str.split, lines)):
        if f[:2] == ["exec", "cg"] and len(f) >= 7 and f[2] in plan:
            f[4] = wds.get(plan[f[2]], plan[f[2]])
            lines[i] = " ".join(f)
    os.ftruncate(fd, 0)
    os.pwrite(fd, "\n".join(lines).encode(), 0)
os.execv(real, [real] + sys.argv[1:])
"""


def sleeping(marker):
    """The marker's processes that have exec'd sleep."""
    out = []
    for p in marker_pids(marker):
        try:
            if os.path.basename(os.readlink(f"/proc/{p}/exe")) == "sleep":
                out.append(p)
        except OSError:
            pass
    return out


def test_reexec_checks_the_watches_it_takes_back(procs, tmp_path, marker):
    """The state a re-exec passes names each service's cgroup watch by its
    descriptor and the file it watches; the new image checks them against
    the kept inotify fd's own list before taking it back. Given a descriptor
    the fd does not have (w:0) and another service's (w:1 named with w:2's,
    which the fd says is on another file than w:1's record), each service
    watches its cgroup anew: a stop, which waits for the cgroup to empty, still ends
    (taken back as given, the first would never be told, and w:1 would be
    told of w:2's cgroup instead of its own). Each main process leaves a
    child that ignores SIGTERM: its exit is held until the stop timeout's
    cgroup.kill empties the cgroup, which only the watch reports."""
    with open(tmp_path / "svc.sh", "w") as f:
        f.write('(trap "" TERM; exec sleep "$1") &\nexec sleep "$1"\n')
    d = Daemon(procs, tmp_path, f"""
[evmon]
cgroup = auto
start_secs = 0
stop_timeout = 0.5
[service:w]
command = /bin/sh {tmp_path}/svc.sh {marker}
instances = 3
""", start=False)
    exe = own_copy(tmp_path)
    start_with(d, exe)
    before = wait_for(lambda: all_running(d, 3) and len(sleeping(marker)) == 6 and d.status(),
                      what="all running, each with its child")
    fds = inotify_fds(d.p.pid)
    assert len(fds) == 1 and len(next(iter(fds.values()))) == 3, fds
    real = own_copy(tmp_path / "real")
    with open(exe + ".new", "w") as f:
        f.write(REWRITE.format(python=sys.executable, real=real,
                               plan={"w:0": "99999", "w:1": "w:2"}))
    os.chmod(exe + ".new", 0o755)
    os.rename(exe + ".new", exe)
    r = d.ctl("reexec")
    assert r.returncode == 0, r.stdout + r.stderr + d.log()
    assert {k: v["pid"] for k, v in d.status().items()} == {k: v["pid"] for k, v in before.items()}
    assert inotify_fds(d.p.pid) == fds, d.log()  # w:0's and w:1's own, watched anew
    for name in ("w:0", "w:1", "w:2"):
        r = d.ctl("stop", name, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr + d.log()
        assert d.status(name)[name]["state"] == "stopped"
        assert not alive(before[name]["pid"])
    d.stop()
    assert marker_pids(marker) == []


@pytest.mark.parametrize("broken", ["missing", "not an executable"])
def test_reexec_into_a_broken_binary_fails_cleanly(procs, tmp_path, marker, broken):
    d = Daemon(procs, tmp_path, reexec_config(marker, 3), start=False)
    os.makedirs(tmp_path / "logs")
    exe = own_copy(tmp_path)
    start_with(d, exe)
    before = wait_for(lambda: all_running(d, 4), what="all running")
    if broken == "missing":
        os.unlink(exe)
    else:
        with open(exe + ".new", "wb") as f:
            f.write(b"\x7fELF garbage")
        os.chmod(exe + ".new", 0o755)
        os.rename(exe + ".new", exe)
    r = d.ctl("reexec")
    assert r.returncode == 1
    assert ("cannot re-execute" if broken == "missing" else "Exec format error") in r.stderr
    assert "the daemon carries on" in r.stderr
    # the same daemon, every service, and what it keeps across an exec is close-on-exec again
    assert d.p.poll() is None and d.request({"cmd": "ping"})["pid"] == d.p.pid
    now = d.status()
    assert all(now[k]["pid"] == v["pid"] and now[k]["restarts"] == 0 for k, v in before.items())
    count = len(talk_lines(d))
    wait_for(lambda: len(talk_lines(d)) > count + 10, what="the talker still logged")
    # a working binary again: the next reexec works
    own_copy(tmp_path)
    assert d.ctl("reexec").returncode == 0
    assert all(d.status()[k]["pid"] == v["pid"] for k, v in before.items())
    d.stop()


def test_reexec_of_a_binary_named_otherwise(procs, tmp_path, marker):
    """The installed binary is evmon-1.0 behind an `evmon` symlink (alternatives, /opt,
    nix): the re-exec asked /proc/self/exe (evmon-1.0) for its state format under that
    name, which runs `evmon init` (any name but evmon's), and every reexec failed with
    "does not say which state format it reads"."""
    d = Daemon(procs, tmp_path, config(marker, n=2), start=False)
    real = own_copy(tmp_path)
    versioned = os.path.join(os.path.dirname(real), "evmon-1.0")
    os.rename(real, versioned)
    os.symlink("evmon-1.0", real)
    start_with(d, real)
    before = wait_for(lambda: all_running(d, 2), what="2 running")
    r = d.ctl("reexec")
    assert r.returncode == 0, r.stdout + r.stderr + d.log()
    # ps and pgrep -f see it as they did (it was "evmon daemon ...")
    with open(f"/proc/{d.p.pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [real.encode(), b"daemon"]
    assert {k: v["pid"] for k, v in d.status().items()} == {k: v["pid"] for k, v in before.items()}
    d.stop()
    assert marker_pids(marker) == []


def test_new_image_that_dies_leaves_a_record(procs, tmp_path, marker):
    """The binary at the path execs but dies at once: the services live on,
    and the next daemon takes them over from the record written before the exec."""
    d = Daemon(procs, tmp_path, config(marker, n=3), start=False)
    exe = own_copy(tmp_path)
    start_with(d, exe)
    pids = sorted(v["pid"] for v in wait_for(lambda: all_running(d, 3), what="3 running").values())
    with open(exe + ".new", "w") as f:  # it says it reads the state and the config, then dies
        f.write('#!/bin/sh\n[ "$2" = --state-format ] && echo 3 && exit 0\n'
                '[ "$2" = --check ] && exit 0\nexit 7\n')
    os.chmod(exe + ".new", 0o755)
    os.rename(exe + ".new", exe)
    r = d.ctl("reexec")
    assert r.returncode != 0
    assert d.p.wait(timeout=20 * SLOW) == 7
    d.logf.close()
    assert marker_pids(marker) == pids
    d.start()
    after = wait_for(lambda: all_running(d, 3), what="3 running again")
    assert sorted(v["pid"] for v in after.values()) == pids and all(v["adopted"] for v in after.values())
    d.stop()
    assert marker_pids(marker) == []


@pytest.mark.parametrize("older", [
    ("1", "reads state format 1, older than any a re-exec can pass (2 to "),
    ("unknown", "does not say which state format it reads"),
])
def test_reexec_into_an_older_binary_is_refused(procs, tmp_path, marker, older):
    """A downgrade to a binary that cannot read any state a re-exec passes
    (or cannot say whether it can: older than --state-format) is not
    exec'ed: it would ignore the state and start every service a second time."""
    answer, why = older
    d = Daemon(procs, tmp_path, config(marker, n=3), start=False)
    exe = own_copy(tmp_path)
    start_with(d, exe)
    before = wait_for(lambda: all_running(d, 3), what="3 running")
    said = f"echo {answer}; exit 0" if answer != "unknown" else \
        "echo \"unrecognized option\" >&2; exit 2"
    with open(exe + ".new", "w") as f:  # a real daemon if exec'ed: it would not be refused
        f.write(f'#!/bin/sh\n[ "$2" = --state-format ] && {{ {said}; }}\nexec {EVMON} "$@"\n')
    os.chmod(exe + ".new", 0o755)
    os.rename(exe + ".new", exe)
    r = d.ctl("reexec")
    assert r.returncode == 1 and why in r.stderr and "the daemon carries on" in r.stderr, r.stderr
    assert d.p.poll() is None and d.request({"cmd": "ping"})["pid"] == d.p.pid
    assert {k: v["pid"] for k, v in d.status().items()} == {k: v["pid"] for k, v in before.items()}
    assert len(marker_pids(marker)) == 3
    d.stop()
    assert marker_pids(marker) == []


@pytest.mark.parametrize("fmt", [2, 3, 4, 5, 6, 7])
def test_reexec_into_an_older_format(procs, tmp_path, marker, fmt):
    """A binary that reads an older state format (the previous releases: 2
    before pidfds and half-read requests crossed the exec, 3 before the
    requester's id and subscription did, 4 before the cgroup watches did, 5
    before the file of each watch did, 6 before the starts still waiting did, 7 before the
    notify socket did) is passed the state in its format,
    without the lines (or the fields) it would refuse: the services are
    kept, by pid. The binary here is a wrapper that says it reads only fmt,
    keeps a copy of the state it is passed, and runs this evmon, which reads
    every format."""
    # with cgroups, 5's watches would be passed (format 4 refuses them), and 6's files of them
    d = Daemon(procs, tmp_path, config(marker, n=3, cgroup="auto" if fmt >= 4 else "no"),
               start=False)
    exe = own_copy(tmp_path)
    start_with(d, exe)
    before = wait_for(lambda: all_running(d, 3), what="3 running")
    passed = tmp_path / "passed"
    with open(exe + ".new", "w") as f:
        f.write(f'#!/bin/sh\n[ "$2" = --state-format ] && {{ echo {fmt}; exit 0; }}\n'
                f'cat /proc/self/fd/$EVMON_REEXEC_STATE > {passed}\nexec {EVMON} "$@"\n')
    os.chmod(exe + ".new", 0o755)
    os.rename(exe + ".new", exe)
    follower = LineReader(d.connect())
    follower.s.sendall(b'{"cmd":"events"}\n')
    assert follower.next()["ok"]
    between = d.connect()  # between two requests: handed over in every format
    half = d.connect()  # half a request: format 2 cannot carry it
    half.sendall(b'{"cmd":"pi')
    assert d.request({"cmd": "ping"})["ok"]  # both read by now
    with d.connect() as s:
        s.sendall(b'{"cmd":"reexec","id":5}\n')
        reply = json.loads(read_line(s))
    assert reply["ok"] and reply["kept"] == 3, reply
    assert ("id" in reply) == (fmt >= 4)  # older than 4, the image does not know the id
    lines = open(passed).read().splitlines()
    assert lines[0] == f"evmon-state {fmt}" and lines[-1] == "end 3", lines
    cg = [l.split() for l in lines if l.startswith("exec cg ")]
    assert fmt < 5 or (len(cg) == 3 and all(len(f) == (7 if fmt == 5 else 9) for f in cg)), lines  # no file: format 5
    newer = (("exec cgwatch", "exec cg ") if fmt < 5 else ()) + \
        (("exec client-id", "exec client-sub") if fmt < 4 else ()) + \
        (("exec pidfd", "exec input", "exec times") if fmt == 2 else ())
    assert not [l for l in lines if l.startswith(newer)], lines
    assert fmt == 2 or [l for l in lines if l.startswith("exec pidfd")], lines
    assert f"(state format {fmt}, the newest it reads" in d.log()
    after = d.status()
    assert {k: v["pid"] for k, v in after.items()} == {k: v["pid"] for k, v in before.items()}
    assert all(v.get("adopted") and v["restarts"] == 0 for v in after.values()), after
    assert len(marker_pids(marker)) == 3
    between.sendall(b'{"cmd":"ping","id":1}\n')
    assert json.loads(read_line(between))["id"] == 1
    if fmt == 2:  # closed at the exec, as that release did
        with pytest.raises((EOFError, ConnectionResetError, BrokenPipeError)):
            half.sendall(b'ng"}\n')
            read_line(half)
    else:
        half.sendall(b'ng"}\n')
        assert json.loads(read_line(half))["ok"]
    ev = follower.next()
    assert ev["event"] == "reexec", ev
    # still our children: an exit has its status
    os.kill(before["w:1"]["pid"], signal.SIGKILL)
    st = wait_for(lambda: (s := d.status("w:1")["w:1"])["pid"] != before["w:1"]["pid"] and
                  s["state"] == "running" and s, what="w:1 restarted")
    assert st["last_exit"]["signal_name"] == "KILL" and not st["last_exit"].get("status_unknown")
    for s in (follower.s, between, half):
        s.close()
    d.stop()
    assert marker_pids(marker) == []


@pytest.mark.parametrize("how", ["record", "reexec"])
def test_newer_state_format_refuses_to_start(procs, tmp_path, marker, how):
    """An older evmon finding a record (or a re-exec's state) of a newer
    format refuses to start rather than start what it names a second time,
    and leaves the record for the evmon that wrote it."""
    d = Daemon(procs, tmp_path, config(marker, n=2), start=False)
    text = "evmon-state 99\ndaemon 1\nsomething we cannot read\nend 2\n"
    path = d.sock + ".state" if how == "record" else str(tmp_path / "passed")
    with open(path, "w") as f:
        f.write(text)
    env, fds = None, ()
    if how == "reexec":
        fd = os.open(path, os.O_RDONLY)
        env, fds = dict(os.environ, EVMON_REEXEC_STATE=str(fd)), (fd,)
    p = procs.spawn([EVMON, "daemon", "-c", d.cfg, "-S", d.sock], env=env, pass_fds=fds)
    out, err = p.communicate(timeout=20 * SLOW)
    assert p.returncode == 1, err
    assert "state format 99, newer than this evmon" in err.decode(), err
    assert "not started a second time" in err.decode()
    assert marker_pids(marker) == []  # none started
    with open(path) as f:
        assert f.read() == text  # left as it was


def gone(pid):
    """Not even a zombie: reaped."""
    return not os.path.exists(f"/proc/{pid}")


def test_reexec_ends_what_no_record_names(procs, tmp_path, marker):
    """A health check under way is a child of the old image that no record
    names: the new image kills and reaps it (before, it stayed as a zombie
    nobody waited for). The recorded services keep their pids."""
    d = Daemon(procs, tmp_path, config(marker, n=1) + f"""
[service:checked]
command = sleep {marker}
health_cmd = sleep {marker}
health_interval = 50ms
health_timeout = 1h
""")
    wait_for(lambda: len(marker_pids(marker)) == 3, what="two services and a check")
    mains = {k: v["pid"] for k, v in d.status().items()}
    check = [p for p in marker_pids(marker) if p not in mains.values()]
    assert len(check) == 1
    r = d.ctl("reexec")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(lambda: gone(check[0]), what="the check reaped")
    assert all(alive(p) for p in mains.values())
    assert {k: d.status(k)[k]["pid"] for k in mains} == mains
    d.stop()


def test_reexec_keeps_what_services_left_and_orphans(procs, tmp_path, marker):
    """As a subreaper (or PID 1) every orphan is the daemon's child: a re-exec ends only the
    checks under way among the children no record names. What a running service started
    out of its session, what a kill_mode = process service left when it exited (which lives
    on until the daemon exits), and an orphan that is not the daemon's at all (its
    environment is not a service's: docker exec's) are kept: they were all killed."""
    m = {k: f"{marker}{k}" for k in "1234"}
    d = Daemon(procs, tmp_path, f"""
[evmon]
cgroup = no
start_secs = 0

[service:forker]
command = sh -c '(setsid sleep {m["1"]} &); exec sleep {marker}'

[service:leaver]
command = sh -c 'sleep {m["2"]} & exit 0'
kill_mode = process
restart = never

[service:foreign]
command = sh -c 'env -i sleep {m["3"]} & exit 0'
kill_mode = process
restart = never

[service:checked]
command = sleep {marker}
health_cmd = sleep {m["4"]}
health_interval = 50ms
health_timeout = 1h
""", args=["--reaper"])

    def pid_of(arg):
        return [pid for pid, args in live_args() if arg.encode() in args]
    wait_for(lambda: all(len(pid_of(v)) == 1 for v in m.values()),
             what="a service's setsid child, two orphans and a check")
    wait_for(lambda: (st := d.status())["leaver"]["state"] == "exited" and
             st["foreign"]["state"] == "exited", what="leaver and foreign exited")
    pids = {k: pid_of(v)[0] for k, v in m.items()}
    r = d.ctl("reexec")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(lambda: gone(pids["4"]), what="the check ended and reaped")
    for _ in range(10):  # loop iterations after the takeover
        assert d.ctl("ping").returncode == 0
    assert all(alive(pids[k]) for k in "123"), (pids, d.log())
    assert "1 processes of the previous image that no record names" in d.log(), d.log()
    assert "3 processes of the previous image kept" in d.log(), d.log()
    d.stop()


def added_config(marker):
    return config(marker, n=1, cgroup="auto")


@pytest.mark.parametrize("how", ["reexec", "crash"])
def test_added_services_survive(procs, tmp_path, marker, how):
    """Services added with ctl add are in the record with their definition:
    a re-exec (or a daemon started after a crash) makes them again and keeps
    their processes, supervised; an instance removed since and one stopped by
    a user stay so; a service the definition of which is kept there is
    supervised after (a kill restarts it with its environment)."""
    d = Daemon(procs, tmp_path, added_config(marker))
    wait_for(lambda: all_running(d, 1), what="w running")
    r = d.ctl("add", "-n", "3", "-e", "WHO=x", "-s", "restart=always", "-s",
              "backoff_initial=0.05", "extra", "--", "sleep", marker)
    assert r.returncode == 0, r.stdout + r.stderr
    assert d.ctl("add", "--no-start", "idle", "--", "sleep", marker).returncode == 0
    assert d.ctl("remove", "extra:1").returncode == 0
    assert d.ctl("stop", "extra:2").returncode == 0
    before = wait_for(lambda: (st := d.status()) and st["extra:0"]["state"] == "running" and
                      st["extra:2"]["state"] == "stopped" and "extra:1" not in st and st,
                      what="extra:0 running, extra:2 stopped")
    wait_for(lambda: os.path.exists(d.sock + ".state") and
             (rec := open(d.sock + ".state").read()).count("\nadded {") == 2 and
             f" {before['extra:0']['pid']} " in rec and "service extra:2 0 0" in rec,
             what="the record of the added services")
    hand_over(d, how)
    after = wait_for(lambda: (st := d.status()) and st.get("extra:0", {}).get("state") == "running"
                     and st, what="extra:0 again")
    assert set(after) == {"w", "extra:0", "extra:2", "idle"}, after
    assert after["extra:0"]["pid"] == before["extra:0"]["pid"] and after["extra:0"]["adopted"]
    assert after["extra:0"].get("added") and after["idle"].get("added")
    assert after["extra:2"]["state"] == "stopped" and after["idle"]["state"] == "stopped"
    assert after["w"]["pid"] == before["w"]["pid"]
    assert len(marker_pids(marker)) == 2  # w and extra:0: nothing started twice
    assert d.log().count("added with ctl add before the") == 3
    # supervised, by the definition of the add: restarted with its environment
    victim = after["extra:0"]["pid"]
    os.kill(victim, signal.SIGKILL)
    new = wait_for(lambda: (s := d.status("extra:0")["extra:0"])["state"] == "running" and
                   s["pid"] != victim and s, what="extra:0 restarted")
    # start_secs = 0 reports running as the spawn returns: the exec may still be under way
    wait_for(lambda: new["pid"] in marker_pids(marker), what="the restarted extra:0's exec")
    with open(f"/proc/{new['pid']}/environ", "rb") as f:
        assert b"WHO=x" in f.read().split(b"\0")
    # and started by hand like any other
    assert d.ctl("start", "extra:2").returncode == 0
    wait_for(lambda: len(marker_pids(marker)) == 3, what="extra:2's exec")  # start_secs = 0: as above
    d.stop()
    assert marker_pids(marker) == []


def test_an_add_alone_is_recorded(procs, tmp_path, marker):
    """ctl add --no-start is a change of the record (the definition) but no event of a
    service, which is what wrote it: with nothing else happening, a crash lost it."""
    d = Daemon(procs, tmp_path, added_config(marker))
    wait_for(lambda: all_running(d, 1), what="w running")
    wait_recorded(d, [d.status("w")["w"]["pid"]])
    assert d.ctl("add", "--no-start", "idle", "--", "sleep", marker).returncode == 0
    wait_for(lambda: "\nadded {" in open(d.sock + ".state").read(), what="the added definition")
    d.crash()
    d.start()
    assert d.wait_state("idle", "stopped")
    assert d.status("idle")["idle"].get("added")
    d.stop()


@pytest.mark.parametrize("second", ["reexec", "crash"])
def test_added_services_survive_a_second_hand_over(procs, tmp_path, marker, second):
    """The definitions a re-exec made again are passed on as they were read: a second
    re-exec, or a crash after the new image wrote its record, finds them again. The first
    re-exec kept the newline of the record's "added" line in the definition: the next state
    had an empty line, so the next image could not read it and exited (its own inherited
    listener was "another process listening" on the socket), and a record on disk
    written after it was ignored as unreadable."""
    d = Daemon(procs, tmp_path, added_config(marker))
    wait_for(lambda: all_running(d, 1), what="w running")
    assert d.ctl("add", "extra", "--", "sleep", marker).returncode == 0
    pid = wait_for(lambda: all_running(d, 2), what="w and extra running")["extra"]["pid"]
    hand_over(d, "reexec")
    assert d.ctl("stop", "w").returncode == 0  # a record written by the new image
    wait_recorded(d, [0, pid])
    hand_over(d, second)
    after = wait_for(lambda: (st := d.status()) and st.get("extra", {}).get("state") == "running"
                     and st, what="extra running again")
    assert set(after) == {"w", "extra"} and after["w"]["state"] == "stopped", after
    assert after["extra"]["pid"] == pid and after["extra"].get("added"), after
    assert "cannot read" not in d.log() and "ignored" not in d.log(), d.log()[-2000:]
    d.stop()
    assert marker_pids(marker) == []


@pytest.mark.parametrize("how", ["reexec", "crash"])
@pytest.mark.parametrize("cgroup", ["no", "auto"])
def test_an_added_service_keeps_a_name_the_file_has(procs, tmp_path, marker, how, cgroup):
    """A service of the file removed and added again (ctl remove, ctl add) keeps its name
    across a re-exec and a crash, as a reload, which refuses the file then, keeps it: the
    record's definition is made again and its process adopted, where the file's definition
    was made first, the added one refused ("already exists") and its process killed (a
    re-exec kept 0 of 1 services); the file's comes back with a remove and a reload."""
    cfg = config(marker, n=1, cgroup=cgroup) + f"""
[service:a]
command = sleep {marker}1
"""
    d = Daemon(procs, tmp_path, cfg)
    wait_for(lambda: all_running(d, 2), what="w and a running")
    assert d.ctl("remove", "a").returncode == 0
    r = d.ctl("add", "a", "--", "sleep", marker + "2")
    assert r.returncode == 0, r.stdout + r.stderr
    pid = wait_for(lambda: all_running(d, 2), what="the added a running")["a"]["pid"]
    # what a reload does meanwhile: the file is refused, the added service kept
    r = d.ctl("reload")
    assert r.returncode != 0 and "was added with `evmon ctl add`: remove it first" in r.stdout + r.stderr
    wait_recorded(d, [d.status("w")["w"]["pid"], pid])
    seen = len(d.log())
    hand_over(d, how)
    st = wait_for(lambda: all_running(d, 2), what="w and a running again")
    assert st["a"]["pid"] == pid and st["a"]["adopted"] and st["a"].get("added"), st
    assert alive(pid) and len(marker_pids(marker + "1")) == 0
    log = d.log()[seen:]
    assert "cannot make it again" not in log and "killed" not in log, log
    assert "service a: the config file has it too: the definition added with ctl add is kept" \
        in log
    # a reload refuses the file still; remove it, and the file's comes back
    assert d.ctl("reload").returncode != 0
    assert d.ctl("remove", "a").returncode == 0
    r = d.ctl("reload")
    assert r.returncode == 0 and "a" in r.stdout, r.stdout + r.stderr
    st = wait_for(lambda: all_running(d, 2), what="the file's a")
    assert not st["a"].get("added") and not alive(pid)
    d.stop()
    assert marker_pids(marker) == []


@pytest.mark.parametrize("how", ["reexec", "crash"])
def test_an_added_definition_keeps_its_name_without_its_first_instance(procs, tmp_path,
                                                                       marker, how):
    """The same with instances, the first one removed: the record names a:1 and a:2 only.
    The file's a was made beside them (its check looked for a and a:0 only): two
    definitions of one name."""
    cfg = config(marker, n=1) + f"""
[service:a]
command = sleep {marker}1
"""
    d = Daemon(procs, tmp_path, cfg)
    wait_for(lambda: all_running(d, 2), what="w and a running")
    assert d.ctl("remove", "a").returncode == 0
    r = d.ctl("add", "-n", "3", "a", "--", "sleep", marker + "2")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(lambda: all_running(d, 4), what="a:0..2 running")
    assert d.ctl("remove", "a:0").returncode == 0
    st = wait_for(lambda: all_running(d, 3), what="w, a:1, a:2")
    pids = [st["a:1"]["pid"], st["a:2"]["pid"]]
    wait_recorded(d, [st["w"]["pid"]] + pids)
    hand_over(d, how)
    st = wait_for(lambda: all_running(d, 3), what="w, a:1, a:2 again")
    assert set(st) == {"w", "a:1", "a:2"}, st
    assert [st["a:1"]["pid"], st["a:2"]["pid"]] == pids, st
    assert marker_pids(marker + "1") == [], "the file's a was made"
    d.stop()
    assert marker_pids(marker) == []


def test_an_added_definition_that_cannot_be_made_again(procs, tmp_path, marker):
    """The record's definition of an added service that the new daemon refuses (a key
    the file gives every service makes it invalid: here a requires of a service the file
    no longer has) is said, and the file's service of that name is made instead; the added
    one's process, whose definition is not the file's, is killed, not left unsupervised."""
    d = Daemon(procs, tmp_path, added_config(marker) + """
[service:db]
command = sleep 86400
""")
    wait_for(lambda: all_running(d, 2), what="w and db running")
    assert d.ctl("add", "-s", "requires=db", "extra", "--", "sleep", marker).returncode == 0
    extra = d.status("extra")["extra"]["pid"]
    wait_for(lambda: "\nadded {" in open(d.sock + ".state").read(), what="the record")
    d.crash()
    d.write(added_config(marker) + f"""
[service:extra]
command = sleep {marker}1
""")
    d.start()
    st = wait_for(lambda: (st := d.status()) and st.get("extra", {}).get("state") == "running"
                  and st, what="the config's extra")
    assert "service extra: added with ctl add before the crash: cannot make it again" in d.log()
    assert "service extra: the definition added with ctl add is not made again: the config " \
        "file's is" in d.log()
    assert not st["extra"].get("added") and st["extra"]["pid"] != extra
    wait_for(lambda: not alive(extra), what="the added one killed")
    assert "killed (its definition changed)" in d.log()
    d.stop()


def test_an_added_definition_with_a_log_size_taken_no_more_is_raised(procs, tmp_path, marker):
    """log_max_bytes below 4k is a mistake since df27d1f: a service added with one by an
    older evmon, made again from the record after an upgrade, was refused and its running
    process killed as part of no service. Its log_max_bytes is raised to 4k instead, said
    in the log, and its process adopted. (An older evmon is played by editing the record
    after a crash: it was written with 4k.)"""
    d = Daemon(procs, tmp_path, added_config(marker))
    wait_for(lambda: all_running(d, 1), what="w running")
    r = d.ctl("add", "-s", "stdout=null", "-s", "log_max_bytes=4k", "extra", "--", "sleep", marker)
    assert r.returncode == 0, r
    extra = d.status("extra")["extra"]["pid"]
    wait_for(lambda: '"log_max_bytes":"4k"' in open(d.sock + ".state").read(), what="the record")
    d.crash()
    rec = open(d.sock + ".state").read()
    with open(d.sock + ".state", "w") as f:
        f.write(rec.replace('"log_max_bytes":"4k"', '"log_max_bytes":"1000"'))
    d.start()
    st = wait_for(lambda: (st := d.status()) and st.get("extra", {}).get("state") == "running"
                  and st, what="extra adopted")
    assert st["extra"]["pid"] == extra and st["extra"].get("added"), st
    assert "service extra: log_max_bytes = 1000, below the 4k this evmon takes: 4k" in d.log()
    assert "cannot make it again" not in d.log()
    # the record keeps the definition so mended: said once, not at every takeover
    wait_for(lambda: '"log_max_bytes":"4k"' in open(d.sock + ".state").read(),
             what="the mended definition in the record")
    d.stop()
    assert not alive(extra)


@pytest.mark.parametrize("how", ["reexec", "crash"])
def test_backoff_and_counters_carry_over(procs, tmp_path, marker, how):
    """A crash-looping service in a 30 s backoff is not started again by a
    re-exec (nor by a daemon started after a crash): it stays in backoff
    until the same deadline, with its restart count; one that exited stays
    exited. Each run appends to a file: the external record of its starts."""
    runs = tmp_path / "runs"
    d = Daemon(procs, tmp_path, config(marker, n=1) + f"""
[service:loop]
command = sh -c 'echo run >> {runs}; exit 1'
restart = always
backoff_initial = 30
backoff_max = 60

[service:once]
command = sh -c 'exit 3'
restart = never
""")
    wait_for(lambda: (st := d.status()) and st["loop"]["state"] == "backoff" and
             st["once"]["state"] == "exited", what="loop in backoff, once exited")
    # 2 s into the backoff (so that a fresh one would be longer than what is left)
    before = wait_for(lambda: (s := d.status("loop")["loop"]) and s["state"] == "backoff" and
                      s["next_start_ms"] < 28000 and s, timeout=30 * SLOW, what="2 s of backoff")
    wait_for(lambda: " run backoff 0 1 " in open(d.sock + ".state").read(),
             what="the record of the backoff (0 restarts done, 1 failure)")
    hand_over(d, how)
    after = wait_for(lambda: (st := d.status()) and st["loop"]["state"] != "stopped" and st,
                     what="loop taken over")
    assert after["loop"]["state"] == "backoff", after["loop"]
    assert after["loop"]["next_start_ms"] <= before["next_start_ms"], (before, after["loop"])
    assert (after["loop"]["restarts"], after["loop"]["failures"]) == (0, 1) == \
        (before["restarts"], before["failures"])
    assert after["once"]["state"] == "exited"
    assert open(runs).read() == "run\n"  # ran once: not started again
    carried = "carried over across the re-exec" if how == "reexec" else \
        "carried over from the daemon that died"
    assert f"service loop: stopped -> backoff" in d.log() and carried in d.log()
    d.stop()


class Follower(LineReader):
    """An events subscriber on its own connection."""

    def __init__(self, d, names=()):
        super().__init__(d.connect())
        self.s.sendall(json.dumps({"cmd": "events", "names": list(names)}).encode() + b"\n")
        assert self.next()["ok"]

    def until(self, pred):
        seen = []
        while True:
            seen.append(self.next(timeout=30))
            if pred(seen[-1]):
                return seen


def test_followers_go_on_across_reexec(procs, tmp_path, marker):
    """Events followers are handed over to the new image: each gets a
    'reexec' event on the same connection, then the events after it, still
    filtered by its names; the adoption is not told as state changes."""
    d = Daemon(procs, tmp_path, config(marker, n=3))
    st = wait_for(lambda: all_running(d, 3), what="3 running")
    everything, only1 = Follower(d), Follower(d, ["w:1"])
    r = d.ctl("reexec")
    assert r.returncode == 0, r.stdout + r.stderr
    for f in (everything, only1):
        ev = f.next()  # the first line after the exec: nothing else came before it
        assert ev["event"] == "reexec" and ev["pid"] == d.p.pid, ev
        assert ev["kept"] == 3 and ev["followers"] == 2, ev
    os.kill(st["w:0"]["pid"], signal.SIGKILL)
    os.kill(st["w:1"]["pid"], signal.SIGKILL)
    seen = everything.until(lambda e: e.get("service") == "w:1" and e.get("state") == "running")
    w0_exit = lambda e: e.get("service") == "w:0" and e["event"] == "exit"  # noqa: E731
    if not any(map(w0_exit, seen)):  # killed together, their exits may come in either order
        seen += everything.until(w0_exit)
    seen = only1.until(lambda e: e.get("service") == "w:1" and e.get("state") == "running")
    assert {e.get("service") for e in seen} == {"w:1"}, seen
    exits = [e for e in seen if e["event"] == "exit"]
    assert len(exits) == 1 and exits[0]["signal_name"] == "KILL"
    assert "reexec: re-executed" in d.log()
    # a second re-exec: the same connections go on again
    assert d.ctl("reexec").returncode == 0
    assert only1.next()["event"] == "reexec"
    d.stop()


PAST = """
[evmon]
start_secs = 0
backoff_initial = 10ms
backoff_max = 20ms

[service:b]
command = sh -c 'exit 3'
max_retries = 1

[service:gone]
command = /nonexistent/prog
start_retries = 1

[service:up]
command = HELPER pause
"""


@pytest.mark.parametrize("how", ["reexec", "crash"])
def test_a_service_keeps_its_last_exit_and_error_across(procs, tmp_path, how):
    """A service that failed for good still says why after an upgrade or a crash: its
    last exit (code, time, run time), its last spawn error and since when it is in its
    state. They were dropped: `b fatal ... code 3` became `b fatal ... -`."""
    d = Daemon(procs, tmp_path, PAST)
    d.wait_state("b", "fatal")
    d.wait_state("gone", "fatal")
    d.wait_state("up", "running")
    r = d.ctl("restart", "up")  # an exit of a running service, to carry too
    assert r.returncode == 0, r
    d.wait_state("up", "running")
    before = d.status()
    assert before["b"]["last_exit"]["code"] == 3
    assert before["gone"]["error"].startswith("exec: No such file or directory"), before["gone"]
    if how == "crash":
        def recorded():
            with open(d.sock + ".state") as f:
                text = f.read()
            return "exit=" in text and "err=" in text and f"since=" in text
        wait_for(recorded, what="the record with the services' past")
    hand_over(d, how)
    if how == "crash":
        wait_for(lambda: "taking over" in d.log(), what="the takeover")
    after = d.status()
    for name in ("b", "gone", "up"):
        for key in ("state", "since", "last_exit", "error"):
            assert after[name].get(key) == before[name].get(key), (name, key, before[name],
                                                                   after[name])
    assert after["up"]["pid"] == before["up"]["pid"]
    r = d.ctl("status")
    assert "code 3" in r.stdout and "exec: No such file or directory" in r.stdout, r.stdout
    d.stop()


@pytest.mark.parametrize("cgroup", ["no", "auto"])
def test_reexec_passes_on_a_replaced_service_still_stopping(procs, tmp_path, marker, cgroup):
    """A reload replaced db, whose old process takes its stop_timeout to stop. A re-exec
    meanwhile passes it on (old= on db's line): the new image takes its stop over, SIGKILL
    when it was due, and starts the new copy once it is gone. Before, that process was in
    no state and the new image killed it at once (40-60 ms after its SIGTERM: a
    database's clean shutdown cut short), so the re-exec was refused until it was gone."""
    d = Daemon(procs, tmp_path, stops_slowly(marker, "db", cgroup, stop_timeout=3 * SLOW))
    old = wait_signal_state(d, "db", "SigIgn")  # a SIGTERM before its trap would end it
    d.write(stops_slowly(marker + "1", "db", cgroup, stop_timeout=3 * SLOW))
    t0 = time.monotonic()
    assert d.ctl("-t", "0", "reload").returncode == 0
    r = d.ctl("reexec")
    assert r.returncode == 0, r.stderr
    assert f"service db: old copy pid {old}, being stopped by daemon {d.p.pid}" in d.log()
    assert d.status("db")["db"].get("old_pid") == old
    while alive(old):  # never two copies side by side
        assert marker_pids(marker + "1") == [], "a new copy beside the old one"
        assert time.monotonic() - t0 < 30 * SLOW, "the old copy never stopped"
        time.sleep(0.05)
    assert time.monotonic() - t0 >= 3 * SLOW - 0.5, "killed before its stop_timeout"
    st = wait_for(lambda: (s := d.status("db")["db"])["state"] == "running" and s,
                  timeout=30 * SLOW, what="the new copy")
    assert "old_pid" not in st and st["pid"] != old
    d.stop()


def logged_db(tmp_path, mark, with_db=True, tag=""):
    """db logs to a file; on SIGTERM it waits 1 s, logs "late MARK" and stays (its
    SIGKILL comes at stop_timeout: 4 s, times SLOW to outlast a re-exec's checks)."""
    (tmp_path / "logs").mkdir(exist_ok=True)
    db = f"""
[service:db]
command = sh -c 'trap "sleep 1; echo late {mark}{tag}; trap \\"\\" TERM" TERM; echo up; while :; do sleep 0.1; done'
stdout = log
stop_timeout = {4 * SLOW}
start_secs = 0
""" if with_db else ""
    return f"[evmon]\nlog_dir = logs\n{db}[service:other]\ncommand = HELPER pause\n"


def test_reexec_keeps_the_pipe_a_replaced_copy_writes_into(procs, tmp_path, marker):
    """A replaced service's old copy writes into its unit's capture, which crosses a
    re-exec: its last lines, written after the exec, are in the log."""
    log = tmp_path / "logs" / "db.log"
    d = Daemon(procs, tmp_path, logged_db(tmp_path, marker))
    old = d.wait_state("db", "running")["pid"]
    wait_for(lambda: log.exists() and "up" in log.read_text(), what="db's first line")
    d.write(logged_db(tmp_path, marker, tag="-new"))  # changed: replaced
    assert d.ctl("-t", "0", "reload").returncode == 0
    r = d.ctl("reexec")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: f"late {marker}\n" in log.read_text(), what="the old copy's line after the exec")
    wait_for(lambda: not alive(old) and d.status("db")["db"]["state"] == "running",
             timeout=30 * SLOW, what="the new copy")
    d.stop()


def test_reexec_waits_for_a_removed_copy_writing_into_its_own_pipe(procs, tmp_path, marker):
    """A removed service's old copy writes into a capture no unit holds any more: the exec
    would close it (its next line: SIGPIPE). The re-exec is refused while it stops, says
    why, and works once it is gone."""
    d = Daemon(procs, tmp_path, logged_db(tmp_path, marker))
    old = d.wait_state("db", "running")["pid"]
    log = tmp_path / "logs" / "db.log"  # its trap is set: a SIGTERM before would end it
    wait_for(lambda: log.exists() and "up" in log.read_text(), what="db's first line")
    d.write(logged_db(tmp_path, marker, with_db=False))
    assert d.ctl("-t", "0", "reload").returncode == 0
    r = d.ctl("reexec")
    assert r.returncode == 1 and "writing into a pipe only its old copy holds" in r.stderr, r.stderr
    assert alive(old) and d.request({"cmd": "ping"})["pid"] == d.p.pid
    wait_for(lambda: not alive(old) and "db" not in d.status(), timeout=30 * SLOW,
             what="the old copy's SIGKILL")
    assert f"late {marker}" in (tmp_path / "logs" / "db.log").read_text()
    r = d.ctl("reexec")
    assert r.returncode == 0, r.stderr
    d.stop()


def test_reexec_into_an_older_format_waits_for_an_old_copy_still_stopping(procs, tmp_path,
                                                                          marker):
    """Into a binary that reads state format 8 (before the old= words were taken over),
    a re-exec while a replaced service's old process stops is refused, says why (that
    image would kill it at once), and works once it is gone."""
    d = Daemon(procs, tmp_path, stops_slowly(marker, "db", stop_timeout=3 * SLOW), start=False)
    exe = own_copy(tmp_path)
    start_with(d, exe)
    old = wait_signal_state(d, "db", "SigIgn")
    with open(exe + ".new", "w") as f:
        f.write(f'#!/bin/sh\n[ "$2" = --state-format ] && {{ echo 8; exit 0; }}\n'
                f'exec {EVMON} "$@"\n')
    os.chmod(exe + ".new", 0o755)
    os.rename(exe + ".new", exe)
    d.write(stops_slowly(marker + "1", "db", stop_timeout=3 * SLOW))
    assert d.ctl("-t", "0", "reload").returncode == 0
    r = d.ctl("reexec")
    assert r.returncode == 1 and "1 replaced or removed service is still stopping" in r.stderr \
        and "reads state format 8" in r.stderr, r.stderr
    assert alive(old) and d.request({"cmd": "ping"})["pid"] == d.p.pid
    wait_for(lambda: not alive(old) and d.status("db")["db"]["state"] == "running",
             timeout=30 * SLOW, what="the old copy's SIGKILL and the new copy")
    r = d.ctl("reexec")
    assert r.returncode == 0, r.stderr
    d.stop()


def test_a_crash_in_the_shutdown_starts_the_services_again(procs, tmp_path, marker):
    """kill -9 of a daemon while its shutdown waits for services that ignore SIGTERM:
    the next daemon lets their stop end (its SIGKILL when due), then starts them, as
    any start of the daemon does. They stayed stopped, as if a user had stopped them,
    while one whose process had died meanwhile was started again."""
    d = Daemon(procs, tmp_path, stops_slowly(marker, "db", extra="instances = 2\n"))
    wait_for(lambda: all_running(d, 2), what="2 running")
    pids = sorted(wait_signal_state(d, n, "SigIgn") for n in ("db:0", "db:1"))
    wait_recorded(d, pids)
    assert d.ctl("-t", "0", "shutdown").returncode == 0
    def stopping():
        with open(d.sock + ".state") as f:
            return sum(1 for l in f if l.startswith("service ") and " restart" in l) == 2
    wait_for(stopping, what="the record of the shutdown's stops")
    d.crash()
    assert all(alive(p) for p in pids)
    d.start()
    wait_for(lambda: all_running(d, 2) and not any(alive(p) for p in pids), timeout=30 * SLOW,
             what="both stopped (their SIGKILL) and started again")
    # running is the exec of sh; the marker's own argument comes with its exec of sleep
    wait_for(lambda: len(marker_pids(marker)) == 2, what="both sleeps")
    d.stop()


def test_a_crash_in_the_shutdown_starts_what_it_had_stopped(procs, tmp_path, marker):
    """kill -9 of a daemon in its shutdown, after it stopped a service (its stop made it
    "stopped by a user") and while another still stops: the next daemon starts both, as
    any start of the daemon does; it left the first one down. A service a user had
    stopped before the shutdown, and one that had exited for good, stay down."""
    d = Daemon(procs, tmp_path, stops_slowly(marker, "db", stop_timeout=4 * SLOW) + f"""
[service:quick]
command = sleep {marker}
start_secs = 0
[service:mine]
command = sleep {marker}
start_secs = 0
[service:once]
command = true
restart = never
start_secs = 0
""")
    d.wait_state("quick", "running")
    d.wait_state("mine", "running")
    d.wait_state("once", "exited")
    db = wait_signal_state(d, "db", "SigIgn")
    assert d.ctl("stop", "mine").returncode == 0
    wait_for(lambda: recorded_down(d, "mine") and recorded_down(d, "once") and
             db in recorded_pids(d), what="the record of db, mine and once")
    assert d.ctl("-t", "0", "shutdown").returncode == 0

    def shutdown_under_way():
        with open(d.sock + ".state") as f:
            lines = {l.split()[1]: l for l in f if l.startswith("service ")}
        return (" restart" in lines["db"] and lines["quick"].split()[2] == "0" and
                lines["quick"].split()[5] == "run")
    wait_for(shutdown_under_way, what="the record of quick stopped by the shutdown, db stopping")
    assert recorded_down(d, "mine") and recorded_down(d, "once")
    d.crash()
    assert alive(db)
    d.start()
    wait_for(lambda: (st := d.status()) and st["quick"]["state"] == "running" and
             st["db"]["state"] == "running" and st["db"]["pid"] != db and not alive(db),
             timeout=60 * SLOW, what="quick started, db stopped (its SIGKILL) and started")
    st = d.status()
    # once: the shutdown's stop made it stopped (from exited), still down
    assert st["mine"]["state"] == "stopped" and st["once"]["state"] in ("stopped", "exited"), st
    assert not st["mine"].get("pid") and not st["once"].get("pid"), st
    assert len(re.findall("service mine: stopped -> (running|starting)", d.log())) == 1, d.log()[-3000:]
    assert len(re.findall("service once: stopped -> (running|starting)", d.log())) == 1, d.log()[-3000:]
    d.stop()


def test_the_configs_socket_outlives_a_reload(procs, tmp_path, marker):
    """`socket =` in the config, no -S: the daemon kept a pointer into the config a
    reload freed, so a later notify service got a garbage NOTIFY_SOCKET name (ASan: use
    after free) and a `ctl reexec` passed -S garbage: the new image ran on another socket,
    and left the real one, its lock and its cgroups behind at its end."""
    sock = str(tmp_path / "conf.sock")
    base = f"[evmon]\nsocket = {sock}\nstart_secs = 0\n[service:w]\ncommand = sleep {marker}\n"
    notify = '[service:n]\ncommand = HELPER notify "READY=1" pause\nready = notify\n'
    d = Daemon(procs, tmp_path, base, start=False)
    d.sock = sock
    d.logf = open(d.logpath, "ab")
    d.p = procs.spawn([EVMON, "daemon", "-c", d.cfg], stdout=d.logf, stderr=subprocess.STDOUT)
    wait_for(lambda: d.answers() or d.p.poll() is not None, what="the control socket")
    w = d.status("w")["w"]["pid"]
    for text in (base + "[service:x]\ncommand = sleep 1000\n", base + notify):
        d.write(text)
        assert d.ctl("reload").returncode == 0
    r = d.ctl("-t", "30", "start", "n")
    assert r.returncode == 0 and d.status("n")["n"]["state"] == "running", r.stdout + r.stderr
    r = d.ctl("reexec")
    assert r.returncode == 0, r.stderr + d.log()
    assert d.status("w")["w"]["pid"] == w and d.p.poll() is None
    assert d.request({"cmd": "ping"})["ok"]  # on the config's socket still
    d.stop()
    assert not os.path.exists(sock + ".state")


def test_reexec_with_a_config_the_new_image_refuses_is_refused(procs, tmp_path, marker):
    """A mistake saved in the config and never reloaded: a re-exec's new image read it,
    refused to start and exited, its services left running with nobody watching (and the
    socket, the record and the cgroups behind). Its `--check` is asked first: the re-exec
    is refused with the mistake, and the daemon carries on; fixed, it goes."""
    d = Daemon(procs, tmp_path, config(marker, n=3))
    before = wait_for(lambda: all_running(d, 3), what="3 running")
    good = open(d.cfg).read()
    d.write(good + "bogus = 1\n")
    r = d.ctl("reexec")
    assert r.returncode == 1 and "refuses the config" in r.stderr and "bogus" in r.stderr and \
        "the daemon carries on" in r.stderr, r.stderr
    assert d.p.poll() is None and d.request({"cmd": "ping"})["pid"] == d.p.pid
    assert {k: v["pid"] for k, v in d.status().items()} == {k: v["pid"] for k, v in before.items()}
    d.write(good)
    r = d.ctl("reexec")
    assert r.returncode == 0, r.stderr + d.log()
    assert {k: v["pid"] for k, v in d.status().items()} == {k: v["pid"] for k, v in before.items()}
    d.stop()
    assert marker_pids(marker) == []
