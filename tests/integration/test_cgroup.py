"""`evmon daemon` with a cgroup v2 per service ([evmon] cgroup = auto|yes|no):
the daemon moves into <own cgroup>/evmon.<socket>/evmon.daemon, each service
runs in <base>/<name>.service from its first instruction, and at exit the
daemon leaves zero processes and zero cgroups behind.

Needs a writable cgroup2 hierarchy (root on a host with cgroup2 mounted at
/sys/fs/cgroup or /sys/fs/cgroup/unified): skipped with the reason elsewhere."""
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import EVMON, HELPER, SLOW, cmdline, wait_for
from daemon_util import Daemon, alive


def _cgroup2_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return left.split()[4]
    return None


def _own_cgroup():
    mnt = _cgroup2_mount()
    if not mnt:
        return None, "no cgroup2 mount (cgroup v1 only)"
    with open("/proc/self/cgroup") as f:
        rel = next((line.strip()[3:] for line in f if line.startswith("0::")), None)
    if rel is None:
        return None, "no cgroup2 line in /proc/self/cgroup"
    path = os.path.join(mnt, rel.lstrip("/"))
    if not os.path.isdir(path) or not os.access(path, os.W_OK) or \
            not os.access(os.path.join(path, "cgroup.procs"), os.W_OK):
        return None, f"our cgroup {path} is not writable"
    return path, None


HOME, WHY = _own_cgroup()
pytestmark = pytest.mark.skipif(HOME is None, reason=f"needs a writable cgroup v2: {WHY}")


def base_of(d):
    return os.path.join(HOME, "evmon." + d.sock.lstrip("/").replace("/", "-"))


def procs_in(path):
    """Every pid in the cgroup at path and its descendants."""
    out = []
    for dirpath, _, files in os.walk(path):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(dirpath, "cgroup.procs")) as f:
                    out += [int(x) for x in f.read().split()]
            except FileNotFoundError:
                pass
    return out


def cgroup_of(pid):
    with open(f"/proc/{pid}/cgroup") as f:
        return next(line.strip()[3:] for line in f if line.startswith("0::"))


def rel(path):
    return "/" + os.path.relpath(path, _cgroup2_mount()) if path != _cgroup2_mount() else "/"


# every shape of process tree that escapes a plain process-group kill
TREES = """
[evmon]
start_secs = 0
stop_timeout = 2
[service:bg]
command = sh -c 'sleep 400101 & sleep 400102 & wait'
[service:escapee]
command = sh -c 'setsid sleep 400103 & wait'
[service:forker]
command = sh -c "trap '' TERM; while :; do sleep 400104 & sleep 0.05; done"
[service:daemonizes]
command = sh -c '(setsid sleep 400105 &)'
restart = never
track = main
[service:stubborn]
command = sh -c "trap '' TERM; sh -c \\"trap '' TERM; sleep 400106\\" & sleep 400107 & wait"
"""


def test_each_service_in_its_own_cgroup(procs, tmp_path):
    d = Daemon(procs, tmp_path, TREES)
    base = base_of(d)
    # the socket answers (its backlog) before the daemon has moved
    wait_for(lambda: cgroup_of(d.p.pid) == rel(os.path.join(base, "evmon.daemon")),
             what="the daemon in evmon.daemon")
    for name in ("bg", "escapee", "forker", "stubborn"):
        d.wait_state(name, "running")
        cg = os.path.join(base, name + ".service")
        pid = d.status(name)[name]["pid"]
        assert cgroup_of(pid) == rel(cg)
    # the descendants are in their service's cgroup, setsid or not
    wait_for(lambda: len(procs_in(os.path.join(base, "bg.service"))) == 3, what="bg's 3 processes")
    wait_for(lambda: len(procs_in(os.path.join(base, "escapee.service"))) == 2,
             what="escapee's 2 processes")
    wait_for(lambda: len(procs_in(os.path.join(base, "daemonizes.service"))) == 1,
             what="the daemonized sleep")
    d.wait_state("daemonizes", "exited")
    d.stop()


