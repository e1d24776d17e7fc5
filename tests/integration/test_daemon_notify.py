"""`evmon daemon` under a service manager: the sd_notify protocol (READY=1,
RELOADING=1 with MONOTONIC_USEC, STOPPING=1, STATUS=) sent to $NOTIFY_SOCKET,
checked with our own AF_UNIX datagram socket standing in for systemd."""
import os
import signal
import socket
import struct
import time

import pytest

from conftest import children_of, wait_for
from daemon_util import SLOW, Daemon

MANY = 300  # enough services that READY=1 sent before they are started would be seen


class Manager:
    """A datagram socket like systemd's notify socket: records (pid, fields)."""

    def __init__(self, address):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.s.bind(address)
        # the sender's pid comes with each datagram, as systemd checks NotifyAccess=main
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def recv(self, timeout=30):
        self.s.settimeout(timeout * SLOW)
        data, anc, _, _ = self.s.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _uid, _gid = struct.unpack("iII", payload[:12])
        fields = dict(l.split("=", 1) for l in data.decode().split("\n") if l)
        return pid, fields

    def until(self, key, timeout=30):
        """Datagrams up to and including the first with key; returns them all."""
        got = []
        deadline = time.monotonic() + timeout * SLOW
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {key} in {got}"
            got.append(self.recv(left))
            if key in got[-1][1]:
                return got

    def close(self):
        self.s.close()


def direct_children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return f.read().split()
    except FileNotFoundError:  # a kernel without CONFIG_PROC_CHILDREN
        return children_of(pid)


def environ(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)


CONFIG = f"""
[service:web]
command = HELPER pause
instances = {MANY}
start_secs = 0
stop_timeout = 5

[service:later]
command = HELPER pause
autostart = false
"""


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_ready_reloading_stopping(procs, tmp_path, kind):
    if kind == "path":
        addr = str(tmp_path / "notify.sock")
        env_value = addr
    else:
        name = f"evmon-test-notify-{os.getpid()}-{time.monotonic_ns()}"
        addr = "\0" + name
        env_value = "@" + name
    mgr = Manager(addr)
    env = dict(os.environ, NOTIFY_SOCKET=env_value)
    d = Daemon(procs, tmp_path, CONFIG, env=env, start=False)
    try:
        d.start()
        # READY=1 is the first thing said, by the daemon itself, once every
        # autostart service was started and the socket listens
        got = mgr.until("READY")
        # counted at once, from /proc and not through the daemon (whose answer
        # would wait for the end of its start-up anyway)
        children = len(direct_children(d.p.pid))
        pid, ready = got[-1]
        assert children >= MANY, children
        assert pid == d.p.pid
        assert ready["READY"] == "1"
        assert all("RELOADING" not in f and "STOPPING" not in f for _, f in got)
        st = d.status()
        started = [n for n, s in st.items() if n.startswith("web:") and s["pid"]]
        assert len(started) == MANY, st
        assert st["later"]["state"] == "stopped"
        assert ready["STATUS"].startswith(f"{MANY + 1} services: ")
        assert "1 stopped" in ready["STATUS"]

        # the services do not inherit NOTIFY_SOCKET: they cannot speak for the daemon
        env0 = environ(st["web:0"]["pid"])
        assert b"NOTIFY_SOCKET" not in env0 and env0[b"EVMON_SERVICE"] == b"web:0"

        # a state change updates STATUS= (coalesced: one datagram for many changes)
        assert d.ctl("start", "later").returncode == 0
        want = f"{MANY + 1} services: {MANY + 1} running"
        seen = []
        while not seen or seen[-1] != want:
            seen.append(mgr.until("STATUS")[-1][1]["STATUS"])
            assert len(seen) < 10, seen

        # reload (ctl): RELOADING=1 with the monotonic time, then READY=1 with what changed
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        d.write(CONFIG + "\n[service:new]\ncommand = HELPER pause\nstart_secs = 0\n")
        assert d.ctl("reload").returncode == 0
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        got = mgr.until("RELOADING")
        f = got[-1][1]
        assert f["RELOADING"] == "1" and before <= int(f["MONOTONIC_USEC"]) <= after, f
        pid, f = mgr.until("READY")[-1]
        assert pid == d.p.pid
        assert f["STATUS"].startswith("reloaded: 1 added, 0 removed, 0 changed, "), f

        # a reload that fails also ends with READY=1: the old config still runs
        d.write(CONFIG + "\n[service:broken]\nrestart = never\n")
        d.p.send_signal(signal.SIGHUP)
        mgr.until("RELOADING")
        pid, f = mgr.until("READY")[-1]
        assert f["STATUS"].startswith("reload failed: ") and "missing 'command'" in f["STATUS"], f
        assert "new" in d.status()

        # shutdown: STOPPING=1 before the services are stopped
        d.p.send_signal(signal.SIGTERM)
        pid, f = mgr.until("STOPPING")[-1]
        assert pid == d.p.pid and f["STOPPING"] == "1"
        assert "received SIGTERM" in f["STATUS"] and f"stopping {MANY + 2} services" in f["STATUS"]
        assert d.p.wait(timeout=60 * SLOW) == 0
    finally:
        if d.p and d.p.poll() is None:
            d.stop()
        mgr.close()


