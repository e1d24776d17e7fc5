"""`evmon daemon` when things go wrong around it (issue 18): a reload that
changes only policy keys, services whose environment is broken at start,
spawns that fail, a start with thousands of services, few descriptors."""
import os
import signal

import pytest

from conftest import EVMON, HELPER, children_of, requires_root, wait_for
from daemon_util import Daemon, LineReader, alive, ini
from reliability_util import ODD_UID, OpenDir, PrefixedDaemon, set_nproc

# ------------------------------------------------- reload: policy in place

POLICY_A = """
[evmon]
stop_timeout = 10s

[service:pol]
command = HELPER pause
start_secs = 0
restart = always

[service:dflt]
command = HELPER pause
start_secs = 0

[service:cmd]
command = HELPER pause
start_secs = 0
"""

POLICY_B = """
[evmon]
stop_timeout = 3s

[service:pol]
command = HELPER pause
start_secs = 0
restart = never
backoff_max = 5s
stop_signal = INT
autostart = false

[service:dflt]
command = HELPER pause
start_secs = 0

[service:cmd]
command = HELPER sleep 100000
start_secs = 0
"""


def test_reload_applies_policy_changes_in_place(procs, tmp_path):
    d = Daemon(procs, tmp_path, POLICY_A)
    for n in ("pol", "dflt", "cmd"):
        d.wait_state(n, "running")
    before = {n: s["pid"] for n, s in d.status().items()}
    s = d.connect()
    s.sendall(b'{"cmd":"events"}\n')
    rd = LineReader(s)
    assert rd.next() == {"ok": True, "events": True}

    d.write(POLICY_B)
    r = d.ctl("reload")
    assert r.returncode == 0, r.stderr
    # a policy key of the service, or a default of [evmon]: the process stays
    assert "updated: pol dflt" in r.stdout and "changed: cmd" in r.stdout, r.stdout
    ev = rd.next()
    while ev["event"] != "reload":
        assert ev.get("service") not in ("pol", "dflt"), f"touched by the reload: {ev}"
        ev = rd.next()
    assert (ev["updated"], ev["changed"], ev["unchanged"]) == (["pol", "dflt"], ["cmd"], 0), ev
    assert ", 2 updated (pol, dflt), 0 unchanged" in ev["message"], ev["message"]
    now = d.status()
    assert now["pol"]["pid"] == before["pol"] and now["pol"]["state"] == "running"
    assert now["dflt"]["pid"] == before["dflt"] and now["dflt"]["state"] == "running"
    # what is executed changed: a new process
    after = d.wait_state("cmd", "running")
    assert after["pid"] != before["cmd"]

    # the new policy is the one in force: restart = never, so a death is final
    os.kill(before["pol"], signal.SIGKILL)
    d.wait_state("pol", "exited")
    assert d.status("pol")["pol"]["restarts"] == 0
    # and stop_signal = INT (the helper's pause dies of it)
    assert d.ctl("start", "pol").returncode == 0
    pid = d.wait_state("pol", "running")["pid"]
    assert d.ctl("stop", "pol").returncode == 0
    st = d.wait_state("pol", "stopped")
    assert st["last_exit"]["signal_name"] == "INT", st
    assert not alive(pid)
    s.close()
    d.stop()


# ------------------------------------------- a start whose spawn fails


@requires_root("RLIMIT_NPROC of another uid")
def test_start_reports_a_failed_spawn_at_once(procs):
    """Forks fail with EAGAIN (RLIMIT_NPROC of the daemon's uid at 1): `ctl restart`
    and `ctl start` answer as soon as the first attempt failed, with the reason (the
    service stays in backoff, retried), not when the wait times out."""
    with OpenDir(owner=ODD_UID) as top:
        d = PrefixedDaemon(procs, top, """
[evmon]
start_secs = 0
backoff_initial = 20ms
backoff_max = 200ms
stop_timeout = 2

[service:web]
command = HELPER pause

[service:idle]
command = HELPER pause
autostart = false
""", prefix=["setpriv", f"--reuid={ODD_UID}", f"--regid={ODD_UID}", "--clear-groups"])
        pid = d.daemon_pid()
        d.wait_state("web", "running")
        set_nproc(pid, "1")
        # the wait would last an hour: only the failure can end it
        for cmd, name in (("restart", "web"), ("start", "idle")):
            r = d.ctl("-t", "3600", cmd, name)
            assert r.returncode == 1, (r.stdout, r.stderr)
            assert f"not running: {name} (backoff: fork: Resource temporarily unavailable)" \
                in r.stderr, r.stderr
            assert d.status(name)[name]["state"] == "backoff"
        set_nproc(pid, "hard")
        d.wait_state("web", "running")
        d.wait_state("idle", "running")
        d.stop()


