"""The test harness itself: conftest's sweep, at a run's start, of the daemons'
cgroups that runners killed outright (a CI job ended with SIGKILL) left behind."""
import fcntl
import os
import subprocess

import pytest

from conftest import RUN_LOCK, _own_cgroup_dir, _rmdir_tree, _sweep_dead_runs_cgroups, wait_for


def test_killed_runs_cgroups_are_swept_live_ones_kept(tmp_path):
    home = _own_cgroup_dir()
    probe = os.path.join(home or "/nonexistent", f"evmon-harness-probe-{os.getpid()}")
    try:
        os.mkdir(probe)
        os.rmdir(probe)
    except OSError as e:
        pytest.skip(f"no writable cgroup2 directory here: {e}")
    root = tmp_path / "pytest-of-someone"  # as pytest's basetemp root, runs pytest-N below
    for n in ("1", "2", "3"):
        (root / f"pytest-{n}").mkdir(parents=True)
    (root / "pytest-1" / RUN_LOCK).touch()  # 1: killed (its lock free); 4, 5: basetemp gone
    live = os.open(root / "pytest-2" / RUN_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
    fcntl.flock(live, fcntl.LOCK_EX)  # 2: a live run; 3: no lock (a conftest before it): kept
    prefix = "evmon." + str(root).lstrip("/").replace("/", "-") + "-pytest-"
    cg = {n: os.path.join(home, f"{prefix}{n}-test_x0-d.sock") for n in ("1", "2", "3", "4", "5")}
    sleeper = None
    try:
        for d in cg.values():
            os.makedirs(os.path.join(d, "evmon.daemon"))
        sleeper = subprocess.Popen(["sleep", "1000"])  # 5: gone, but a process is in it
        with open(os.path.join(cg["5"], "evmon.daemon", "cgroup.procs"), "w") as f:
            f.write(str(sleeper.pid))
        _sweep_dead_runs_cgroups(home, root)
        assert {n: os.path.exists(d) for n, d in cg.items()} == {
            "1": False, "2": True, "3": True, "4": False, "5": True}
        sleeper.kill()
        sleeper.wait()
        events = os.path.join(cg["5"], "cgroup.events")
        wait_for(lambda: "populated 0" in open(events).read(), what="5 empty")
        _sweep_dead_runs_cgroups(home, root)
        assert not os.path.exists(cg["5"])
        fcntl.flock(live, fcntl.LOCK_UN)  # 2 is over now
        _sweep_dead_runs_cgroups(home, root)
        assert not os.path.exists(cg["2"]) and os.path.exists(cg["3"])
    finally:
        if sleeper:
            sleeper.kill()
            sleeper.wait()
        os.close(live)
        for d in cg.values():
            _rmdir_tree(d)
