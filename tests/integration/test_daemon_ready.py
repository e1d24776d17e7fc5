"""Readiness beyond start_secs (issue 16.1): ready = notify (the daemon's
sd_notify socket, messages attributed by the sender's pid, never by what they
say), fd:N (s6's notification fd), exec:COMMAND (a check until it succeeds),
ready_timeout, watchdog_sec, FDSTORE fds closed. A service is `starting`
until it is ready, `running` after; what requires it waits for that.

The waits end on states and log lines; the only deadlines are the ones
under test (ready_timeout, watchdog_sec, a check's timeout)."""
import fcntl
import os
import pathlib
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import time

import pytest

from conftest import EVMON, cmdline, requires_root, wait_for
from daemon_util import SLOW, Daemon, LineReader, hand_over, wait_signal_state

KINDS = """
[evmon]
stop_timeout = 5

[service:n]
command = HELPER notify "STATUS=warming up\\nREADY=1" pause
ready = notify

[service:f]
command = HELPER fdprint 5 "" pause
ready = fd:5

[service:e]
command = HELPER pause
ready = exec:/bin/sh -c "test -e FLAG"
ready_interval = 50ms

[service:silent]
command = HELPER pause
ready = notify
ready_timeout = 0
start_secs = 0
restart = RESTART

[service:app]
command = HELPER pause
requires = n f e
start_secs = 0
"""


def test_each_kind_and_what_requires_it(procs, tmp_path):
    flag = tmp_path / "flag"
    conf = KINDS.replace("FLAG", str(flag))
    d = Daemon(procs, tmp_path, conf.replace("RESTART", "on-failure"))
    r = d.ctl("wait", "n", "f", "--for", "ready")
    assert r.returncode == 0, r
    st = d.status()
    assert st["n"]["status_text"] == "warming up", st["n"]
    # the check fails until the file exists: e is starting, app waits for it
    assert st["e"]["state"] == "starting", st["e"]
    assert st["app"]["state"] == "waiting", st["app"]
    r = d.ctl("status")
    assert "warming up" in r.stdout, r
    flag.write_text("")
    r = d.ctl("wait", "e", "app", "--for", "ready")
    assert r.returncode == 0, r
    # never a word from silent (no ready_timeout): starting, however long
    assert d.status("silent")["silent"]["state"] == "starting"
    r = d.ctl("wait", "silent", "--for", "ready", "-t", "0.3")
    assert r.returncode == 3, r
    # a reload that changes its policy only (applied in place) keeps it waiting for its word
    d.write(conf.replace("RESTART", "always"))
    r = d.ctl("reload")
    assert r.returncode == 0 and "updated: silent" in r.stdout, r
    old = d.status("silent")["silent"]["pid"]
    r = d.ctl("restart", "silent", "-t", "0")
    assert r.returncode == 0, r
    # its new process, seen in the state it entered at its spawn (start_secs is 0)
    st = wait_for(lambda: (lambda s: s["pid"] not in (None, old) and s)(d.status("silent")["silent"]),
                  what="silent's new process")
    assert st["state"] == "starting", st
    d.stop()


TREE = """
[evmon]
stop_timeout = 5
cgroup = CGROUP

[service:kid]
command = HELPER notify-child "READY=1" pause
ready = notify
kill_group = true

[service:victim]
command = HELPER pidlog PIDFILE pause
ready = notify
ready_timeout = 0

[service:liar]
command = /bin/sh -c 'exec HELPER notify "MAINPID=$(cat PIDFILE)\\nREADY=1" pause'
ready = notify
autostart = false
"""


# by cgroup when the daemon has them (auto), by the parents of the sender without
@pytest.mark.parametrize("cgroup", ["auto", "no"])
def test_attributed_by_the_sender_not_by_the_message(procs, tmp_path, cgroup):
    pidfile = tmp_path / "victim.pid"
    d = Daemon(procs, tmp_path, TREE.replace("PIDFILE", str(pidfile)).replace("CGROUP", cgroup))
    # a child of the service says READY=1: the service is ready
    r = d.ctl("wait", "kid", "--for", "ready")
    assert r.returncode == 0, r
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="victim's pid")
    victim = int(pidfile.read_text())
    # liar says READY=1 with victim's pid as its MAINPID: the message is liar's
    r = d.ctl("start", "liar")
    assert r.returncode == 0, r
    r = d.ctl("wait", "liar", "--for", "ready")
    assert r.returncode == 0, r
    wait_for(lambda: f"MAINPID={victim} ignored: not a process of this service" in d.log(),
             what="the MAINPID refusal")
    st = d.status()
    assert st["liar"]["pid"] != victim, st["liar"]
    assert st["victim"]["state"] == "starting", st["victim"]
    # a process outside every service (this test) forges READY=1: ignored
    sock = notify_socket(d, "victim")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b"READY=1\nMAINPID=%d\n" % victim, sock_addr(sock))
    s.close()
    wait_for(lambda: f"message from pid {os.getpid()} ignored: not a process of a service"
             in d.log(), what="the forged message's refusal")
    assert d.status("victim")["victim"]["state"] == "starting"
    d.stop()


def notify_socket(d, name):
    """$NOTIFY_SOCKET of service name, from its environment."""
    pid = d.status(name)[name]["pid"]
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
    v = env[b"NOTIFY_SOCKET"].decode()
    # the control socket's path with ".notify" where every user can reach it, else abstract
    assert v == d.sock + ".notify" or v.startswith("@"), v
    return v


def sock_addr(name):
    """A NOTIFY_SOCKET value as Python's socket module takes it."""
    return "\0" + name[1:] if name.startswith("@") else name