def test_unusable_notify_socket_is_reported_not_fatal(procs, tmp_path):
    # a relative path: not something systemd would set; said once, then ignored
    env = dict(os.environ, NOTIFY_SOCKET="relative/notify.sock")
    d = Daemon(procs, tmp_path, "[service:a]\ncommand = HELPER pause\nstart_secs = 0\n", env=env)
    st = d.wait_state("a", "running")
    assert "NOTIFY_SOCKET=relative/notify.sock: not an absolute path" in d.log()
    assert b"NOTIFY_SOCKET" not in environ(st["pid"])
    d.stop()

    # a manager that went away: the first failed send is logged, the daemon goes on
    gone = str(tmp_path / "gone.sock")
    Manager(gone).close()  # bound, then closed: ECONNREFUSED
    env = dict(os.environ, NOTIFY_SOCKET=gone)
    d2 = Daemon(procs, tmp_path, "[service:a]\ncommand = HELPER pause\nstart_secs = 0\n",
                env=env, name="d2")
    d2.wait_state("a", "running")
    wait_for(lambda: f"notify: {gone}: Connection refused" in d2.log(), what="the failed send")
    assert d2.ctl("restart", "a").returncode == 0
    assert d2.log().count("notify:") == 1
    d2.stop()


def test_watchdog(procs, tmp_path):
    """WatchdogSec=: WATCHDOG=1 from the loop at half the interval, until the exit;
    the variables are not passed on to services."""
    mgr = Manager(str(tmp_path / "notify.sock"))
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="200000")
    d = Daemon(procs, tmp_path, "[service:a]\ncommand = HELPER pause\nstart_secs = 0\n", env=env)
    try:
        mgr.until("READY")
        for _ in range(3):
            pid, f = mgr.until("WATCHDOG")[-1]
            assert pid == d.p.pid and f["WATCHDOG"] == "1"
        env_a = environ(d.wait_state("a", "running")["pid"])
        assert not {b"WATCHDOG_USEC", b"WATCHDOG_PID", b"NOTIFY_SOCKET"} & set(env_a), env_a
        # the timer does not hold the exit
        d.p.send_signal(signal.SIGTERM)
        mgr.until("STOPPING")
        assert d.p.wait(timeout=30 * SLOW) == 0
    finally:
        if d.p.poll() is None:
            d.stop()
        mgr.close()

    # a watchdog meant for another process (WATCHDOG_PID) is not ours to feed
    mgr = Manager(str(tmp_path / "notify2.sock"))
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify2.sock"), WATCHDOG_USEC="20000",
               WATCHDOG_PID="1")
    d = Daemon(procs, tmp_path, "[service:a]\ncommand = HELPER pause\nstart_secs = 0\n", env=env,
               name="d2")
    try:
        mgr.until("READY")
        # two restarts (at least two STATUS= updates, a second apart) and no WATCHDOG=1
        # among the datagrams in between
        got = []
        for _ in range(2):
            assert d.ctl("restart", "a").returncode == 0
            got += mgr.until("STATUS")
        assert all("WATCHDOG" not in f for _, f in got), got
        env_a = environ(d.wait_state("a", "running")["pid"])
        assert b"WATCHDOG_PID" not in env_a and b"WATCHDOG_USEC" not in env_a
        d.stop()
    finally:
        if d.p.poll() is None:
            d.stop()
        mgr.close()


def test_a_reload_while_the_daemon_starts_says_nothing_before_its_ready(procs, tmp_path):
    """`ctl reload` while the daemon still starts its 2,000 services (sent as soon as its
    socket answers): the manager hears no RELOADING=1 and no READY=1 of the reload before
    the start's own READY=1. It was told READY=1 ("reloaded") first, the services still
    being started, then READY=1 again."""
    addr = str(tmp_path / "notify.sock")
    mgr = Manager(addr)
    env = dict(os.environ, NOTIFY_SOCKET=addr)
    config = "[service:web]\ncommand = HELPER pause\ninstances = 2000\nstart_secs = 0\n"
    d = Daemon(procs, tmp_path, config, env=env, start=False)
    try:
        d.start()
        assert d.ctl("reload").returncode == 0
        got = mgr.until("READY")
        assert all("RELOADING" not in f for _, f in got), got
        assert got[-1][1]["STATUS"].startswith("2000 services: "), got
    finally:
        if d.p and d.p.poll() is None:
            d.stop()
        mgr.close()
