"""What a new user of `evmon daemon`/`evmon ctl`/`evmon init` meets first
(issue 18.21): --version everywhere, one message prefix per command, a
refused start that leaves nothing behind, and exit codes a script can use."""
import os
import re
import socket

from conftest import EVMON, HELPER, wait_for
from daemon_util import Daemon

TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"

CFG = """
[evmon]
stop_timeout = 5

[service:web]
command = HELPER pause
start_secs = 0

[service:job]
command = HELPER exit 0
restart = never
start_secs = 0

[service:idle]
command = HELPER pause
autostart = false
"""


def test_version_of_every_command(procs):
    version = open(os.path.join(os.path.dirname(__file__), "..", "..", "VERSION")).read().strip()
    for argv, want in (([EVMON, "--version"], "evmon"),
                       ([EVMON, "daemon", "--version"], "evmon daemon"),
                       ([EVMON, "daemon", "-V"], "evmon daemon"),
                       ([EVMON, "ctl", "--version"], "evmon ctl"),
                       ([EVMON, "ctl", "-V"], "evmon ctl"),
                       ([EVMON, "init", "--version"], "evmon init")):
        r = procs.run(argv, timeout=20)
        assert r.returncode == 0 and r.stdout.startswith(f"{want} {version}"), (argv, r)


def test_one_message_prefix_per_command(procs, tmp_path):
    """Every line a command prints on stderr starts with its name: evmon daemon:,
    evmon ctl:, evmon init: (a config mistake's FILE:LINE follows the prefix)."""
    bad = tmp_path / "bad.ini"
    bad.write_text("[evmon]\nbogus = 1\n[service:a]\ncommand = true\n")
    sock = tmp_path / "s.sock"
    for argv in ([EVMON, "daemon", "--check", "-c", str(bad)],
                 [EVMON, "daemon", "-c", str(bad), "-S", str(sock)],
                 [EVMON, "daemon", "-c", str(tmp_path / "missing.ini"), "-S", str(sock)]):
        r = procs.run(argv, timeout=20)
        lines = r.stderr.splitlines()
        assert r.returncode == 1 and lines, r
        assert all(l.startswith("evmon daemon: ") for l in lines), lines
    assert f"evmon daemon: {bad}:2: unknown key 'bogus'" in r.stderr or "missing.ini" in r.stderr
    # a socket path that is taken by a file: refused with the same prefix
    sock.write_text("not a socket")
    good = tmp_path / "good.ini"
    good.write_text(CFG.replace("HELPER", HELPER))
    r = procs.run([EVMON, "daemon", "-c", str(good), "-S", str(sock)], timeout=20)
    assert r.returncode == 1 and r.stderr.startswith("evmon daemon: control socket "), r
    assert all(l.startswith("evmon daemon: ") for l in r.stderr.splitlines()), r
    r = procs.run([EVMON, "ctl", "-S", str(tmp_path / "none.sock"), "ping"], timeout=20)
    assert r.returncode == 3 and r.stderr.splitlines(), r
    assert all(l.startswith("evmon ctl: ") for l in r.stderr.splitlines()), r
    r = procs.run([EVMON, "init", "--", str(tmp_path / "no-such-cmd")], timeout=20)
    assert r.returncode == 127 and r.stderr.startswith("evmon init: exec "), r
    # getopt's own messages too (they said "daemon: ", "ctl: ", "start: ")
    for argv, prefix in (([EVMON, "daemon", "--bogus"], "evmon daemon: unrecognized option"),
                         ([EVMON, "ctl", "-x", "ping"], "evmon ctl: invalid option"),
                         ([EVMON, "ctl", "start", "--bogus", "x"],
                          "evmon ctl start: unrecognized option")):
        r = procs.run(argv, timeout=20)
        assert r.returncode == 2 and r.stderr.startswith(prefix), (argv, r)
    # the running daemon's own lines: a time, then the prefix
    d = Daemon(procs, tmp_path, CFG)
    d.wait_state("web", "running")
    d.stop()
    lines = d.log().splitlines()
    assert lines and all(re.match(TS + " evmon daemon: ", l) for l in lines), lines


