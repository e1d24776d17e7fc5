"""track = main | tree and pidfile (issue 14.3, systemd's Type=forking): a
daemon that forks and whose first process exits 0 stays supervised. With a
cgroup (track = tree, the default) the service is running while its cgroup
holds processes and is restarted by policy once it is empty; a pidfile names
the new main process (its pid in status, its exit the service's), taken only
from the service's own cgroup (or, without cgroups, its session). Every
process a test starts is gone when it ends."""
import os
import signal
import threading

import pytest

from conftest import wait_for
from daemon_util import Daemon, alive, hand_over, ini
from test_cgroup import HOME, WHY, base_of, procs_in

needs_cgroup = pytest.mark.skipif(HOME is None, reason=f"needs a writable cgroup v2: {WHY}")


def pid_in(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return 0


def forking(procs, tmp_path, cgroup=None, **keys):
    """A daemon with one service, fork, whose first process daemonizes (the child
    appends its pid to tmp_path/pids, then pauses), with keys added to its section;
    cgroup: the daemon's cgroup key, if given."""
    evmon = {"start_secs": 0, "stop_timeout": 2, **({"cgroup": cgroup} if cgroup else {})}
    command = f"HELPER daemonize pidlog {tmp_path / 'pids'} pause"
    return Daemon(procs, tmp_path, ini(evmon, fork={"command": command, **keys}))


def dies_and_restarts(pids, cg, child):
    """child (the tree's only process) killed: restart = always starts one fresh
    tree, whose child's pid is returned once it is alone in the cgroup."""
    os.kill(child, signal.SIGKILL)
    wait_for(lambda: len(pids.read_text().split()) == 2, what="the restart's child")
    second = int(pids.read_text().split()[1])
    wait_for(lambda: procs_in(cg) == [second], what="only the second child in the cgroup")
    return second


def stop_leaves_nothing(d, cg, last):
    """ctl stop fork: stopped, its cgroup empty, last dead; then the daemon stops clean."""
    r = d.ctl("stop", "fork")
    assert r.returncode == 0, r.stderr
    assert d.status("fork")["fork"]["state"] == "stopped"
    assert procs_in(cg) == []
    assert not alive(last)
    d.stop()


@needs_cgroup
def test_forking_daemon_runs_while_its_tree_lives(procs, tmp_path):
    """The first process exits 0, its child lives on: running (no main pid),
    not exited; the child's death empties the cgroup and restart = always
    starts one fresh tree (never two side by side); a stop leaves nothing."""
    d = forking(procs, tmp_path, restart="always", backoff_initial=0)
    cg = os.path.join(base_of(d), "fork.service")
    pids = tmp_path / "pids"
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 1, what="the daemon's child")
    child = int(pids.read_text().split()[0])
    wait_for(lambda: procs_in(cg) == [child], what="only the child left in the cgroup")
    # out of the cgroup as it exits: the daemon may not have handled that exit yet
    wait_for(lambda: "runs on while its cgroup has processes" in d.log(), what="the first exit handled")
    s = d.status("fork")["fork"]
    assert s["state"] == "running", s
    assert not s.get("pid"), s
    assert "runs on while its cgroup has processes" in d.log()
    second = dies_and_restarts(pids, cg, child)
    assert not alive(child)
    assert d.status("fork")["fork"]["state"] == "running"
    stop_leaves_nothing(d, cg, second)


def record_says_tree(d):
    lines = open(d.sock + ".state").read().splitlines()
    return (f"daemon {d.p.pid} " in "\n".join(lines) and
            any(line.startswith("service fork ") and "tree" in line.split() for line in lines))


@needs_cgroup
@pytest.mark.parametrize("end", ["death", "stop"])
@pytest.mark.parametrize("how", ["reexec", "crash"])
def test_forking_daemons_tree_taken_over(procs, tmp_path, how, end):
    """Its first process gone, its child running on in the cgroup: a re-exec, or
    a daemon started after a crash, takes the cgroup over (running, no main pid),
    twice in a row: the child is neither killed nor joined by a second copy; its
    death is then the service's end (restart = always: one fresh tree), and a
    stop ends it."""
    d = forking(procs, tmp_path, restart="always", backoff_initial=0)
    cg = os.path.join(base_of(d), "fork.service")
    pids = tmp_path / "pids"
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 1, what="the daemon's child")
    child = int(pids.read_text().split()[0])
    wait_for(lambda: "runs on while its cgroup has processes" in d.log(), what="the first exit handled")
    for _ in range(2):
        # this daemon's record says so before a crash (a re-exec writes its own)
        wait_for(lambda: record_says_tree(d), what="the record's tree word")
        taken = d.log().count("its cgroup's processes taken over")
        hand_over(d, how)
        if how == "crash":
            wait_for(lambda: d.log().count("its cgroup's processes taken over") > taken,
                     what="the takeover")
        s = d.status("fork")["fork"]
        assert s["state"] == "running" and not s.get("pid"), s
        assert "cannot take over" not in d.log()
        assert alive(child)
        assert procs_in(cg) == [child]
        assert pids.read_text().split() == [str(child)]
    stop_leaves_nothing(d, cg, dies_and_restarts(pids, cg, child) if end == "death" else child)