def test_shutdown_leaves_no_process_and_no_cgroup(procs, tmp_path):
    d = Daemon(procs, tmp_path, TREES)
    base = base_of(d)
    for name in ("bg", "escapee", "forker", "stubborn"):
        d.wait_state(name, "running")
    wait_for(lambda: len(procs_in(os.path.join(base, "bg.service"))) == 3, what="bg's 3 processes")
    wait_for(lambda: len(procs_in(os.path.join(base, "escapee.service"))) == 2,
             what="escapee's 2 processes")
    wait_for(lambda: len(procs_in(os.path.join(base, "stubborn.service"))) == 4,
             what="stubborn's 4 processes")
    wait_for(lambda: len(procs_in(os.path.join(base, "daemonizes.service"))) == 1,
             what="the daemonized sleep")
    everything = set(procs_in(base))
    assert len(everything) >= 10
    d.stop()
    left = [p for p in everything if alive(p)]
    assert not left, f"left behind: {left}"
    assert not os.path.exists(base), os.listdir(base)


def test_a_service_whose_name_starts_with_a_dot_is_cleaned_up_too(procs, tmp_path):
    """A valid name may start with a dot (.web): the cgroup walks skipped every such
    directory as if it were "." or "..", so the shutdown could not remove the base (EBUSY,
    5 s of retries, the empty .web.service left) and would not kill in it where
    cgroup.kill is missing."""
    d = Daemon(procs, tmp_path, "[service:.web]\ncommand = HELPER pause\nstart_secs = 0\n")
    base = base_of(d)
    d.wait_state(".web", "running")
    assert procs_in(os.path.join(base, ".web.service"))
    d.stop()
    assert "cannot remove" not in d.log(), d.log()
    assert not os.path.exists(base), os.listdir(base)


def test_stale_base_of_a_killed_daemon_is_cleaned(procs, tmp_path):
    """A daemon killed with SIGKILL leaves its tree; the next one on the same
    socket kills what is left (or every service would run twice)."""
    d = Daemon(procs, tmp_path, TREES)
    base = base_of(d)
    d.wait_state("bg", "running")
    wait_for(lambda: len(procs_in(os.path.join(base, "bg.service"))) == 3, what="bg's processes")
    old = set(procs_in(base)) - {d.p.pid}
    d.crash()
    os.unlink(d.sock)
    os.unlink(d.sock + ".state")  # no record to take the services over from (test_continuity.py)
    assert any(alive(p) for p in old)
    d2 = Daemon(procs, tmp_path, TREES, name="d")
    # said once the daemon is set up, which may be after its socket answers
    wait_for(lambda: "processes of an earlier run are still there: killed them" in d2.log(),
             what="the cleanup of the earlier run")
    wait_for(lambda: not any(alive(p) for p in old), what="the old run's processes to die")
    d2.stop()
    assert not os.path.exists(base)


@pytest.mark.parametrize("mode", ["auto", "yes"])
def test_a_daemon_whose_socket_maps_to_anothers_cgroup_leaves_it_alone(procs, tmp_path, mode):
    """Sockets a-b.sock and a/b.sock (or one relative path in two directories) give one
    cgroup name, evmon.<path with '-' for '/'>: the second daemon took the first one's live
    base for an earlier run of its own and SIGKILLed it, the first daemon and its services
    with it. The base now says whose it is (trusted.evmon.socket): the second runs without
    cgroups (auto) or refuses to start (yes), the first untouched."""
    first = Daemon(procs, tmp_path, f"[evmon]\ncgroup = {mode}\n[service:a]\ncommand = HELPER pause\n"
                   "start_secs = 0\n", name="a-b")
    first.wait_state("a", "running")
    pid = first.status("a")["a"]["pid"]
    (tmp_path / "a").mkdir()
    second = Daemon(procs, tmp_path / "a", f"[evmon]\ncgroup = {mode}\n[service:c]\n"
                    "command = HELPER pause\nstart_secs = 0\n", name="b", start=False)
    assert base_of(second) == base_of(first)
    # root names the socket (trusted.evmon.socket); elsewhere the live daemon is found
    said = re.compile(rf"{re.escape(base_of(first))} is (the daemon's of socket "
                      rf"{re.escape(first.sock)}|a live daemon's \(pid {first.p.pid}\)): its "
                      r"socket's path maps to this name too")
    if mode == "yes":
        r = procs.run([EVMON, "daemon", "-c", second.cfg, "-S", second.sock], timeout=30 * SLOW)
        assert r.returncode == 1 and said.search(r.stderr), r
    else:
        second.start()
        second.wait_state("c", "running")
        assert said.search(second.log()) and "no cgroups" in second.log(), second.log()
        second.stop()
    assert alive(pid) and alive(first.p.pid)
    assert first.status("a")["a"]["pid"] == pid
    first.stop()