def test_refused_start_leaves_no_lock(procs, tmp_path):
    """A daemon that does not start removes the SOCK.lock it made; a live
    daemon's lock stays (a second daemon on its socket must not take it away)."""
    cfg = tmp_path / "c.ini"
    cfg.write_text(CFG.replace("HELPER", HELPER))
    sock = tmp_path / "s.sock"
    lock = tmp_path / "s.sock.lock"
    sock.write_text("a file, not a socket")
    r = procs.run([EVMON, "daemon", "-c", str(cfg), "-S", str(sock)], timeout=20)
    assert r.returncode == 1 and "is not a socket" in r.stderr, r
    assert not lock.exists()
    sock.unlink()
    # someone else listens on the path (without our lock)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(sock))
    other.listen(1)
    r = procs.run([EVMON, "daemon", "-c", str(cfg), "-S", str(sock)], timeout=20)
    other.close()
    assert r.returncode == 1 and "another process is listening" in r.stderr, r
    assert not lock.exists()
    sock.unlink()
    # a live daemon: the second is refused, the first keeps its lock and answers
    d = Daemon(procs, tmp_path, CFG, name="s")
    assert lock.exists()
    r = procs.run([EVMON, "daemon", "-c", str(cfg), "-S", d.sock], timeout=20)
    assert r.returncode == 1 and "another evmon daemon is running" in r.stderr, r
    assert lock.exists() and d.ctl("ping").returncode == 0
    d.stop()
    assert not lock.exists() and not os.path.exists(d.sock)


def test_status_and_is_active_exit_codes(procs, tmp_path):
    """status NAME... and is-active NAME...: 0 running, 3 not running, 4 unknown
    (LSB init scripts' status, systemctl is-active)."""
    d = Daemon(procs, tmp_path, CFG)
    d.wait_state("web", "running")
    d.wait_state("job", "exited")
    for cmd in ("status", "is-active"):
        assert d.ctl(cmd, "web").returncode == 0
        assert d.ctl(cmd, "job").returncode == 3  # exited
        assert d.ctl(cmd, "idle").returncode == 3  # stopped
        assert d.ctl(cmd, "web", "idle").returncode == 3  # one of them is not
        r = d.ctl(cmd, "nosuch")
        assert r.returncode == 4 and "no such service: nosuch" in r.stderr, r
        r = d.ctl(cmd, "--json", "idle")
        assert r.returncode == 3 and '"state":"stopped"' in r.stdout.replace(" ", ""), r
    r = d.ctl("is-active", "web", "job", "idle")
    assert r.returncode == 3 and r.stdout.split() == ["running", "exited", "stopped"], r
    r = d.ctl("status", "web")
    assert r.returncode == 0 and "running" in r.stdout.splitlines()[1], r
    assert d.ctl("status").returncode == 0  # every service: the table, not a state
    r = d.ctl("is-active")
    assert r.returncode == 2 and "which service" in r.stderr, r
    d.ctl("stop", "web")
    assert d.ctl("is-active", "web").returncode == 3
    d.stop()
    # no daemon: the state is unknown
    for cmd in ("status", "is-active"):
        r = procs.run([EVMON, "ctl", "-S", d.sock, cmd, "web"], timeout=20)
        assert r.returncode == 4 and "evmon ctl: " in r.stderr, r
    r = procs.run([EVMON, "ctl", "-S", d.sock, "status"], timeout=20)
    assert r.returncode == 3, r  # no names: the usual "no daemon"


def test_a_bad_timeout_says_what_is_allowed(procs, tmp_path):
    """ctl -t 1000000 said "bad timeout" and not what a timeout may be: it names the range,
    for each command that takes -t (checked before connecting: no daemon needed)."""
    sock = str(tmp_path / "none.sock")
    for t in ("1000000", "86400.5", "-1", "x", "", "1e3"):
        for args in (["-t", t, "start", "web"], ["wait", "web", "-t", t]):
            r = procs.run([EVMON, "ctl", "-S", sock] + args, timeout=20)
            assert r.returncode == 2 and r.stderr == (f"evmon ctl: bad timeout '{t}': seconds "
                                                      "from 0 to 86400 (0: do not wait)\n"), (args, r)
    r = procs.run([EVMON, "ctl", "-S", sock, "-t", "86400", "start", "web"], timeout=20)
    assert r.returncode == 3 and "no daemon" in r.stderr, r  # the top of the range is taken