@needs_cgroup
def test_track_main_ends_with_the_first_process(procs, tmp_path):
    """track = main: the first process's exit is the service's (exited), what
    it left in the cgroup is ended by a stop."""
    d = forking(procs, tmp_path, restart="never", track="main")
    cg = os.path.join(base_of(d), "fork.service")
    d.wait_state("fork", "exited")
    pids = tmp_path / "pids"
    wait_for(lambda: pids.exists() and pids.read_text().strip(), what="the child's pid")
    child = int(pids.read_text().split()[0])
    assert procs_in(cg) == [child]
    r = d.ctl("stop", "fork")
    assert r.returncode == 0, r.stderr
    assert procs_in(cg) == []
    assert not alive(child)
    d.stop()


PIDFILE = """
[evmon]
start_secs = 0
stop_timeout = 2
CGROUP
[service:fork]
command = sh -c 'rm -f PIDFILE; exec HELPER daemonize pidlog PIDFILE pause'
pidfile = PIDFILE
restart = always
backoff_initial = 0
"""


@pytest.mark.parametrize("cgroup", [pytest.param("yes", marks=needs_cgroup), "no"])
def test_pidfile_names_the_main_process(procs, tmp_path, cgroup):
    """The pid in the pidfile is the main process: status shows it, its death
    is the service's exit (restarted by policy), and a stop ends it. Without
    cgroups it is taken from the service's session."""
    pidfile = tmp_path / "fork.pid"
    d = Daemon(procs, tmp_path, PIDFILE.replace("PIDFILE", str(pidfile))
               .replace("CGROUP", f"cgroup = {cgroup}"))
    first = wait_for(lambda: pid_in(pidfile), what="the pidfile")
    wait_for(lambda: d.status("fork")["fork"].get("pid") == first, what="the pidfile's pid as main")
    assert d.status("fork")["fork"]["state"] == "running"
    assert f"main process is now pid {first}" in d.log()
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: pid_in(pidfile) not in (0, first) and
                      d.status("fork")["fork"].get("pid") == pid_in(pidfile) and pid_in(pidfile),
                      what="the restart's pidfile pid as main")
    assert not alive(first)
    r = d.ctl("stop", "fork")
    assert r.returncode == 0, r.stderr
    assert d.status("fork")["fork"]["state"] == "stopped"
    assert not alive(second)
    d.stop()


@pytest.mark.parametrize("cgroup", [pytest.param("yes", marks=needs_cgroup), "no"])
def test_pidfile_naming_a_foreign_pid_is_refused(procs, tmp_path, cgroup):
    """A pidfile naming a process that is not the service's (here the test's
    own sleep) is refused: never shown as the service's pid, never signalled,
    alive after the service's stop."""
    foreign = procs.spawn(["sleep", "400301"])
    pidfile = tmp_path / "fork.pid"
    pidfile.write_text(f"{foreign.pid}\n")
    d = forking(procs, tmp_path, cgroup=cgroup, pidfile=pidfile, restart="never")
    wait_for(lambda: f"pid {foreign.pid} is not the service's: refused" in d.log(),
             what="the refusal")
    assert d.status("fork")["fork"].get("pid") != foreign.pid
    pids = tmp_path / "pids"  # the child's pid, written once it runs as an orphan
    wait_for(lambda: pids.exists() and pids.read_text().split(), what="the daemon's child")
    child = int(pids.read_text().split()[0])
    d.ctl("stop", "fork")
    d.wait_state("fork", "stopped")
    wait_for(lambda: not alive(child), what="the service's own child gone")
    assert foreign.poll() is None, "the foreign process was signalled"
    d.stop()
    assert foreign.poll() is None