def test_killed_daemon_services_adopted_in_their_cgroups(procs, tmp_path):
    """With the record a killed daemon left, the next one takes its services
    over in their cgroups (their children stay too), and kills only what no
    record claims: here what the exited service daemonizes left behind."""
    d = Daemon(procs, tmp_path, TREES)
    base = base_of(d)
    for name in ("bg", "escapee", "forker", "stubborn"):
        d.wait_state(name, "running")
    d.wait_state("daemonizes", "exited")
    wait_for(lambda: len(procs_in(os.path.join(base, "bg.service"))) == 3, what="bg's processes")
    wait_for(lambda: len(procs_in(os.path.join(base, "daemonizes.service"))) == 1,
             what="the daemonized sleep")
    stray = procs_in(os.path.join(base, "daemonizes.service"))
    bg = set(procs_in(os.path.join(base, "bg.service")))
    mains = {n: d.status(n)[n]["pid"] for n in ("bg", "escapee", "stubborn")}
    wait_for(lambda: all(f" {p} " in open(d.sock + ".state").read() for p in mains.values()) and
             "service daemonizes 0 0 " in open(d.sock + ".state").read(), what="the record")
    d.crash()
    d2 = Daemon(procs, tmp_path, TREES, name="d")
    wait_for(lambda: "no record claims: killed them" in d2.log(), what="the stray killed")
    wait_for(lambda: not any(alive(p) for p in stray), what="the stray to die")
    for name, pid in mains.items():
        st = d2.status(name)[name]
        assert st["pid"] == pid and st["adopted"] and st["state"] == "running", st
        assert cgroup_of(pid) == rel(os.path.join(base, name + ".service"))
    assert set(procs_in(os.path.join(base, "bg.service"))) == bg
    # it was over (exited, restart = never): not run again, and still shown as exited
    assert d2.status("daemonizes")["daemonizes"]["state"] == "exited"
    assert not procs_in(os.path.join(base, "daemonizes.service"))
    everything = set(procs_in(base)) - {d2.p.pid}
    d2.stop()
    assert not any(alive(p) for p in everything)
    assert not os.path.exists(base)


def test_cgroup_no_makes_none(procs, tmp_path):
    d = Daemon(procs, tmp_path, "[evmon]\ncgroup = no\n[service:a]\ncommand = sleep 400110\n")
    d.wait_state("a", "running")  # the state answers once the daemon is set up
    assert not os.path.exists(base_of(d))
    assert cgroup_of(d.p.pid) == cgroup_of(os.getpid())
    d.stop()


def _without_cgroup2(argv):
    """argv in a mount namespace where no cgroup2 is mounted."""
    mnt = _cgroup2_mount()
    script = f'umount -l {mnt} && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh"] + argv


def test_cgroup_yes_fails_clearly_when_impossible(procs, tmp_path):
    cfg = tmp_path / "y.ini"
    cfg.write_text("[evmon]\ncgroup = yes\n[service:a]\ncommand = sleep 400111\n")
    r = procs.run(_without_cgroup2([EVMON, "daemon", "-c", str(cfg), "-S", str(tmp_path / "y.sock")]))
    assert r.returncode == 1
    assert "evmon: daemon: cgroup = yes: no cgroup2 mount" in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "y.sock")


def test_cgroup_auto_runs_without_when_impossible(procs, tmp_path):
    cfg = tmp_path / "a.ini"
    cfg.write_text("[service:a]\ncommand = sleep 400112\n")
    sock = str(tmp_path / "a.sock")
    log = open(tmp_path / "a.log", "wb")
    p = procs.spawn(_without_cgroup2([EVMON, "daemon", "-c", str(cfg), "-S", sock]),
                    stdout=log, stderr=subprocess.STDOUT)
    wait_for(lambda: "daemon" in (tmp_path / "a.log").read_text() and
             "started" in (tmp_path / "a.log").read_text() or p.poll() is not None,
             timeout=20 * SLOW, what="the daemon's start")
    text = (tmp_path / "a.log").read_text()
    assert "no cgroups: no cgroup2 mount" in text, text
    assert p.poll() is None
    p.terminate()
    assert p.wait(timeout=30 * SLOW) == 0
    log.close()


