"""libevmon reaper mode end to end: tests/helpers/evm-reaper as PID 1 of a new
PID namespace (unshare --pid --fork --mount-proc) and as a child subreaper.

Each run spawns children that leave orphans behind; every child must be
reported once as EXIT and every orphan once as ORPHAN, and nothing may be left
unreaped (the program counts its children and zombies after evm_loop_free).
Each spawn path runs: direct clone, the spawn helper, and the SIGCHLD fallback.
"""
import os
import re
import shutil

import pytest

from conftest import PID_NS, SAN, binary

REAPER = binary("tests/evm-reaper")

MODES = {
    "direct": {"EVM_SPAWN_MODE": "direct", "EVM_NO_PIDFD": "0"},
    "helper": {"EVM_SPAWN_MODE": "helper", "EVM_NO_PIDFD": "0"},
    "sigchld": {"EVM_SPAWN_MODE": "direct", "EVM_NO_PIDFD": "1"},
}


@pytest.fixture(scope="module")
def reaper():
    assert os.access(REAPER, os.X_OK), f"{REAPER} not built (run make)"
    return REAPER


def run_reaper(procs, reaper, children, orphans, pid1, mode):
    argv = [reaper, str(children), str(orphans)]
    if pid1:
        if not shutil.which("unshare"):
            pytest.skip("PID 1 runs need unshare(1)")
        argv = PID_NS + argv
    env = dict(os.environ, **MODES[mode])
    r = procs.run(argv, timeout=120, env=env)
    assert r.returncode == 0, f"rc {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def check(out, children, orphans, pid1, mode):
    lines = out.splitlines()
    assert lines[0] == f"mode pid1 {'yes' if pid1 else 'no'} subreaper {'no' if pid1 else 'yes'}", out
    spawned = [int(p) for p in re.findall(r"^spawn (\d+)$", out, re.M)]
    exits = re.findall(r"^exit (\d+) code (-?\d+) signal (\d+)$", out, re.M)
    orphaned = re.findall(r"^orphan (\d+) code (-?\d+)$", out, re.M)
    warnings = re.findall(r"^warning (.*)$", out, re.M)
    if mode == "sigchld":
        # the forced fallback announces itself, once
        assert warnings.count("EVM_NO_PIDFD is set: watching children through SIGCHLD") == 1, warnings
        warnings = [w for w in warnings if not w.startswith("EVM_NO_PIDFD is set")]
    assert not warnings, warnings

    assert len(spawned) == children == len(set(spawned))
    # every child reported exactly once, with its real status
    assert sorted(int(p) for p, _, _ in exits) == sorted(spawned), out
    assert all(code == "0" and sig == "0" for _, code, sig in exits), exits
    # every orphan exactly once, none of them one of ours
    opids = [int(p) for p, _ in orphaned]
    assert len(opids) == children * orphans, f"{len(opids)} orphans reported"
    assert len(set(opids)) == len(opids), "an orphan was reported twice"
    assert not set(opids) & set(spawned)
    assert all(code == "0" for _, code in orphaned)
    done = re.search(r"^done exits (\d+) orphans (\d+) children-left (\d+) zombies (\d+)$", out, re.M)
    assert done, out
    assert done.groups() == (str(children), str(children * orphans), "0", "0"), done.group(0)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("pid1", [True, False], ids=["pid1", "subreaper"])
def test_reaper_reports_children_and_orphans(procs, reaper, pid1, mode):
    out = run_reaper(procs, reaper, 3, 5, pid1, mode)
    check(out, 3, 5, pid1, mode)


@pytest.mark.parametrize("mode", ["direct", "helper"])
def test_reaper_orphan_storm_as_pid1(procs, reaper, mode):
    """Many orphans exiting around the same instant as PID 1 (fewer under ASan)."""
    children, orphans = (10, 20) if SAN else (20, 50)
    out = run_reaper(procs, reaper, children, orphans, True, mode)
    check(out, children, orphans, True, mode)