@pytest.fixture
def public_dir():
    """A directory others may search (its parents too: /tmp, /) and only root may write:
    where a root daemon's notify socket is a path. tmp_path is under a 0700 directory."""
    d = tempfile.mkdtemp(prefix="evmon-pub-", dir="/tmp")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


TIMEOUTS = """
[evmon]
stop_timeout = 5

[service:late]
command = HELPER pause
ready = notify
ready_timeout = 300ms
start_retries = 1
backoff_initial = 10ms

[service:dog]
command = HELPER env WATCHDOG_USEC notify READY=1 pause
ready = notify
watchdog_sec = 300ms
backoff_initial = 10ms
max_retries = 1

[service:hang]
command = HELPER pause
ready = exec:HELPER pidlog CHECKS sleep 100000
ready_check_timeout = 1s
ready_interval = 10ms
ready_timeout = 8s
start_retries = 0
"""


def test_ready_timeout_watchdog_and_a_hanging_check(procs, tmp_path):
    checks = tmp_path / "checks"
    d = Daemon(procs, tmp_path, TIMEOUTS.replace("CHECKS", str(checks)))
    # not ready in time: stopped, a failed start, retried once, then fatal
    r = d.ctl("wait", "late", "--for", "ready", "-t", "120")
    assert r.returncode == 1, r
    st = d.wait_state("late", "fatal")
    assert "not ready within ready_timeout (300 ms)" in d.log()
    assert st["last_exit"]["signal_name"] == "TERM", st
    # ready, then silent: restarted by its policy (on-failure), fatal after max_retries
    st = d.wait_state("dog", "fatal", timeout=60)
    assert st["restarts"] >= 1, st
    assert "watchdog: no sign of life for 300 ms" in d.log()
    # its environment has WATCHDOG_USEC, as sd_watchdog_enabled(3) expects (its stdout: our log)
    assert "WATCHDOG_USEC=300000\n" in d.log()
    # each check hangs and is killed at 1 s; a new one runs; none is left at the end
    d.wait_state("hang", "fatal", timeout=60)
    pids = [int(p) for p in checks.read_text().split()]
    assert len(pids) >= 2, pids
    wait_for(lambda: not [p for p in pids if os.path.exists(f"/proc/{p}")],
             what="every check process gone")
    d.stop()


WATCHDOG = """
[evmon]
stop_timeout = 5

[service:trig]
command = HELPER notify READY=1 notify "STATUS=broken\\nWATCHDOG=trigger" pause
ready = notify
backoff_initial = 10ms
max_retries = 1
autostart = false

[service:shorter]
command = HELPER notify READY=1 notify WATCHDOG_USEC=300000 pause
ready = notify
watchdog_sec = 1h
backoff_initial = 10ms
max_retries = 1
"""


def test_watchdog_trigger_and_watchdog_usec(procs, tmp_path):
    """sd_notify(3): WATCHDOG=trigger fails the service at once (no watchdog_sec needed);
    WATCHDOG_USEC= sets this run's watchdog period (1h configured, 300 ms asked)."""
    d = Daemon(procs, tmp_path, WATCHDOG)
    s = d.connect()
    s.sendall(b'{"cmd":"events","names":["trig"]}\n')
    rd = LineReader(s)
    assert rd.next() == {"ok": True, "events": True}
    # started only once subscribed: a trig that went fatal before the subscription took
    # effect left this loop waiting for an event that had already passed (CI, stop 27)
    d.ctl("start", "trig")
    st = d.wait_state("trig", "fatal", timeout=60)
    assert st["restarts"] >= 1 and st["last_exit"]["signal_name"] == "TERM", st
    assert "watchdog: the service said it failed" in d.log()
    seen = []
    while not seen or seen[-1] != ("state", "fatal"):
        ev = rd.next(timeout=30)
        seen.append((ev["event"], ev.get("notify") or ev.get("state")))
    # told, then its exit (stopped by its stop_signal), then the policy
    i = seen.index(("notify", "watchdog-trigger"))
    after = [e for e in seen[i:] if e[0] == "state"]
    assert after[0] in (("state", "backoff"), ("state", "fatal")), seen
    st = d.wait_state("shorter", "fatal", timeout=60)
    assert st["restarts"] >= 1, st
    assert "watchdog: no sign of life for 300 ms" in d.log()
    s.close()
    d.stop()


FDSTORE = """
[evmon]
stop_timeout = 5

[service:plain]
command = HELPER notify READY=1 pause
ready = notify
autostart = false

[service:store]
command = sh -c 'HELPER notify-fds FDSTORE=1 20; exec HELPER notify READY=1 pause'
ready = notify
autostart = false
"""


def before_616(on=True):
    """The daemon's environment for the path of a kernel before Linux 6.16, whose sockets
    cannot refuse descriptors (EVMON_TEST_PASSRIGHTS=1, a test knob of the daemon); None:
    this kernel's."""
    return dict(os.environ, EVMON_TEST_PASSRIGHTS="1") if on else None