def test_limits_applied_or_said_clearly(procs, tmp_path):
    """memory_max and pids_max need their controller delegated to the daemon's
    cgroup: applied when it is, else the service runs and an event says which
    controller is missing (this kind of host has none in cgroup2)."""
    d = Daemon(procs, tmp_path, """
[service:a]
command = sleep 400120
memory_max = 64M
pids_max = 50
""")
    d.wait_state("a", "running")
    base = base_of(d)
    with open(os.path.join(base, "cgroup.controllers")) as f:
        have = f.read().split()
    cg = os.path.join(base, "a.service")
    for ctl, file, value, shown in (("memory", "memory.max", "67108864", "64M"),
                                    ("pids", "pids.max", "50", "50")):
        if ctl in have:
            with open(os.path.join(cg, file)) as f:
                assert f.read().strip() == value
        else:
            wait_for(lambda: f"{file} = {shown} not applied: controller {ctl} not available" in d.log(),
                     what=f"the {ctl} event")
    st = d.status("a")["a"]
    assert st["cgroup"] == cg
    assert st["processes"] == 1
    assert st["cpu_usage_usec"] >= 0
    d.stop()


def test_limit_values_checked(procs, tmp_path):
    cfg = tmp_path / "bad.ini"
    cfg.write_text("[service:a]\ncommand = sleep 1\nmemory_max = 12X\ncpu_weight = 0\n"
                   "cpu_max = 50000 100000\n")
    r = procs.run([EVMON, "daemon", "--check", "-c", str(cfg)])
    assert r.returncode == 1
    assert "memory_max: '12X' is not bytes (with K, M, G; under 16 EiB) or max" in r.stderr, r.stderr
    assert "cpu_weight: '0' is not a weight from 1 to 10000" in r.stderr
    assert "cpu_max" not in r.stderr


@pytest.mark.parametrize("line,bad", [
    ("cpu_max = 1000 0", True), ("cpu_max = 0 100000", True), ("cpu_max = 999", True),
    ("cpu_max = 1000 1000001", True), ("cpu_max = 1000 max", True),
    ("cpu_max = 1000 1000", False), ("cpu_max = max 1000000", False), ("cpu_max = 50000", False),
    ("cpu_max = 17592186044416 100000", True), ("cpu_max = 17592186044415 100000", False),
    ("memory_max = 99999999999999999999999", True), ("memory_max = 17179869184G", True),
    ("memory_max = 17179869183G", False), ("pids_max = 9223372036854775808", True),
    ("pids_max = 9223372036854775807", False),
])
def test_limits_the_kernel_would_refuse_are_config_errors(procs, tmp_path, line, bad):
    """Values the kernel refuses at the start (a cpu.max quota under 1 ms, a period of 0
    or over 1 s; a size past 2^64; pids.max past 2^63) are `--check` errors naming the
    key; they passed the check and failed only at the start ("not applied")."""
    cfg = tmp_path / "lim.ini"
    cfg.write_text(f"[service:a]\ncommand = sleep 1\n{line}\n")
    r = procs.run([EVMON, "daemon", "--check", "-c", str(cfg)])
    key = line.split()[0]
    if bad:
        assert r.returncode == 1 and f"{key}: '{line.split(' = ')[1]}' is not" in r.stderr, r
    else:
        assert r.returncode == 0, r


@pytest.mark.parametrize("name", ["bg", "escapee", "forker", "stubborn", "daemonizes"])
def test_stop_ends_the_whole_tree(procs, tmp_path, name):
    """stop_signal to every process of the cgroup, cgroup.kill at stop_timeout
    (stubborn's grandchildren and the forker ignore TERM), and `stopped` only
    once the cgroup is empty: nothing is left when ctl stop returns."""
    d = Daemon(procs, tmp_path, TREES)
    cg = os.path.join(base_of(d), name + ".service")
    want = {"bg": 3, "escapee": 2, "forker": 3, "stubborn": 4, "daemonizes": 1}[name]
    wait_for(lambda: len(procs_in(cg)) >= want, what=f"{name}'s processes")
    before = procs_in(cg)
    r = d.ctl("stop", name)
    assert r.returncode == 0, r.stderr
    assert d.status(name)[name]["state"] == "stopped"
    assert procs_in(cg) == []
    assert not [p for p in before if alive(p)]
    d.stop()


