"""sd_notify MAINPID= (issue 16.1): a notify service names another process
of its own as its main process; the daemon takes it through
evm_service_set_main (a process of the service's cgroup, or without cgroups
of its session, pinned by a pidfd), so status, stops and the exit are the
new main's. The classic forking daemon sends MAINPID= of its child and exits
at once: the daemon reads its notify socket before it applies that exit, so
the service runs on instead of being reported exited, even when the exit is
seen first. A MAINPID= naming a process not the service's is refused (and
never signalled); a message from a process not in the service is ignored.

track = main everywhere: with a cgroup and track = tree the first exit would
be held while the cgroup lives anyway, which would hide a lost MAINPID=."""
import os
import re
import signal
import socket

import pytest

from conftest import proc_state, wait_for
from daemon_util import Daemon, alive

CGROUPS = ["auto", "no"]

FORKING = """
[evmon]
stop_timeout = 5
cgroup = CGROUP

[service:fork]
command = HELPER notify-fork TRIGGER "READY=1" pidlog PIDS pause
ready = notify
track = main
restart = never
"""


def forking(procs, tmp_path, cgroup, trigger="-"):
    pids = tmp_path / "pids"
    conf = (FORKING.replace("CGROUP", cgroup).replace("TRIGGER", str(trigger))
            .replace("PIDS", str(pids)))
    return Daemon(procs, tmp_path, conf), pids


def child_of(pids):
    return int(wait_for(lambda: pids.exists() and pids.read_text().strip(), what="the child's pid"))


def handed_over(d, child):
    """The service runs under child: ready, its pid, no exit of the first process."""
    r = d.ctl("wait", "fork", "--for", "ready")
    assert r.returncode == 0, (r, d.log())
    st = wait_for(lambda: (lambda s: s.get("pid") == child and s)(d.status("fork")["fork"]),
                  what="the child as the main process")
    assert st["state"] == "running", st
    assert f"main process is now pid {child}" in d.log()
    return st


def stop_kills_the_new_main(d, child):
    r = d.ctl("stop", "fork")
    assert r.returncode == 0, r
    st = d.status("fork")["fork"]
    assert st["state"] == "stopped", st
    assert not alive(child)


@pytest.mark.parametrize("cgroup", CGROUPS)
def test_forking_daemon_runs_on_under_the_pid_it_names(procs, tmp_path, cgroup):
    d, pids = forking(procs, tmp_path, cgroup)
    child = child_of(pids)
    handed_over(d, child)
    # ctl signal reaches the new main, not the (gone) first process
    r = d.ctl("signal", "fork", "STOP")
    assert r.returncode == 0, r
    wait_for(lambda: proc_state(child) == "T", what="the child stopped by ctl signal")
    r = d.ctl("signal", "fork", "CONT")
    assert r.returncode == 0, r
    stop_kills_the_new_main(d, child)
    d.stop()


@pytest.mark.parametrize("cgroup", CGROUPS)
def test_the_exit_seen_before_the_message(procs, tmp_path, cgroup):
    """Forces the race. The daemon is a subreaper (--reaper; cgroup = no is
    one anyway), and the SIGCHLD of an orphan it adopted makes it reap every
    zombie it has (waitid P_ALL) before anything else it has to read. It is
    stopped (SIGSTOP) while such an orphan dies, then the forking daemon
    sends MAINPID= + READY=1 and exits (a zombie of the stopped daemon).
    Woken, the daemon reaps both before it reads its notify socket: only the
    drain before an exit is applied keeps the service running."""
    trigger = tmp_path / "go"
    pids, opids = tmp_path / "pids", tmp_path / "orphan"
    conf = (FORKING.replace("CGROUP", cgroup).replace("TRIGGER", str(trigger))
            .replace("PIDS", str(pids)) + ORPHAN.replace("PIDS", str(opids)))
    d = Daemon(procs, tmp_path, conf, args=["--reaper"])
    child, orphan = child_of(pids), child_of(opids)
    d.wait_state("orphan", "exited")
    st = d.status("fork")["fork"]
    assert st["state"] == "starting", st
    first = st["pid"]
    d.p.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: proc_state(d.p.pid) == "T", what="the daemon stopped")
        os.kill(orphan, signal.SIGKILL)
        wait_for(lambda: proc_state(orphan) == "Z", what="the orphan a zombie of the daemon")
        trigger.write_text("")
        # the first process sent its message and exited; the stopped daemon cannot reap it
        wait_for(lambda: proc_state(first) == "Z", what="the first process a zombie")
    finally:
        d.p.send_signal(signal.SIGCONT)
    handed_over(d, child)
    stop_kills_the_new_main(d, child)
    d.stop()


