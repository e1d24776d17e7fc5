"""`evmon daemon` without cgroups (cgroup = no here; auto on a host without a
writable cgroup v2 does the same): the daemon is a child subreaper, each
service leads its own session, and kill_mode = tree (the default) means the
session: a stop signals its members and their descendants wherever they were
re-parented, SIGKILL at stop_timeout (and when the main process exits) to
all of them, a fork bomb included. What it cannot catch: a process that
called setsid and lost its parent before the stop looked (the daemonizing
sleep below); that one ends with the daemon. Runs on any machine."""
import os
import re

import pytest

from conftest import cmdline, wait_for
from daemon_util import SLOW, Daemon, alive

TREES = """
[evmon]
cgroup = no
start_secs = 0
stop_timeout = 2
[service:bg]
command = sh -c 'sleep 400201 & sleep 400202 & wait'
[service:escapee]
command = sh -c 'setsid sleep 400203 & wait'
[service:forker]
command = sh -c "trap '' TERM; while :; do sleep 400204 & sleep 0.05; done"
[service:stubborn]
command = sh -c "trap '' TERM; sh -c \\"trap '' TERM; sleep 400206\\" & sleep 400207 & wait"
[service:bomb]
command = sh -c "trap '' TERM; for i in 1 2 3 4 5 6 7 8; do sh -c 'for j in 1 2 3 4 5 6 7 8 9 10; do sleep 400208 & done; wait' & done; wait"
"""


def stat(pid):
    """(ppid, session) of pid, or None once it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[3]))


def live():
    """pid -> (ppid, sid) of every live process."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = stat(int(d))
            if st:
                out[int(d)] = st
    return out


def tree_of(main):
    """The live processes of main's session and their descendants (what a stop must end)."""
    procs = live()
    found = {p for p, (_, sid) in procs.items() if sid == main}
    more = True
    while more:
        new = {p for p, (ppid, _) in procs.items() if ppid in found and p not in found}
        found |= new
        more = bool(new)
    return found


def with_cmd(prefix):
    return [p for p in live() if cmdline(p).startswith(prefix)]


WANT = {"bg": 3, "escapee": 2, "forker": 3, "stubborn": 4, "bomb": 89}


@pytest.mark.parametrize("name", sorted(WANT))
def test_stop_ends_the_whole_session(procs, tmp_path, name):
    """stop_signal to every process of the session and its descendants
    (escapee's setsid sleep has a live parent in it), SIGKILL when the main
    process exits or at stop_timeout (stubborn, forker and the bomb ignore
    TERM): none is left once the stop is over."""
    d = Daemon(procs, tmp_path, TREES)
    d.wait_state(name, "running")
    main = d.status(name)[name]["pid"]
    wait_for(lambda: len(tree_of(main)) >= WANT[name], what=f"{name}'s processes")
    before = tree_of(main)
    r = d.ctl("stop", name)
    assert r.returncode == 0, r.stderr
    assert d.status(name)[name]["state"] == "stopped"
    # SIGKILL was sent before `stopped`, to those seen at the start and to any born
    # since (forker's last sleeps): the dying may take a moment on a loaded machine;
    # one that was missed keeps running and fails the wait
    wait_for(lambda: not [p for p in before if alive(p)], what=f"{name}'s processes to die")
    wait_for(lambda: not tree_of(main), what=f"{name}'s later processes to die")
    d.stop()


def daemonizes(tmp_path):
    """A service whose child calls setsid and loses its parent (it has, once
    the file is there and its parent is the daemon), the main process staying."""
    flag = tmp_path / "setsid-done"
    return TREES + f"""
[service:daemonizes]
command = sh -c '(setsid sh -c "touch {flag}; exec sleep 400205" &); while [ ! -e {flag} ]; do sleep 0.05; done; exec sleep 400209'
restart = never
"""


def test_the_daemon_is_their_subreaper(procs, tmp_path):
    """What a service leaves re-parents to the daemon, not to init: the
    daemonized sleep's parent is the daemon."""
    d = Daemon(procs, tmp_path, daemonizes(tmp_path))
    wait_for(lambda: with_cmd("sleep 400205"), what="the daemonized sleep")
    (sleep,) = with_cmd("sleep 400205")
    wait_for(lambda: stat(sleep)[0] == d.p.pid, what="the sleep re-parented to the daemon")
    d.stop()
    assert not alive(sleep)


def test_setsid_without_parent_escapes_the_stop_not_the_daemon(procs, tmp_path):
    """The one thing the session cannot catch: setsid, then its parent exited
    before the stop looked. It survives the stop of its service, and the
    daemon's exit ends it (a subreaper's descendants)."""
    d = Daemon(procs, tmp_path, daemonizes(tmp_path))
    wait_for(lambda: with_cmd("sleep 400205") and with_cmd("sleep 400209"), what="both sleeps")
    (sleep,) = with_cmd("sleep 400205")
    wait_for(lambda: stat(sleep)[0] == d.p.pid, what="the sleep re-parented to the daemon")
    main = d.status("daemonizes")["daemonizes"]["pid"]
    assert d.ctl("stop", "daemonizes").returncode == 0
    assert not alive(main)
    assert alive(sleep)
    everything = set()
    for name in WANT:
        d.wait_state(name, "running")
        everything |= tree_of(d.status(name)[name]["pid"])
    d.stop()
    assert not alive(sleep)
    # the sleep, and any process of another service's stop still dying then
    assert re.search(r"killed \d+ process(es)? the services left behind", d.log()), d.log()
    assert not [p for p in everything if alive(p)]


def test_restart_always_leaves_no_copies(procs, tmp_path):
    """The main process exits while its children live (restart = always):
    the session's rest gets SIGKILL at the exit, so the restarts do not pile
    up copies of the children."""
    d = Daemon(procs, tmp_path, """
[evmon]
cgroup = no
[service:leaky]
command = sh -c 'sleep 400211 & sleep 400212 & sleep 0.2'
start_secs = 0
restart = always
backoff_initial = 0
""")
    wait_for(lambda: d.status("leaky")["leaky"].get("restarts", 0) >= 5, what="5 restarts")
    # the run before's sleep, SIGKILLed at its main's exit, may not be gone yet right after
    # a restart; a pile-up never shrinks
    wait_for(lambda: len(with_cmd("sleep 400211")) <= 1, timeout=5 * SLOW, what="no pile-up")
    d.stop()
    assert not with_cmd("sleep 400211") and not with_cmd("sleep 400212")


@pytest.mark.parametrize("mode,left", [("process", ["sleep 400221", "sleep 400222"]),
                                       ("group", ["sleep 400222"]), ("tree", [])])
def test_kill_mode_without_cgroup(procs, tmp_path, mode, left):
    """process: the main process only; group: its process group (the setsid
    sleep stays); tree: the session and the descendants of its members (the
    setsid sleep's parent is one)."""
    d = Daemon(procs, tmp_path, f"""
[evmon]
cgroup = no
start_secs = 0
[service:s]
command = sh -c 'sleep 400221 & setsid sleep 400222 & wait'
kill_mode = {mode}
""")
    wait_for(lambda: with_cmd("sleep 400221") and with_cmd("sleep 400222"), what="both sleeps")
    main = d.status("s")["s"]["pid"]
    assert d.ctl("stop", "s").returncode == 0
    assert not alive(main)
    wait_for(lambda: sorted(cmdline(p) for p in with_cmd("sleep 40022")) == left,
             what=f"only {left} left")
    d.stop()