KILL_MODES = """
[evmon]
start_secs = 0
stop_timeout = 2
[service:proc]
command = sh -c 'sleep 400111 & setsid sleep 400112 & wait'
kill_mode = process
[service:grp]
command = sh -c 'sleep 400113 & setsid sleep 400114 & wait'
kill_mode = group
[service:tree]
command = sh -c 'sleep 400115 & setsid sleep 400116 & wait'
[service:old]
command = sh -c 'sleep 400117 & setsid sleep 400118 & wait'
kill_group = true
"""


@pytest.mark.parametrize("name,left", [("proc", ["sleep 400111", "sleep 400112"]),
                                       ("grp", ["sleep 400114"]), ("old", ["sleep 400118"]),
                                       ("tree", [])])
def test_kill_mode_decides_what_a_stop_ends(procs, tmp_path, name, left):
    """process: the main process only; group (kill_group = true too): its
    process group, not the setsid escapee; tree (the default): the whole
    cgroup. Every service is stopped once its main process is gone; the
    daemon's exit ends the rest."""
    d = Daemon(procs, tmp_path, KILL_MODES)
    cg = os.path.join(base_of(d), name + ".service")
    # both sleeps exec'd: the escapee's setsid has run (counting 3 processes
    # could catch it before, still in the group, and the stop would kill it)
    first = {"proc": 400111, "grp": 400113, "tree": 400115, "old": 400117}[name]
    sleeps = [f"sleep {first}", f"sleep {first + 1}"]
    wait_for(lambda: all(s in [cmdline(p) for p in procs_in(cg)] for s in sleeps),
             what=f"{name}'s two sleeps")
    main = d.status(name)[name]["pid"]
    r = d.ctl("stop", name)
    assert r.returncode == 0, r.stderr
    assert d.status(name)[name]["state"] == "stopped"
    assert not alive(main)
    # group: the group's other members got the signal but may still be dying
    wait_for(lambda: sorted(cmdline(p) for p in procs_in(cg)) == left,
             what=f"only {left} left in {name}'s cgroup")
    d.stop()
    assert procs_in(base_of(d)) == []


def test_removed_then_added_again_waits_for_the_old_stop(procs, tmp_path):
    """ctl remove of a service whose processes ignore SIGTERM, then ctl add of
    the same name at once: both use <name>.service, so the new one starts
    only once the old stop (cgroup.kill at stop_timeout) has emptied it;
    started earlier, it would be killed by the old one's stop."""
    d = Daemon(procs, tmp_path, """
[evmon]
start_secs = 0
stop_timeout = 2
[service:again]
command = sh -c "trap '' TERM; sleep 400131 & wait"
""")
    cg = os.path.join(base_of(d), "again.service")
    wait_for(lambda: len(procs_in(cg)) == 2, what="again's 2 processes")
    old = procs_in(cg)
    assert d.ctl("remove", "again").returncode == 0
    r = d.ctl("add", "again", "--", "sleep", "400132")
    assert r.returncode == 0, r.stderr
    assert not [p for p in old if alive(p)], "started before the old cgroup was empty"
    new = d.status("again")["again"]["pid"]
    assert cmdline(new) == "sleep 400132" and cgroup_of(new) == rel(cg)
    # nothing of the old stop reaches it later
    d.wait_state("again", "running")
    assert d.status("again")["again"]["pid"] == new and alive(new)
    assert d.status("again")["again"].get("restarts", 0) == 0
    d.stop()


def service_dirs(base):
    return sorted(e for e in os.listdir(base) if e.endswith(".service"))