# its first process exits at once, leaving an orphan the daemon adopts (subreaper)
ORPHAN = """
[service:orphan]
command = HELPER daemonize pidlog PIDS pause
restart = never
track = main
kill_mode = process
start_secs = 0
"""


HEALTHY = """
[evmon]
stop_timeout = 5
cgroup = CGROUP

[service:fork]
command = HELPER notify READY=1 notify-fork TRIGGER "" pidlog PIDS pause
ready = notify
track = main
restart = never
health_cmd = /bin/true
health_start_interval = 50ms
health_start_period = 1h
health_interval = 1h
"""

HEALTH = re.compile(r"evmon daemon: service fork: health (?:(\w+) -> )?(\w+)")


@pytest.mark.parametrize("cgroup", CGROUPS)
def test_a_new_main_keeps_its_health(procs, tmp_path, cgroup):
    """A healthy service whose main process changes later (MAINPID=, same
    run) stays healthy: its health is not started over as for a new run."""
    trigger, pids = tmp_path / "go", tmp_path / "pids"
    d = Daemon(procs, tmp_path, HEALTHY.replace("CGROUP", cgroup)
               .replace("TRIGGER", str(trigger)).replace("PIDS", str(pids)))
    child = child_of(pids)
    wait_for(lambda: d.status("fork")["fork"].get("health") == "healthy", what="healthy")
    trigger.write_text("")
    handed_over(d, child)
    st = d.status("fork")["fork"]
    assert st["health"] == "healthy", st
    said = [m.groups() for m in map(HEALTH.search, d.log().splitlines()) if m]
    assert said == [(None, "starting"), ("starting", "healthy")], said
    stop_kills_the_new_main(d, child)
    d.stop()


STAYS = """
[evmon]
stop_timeout = 1
cgroup = CGROUP

[service:fork]
command = HELPER ignore 15 notify-fork-stays READY=1 pidlog PIDS pause
ready = notify
track = main
restart = never
"""

WAS = re.compile(r"main process is now pid (\d+) \(was (\d+)\)")


def stays(procs, tmp_path, cgroup):
    """A service whose first process hands over to its child with MAINPID=
    and stays, both ignoring SIGTERM: (the daemon, the old main, the child)."""
    pids = tmp_path / "pids"
    d = Daemon(procs, tmp_path, STAYS.replace("CGROUP", cgroup).replace("PIDS", str(pids)))
    child = child_of(pids)
    handed_over(d, child)
    m = WAS.search(d.log())
    assert m and int(m.group(1)) == child, d.log()
    first = int(m.group(2))
    assert alive(first)
    return d, first, child


@pytest.mark.parametrize("cgroup", CGROUPS)
def test_a_stop_ends_the_old_main_too(procs, tmp_path, cgroup):
    """The old main process that stays after MAINPID= is one more process of
    the service: a stop ends it with the rest (at stop_timeout: SIGTERM is
    ignored). Without cgroups it leads the service's session, and the
    session's SIGKILL sweep skipped it (and so the session) as if its pid
    had been reused."""
    d, first, child = stays(procs, tmp_path, cgroup)
    r = d.ctl("stop", "fork")
    assert r.returncode == 0, r
    assert d.status("fork")["fork"]["state"] == "stopped"
    wait_for(lambda: not alive(first) and not alive(child), what="the old main and the child gone")
    d.stop()