def passrights():
    """Can a socket refuse descriptors (SO_PASSRIGHTS, Linux 6.16)?"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.setsockopt(socket.SOL_SOCKET, 83, 0)
            return True
        except OSError:
            return False


@pytest.mark.parametrize("kernel", ["this", "before 6.16"])
def test_fdstore_fds_are_closed(procs, tmp_path, kernel):
    """evmon keeps no descriptor a service sends (FDSTORE=1): refused by the kernel where it
    can (the sender's send fails: EPERM), else closed as they come, said once (before Linux
    6.16, by the thread that takes them: EVMON_TEST_PASSRIGHTS=1 is that path here)."""
    old = kernel != "this" or not passrights()
    d = Daemon(procs, tmp_path, FDSTORE,
               env=before_616(kernel != "this"))

    def fds():
        return len(os.listdir(f"/proc/{d.p.pid}/fd"))

    for name in ("plain", "store"):
        r = d.ctl("start", name)
        assert r.returncode == 0, r
        r = d.ctl("wait", name, "--for", "ready")
        assert r.returncode == 0, r
        if name == "plain":
            base = fds()
            r = d.ctl("stop", name)
            assert r.returncode == 0, r
    if not old:
        wait_for(lambda: "notify: Operation not permitted" in d.log(), what="the refusal")
        assert "FDSTORE) are closed" not in d.log()
    else:
        wait_for(lambda: "FDSTORE) are closed" in d.log(), what="the FDSTORE line")
    # (a control connection just closed may still be open in the daemon for a moment)
    more = 2 if old else 0  # the taker's two eventfds, made at the first descriptor
    wait_for(lambda: fds() <= base + more, what=f"the daemon's fds back to {base} (20 were sent)")
    d.stop()


LINGERER = r"""
import array, errno, os, socket, struct, sys
# a connection whose data cannot go (nobody reads it) and whose last close waits for it
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
c = socket.create_connection(srv.getsockname())
c.setblocking(False)
try:
    while True:
        c.send(b"x" * 65536)
except BlockingIOError:
    pass
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 120))
u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
try:
    u.sendmsg([b"STATUS=hi"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [c.fileno()]))],
              0, sys.argv[1])
    print("sent", flush=True)
except OSError as e:
    print("refused", errno.errorcode[e.errno], flush=True)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # else we wait
c.close()
sys.stdin.read()  # the listener stays until the test is done
"""


@requires_root("the sender is another user (nobody), as a hostile one would be")
@pytest.mark.parametrize("kernel", ["this", "before 6.16"])
def test_a_descriptor_sent_to_the_notify_socket_cannot_stop_the_loop(procs, public_dir, kernel):
    """Any user may send to the notify socket (mode 0666), descriptors too, and the
    daemon's close of the last copy of a TCP socket with SO_LINGER and unsent data waited
    for the linger (here 2 minutes): nothing else ran meanwhile. Now descriptors are
    refused (SO_PASSRIGHTS, Linux 6.16: the send fails with EPERM), and before 6.16 they
    are closed with a reset (by the thread that takes them: EVMON_TEST_PASSRIGHTS=1 is
    that path here)."""
    old = kernel != "this"
    d = Daemon(procs, public_dir, FDSTORE, env=before_616(old))
    assert d.ctl("start", "plain").returncode == 0
    d.wait_state("plain", "running")
    base = len(os.listdir(f"/proc/{d.p.pid}/fd"))
    p = procs.spawn(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                     "/usr/bin/python3", "-c", LINGERER, d.sock + ".notify"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    said = p.stdout.readline().split()
    assert said == (["refused", "EPERM"] if passrights() and not old else ["sent"]), said
    r = d.ctl("ping")  # before: no answer for the linger's 2 minutes
    assert r.returncode == 0, r
    more = 2 if old or not passrights() else 0  # the taker's two eventfds, made at the first
    wait_for(lambda: len(os.listdir(f"/proc/{d.p.pid}/fd")) <= base + more, what="no descriptor kept")
    p.stdin.close()
    p.wait(timeout=30)
    d.stop()


FUSEHANG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fusehang.py")

PASSER = r"""
import array, os, socket, sys
f = os.open(sys.argv[2], os.O_RDONLY | os.O_CLOEXEC)  # a file whose every close waits
u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[3])):
    u.sendmsg([b"STATUS=hi"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [f] * 8))],
              0, sys.argv[1])
    print("sent", flush=True)
    sys.stdin.readline()