def test_a_removed_services_cgroup_goes_once_its_stop_is_over(procs, tmp_path):
    """A service removed for good (ctl remove, a reload that drops it, fewer instances)
    had its cgroup left until the daemon's exit: a daemon that adds and removes jobs
    kept one directory per job ever run (100,000 adds and removes, ~90,000 cgroups).
    Now each goes once its stop is over, while the daemon runs; one whose old copy
    still stops stays until it is gone, and a name added again meanwhile keeps it."""
    config = """
[evmon]
start_secs = 0
stop_timeout = {t}
[service:keep]
command = sleep 400141
[service:drop]
command = sh -c 'sleep 400142 & wait'
[service:wide]
command = sleep 400143
instances = {n}
[service:slow]
command = sh -c "trap '' TERM; sleep 400144 & wait"
"""
    t = 2 * SLOW
    d = Daemon(procs, tmp_path, config.format(t=t, n=3))
    base = base_of(d)
    wanted = ["drop.service", "keep.service", "slow.service", "wide:0.service",
              "wide:1.service", "wide:2.service"]
    wait_for(lambda: service_dirs(base) == wanted, what="every service's cgroup")
    for name in ("keep", "drop", "slow"):
        d.wait_state(name, "running")

    # ctl add and remove, a few rounds: no job's cgroup is left
    for i in range(5):
        r = d.ctl("add", f"job{i}", "--", "sleep", f"40015{i}")
        assert r.returncode == 0, r.stderr
        d.wait_state(f"job{i}", "running")
        assert os.path.isdir(os.path.join(base, f"job{i}.service"))
        assert d.ctl("remove", f"job{i}").returncode == 0
    wait_for(lambda: service_dirs(base) == wanted, what="the jobs' cgroups gone")

    # a reload that drops a service and shrinks instances 3 -> 1 (wide:I -> wide)
    d.write(config.format(t=t, n=1).replace("[service:drop]\ncommand = sh -c 'sleep 400142 & wait'\n", ""))
    assert d.ctl("reload").returncode == 0
    wanted = ["keep.service", "slow.service", "wide.service"]
    wait_for(lambda: service_dirs(base) == wanted, what="drop's and wide:I's cgroups gone")
    d.wait_state("wide", "running")

    # removed while it ignores SIGTERM: its cgroup stays while the old copy stops
    cg = os.path.join(base, "slow.service")
    wait_for(lambda: len(procs_in(cg)) == 2, what="slow's 2 processes")
    old = procs_in(cg)
    assert d.ctl("remove", "slow").returncode == 0
    if [p for p in old if alive(p)]:
        assert os.path.isdir(cg)
    wait_for(lambda: not os.path.exists(cg), timeout=10 + t, what="slow's cgroup gone")
    assert not [p for p in old if alive(p)]

    # added again while its old copy stops: the new one keeps the cgroup
    r = d.ctl("add", "slow", "--", "sh", "-c", "trap '' TERM; sleep 400145 & wait")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: len(procs_in(cg)) == 2, what="slow's 2 processes")
    old = procs_in(cg)
    assert d.ctl("remove", "slow").returncode == 0
    r = d.ctl("add", "slow", "--", "sleep", "400146")
    assert r.returncode == 0, r.stderr
    d.wait_state("slow", "running", timeout=10 + t)
    assert not [p for p in old if alive(p)]
    new = d.status("slow")["slow"]["pid"]
    assert cmdline(new) == "sleep 400146" and cgroup_of(new) == rel(cg)
    assert procs_in(cg) == [new]

    # and removed again while an old copy stops: it goes once that one is gone
    r = d.ctl("add", "stub", "--", "sh", "-c", "trap '' TERM; sleep 400147 & wait")
    assert r.returncode == 0, r.stderr
    stub = os.path.join(base, "stub.service")
    wait_for(lambda: len(procs_in(stub)) == 2, what="stub's 2 processes")
    old = procs_in(stub)
    assert d.ctl("remove", "stub").returncode == 0
    r = d.ctl("add", "--no-start", "stub", "--", "sleep", "400148")
    assert r.returncode == 0, r.stderr
    assert d.ctl("remove", "stub").returncode == 0
    wait_for(lambda: not os.path.exists(stub), timeout=10 + t, what="stub's cgroup gone")
    assert not [p for p in old if alive(p)]
    assert service_dirs(base) == wanted
    assert "cannot remove" not in d.log(), d.log()
    d.stop()
    assert not os.path.exists(base)