# ------------------------------------- what the machine lacks at start

ENV_PROBLEMS = """
[evmon]
start_secs = 0
backoff_initial = 10ms
backoff_max = 20ms

[service:good]
command = HELPER pause

[service:noprog]
command = DIR/later/prog pause
start_retries = 2

[service:nouser]
command = HELPER pause
user = no-such-user-for-evmon
start_retries = 1

[service:nodir]
command = HELPER pause
directory = DIR/nowhere
start_retries = 1
"""


def test_environment_problems_do_not_stop_the_others(procs, tmp_path):
    """A missing program, an unknown user, a missing directory: the daemon starts,
    every other service runs, those end fatal with the reason (status, events, log)
    after their policy's retries; --check warns (exit 0), --strict refuses; a reload
    is not blocked by them; the program appearing and `ctl start` bring it up."""
    cfg = ENV_PROBLEMS.replace("DIR", str(tmp_path))
    d = Daemon(procs, tmp_path, cfg, start=False)
    r = procs.run([EVMON, "daemon", "--check",
                   "-c", d.cfg], timeout=20)
    assert r.returncode == 0, r.stderr
    assert "OK: 4 services" in r.stdout and "(see the warnings)" in r.stdout
    for line, msg in ((11, f"command: {tmp_path}/later/prog: No such file or directory"),
                      (16, "user: unknown user 'no-such-user-for-evmon'"),
                      (21, f"directory: {tmp_path}/nowhere: No such file or directory")):
        assert f"evmon daemon: warning: {d.cfg}:{line}: {msg} (the service starts in a failed " \
            "state" in r.stderr, (msg, r.stderr)
    strict = procs.run([EVMON, "daemon", "--check", "--strict", "-c", d.cfg],
                       timeout=20)
    assert strict.returncode == 1 and f"{d.cfg}: 3 errors (--strict)" in strict.stderr, strict

    d.start()
    d.wait_state("good", "running")
    fatal = {n: d.wait_state(n, "fatal") for n in ("noprog", "nouser", "nodir")}
    assert fatal["noprog"]["error"] == "exec: No such file or directory", fatal
    assert fatal["nouser"]["error"] == "user: unknown user 'no-such-user-for-evmon'", fatal
    assert fatal["nodir"]["error"].startswith("chdir: No such file or directory"), fatal
    assert fatal["noprog"]["failures"] == 3 and fatal["nouser"]["failures"] == 2
    log = d.log()
    assert "unknown user 'no-such-user-for-evmon'" in log and "gave up after" in log
    assert "warning:" in log and "not starting" not in log

    # a reload is not blocked by them (and does not restart them: the same definitions)
    d.write(cfg + "\n[service:more]\ncommand = HELPER pause\n")
    r = d.ctl("reload")
    assert r.returncode == 0 and "added: more" in r.stdout, (r.stdout, r.stderr)
    d.wait_state("more", "running")

    # a start of the one with no user fails saying so, as status does (it said "setup: No
    # such file or directory")
    r = d.ctl("start", "nouser")
    assert r.returncode != 0 and "user: unknown user 'no-such-user-for-evmon'" in r.stderr, r

    # the program appears: a start brings the service up
    (tmp_path / "later").mkdir()
    os.symlink(HELPER, tmp_path / "later" / "prog")
    r = d.ctl("start", "noprog")
    assert r.returncode == 0, r.stderr
    assert d.status("noprog")["noprog"]["state"] == "running"
    d.stop()


def test_strict_daemon_does_not_start(procs, tmp_path):
    d = Daemon(procs, tmp_path, ENV_PROBLEMS.replace("DIR", str(tmp_path)), start=False)
    r = procs.run([EVMON, "daemon", "--strict", "-c", d.cfg, "-S", d.sock],
                  timeout=20)
    assert r.returncode == 1 and "3 errors (--strict): not starting" in r.stderr, r.stderr
    assert not os.path.exists(d.sock)