@pytest.mark.parametrize("cgroup", CGROUPS)
def test_a_reexec_keeps_the_old_main(procs, tmp_path, cgroup):
    """After `ctl reexec` the old main (a child of the daemon that no record
    line names) is a process of the adopted service's tree, not a stray of
    the old image: it was SIGKILLed with its process group, the new main in
    it, and the service exited. It runs on, and the stop still ends it."""
    d, first, child = stays(procs, tmp_path, cgroup)
    r = d.ctl("reexec")
    assert r.returncode == 0, r.stdout + r.stderr
    st = d.status("fork")["fork"]
    assert st["state"] == "running" and st["pid"] == child, (st, d.log())
    assert alive(first) and alive(child), d.log()
    assert "no record names" not in d.log()
    assert "1 processes of the previous image kept (a main process that handed over" in d.log()
    r = d.ctl("stop", "fork")
    assert r.returncode == 0, r
    wait_for(lambda: not alive(first) and not alive(child), what="the old main and the child gone")
    d.stop()


FOREIGN = """
[evmon]
stop_timeout = 5
cgroup = CGROUP

[service:liar]
command = HELPER notify "MAINPID=VICTIM\\nREADY=1" pause
ready = notify
restart = never
"""


@pytest.mark.parametrize("cgroup", CGROUPS)
def test_a_mainpid_not_the_services_is_refused(procs, tmp_path, cgroup):
    """MAINPID= of a process outside the service (one this test started) is
    refused and said; the service keeps its own process, and stopping it
    never touches the named one."""
    victim = procs.spawn(["sleep", "600"])
    d = Daemon(procs, tmp_path, FOREIGN.replace("CGROUP", cgroup)
               .replace("VICTIM", str(victim.pid)))
    r = d.ctl("wait", "liar", "--for", "ready")
    assert r.returncode == 0, r
    wait_for(lambda: f"MAINPID={victim.pid} ignored: not a process of this service" in d.log(),
             what="the refusal")
    st = d.status("liar")["liar"]
    assert st["pid"] != victim.pid, st
    own = st["pid"]
    r = d.ctl("stop", "liar")
    assert r.returncode == 0, r
    assert not alive(own)
    assert alive(victim.pid) and victim.poll() is None
    d.stop()
    victim.kill()
    victim.wait()


@pytest.mark.parametrize("value,why", [("1", "pid 1 is never a service's"),
                                       ("0", "not a pid"), ("1x", "not a pid")])
def test_a_mainpid_of_pid_1_or_no_pid_is_refused_as_such(procs, tmp_path, value, why):
    """MAINPID=1 is a pid, refused on purpose: said so, not "not a pid"."""
    d = Daemon(procs, tmp_path, FOREIGN.replace("CGROUP", "no").replace("VICTIM", value))
    r = d.ctl("wait", "liar", "--for", "ready")
    assert r.returncode == 0, r
    wait_for(lambda: f"MAINPID={value} ignored: {why}\n" in d.log(), what="the refusal")
    d.stop()


@pytest.mark.parametrize("cgroup", CGROUPS)
def test_a_mainpid_from_outside_the_service_is_ignored(procs, tmp_path, cgroup):
    """A process not in the service (this test) sends MAINPID= of the
    service's own child: ignored, whatever it names; the service keeps the
    main process it has."""
    trigger = tmp_path / "never"
    d, pids = forking(procs, tmp_path, cgroup, trigger)
    child = child_of(pids)
    first = d.status("fork")["fork"]["pid"]
    sock = notify_socket(first)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b"MAINPID=%d\nREADY=1\n" % child, "\0" + sock[1:] if sock[0] == "@" else sock)
    s.close()
    wait_for(lambda: f"message from pid {os.getpid()} ignored: not a process of a service"
             in d.log(), what="the stranger's message ignored")
    st = d.status("fork")["fork"]
    assert st["pid"] == first and st["state"] == "starting", st
    assert "main process is now" not in d.log()
    r = d.ctl("stop", "fork")
    assert r.returncode == 0, r
    assert not alive(first)
    # without a cgroup the stop is over at the main's exit: the child got the
    # stop signal with it and the session's SIGKILL sweep at the end of that
    # loop iteration, but may still be dying when the answer comes
    wait_for(lambda: not alive(child), what="the child gone")
    d.stop()