@pytest.mark.parametrize("how", ["remove", "reload+reexec", "remove+reexec"])
def test_a_removed_services_cgroup_with_processes_left_goes_once_they_are(procs, tmp_path, how):
    """kill_mode = process: the stop of a removed service ends its main process only, and
    what it started stays in its cgroup. Nothing is killed for the cgroup's removal: it
    goes once those processes have ended, by other hands. A re-exec meanwhile hands the
    wait over (the new image's sweep killed them: no record named them); a service of
    the file removed by ctl remove comes back with the re-exec, in its cgroup with them,
    as it would be added again in the same image."""
    d = Daemon(procs, tmp_path, KILL_MODES)
    cg = os.path.join(base_of(d), "proc.service")
    sleeps = ["sleep 400111", "sleep 400112"]
    wait_for(lambda: all(s in [cmdline(p) for p in procs_in(cg)] for s in sleeps),
             what="proc's two sleeps")
    if how.startswith("reload"):
        d.write(KILL_MODES.replace("[service:proc]", "[service:proc-gone]"))
        assert d.ctl("reload").returncode == 0
    else:
        assert d.ctl("remove", "proc").returncode == 0
    wait_for(lambda: sorted(cmdline(p) for p in procs_in(cg)) == sleeps and
             "processes are left in it" in d.log(), what="proc's stop over, its sleeps left")
    left = procs_in(cg)
    if how.endswith("reexec"):
        r = d.ctl("reexec")
        assert r.returncode == 0, r
    if how == "remove+reexec":
        d.wait_state("proc", "running")
        time.sleep(0.5 * SLOW)
        assert all(alive(p) for p in left), d.log()[-2000:]
        assert set(left) < set(procs_in(cg))
        d.stop()
        assert not [p for p in left if alive(p)]
        return
    time.sleep(0.5 * SLOW)  # a few of its retries
    assert all(alive(p) for p in left) and os.path.isdir(cg), d.log()[-2000:]
    for p in left:
        os.kill(p, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(cg), what="proc's cgroup gone")
    assert "cannot remove" not in d.log(), d.log()
    d.stop()
    assert procs_in(base_of(d)) == []


@pytest.mark.parametrize("how", ["crash", "reexec"])
def test_a_removed_services_cgroup_goes_after_a_takeover_of_its_stop(procs, tmp_path, how):
    """A reload drops a service whose stop takes its stop_timeout, then a crash or a
    re-exec while it stops: the next daemon takes its stop over (the record names the
    old copy) and removes its cgroup once it is gone, while it runs on."""
    t = 3 * SLOW
    config = f"""
[evmon]
start_secs = 0
stop_timeout = {t}
[service:keep]
command = sleep 400161
"""
    d = Daemon(procs, tmp_path, config + """
[service:slow]
command = sh -c "trap '' TERM; sleep 400162 & wait"
""")
    base = base_of(d)
    cg = os.path.join(base, "slow.service")
    wait_for(lambda: len(procs_in(cg)) == 2, what="slow's 2 processes")
    old = procs_in(cg)
    d.write(config)
    assert d.ctl("reload").returncode == 0
    wait_for(lambda: re.search(r"^service slow .* old=", open(d.sock + ".state").read(), re.M),
             what="the record naming slow's old copy")
    if how == "crash":
        d.crash()
        d = Daemon(procs, tmp_path, config, name="d")
    else:
        assert d.ctl("reexec").returncode == 0
    assert [p for p in old if alive(p)], "stopped before the takeover: nothing tested"
    assert os.path.isdir(cg)
    wait_for(lambda: not os.path.exists(cg), timeout=10 + t, what="slow's cgroup gone")
    assert not [p for p in old if alive(p)]
    assert service_dirs(base) == ["keep.service"]
    assert d.status("keep")["keep"]["state"] == "running"
    d.stop()
    assert not os.path.exists(base)