sys.stdin.read()  # killed after the server: our own close of f would wait for it too
"""

@requires_root("mounts a FUSE file system (mount(2) with /dev/fuse)")
def test_a_close_that_never_returns_holds_a_thread_not_the_loop(procs, public_dir):
    """Before Linux 6.16 (no SO_PASSRIGHTS) the descriptors a sender passes to the notify
    socket are ours to close, and the close of a file of a FUSE server that never answers
    its FLUSH does not return: any user with fusermount could stop the loop (no reaping,
    no ctl), and while one waited in our table, every spawn's child copied it and its exec
    closed it (and waited). Now such a message is taken by a thread with a descriptor
    table of its own, which closes them there: the loop, its table and the notifications
    go on; a re-exec is refused while a close waits. EVMON_TEST_PASSRIGHTS=1 gives this
    kernel the older one's path."""
    mnt = public_dir / "fuse"
    mnt.mkdir()
    server = procs.spawn(["/usr/bin/python3", FUSEHANG, str(mnt)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    said = server.stdout.readline().strip()
    if said != "mounted":
        server.wait(timeout=30)
        pytest.skip(f"no FUSE here: {said}")
    passer = None
    try:
        d = Daemon(procs, public_dir, FDSTORE, env=before_616())
        assert d.ctl("-t", "0", "start", "plain").returncode == 0
        d.wait_state("plain", "running")  # the socket is open, READY=1 read
        def fuse_fds():  # in the loop's table (readlink: nothing asked of the server)
            fds, found = f"/proc/{d.p.pid}/fd", []
            for n in os.listdir(fds):
                try:
                    if str(mnt) in os.readlink(os.path.join(fds, n)):
                        found.append(n)
                except OSError:
                    pass  # closed meanwhile (a connection, a /proc read)
            return found

        threads = lambda: len(os.listdir(f"/proc/{d.p.pid}/task"))  # noqa: E731
        assert threads() == 1  # none until a descriptor comes
        passer = procs.spawn(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                              "/usr/bin/python3", "-c", PASSER, d.sock + ".notify",
                              str(mnt / "f"), "9"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        assert passer.stdout.readline().strip() == "sent"
        r = d.ctl("ping", timeout=10)  # before: no answer, ever
        assert r.returncode == 0, r
        for _ in range(8):  # 72 in all, 8 a message
            passer.stdin.write("\n")
            passer.stdin.flush()
            assert passer.stdout.readline().strip() == "sent"
        wait_for(lambda: d.log().count("ignored") >= 4, what="8 messages read")  # logged at 1, 2, 4, 8
        assert threads() == 3  # the taker and its closer
        assert not fuse_fds()  # none of them in the loop's table
        # a spawn (its child copies the loop's table), a READY=1 read after them
        assert d.ctl("-t", "0", "restart", "plain").returncode == 0
        d.wait_state("plain", "running")
        r = d.ctl("reexec", timeout=30)  # the exec would wait for the stuck thread
        assert r.returncode != 0 and "not closed yet" in r.stdout + r.stderr, r
        server.kill()  # the connection aborted: the close waiting returns, the rest follow
        server.wait(timeout=30)
        r = d.ctl("reexec", timeout=30)
        assert r.returncode == 0, r
        d.wait_state("plain", "running")
        assert threads() == 1  # the new image's: none until a descriptor comes
        d.stop()
    finally:
        server.kill()
        server.wait(timeout=30)
        if passer:
            passer.kill()
            passer.wait(timeout=30)
        subprocess.run(["umount", "-l", str(mnt)], stderr=subprocess.DEVNULL)


FLOODER = r"""
import array, os, socket, sys, time
r, w = os.pipe()
u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
print("go", flush=True)
while True:
    try:
        u.sendmsg([b"STATUS=hi"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                    array.array("i", [r, w] * 4))], 0, sys.argv[1])
    except OSError:  # the re-exec's moment
        time.sleep(0.001)
"""


def test_a_reexec_waits_for_a_take_under_way(procs, public_dir):
    """Before Linux 6.16, a re-exec that comes while the taker takes a message (with
    descriptors: a pipe's ends, closed at once) waits for it: the message is applied and the
    exec goes on. Only the loop saw a take end, and the re-exec holds the loop: it was
    refused ("1 descriptor ... not closed yet") whenever a sender passed descriptors
    without pause. EVMON_TEST_PASSRIGHTS=1 gives this kernel the older one's path."""
    d = Daemon(procs, public_dir, FDSTORE, env=before_616())
    assert d.ctl("-t", "0", "start", "plain").returncode == 0
    d.wait_state("plain", "running")  # the socket is open, READY=1 read
    flooder = procs.spawn(["/usr/bin/python3", "-c", FLOODER, d.sock + ".notify"],
                          stdout=subprocess.PIPE, text=True)
    assert flooder.stdout.readline().strip() == "go"
    wait_for(lambda: d.log().count("ignored") >= 4, what="messages taken")  # logged at 1, 2, 4, 8
    for _ in range(4):
        r = d.ctl("reexec", timeout=30)
        assert r.returncode == 0, r
    assert d.ctl("ping").returncode == 0
    flooder.kill()
    flooder.wait(timeout=30)
    d.stop()


def test_bad_ready_keys_are_config_errors(procs, tmp_path):
    bad = """
    [service:a]
    command = HELPER pause
    ready = fd:2
    [service:b]
    command = HELPER pause
    watchdog_sec = 1
    [service:c]
    command = HELPER pause
    ready = exec:
    [service:d]
    command = HELPER pause
    ready = sometime
    """
    d = Daemon(procs, tmp_path, bad, start=False)
    r = d.procs.run([EVMON, "daemon", "--check", "-c", d.cfg], timeout=30 * SLOW)
    assert r.returncode != 0, r
    out = r.stderr
    assert "fd:2: the notification fd is a number from 3 to 1023" in out, out
    assert "service b: watchdog_sec needs ready = notify" in out, out
    assert "exec: needs a command" in out, out
    assert "'sometime' is not started, notify, fd:N or exec:COMMAND" in out, out


PINGER = """
[evmon]
stop_timeout = 5

[service:dog]
command = HELPER notify READY=1 watchdog 50
ready = notify
watchdog_sec = 1s
"""


def pings(d):
    """The last STATUS=ping K of service dog: K (0 before the first)."""
    text = d.status("dog")["dog"].get("status_text", "")
    return int(text.split()[1]) if text.startswith("ping ") else 0


@pytest.mark.parametrize("where", ["path", "abstract"])
@pytest.mark.parametrize("how", ["reexec", "crash"])
def test_notify_socket_outlives_the_daemon(procs, tmp_path, public_dir, how, where):
    """The services' notify socket crosses a re-exec (kept open: what they send meanwhile
    waits in it) and a crash (the new daemon binds its name again): an adopted service's
    WATCHDOG=1 still arrives, and its watchdog never fires. Before, the new daemon made a
    socket of its own and every adopted watchdog service was killed watchdog_sec later.
    Both kinds of name: a path (the control socket's directory is searchable by all) and
    an abstract name (tmp_path's parent is private to root)."""
    d = Daemon(procs, public_dir if where == "path" else tmp_path, PINGER)
    d.wait_state("dog", "running")
    pid = d.status("dog")["dog"]["pid"]
    name = notify_socket(d, "dog")
    assert name == d.sock + ".notify" if where == "path" else name.startswith("@"), name
    wait_for(lambda: pings(d) > 0, what="a first ping")
    if how == "crash":
        def recorded():
            with open(d.sock + ".state") as f:
                return f"notify={name}" in f.readline() + f.readline()
        wait_for(recorded, what="the socket's name in the record")
    hand_over(d, how)
    if how == "crash":
        wait_for(lambda: "taking over its 1 service" in d.log(), what="the takeover")
    seen = pings(d)
    # 40 more pings (every 50 ms): twice watchdog_sec, each one received by the new image
    wait_for(lambda: pings(d) >= seen + 40, timeout=30, what="pings reaching the new daemon")
    st = d.status("dog")["dog"]
    assert st["pid"] == pid and st["state"] == "running" and st["restarts"] == 0, st
    log = d.log()
    # no send failed, but while no daemon was there (a crash's gap: until the new one binds
    # the name again, before it adopts the service)
    since = log[log.rfind(f"adopted pid {pid}, left running"):] if how == "crash" else log
    assert "no sign of life" not in log and "watchdog: " not in since, log[-2000:]
    # a service started from now on is told the same socket
    r = d.ctl("restart", "dog")
    assert r.returncode == 0, r
    d.wait_state("dog", "running")
    assert notify_socket(d, "dog") == name
    d.stop()


def test_a_notify_event_says_who_and_what(procs, tmp_path):
    """STOPPING=1 is a notify event: the daemon's log (and `ctl events` in text) says the
    service, the pid and what it said. It was a bare "notify: "."""
    d = Daemon(procs, tmp_path, """
[service:s]
command = HELPER notify READY=1 notify "STATUS=draining\\nSTOPPING=1" pause
ready = notify
""")
    wait_for(lambda: re.search(r"service s: pid \d+ says: stopping \(STATUS=draining\)",
                               d.log()), what="the notify event's line")
    assert "notify: \n" not in d.log()
    d.stop()


def test_fd_ready_closed_without_a_newline_fails_at_once(procs, tmp_path):
    """ready = fd:5 and the service closes fd 5 without writing: the sign can never come,
    so the start fails at once, saying why. It waited for ready_timeout, and with
    ready_timeout = 0 stayed `starting` for good."""
    d = Daemon(procs, tmp_path, """
[service:f]
command = sh -c 'exec 5>&-; exec HELPER pause'
ready = fd:5
ready_timeout = 0
restart = never
""")
    d.wait_state("f", "exited")
    assert "service f: fd 5 closed before a newline: it cannot be ready: stopping it" in d.log()
    d.stop()


NOBODY_DOG = PINGER + "user = nobody\n"


def as_nobody(code):
    """Run Python code as user nobody: its exit status and its output."""
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        "/usr/bin/python3", "-c", code], capture_output=True, text=True,
                       timeout=30)
    return r.returncode, r.stdout + r.stderr


@requires_root("a service run as nobody; another user trying the socket's name")
def test_notify_socket_path_is_not_anyones_for_the_taking(procs, public_dir):
    """After a crash the services' notify socket has no daemon until a new one binds it
    again. Its name was abstract, which any local user could bind in that gap (the names
    are listed in /proc/net/unix), and the adopted services' READY=1, WATCHDOG=1, STATUS=
    went to that user's socket. Now it is a file in the control socket's directory: mode
    0666, so a service running as another user reaches it, and nobody else can take it."""
    d = Daemon(procs, public_dir, NOBODY_DOG)
    d.wait_state("dog", "running")  # READY=1 from uid nobody arrived
    name = notify_socket(d, "dog")
    assert name == d.sock + ".notify", name
    st = os.lstat(name)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o666, oct(st.st_mode)
    assert st.st_uid == 0
    pid = d.status("dog")["dog"]["pid"]
    d.crash()
    # the gap: no daemon. The name cannot be bound, the file not removed nor replaced
    code, out = as_nobody(f"""
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for what, f in (("bind", lambda: s.bind({name!r})), ("unlink", lambda: os.unlink({name!r})),
                ("create", lambda: open({name!r} + ".x", "w"))):
    try:
        f()
        print(what, "worked")
        sys.exit(1)
    except OSError as e:
        print(what, e.errno)
""")
    assert code == 0, out
    d.start()
    wait_for(lambda: "taking over its 1 service" in d.log(), what="the takeover")
    seen = pings(d)
    wait_for(lambda: pings(d) >= seen + 10, timeout=30, what="pings reaching the new daemon")
    st = d.status("dog")["dog"]
    assert st["pid"] == pid and st["restarts"] == 0, st
    d.stop()
    # a clean exit leaves no file (a crash leaves it for the next daemon)
    assert not os.path.lexists(name)


@requires_root("a file of another user at the socket's path")
def test_notify_socket_path_taken_means_an_abstract_name(procs, public_dir):
    """Something that is not a socket of ours at the path (here another user's file) is
    left alone: the daemon says so and uses an abstract name, and notify still works."""
    path = public_dir / "d.sock.notify"
    path.write_text("not a socket\n")
    os.chown(path, 65534, 65534)
    d = Daemon(procs, public_dir, PINGER)
    d.wait_state("dog", "running")
    assert notify_socket(d, "dog").startswith("@")
    assert f"notify socket: {path} exists and is not a socket of ours: left as it is: an " \
        "abstract name is used" in d.log(), d.log()
    d.stop()
    assert path.read_text() == "not a socket\n" and path.stat().st_uid == 65534


UNREADY = """
[evmon]
stop_timeout = 5

[service:n]
command = sh -c 'until [ -e FLAG ]; do sleep 0.02; done; exec HELPER notify READY=1 pause'
ready = notify

[service:f]
command = sh -c 'until [ -e FLAG ]; do sleep 0.02; done; exec HELPER fdprint 5 "" pause'
ready = fd:5

[service:e]
command = HELPER pause
ready = exec:/bin/sh -c "test -e FLAG"
ready_interval = 20ms

[service:s]
command = HELPER pause
start_secs = 1h

[service:dep]
command = HELPER pause
requires = n:ready e:ready
"""


@pytest.mark.parametrize("how", ["reexec", "crash"])
def test_a_service_not_ready_yet_is_taken_over_as_starting(procs, tmp_path, how):
    """A service still starting when the daemon re-executes or dies is taken over as
    starting, its readiness awaited as before (READY=1 on the notify socket, the fd:N pipe
    passed across a re-exec, the exec: check run again, start_secs from its start), and what
    requires it still waits. Before, each was taken over as running: ready at once, and
    its dependents started."""
    flag = tmp_path / "flag"
    d = Daemon(procs, tmp_path, UNREADY.replace("FLAG", str(flag)))
    names = ("n", "f", "e", "s")
    for n in names:
        d.wait_state(n, "starting")
    pids = {n: d.status(n)[n]["pid"] for n in names}
    if how == "crash":
        def recorded():
            with open(d.sock + ".state") as f:
                says = {w[1]: w[6] for w in map(str.split, f) if w[0] == "service"}
            return all(says.get(n) == "starting" for n in names)
        wait_for(recorded, what="the four starting in the record")
    hand_over(d, how)
    st = d.status()
    assert {n: st[n]["pid"] for n in names} == pids, st
    # after a crash the pipe of fd:N is gone: nothing left to wait on, taken over as ready
    awaited = names if how == "reexec" else ("n", "e", "s")
    assert all(st[n]["state"] == "starting" for n in awaited), st
    assert how == "reexec" or st["f"]["state"] == "running", st["f"]
    assert st["dep"]["state"] == "waiting" and not st["dep"].get("pid"), st["dep"]
    flag.touch()
    for n in ("n", "f", "e") if how == "reexec" else ("n", "e"):
        d.wait_state(n, "running")
    d.wait_state("dep", "running")
    st = d.status()
    assert {n: st[n]["pid"] for n in awaited} == {n: pids[n] for n in awaited}, st
    assert all(st[n]["restarts"] == 0 for n in awaited), st
    assert st["s"]["state"] == "starting", st["s"]  # start_secs = 1h, from its start
    d.stop()


# slow's EXTEND_TIMEOUT_USEC= must come within its ready_timeout (the helper's start: ASan)
DEADLINES = f"""
[evmon]
stop_timeout = 1h

[service:slow]
command = HELPER notify EXTEND_TIMEOUT_USEC=3600000000 waitfile FLAG notify READY=1 pause
ready = notify
ready_timeout = {500 * SLOW}ms

[service:deaf]
command = HELPER ignore 15 pause
start_secs = 0
"""


def deadlines(d):
    """{service: deadline=MS of its line in the record on disk}"""
    with open(d.sock + ".state") as f:
        return {w[1]: int(x[9:]) for w in map(str.split, f) if w[0] == "service"
                for x in w if x.startswith("deadline=")}


@pytest.mark.parametrize("how", ["reexec", "crash"])
def test_deadlines_carry_over(procs, tmp_path, how):
    """A ready timeout the service extended (EXTEND_TIMEOUT_USEC) and the SIGKILL of a stop
    under way keep their deadlines across a re-exec and a crash (the record's deadline=MS,
    CLOCK_BOOTTIME): a service that asked for an hour more is not failed because its
    ready_timeout, counted from its start, is over, and a stop's SIGKILL is not pushed back
    by a whole stop_timeout."""
    flag = tmp_path / "flag"
    d = Daemon(procs, tmp_path, DEADLINES.replace("FLAG", str(flag)))
    d.wait_state("slow", "starting")
    d.wait_state("deaf", "running")
    pids = {n: d.status(n)[n]["pid"] for n in ("slow", "deaf")}
    wait_signal_state(d, "deaf", "SigIgn")
    assert d.request({"cmd": "stop", "names": ["deaf"]})["ok"]  # SIGTERM ignored: stopping
    d.wait_state("deaf", "stopping")
    wait_for(lambda: len(deadlines(d)) == 2, what="both deadlines in the record")
    time.sleep(0.7 * SLOW)  # slow is now past its ready_timeout (500 ms * SLOW) from its start
    before = deadlines(d)
    was = d.record_stamp()
    hand_over(d, how)
    # the next record (the new daemon's) says the same deadlines (ms rounding aside)
    wait_for(lambda: d.record_stamp() != was, what="a new record")
    after = deadlines(d)
    assert before.keys() == after.keys() and all(abs(after[n] - before[n]) <= 2 for n in before), \
        (before, after)
    st = d.status()
    assert st["slow"]["state"] == "starting" and st["slow"]["pid"] == pids["slow"], st["slow"]
    assert st["deaf"]["state"] == "stopping" and st["deaf"]["pid"] == pids["deaf"], st["deaf"]
    flag.touch()
    d.wait_state("slow", "running")
    assert d.status("slow")["slow"]["pid"] == pids["slow"]
    os.kill(pids["deaf"], 9)
    d.wait_state("deaf", "stopped")
    d.stop()


@pytest.mark.parametrize("how", ["reexec", "crash"])
def test_a_watchdog_period_the_service_set_carries_over(procs, tmp_path, how):
    """WATCHDOG_USEC= sets a run's own watchdog period (here an hour, against watchdog_sec =
    300 ms): it crosses a re-exec and a crash (the record's watchdog=MS). Before, the new
    daemon went back to watchdog_sec, and the service, silent for its hour, was killed
    300 ms after the takeover."""
    d = Daemon(procs, tmp_path, """
[service:dog]
command = HELPER notify "READY=1\\nWATCHDOG_USEC=3600000000" pause
ready = notify
watchdog_sec = 300ms
""")
    d.wait_state("dog", "running")
    pid = d.status("dog")["dog"]["pid"]
    wait_for(lambda: "watchdog=3600000" in open(d.sock + ".state").read(),
             what="the period in the record")
    hand_over(d, how)
    time.sleep(1)  # over three times watchdog_sec
    st = d.status("dog")["dog"]
    assert st["state"] == "running" and st["pid"] == pid and st["restarts"] == 0, st
    assert "no sign of life" not in d.log()
    d.stop()


@pytest.mark.parametrize("how", ["reexec", "crash"])
def test_a_stop_for_a_failure_carries_over(procs, tmp_path, how):
    """A service being stopped for a failure (its watchdog missed) that ignores its stop
    signal, at a re-exec or a crash: the new daemon goes on with that stop (the record's
    " failing" and deadline=MS): SIGKILL when it was due, no second SIGTERM, its exit a
    failure its policy restarts. Before, it was taken over as plainly running: the
    SIGKILL was lost, and only a second missed watchdog stopped it again."""
    d = Daemon(procs, tmp_path, f"""
[service:dog]
command = HELPER ignore 15 notify READY=1 pause
ready = notify
watchdog_sec = 300ms
stop_timeout = {3 * SLOW}s
""")  # the stop's SIGKILL comes after the hand-over (a re-exec's checks, a start: ASan)
    d.wait_state("dog", "running")
    pid = d.status("dog")["dog"]["pid"]

    def line():
        with open(d.sock + ".state") as f:
            return next((w for w in map(str.split, f) if w[0] == "service"), [])
    wait_for(lambda: "failing" in line(), what="the stop for the missed watchdog in the record")
    deadline = next(int(x[9:]) for x in line() if x.startswith("deadline="))
    was = d.record_stamp()
    hand_over(d, how)
    if how == "crash":
        wait_for(lambda: f"adopted pid {pid}, being stopped for a failure" in d.log(),
                 what="the takeover of the stop")
    # the new daemon's record: still being stopped for a failure, the same SIGKILL deadline
    wait_for(lambda: d.record_stamp() != was, what="a new record")
    now = line()
    kept = [int(x[9:]) for x in now if x.startswith("deadline=")]
    assert "failing" in now and kept and abs(kept[0] - deadline) <= 2, (now, deadline)
    # the new run misses its watchdog too, 300 ms after its READY=1: the log is read before
    # each status, so the one that shows the new run still running says nothing of that
    seen = {}

    def restarted():
        seen["log"] = d.log()
        s = d.status("dog")["dog"]
        return s["pid"] != pid and s["state"] == "running" and s
    new = wait_for(restarted, what="dog restarted by its policy")
    # said when the stop began, not only at the exit
    assert "service dog: watchdog: no sign of life for 300 ms: stopping it" in d.log()
    assert new["restarts"] == 1, new
    # as the parent across a re-exec, the new image has its status; after a crash, unknown
    assert new["last_exit"].get("signal_name" if how == "reexec" else "status_unknown") == \
        ("KILL" if how == "reexec" else True), new
    assert "stopped for a failure before it was taken over" in d.log()
    # one missed watchdog, one stop: the SIGKILL ended it (no second stop, after a second
    # missed watchdog, as before)
    assert seen["log"].count("no sign of life") == 1, seen["log"]
    d.stop()


def reaped_sender_cgroup_known():
    """Whether this kernel gives a message's receiver the pidfd of its sender (SCM_PIDFD,
    6.5) and, for one reaped since, the cgroup it died in (PIDFD_GET_INFO's exit
    information, 6.15)."""
    r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        r.setsockopt(socket.SOL_SOCKET, 76, 1)  # SO_PASSPIDFD
    except OSError:
        return False
    r.bind("\0evmon-test-%d" % os.getpid())
    pid = os.fork()
    if pid == 0:
        try:
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"x", r.getsockname())
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    _, anc, _, _ = r.recvmsg(16, socket.CMSG_SPACE(4))
    r.close()
    fds = [struct.unpack("i", data[:4])[0] for level, kind, data in anc if kind == 4]
    if not fds:
        return False
    info = bytearray(struct.pack("QQ", (1 << 2) | (1 << 3), 0) + bytes(48))
    try:
        fcntl.ioctl(fds[0], 0xC040FF0B, info)  # PIDFD_GET_INFO, version 0 (64 bytes)
        return bool(struct.unpack("Q", info[:8])[0] & (1 << 2))
    except OSError:
        return False
    finally:
        os.close(fds[0])