def notify_socket(pid):
    """$NOTIFY_SOCKET of process pid, from its environment."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
    return env[b"NOTIFY_SOCKET"].decode()



# the first process stays after MAINPID=; killed, its child is re-parented to the daemon
CLEAN = """
[evmon]
stop_timeout = 5
cgroup = CGROUP

[service:fork]
command = HELPER notify-fork-stays "READY=1" pidlog PIDS waitfile DONE exit 0
ready = notify
track = main
restart = on-failure
"""


def ppid(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(f.read().split("PPid:")[1].split()[0])


@pytest.mark.parametrize("cgroup", CGROUPS)
def test_a_new_mains_clean_exit_is_clean(procs, tmp_path, cgroup):
    """The new main, re-parented to the daemon (a subreaper) when the first
    process dies, exits 0: the daemon reaps it with its code, which is the
    service's (exited, not restarted), not an orphan's exit and an unknown
    status for the service."""
    pids, done = tmp_path / "pids", tmp_path / "done"
    conf = (CLEAN.replace("CGROUP", cgroup).replace("PIDS", str(pids))
            .replace("DONE", str(done)))
    d = Daemon(procs, tmp_path, conf, args=["--reaper"])
    child = child_of(pids)
    handed_over(d, child)
    os.kill(ppid(child), signal.SIGKILL)
    wait_for(lambda: ppid(child) == d.p.pid, what="the child re-parented to the daemon")
    done.write_text("")
    st = d.wait_state("fork", "exited")
    assert st["last_exit"]["pid"] == child and st["last_exit"]["code"] == 0, st
    assert "status_unknown" not in st["last_exit"], st
    assert st["restarts"] == 0 and st["failures"] == 0, st
    d.stop()


GROUPED = r"""
import os, socket, sys, time
d = sys.argv[1]
c = os.fork()
if c == 0:  # the new main: a group of its own, a child in it, then its exit when told
    os.setpgid(0, 0)
    g = os.fork()
    if g == 0:
        time.sleep(60)
        os._exit(0)
    with open(f"{d}/g.tmp", "w") as f:
        f.write(str(g))
    os.rename(f"{d}/g.tmp", f"{d}/g.pid")
    while not os.path.exists(f"{d}/go"):
        time.sleep(0.01)
    os._exit(3)
while not os.path.exists(f"{d}/g.pid"):  # its group made (a group leader when taken)
    time.sleep(0.01)
addr = os.environ["NOTIFY_SOCKET"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(f"MAINPID={c}\nREADY=1".encode(), "\0" + addr[1:] if addr[0] == "@" else addr)
while True:  # never reaps it: its exit reaches the daemon by its pidfd, a zombie's
    time.sleep(60)
"""


def test_a_new_mains_group_is_killed_at_its_exit_while_a_zombie(procs, tmp_path):
    """kill_mode = group, cgroup = no: the main process named by MAINPID= is not the
    daemon's child, and its parent never reaps it: its exit comes by its pidfd while it is
    a zombie, still holding its number. The stragglers of its group are killed then (the
    check that the number is not another's took the zombie for another process)."""
    prog = tmp_path / "grouped.py"
    prog.write_text(GROUPED)
    d = Daemon(procs, tmp_path, f"""
[evmon]
stop_timeout = 5
cgroup = no
[service:g]
command = /usr/bin/python3 {prog} {tmp_path}
ready = notify
kill_mode = group
track = main
restart = never
""")
    assert d.ctl("wait", "g", "--for", "ready").returncode == 0
    straggler = int(wait_for(lambda: (tmp_path / "g.pid").exists() and (tmp_path / "g.pid").read_text(),
                             what="the group's child"))
    (tmp_path / "go").write_text("")
    d.wait_state("g", "exited")
    wait_for(lambda: not alive(straggler), what="the group's straggler killed")
    d.stop()