def test_strict_reload_refuses_problems(procs, tmp_path):
    """--strict holds at a reload too: a file with a problem (a missing program, a check's
    missing program) is refused like a mistake, with its messages, and the running
    configuration is kept (it was applied, the warning only said)."""
    d = Daemon(procs, tmp_path, "[service:a]\ncommand = HELPER pause\nstart_secs = 0\n",
               args=["--strict"])
    pid = d.wait_state("a", "running")["pid"]
    d.write(f"[service:a]\ncommand = HELPER pause\nstart_secs = 0\n"
            f"[service:b]\ncommand = {tmp_path}/nope\n"
            f"[service:c]\ncommand = HELPER pause\nhealth_cmd = {tmp_path}/nocheck\n")
    r = d.ctl("reload")
    assert r.returncode == 1, r
    assert f"{d.cfg}:5: command: {tmp_path}/nope: No such file or directory" in r.stderr, r
    assert f"{d.cfg}:8: health_cmd: {tmp_path}/nocheck" in r.stderr, r
    assert "warning" not in r.stderr, r
    assert set(d.status()) == {"a"} and d.status("a")["a"]["pid"] == pid
    assert "the running configuration is kept" in d.log()
    # without the problem it is applied
    d.write("[service:a]\ncommand = HELPER pause\nstart_secs = 0\n"
            "[service:c]\ncommand = HELPER pause\nstart_secs = 0\n")
    r = d.ctl("reload")
    assert r.returncode == 0 and "added: c" in r.stdout, r
    d.wait_state("c", "running")
    # a re-exec keeps --strict: the next reload of the problem is refused too
    assert d.ctl("reexec").returncode == 0
    d.write(f"[service:a]\ncommand = HELPER pause\nstart_secs = 0\n"
            f"[service:b]\ncommand = {tmp_path}/nope\n")
    r = d.ctl("reload")
    assert r.returncode == 1 and f"{tmp_path}/nope: No such file or directory" in r.stderr, r
    assert set(d.status()) == {"a", "c"}
    d.stop()


# ------------------------------------------- serving while it starts


def many(n):
    return f"""
[evmon]
start_secs = 0
stop_timeout = 5

[service:s]
command = HELPER pause
instances = {n}
"""


@pytest.mark.parametrize("n", [1000, pytest.param(10000, marks=pytest.mark.scale)])
def test_serves_while_it_starts(procs, tmp_path, n):
    """The services start from the loop, a batch at a time: the first request is
    answered while some are still to be started, and "started" (READY=1) comes once
    they all are (docs/RELIABILITY.md has the times)."""
    d = Daemon(procs, tmp_path, many(n))
    first = d.status()
    states = [s["state"] for s in first.values()]
    assert len(states) == n and states.count("stopped") > 0, "every service had started already"
    assert "started:" not in d.log()
    wait_for(lambda: "started: %d services" % n in d.log(), timeout=300, what="the start's end")
    wait_for(lambda: all(s["state"] == "running" for s in d.status().values()), timeout=300,
             what="every service running")
    d.stop(timeout=300)


@pytest.mark.parametrize("n", [1000, pytest.param(10000, marks=pytest.mark.scale)])
def test_sigterm_while_it_starts(procs, tmp_path, n):
    """SIGTERM as soon as the socket answers: the start stops where it is (the rest
    is never started), what was started is stopped, and the daemon exits 0."""
    d = Daemon(procs, tmp_path, many(n))
    d.p.send_signal(signal.SIGTERM)
    assert d.p.wait(timeout=300) == 0, d.log()
    log = d.log()
    assert "received SIGTERM" in log and "started:" not in log, log[-2000:]
    assert "all services stopped: exiting" in log


# ------------------------------------------------- started with 0-2 closed

def fd_flags(pid, fd):
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        return int(next(line for line in f if line.startswith("flags:")).split()[1], 8)


def test_closed_stdio_gets_dev_null(procs, tmp_path):
    """Started with stdin and stdout closed (`<&- >&-`), the daemon opens /dev/null there,
    read-write and inherited, before anything else: none of its own descriptors (its fd
    reserve's read-only placeholders, which it closes when fds run short, the socket, a log
    file) lands on 0 or 1, where every service's stdout (inherit, the default) would be it"""
    d = PrefixedDaemon(procs, tmp_path, ini(out=f"{HELPER} pause"),
                       prefix=["bash", "-c", 'exec "$@" <&- >&-', "bash"])
    pid = d.daemon_pid()
    svc = d.wait_state("out", "running")["pid"]
    for fd in (0, 1):
        assert os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null"
        flags = fd_flags(pid, fd)
        assert flags & os.O_ACCMODE == os.O_RDWR and not flags & os.O_CLOEXEC, (fd, oct(flags))
    assert os.readlink(f"/proc/{svc}/fd/1") == "/dev/null"
    assert fd_flags(svc, 1) & os.O_ACCMODE != os.O_RDONLY  # the service can write its output
    d.stop()