def test_a_sender_gone_before_it_is_read_is_still_attributed(procs, tmp_path):
    """READY=1 from a process that exits at once (systemd-notify in a script): by the time
    the daemon reads it, the sender may be reaped, and /proc has no cgroup of it any more.
    The kernel's pidfd of the sender (SCM_PIDFD, Linux 6.5) still says the cgroup it died
    in (Linux 6.15): the service is ready. Made certain here by stopping the daemon
    (SIGSTOP) until the sender has been reaped. Before, such a message was dropped ("not a
    process of a service") and the service never became ready."""
    if not reaped_sender_cgroup_known():
        pytest.skip("the kernel keeps no cgroup of a reaped sender (SCM_PIDFD, Linux 6.15)")
    flag, done = tmp_path / "flag", tmp_path / "done"
    d = Daemon(procs, tmp_path, f"""
[service:s]
command = sh -c 'until [ -e {flag} ]; do sleep 0.02; done; HELPER notify READY=1; : > {done}; exec HELPER pause'
ready = notify
""")
    d.wait_state("s", "starting")
    os.kill(d.p.pid, signal.SIGSTOP)
    try:
        flag.touch()
        wait_for(done.exists, what="the sender gone (sh waited for it)")
    finally:
        os.kill(d.p.pid, signal.SIGCONT)
    d.wait_state("s", "running")
    assert "not a process of a service" not in d.log(), d.log()
    d.stop()