def test_a_pidfile_that_is_no_regular_file_is_not_opened(procs, tmp_path):
    """A service may write where its pidfile is, so the name may be a symlink to a device,
    whose open alone acts (a watchdog's arms it). It was opened, then found not a regular
    file; now it is looked at first (O_PATH) and never opened. Seen here with a FIFO: a
    writer waiting for a reader went on when the daemon opened it."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    pidfile = tmp_path / "fork.pid"
    pidfile.symlink_to(fifo)
    opened = []
    t = threading.Thread(target=lambda: opened.append(os.open(fifo, os.O_WRONLY)), daemon=True)
    t.start()
    d = forking(procs, tmp_path, cgroup="no", pidfile=pidfile, restart="never")
    wait_for(lambda: f"pidfile {pidfile}: not a regular file: not opened" in d.log() or opened,
             what="the pidfile tried")
    d.ctl("stop", "fork")
    d.wait_state("fork", "stopped")
    assert not opened, "the daemon opened the FIFO the pidfile links to"
    os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # the writer's open returns
    t.join(10)
    os.close(opened[0])
    d.stop()


@needs_cgroup
def test_a_start_after_an_exit_that_left_processes_stops_them_first(procs, tmp_path):
    """track = main, restart = never: the first process daemonizes and exits 0 (exited,
    its child left in the cgroup, as documented: ended by the next stop). `ctl start`
    then stops that child first and starts the new run once the cgroup is empty: one
    tree at a time. The new run started beside the old child."""
    d = forking(procs, tmp_path, cgroup="yes", track="main", restart="never")
    cg = os.path.join(base_of(d), "fork.service")
    pids = tmp_path / "pids"
    wait_for(lambda: d.status("fork")["fork"]["state"] == "exited", what="exited")
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 1, what="the child")
    first = int(pids.read_text().split()[0])
    assert procs_in(cg) == [first]
    r = d.ctl("start", "fork")
    assert r.returncode == 0, r
    wait_for(lambda: len(pids.read_text().split()) == 2, what="the new run's child")
    assert not alive(first), "the old child still runs beside the new run"
    second = int(pids.read_text().split()[1])
    wait_for(lambda: procs_in(cg) == [second], what="only the new child in the cgroup")
    d.stop()


@needs_cgroup
def test_a_hold_before_giving_up_is_not_said_to_be_a_restart(procs, tmp_path):
    """The last failed start allowed (start_retries = 0) leaves a child in the cgroup:
    the exit waits for it to be stopped, and the log says the service is given up on
    then, not "stopped before the restart" (no restart came: fatal)."""
    command = "sh -c 'sleep 400321 & sleep 0.2; exit 3'"
    d = Daemon(procs, tmp_path, ini({"cgroup": "yes"},
                                    held={"command": command, "stop_timeout": 20,
                                          "start_secs": 5, "start_retries": 0}))
    d.wait_state("held", "fatal")
    log = d.log()
    assert "what it left in its cgroup is stopped before it is given up on" in log, log
    assert "before the restart" not in log, log
    d.stop()


@needs_cgroup
def test_a_stop_during_a_restarts_wait_for_the_cgroup_keeps_its_deadline(procs, tmp_path):
    """The main process fails (exit 3) leaving a child that ignores SIGTERM: the restart
    waits for the cgroup to empty (the child gets SIGTERM, SIGKILL at stop_timeout), and
    says so. A `ctl stop` meanwhile keeps that SIGKILL's deadline (the record's deadline=
    is not moved; it was: stop_timeout again from the stop)."""
    import time
    from daemon_util import record_text
    command = "sh -c 'trap \"\" TERM; (trap \"\" TERM; exec sleep 400311) & sleep 0.3; exit 3'"
    d = Daemon(procs, tmp_path, ini({"cgroup": "yes", "start_secs": 0},
                                    held={"command": command, "stop_timeout": 20}))
    wait_for(lambda: "what it left in its cgroup is stopped before the restart" in d.log(),
             timeout=30, what="the hold, said")
    time.sleep(4)
    t_stop = time.clock_gettime(time.CLOCK_BOOTTIME) * 1000
    assert d.ctl("-t", "0", "stop", "held").returncode == 0
    words = wait_for(lambda: [w for w in record_text(d).split() if w.startswith("deadline=")],
                     what="the stop's deadline in the record")
    deadline = int(words[0].split("=")[1])
    assert deadline < t_stop + 18000, (deadline - t_stop, record_text(d))
    cg = os.path.join(base_of(d), "held.service")
    for pid in procs_in(cg):
        os.kill(pid, signal.SIGKILL)
    d.wait_state("held", "stopped", timeout=30)
    d.stop()


@needs_cgroup
def test_a_dependents_start_waits_for_a_requirement_stopping_leftovers_first(procs, tmp_path):
    """db (track = main, restart = never) failed and left a process in its cgroup; app
    requires it. `ctl start app` starts db again, which stops the leftover first
    (stopping, stopped, then starting): app waits through that and starts (it was
    blocked: "requires db, which is stopped")."""
    flag = tmp_path / "again"
    db = (f"sh -c 'sleep 400331 & if [ -e {flag} ]; then exec sleep 400332; fi; "
          f"touch {flag}; exit 1'")
    d = Daemon(procs, tmp_path, ini({"cgroup": "yes", "start_secs": 0},
                                    db={"command": db, "track": "main", "restart": "never"},
                                    app={"command": "HELPER pause", "requires": "db",
                                         "autostart": "false"}))
    wait_for(lambda: d.status("db")["db"]["state"] == "exited", what="db exited")
    r = d.ctl("start", "app")
    assert r.returncode == 0, (r, d.status())
    st = d.status()
    assert st["app"]["state"] == "running" and st["db"]["state"] == "running", st
    d.stop()