@pytest.mark.parametrize("n", [100, pytest.param(1000, marks=pytest.mark.scale)])
def test_many_services_each_in_its_own_cgroup(procs, tmp_path, n):
    """n services with a background child each, every one in its own cgroup: they
    all run there, the daemon holds no descriptor of their cgroups (a pidfd per
    service, as without cgroups), and its stop leaves zero processes and zero
    cgroups."""
    d = Daemon(procs, tmp_path, f"""
[evmon]
start_secs = 0
stop_timeout = 10
[service:s]
command = sh -c 'HELPER pause & exec HELPER pause'
instances = {n}
""")
    base = base_of(d)
    wait_for(lambda: all(s["state"] == "running" for s in d.status().values()),
             timeout=(60 + n // 10) * SLOW, what=f"{n} services running")
    def services():  # the daemon's leaf holds the daemon (and its spawn helper)
        return set(procs_in(base)) - set(procs_in(os.path.join(base, "evmon.daemon")))
    wait_for(lambda: len(services()) == 2 * n, timeout=(30 + n // 20) * SLOW,
             what=f"{2 * n} processes")
    for name, s in d.status().items():
        cg = os.path.join(base, name + ".service")
        assert cgroup_of(s["pid"]) == rel(cg)
        assert len(procs_in(cg)) == 2, name
    fds = os.listdir(f"/proc/{d.p.pid}/fd")
    on_cgroups = []
    for fd in fds:
        try:
            if os.readlink(f"/proc/{d.p.pid}/fd/{fd}").startswith(_cgroup2_mount()):
                on_cgroups.append(fd)
        except FileNotFoundError:
            pass  # closed meanwhile
    assert len(on_cgroups) <= 4, on_cgroups
    assert len(fds) <= n + 160
    everything = services()
    d.stop(timeout=60 + n // 10)
    left = [p for p in everything if alive(p)]
    assert not left, f"left behind: {left[:20]}"
    assert not os.path.exists(base), os.listdir(base)[:20]


def test_restart_waits_for_an_empty_cgroup(procs, tmp_path):
    """Not ready within ready_timeout: the stop's SIGTERM ends the main
    process, not its child (it ignores TERM); the restart waits until the
    cgroup is empty (SIGKILL at stop_timeout), so the new run never meets
    the old run's child."""
    d = Daemon(procs, tmp_path, """
[evmon]
stop_timeout = 1
[service:slow]
command = sh -c "(trap '' TERM; exec sleep 400141) & exec sleep 400142"
ready = notify
ready_timeout = 1
start_retries = 100
backoff_initial = 0
""")
    cg = os.path.join(base_of(d), "slow.service")
    wait_for(lambda: sorted(cmdline(p) for p in procs_in(cg)) == ["sleep 400141", "sleep 400142"],
             what="the first run's two sleeps")
    first = d.status("slow")["slow"]["pid"]
    (child,) = [p for p in procs_in(cg) if cmdline(p) == "sleep 400141"]
    # the next run's main process exists only once the cgroup was empty
    second = wait_for(lambda: (d.status("slow")["slow"].get("pid") or first) != first and
                      d.status("slow")["slow"]["pid"], what="the second run")
    assert not alive(child), "the restart came before the old run's child was gone"
    d.stop()
    assert procs_in(base_of(d)) == []


def test_oom_kill_is_the_exit_reason(procs, tmp_path):
    """A service the OOM killer kills (memory_max 16M, 256 MB asked for) shows
    reason "oom" in its exit event and in status's last_exit, like Docker's oom
    event: its cgroup's memory.events oom_kill grew during the run. Needs the
    memory controller delegated to the daemon's cgroup (the unit test
    test_oom_kills_fake covers the reading with a fake directory)."""
    d = Daemon(procs, tmp_path, """
[service:hog]
command = python3 -c "b = bytearray(256 << 20); import time; time.sleep(60)"
memory_max = 16M
restart = never
start_secs = 0
""")
    base = base_of(d)
    with open(os.path.join(base, "cgroup.controllers")) as f:
        have = f.read().split()
    if "memory" not in have:
        d.stop()
        pytest.skip(f"the memory controller is not enabled in {base} (cgroup.controllers: "
                    f"{' '.join(have) or 'none'}): no OOM kill to see")
    st = wait_for(lambda: (s := d.status("hog")["hog"]).get("last_exit") and s, what="hog's exit")
    assert st["last_exit"].get("reason") == "oom", st
    assert st["last_exit"]["signal_name"] == "KILL", st
    d.stop()


def test_a_survivor_that_cannot_be_adopted_is_ended_by_its_cgroup(procs, tmp_path):
    """After a crash, a daemon where pidfd_open fails (seccomp: ENOSYS) can neither
    adopt nor kill the survivor through a pidfd, but its cgroup's sweep kills it
    (cgroup.kill): the service starts again, one copy (without cgroups it is left
    alone and not started: test_faults.py)."""
    d = Daemon(procs, tmp_path, """
[service:web]
command = HELPER pause
start_secs = 0
""")
    base = base_of(d)
    old = d.wait_state("web", "running")["pid"]
    wait_for(lambda: f" {old} " in open(d.sock + ".state").read(), what="the record")
    d.crash()
    try:
        d.wrap = [HELPER, "nosys", "434", "exec"]
        d.start()
        st = d.wait_state("web", "running")
        assert st["pid"] != old and not st.get("error"), st
        assert "cannot kill it: Function not implemented; its cgroup is swept" in d.log(), d.log()
        wait_for(lambda: not alive(old), what="the survivor's end")
        assert procs_in(os.path.join(base, "web.service")) == [st["pid"]]
        d.stop()
    finally:
        if alive(old):
            os.kill(old, 9)