def procs_with(arg):
    """pids whose command line is `sleep ARG`."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and cmdline(p) == f"sleep {arg}"]


def test_a_ready_check_runs_in_the_services_cgroup(procs, tmp_path):
    """A ready = exec: check runs in the service's cgroup, like a health check: what it
    leaves behind (a process in a session of its own) is killed with the service's stop.
    Before, checks ran in the daemon's own cgroup, and such processes stayed until the
    daemon exited. A check that hangs is still killed at ready_check_timeout (SIGTERM to
    its session), and the next one runs."""
    from test_cgroup import HOME, WHY
    if HOME is None:
        pytest.skip(f"needs a writable cgroup v2: {WHY}")
    mark = "%d.%d" % (os.getpid(), time.monotonic_ns() % 1000000)
    checks = tmp_path / "checks"
    d = Daemon(procs, tmp_path, f"""
[evmon]
stop_timeout = 5
cgroup = auto

[service:left]
command = HELPER pause
ready = exec:/bin/sh -c "setsid sleep {mark} </dev/null >/dev/null 2>&1 & exit 1"
ready_interval = 100ms
ready_timeout = 0

[service:hang]
command = HELPER pause
ready = exec:HELPER pidlog {checks} sleep 100000
ready_check_timeout = 300ms
ready_interval = 10ms
ready_timeout = 0
""")
    try:
        wait_for(lambda: len(procs_with(mark)) >= 2, timeout=30 * SLOW, what="two checks' leftovers")
        st = d.status()
        cg = st["left"].get("cgroup")
        assert cg, st["left"]
        for p in procs_with(mark):
            with open(f"/proc/{p}/cgroup") as f:
                own = next(ln.strip()[3:] for ln in f if ln.startswith("0::"))
            assert cg.endswith(own), (cg, own)
        r = d.ctl("stop", "left")
        assert r.returncode == 0, r
        d.wait_state("left", "stopped")
        wait_for(lambda: not procs_with(mark), timeout=30 * SLOW, what="the checks' leftovers gone")
        # hang's checks: each killed at its timeout, then the next; all in its cgroup
        wait_for(lambda: checks.exists() and len(checks.read_text().split()) >= 3,
                 timeout=30 * SLOW, what="three of hang's checks")
        assert d.status("hang")["hang"]["state"] == "starting"
        pids = [int(p) for p in checks.read_text().split()]
        assert sum(1 for p in pids if os.path.exists(f"/proc/{p}")) <= 1, pids
        d.stop()
        wait_for(lambda: not [p for p in pids if os.path.exists(f"/proc/{p}")],
                 what="every check process gone")
    finally:
        for p in procs_with(mark):
            os.kill(p, signal.SIGKILL)


def test_a_ready_check_runs_as_the_service_does(procs, tmp_path):
    """A ready = exec: check gets what the service runs with, as a health check does:
    EVMON_SERVICE and EVMON_INSTANCE (a check of one instance must know which one it
    checks: here each instance's check waits for its own file), umask, limits. Before,
    it got the configured environment only: no instance, the daemon's umask and limits."""
    seen = tmp_path / "seen"
    d = Daemon(procs, tmp_path, f"""
[evmon]
stop_timeout = 5

[service:w]
command = HELPER pause
instances = 2
umask = 027
limit_nofile = 77
ready = exec:/bin/sh -c 'echo "$EVMON_SERVICE $EVMON_INSTANCE $(umask) $(ulimit -n)" >> {seen}; test -e {tmp_path}/go$EVMON_INSTANCE'
ready_interval = 20ms
ready_timeout = 0
""")
    wait_for(lambda: seen.exists() and {"w:0 0 0027 77", "w:1 1 0027 77"} <= set(seen.read_text().splitlines()),
             timeout=30 * SLOW, what="both instances' checks: " + (seen.read_text() if seen.exists() else ""))
    (tmp_path / "go1").write_text("")
    r = d.ctl("wait", "w:1", "--for", "ready")
    assert r.returncode == 0, r
    assert d.status("w:0")["w:0"]["state"] == "starting"
    (tmp_path / "go0").write_text("")
    r = d.ctl("wait", "w:0", "--for", "ready")
    assert r.returncode == 0, r
    d.stop()


def test_status_says_why_a_service_is_fatal(procs, tmp_path):
    """A service given up on (fatal) says why in `ctl status` (INFO; "error" in --json):
    "not ready within ready_timeout ...; gave up after 1 failed starts in a row" was in
    the daemon's log only, and its LAST EXIT (signal TERM, the daemon's stop) read as if
    someone had killed it. Started again, it says nothing of the old failure."""
    d = Daemon(procs, tmp_path, """
[service:r]
command = HELPER pause
ready = exec:/bin/false
ready_interval = 20ms
ready_timeout = 300ms
start_retries = 0
stop_timeout = 5
""")
    d.wait_state("r", "fatal")
    err = d.status("r")["r"].get("error", "")
    assert "not ready within ready_timeout" in err and "gave up" in err, d.status("r")
    r = d.ctl("status", "r")
    assert "not ready within ready_timeout" in r.stdout, r.stdout
    d.write("""
[service:r]
command = HELPER pause
stop_timeout = 5
""")
    assert d.ctl("reload").returncode == 0
    r = d.ctl("start", "r")
    assert r.returncode == 0, r
    assert "error" not in d.status("r")["r"], d.status("r")
    d.stop()
