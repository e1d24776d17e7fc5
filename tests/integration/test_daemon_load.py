"""`evmon daemon` under pressure: foreign uids, many clients, clients that
never read, malformed and oversized requests, and 2,000 services."""
import json
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest

from conftest import EVMON, HELPER, SAN, needs_root, wait_for
from daemon_util import (SLOW, Daemon, LineReader, alive, follow_reloads, read_line,
                         reload_until_dropped, stuck_subscriber)

SIMPLE = """
[service:web]
command = HELPER pause
start_secs = 0
"""


def test_peer_uid_is_checked(procs, tmp_path):
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    needs_root("a client run as nobody")
    # a directory nobody can reach (pytest's tmp_path is private to root)
    top = tempfile.mkdtemp(prefix="evmon-peercred-")
    try:
        os.chmod(top, 0o755)
        from pathlib import Path
        d = Daemon(procs, Path(top), SIMPLE)
        assert os.stat(d.sock).st_mode & 0o777 == 0o600
        # mode 0600 already keeps other users out...
        r = d.ctl("status", user="nobody")
        assert r.returncode == 3 and "Permission denied" in r.stderr, r
        # ...and with the mode opened up, SO_PEERCRED still does
        os.chmod(d.sock, 0o666)
        r = d.ctl("status", user="nobody")
        assert r.returncode == 1, r
        assert "permission denied: only root and the daemon's user" in r.stderr
        assert f"uid {nobody.pw_uid} is neither root" in d.log()
        assert d.ctl("status").returncode == 0  # root still is
        d.stop()
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_100_concurrent_clients(procs, tmp_path):
    d = Daemon(procs, tmp_path, SIMPLE)
    d.wait_state("web", "running")
    ps = [procs.spawn([EVMON, "ctl", "-S", d.sock, "--json", "status"]) for _ in range(100)]
    outs = [p.communicate(timeout=60 * SLOW) for p in ps]
    assert [p.returncode for p in ps] == [0] * 100, [o[1] for o in outs if o[1]][:3]
    for out, _ in outs:
        assert json.loads(out)["services"][0]["state"] == "running"
    # and 100 raw connections open at the same time, all answered
    socks = [d.connect() for _ in range(100)]
    for i, s in enumerate(socks):
        s.sendall(json.dumps({"cmd": "ping", "id": i}).encode() + b"\n")
    for i, s in enumerate(socks):
        r = json.loads(read_line(s))
        assert r["ok"] and r["id"] == i and r["clients"] >= 1
        s.close()
    d.stop()


def test_client_that_never_reads(procs, tmp_path):
    d = Daemon(procs, tmp_path, """
[evmon]
client_buffer = 64k

[service:s]
command = HELPER pause
instances = 50
start_secs = 0
stop_timeout = 2
""")
    wait_for(lambda: all(s["state"] == "running" for s in d.status().values()),
             what="all running")
    # one client that connects and says nothing, one that subscribes and never reads
    mute = d.connect()
    deaf = d.connect()
    deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    deaf.sendall(b'{"cmd":"events"}\n')
    # a flood of events: every restart is 5 lines per service
    for _ in range(40):
        r = d.request({"cmd": "restart", "names": ["s"], "wait": True}, timeout=60)
        assert r["ok"], r
        if "dropped" in d.log():
            break
    assert "events not read" in d.log() and "dropped" in d.log()
    # the daemon is fine and serves everyone else
    r = d.ctl("status")
    assert r.returncode == 0 and r.stdout.count("running") == 50
    mute.close()
    deaf.close()
    d.stop()


def test_clients_that_vanish_before_the_answer(procs, tmp_path):
    """Events written to subscribers that are gone (EPIPE): no SIGPIPE, no harm."""
    d = Daemon(procs, tmp_path, """
[service:s]
command = HELPER pause
instances = 5
start_secs = 0
stop_timeout = 2
""")
    wait_for(lambda: all(s["state"] == "running" for s in d.status().values()),
             what="all running")
    subs = []
    for _ in range(20):
        c = d.connect()
        c.sendall(b'{"cmd":"events"}\n')
        assert json.loads(read_line(c))["events"] is True
        subs.append(c)
    # While the daemon is stopped: a service dies, then the subscribers go. The
    # exit is ready first, so its events are written to sockets whose reader is
    # gone before the daemon sees them hang up.
    victim = d.status("s:0")["s:0"]["pid"]
    d.p.send_signal(signal.SIGSTOP)
    try:
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not alive(victim), what="the service dead")
        for c in subs:
            c.close()
    finally:
        d.p.send_signal(signal.SIGCONT)
    wait_for(lambda: d.status("s:0")["s:0"].get("pid") not in (None, 0, victim), what="s:0 restarted")
    r = d.ctl("ping")
    assert r.returncode == 0 and d.p.poll() is None, d.log()
    d.stop()


def test_malformed_and_oversized_requests(procs, tmp_path):
    d = Daemon(procs, tmp_path, SIMPLE)
    s = d.connect()
    rd = LineReader(s)
    s.sendall(b"this is not json\n")
    r = rd.next()
    assert not r["ok"] and "malformed JSON" in r["error"]
    s.sendall(b'"a string"\n')
    assert "JSON object" in rd.next()["error"]
    s.sendall(b'{"cmd":"fly"}\n')
    assert "unknown command" in rd.next()["error"]
    s.sendall(b'{"nocmd":1}\n')
    assert 'missing "cmd"' in rd.next()["error"]
    s.sendall(b'{"cmd":"start","names":"web"}\n')
    assert "must be an array" in rd.next()["error"]
    s.sendall(b'{"cmd":"signal","names":["web"],"signal":"NOPE"}\n')
    assert "must name a signal" in rd.next()["error"]
    # requests can be pipelined with ids
    s.sendall(b'{"cmd":"status","id":1}\n{"cmd":"ping","id":2}\n')
    a, b = rd.next(), rd.next()
    assert a["id"] == 1 and a["services"][0]["name"] == "web" and b["id"] == 2
    # a line longer than any request: said, and the connection closed
    s.sendall(b"{" + b'"x":"' + b"y" * 200000 + b'"}\n')
    r = rd.next()
    assert not r["ok"] and "longer than 65536 bytes" in r["error"]
    try:
        assert s.recv(1) == b""
    except ConnectionResetError:
        pass  # closed with some of our line unread
    # a client that vanishes mid-request does no harm
    t = d.connect()
    t.sendall(b'{"cmd":"status"')
    t.close()
    s.close()
    assert d.ctl("ping").returncode == 0
    d.stop()


@pytest.mark.parametrize("n", [200, pytest.param(2000, marks=pytest.mark.scale)])
def test_many_services(procs, tmp_path, n):
    """200 services (2,000 in make test-scale): all running, all in status, all stopped."""
    d = Daemon(procs, tmp_path, f"""
[service:s]
command = {HELPER} pause
instances = {n}
start_secs = 0
""")

    def running():
        st = d.status()
        return len(st) == n and all(s["state"] == "running" for s in st.values())

    wait_for(running, timeout=(30 + n / 20) * SLOW, interval=0.5, what=f"{n} services running")
    r = d.ctl("status")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == n + 1
    pids = d.pids()
    assert len(set(pids)) == n
    d.stop(timeout=30 + n / 20)


def _check_cpu(path):
    """CPU seconds (user + system) of `evmon daemon --check` on path."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([EVMON, "daemon", "--check", "-c", str(path), "-S", "/nonexistent/s.sock"],
                       capture_output=True, text=True, timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert r.returncode == 0, r.stderr
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_config_loading_is_linear(tmp_path):
    # issue 18.13: the duplicate-name check compared every pair of services
    # (40k services took 4.65 s of CPU). Eight times the services must cost
    # about eight times the CPU, far from the 64 times of a quadratic load;
    # CPU time (not wall time) so that a loaded machine does not matter.
    def config(n):
        p = tmp_path / f"c{n}.ini"
        p.write_text("".join(f"[service:s{i}]\ncommand = /bin/true\nautostart = false\n"
                             for i in range(n)))
        return p
    small, big = config(4000), config(32000)
    _check_cpu(small)  # warm the page cache
    ratio = min(_check_cpu(big) for _ in range(2)) / max(min(_check_cpu(small) for _ in range(2)), 0.005)
    assert ratio < 24, f"32,000 services cost {ratio:.1f}x the CPU of 4,000"


def _kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


@pytest.mark.skipif(SAN or os.environ.get("EVMON_VALGRIND"),
                    reason="the sanitizers' and valgrind's own memory hide the daemon's")
@pytest.mark.parametrize("n, cap_mib", [(200, 8), pytest.param(1000, 64, marks=pytest.mark.scale)])
def test_stuck_subscribers_hold_the_daemon_under_the_total_cap(procs, tmp_path, n, cap_mib):
    """Issue 18.6 at scale: n event subscribers that never read (1,000 with the
    default events_buffer_total of 64 MiB in make test-scale) and a flood of ~64 KiB
    events (refused reloads), many times the cap in all. The daemon's peak RSS grows
    by no more than the cap and a little per client (before the cap, 300 stuck
    subscribers took it to 1.14 GB); the slowest are dropped, and a subscriber that
    reads gets every event."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < n + 100:
        pytest.skip(f"RLIMIT_NOFILE {hard} is below {n + 100}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stuck = []
    try:
        cap = "" if cap_mib == 64 else f"events_buffer_total = {cap_mib}M"  # 64M: the default
        d = Daemon(procs, tmp_path, f"""
[evmon]
max_clients = {n + 24}
{cap}

[service:web]
command = HELPER pause
start_secs = 0
""")
        d.wait_state("web", "running")
        got, t = follow_reloads(d, 300)
        stuck.extend(stuck_subscriber(d) for _ in range(n))
        base = _kib(d.p.pid, "VmRSS")
        # every subscriber's share of the cap is a few events: flood until drops, then more
        reloads, good = reload_until_dropped(d, 400)
        for _ in range(10):
            assert d.ctl("reload", timeout=120).returncode == 1
            reloads += 1
        peak = _kib(d.p.pid, "VmHWM")
        sent = reloads * 64 * n  # KiB published to the stuck subscribers, about
        # the cap, plus per client its structures and what malloc keeps around
        allowed = cap_mib * 1024 + 8 * 1024 + 16 * n
        assert sent > 2 * cap_mib * 1024
        assert peak - base < allowed, f"peak RSS {peak} KiB, {base} KiB before ({sent} KiB sent)"
        assert "bytes of events not read" not in d.log()  # none passed client_buffer alone
        with open(d.cfg, "w") as f:
            f.write(good)
        assert d.ctl("reload").returncode == 0
        wait_for(lambda: len(got) >= reloads + 1, timeout=60 * SLOW, what="every reload event read")
        assert t.is_alive(), "the reader that keeps up was dropped"
        print(f"{n} stuck subscribers, cap {cap_mib} MiB: {reloads} events of ~64 KiB "
              f"(~{sent // 1024} MiB published), RSS {base} KiB before, peak {peak} KiB "
              f"(+{(peak - base) // 1024} MiB)")
        d.stop()
    finally:
        for s in stuck:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.skipif(SAN or os.environ.get("EVMON_VALGRIND"),
                    reason="the sanitizers' and valgrind's own memory hide the daemon's")
def test_big_replies_not_read_are_under_the_total_cap(procs, tmp_path):
    """One-shot replies count in the total cap as events do (issue 18.6): 80 clients
    ask for a status of 3,000 services (over 512 KiB each) and never read it. The
    daemon's peak RSS grows by no more than the cap and a little per client (without
    it: every reply), the slowest readers (asked first) are dropped first, the last
    one still gets its whole reply, and every other client is served, a full status
    included."""
    n, cap_mib, services = 80, 8, 3000
    body = "".join(f"[service:s{i:04d}]\ncommand = HELPER pause\nautostart = false\n\n"
                   for i in range(services))
    # idle_timeout = 0: the stuck clients are dropped by the cap, never for idling
    d = Daemon(procs, tmp_path, f"[evmon]\nevents_buffer_total = {cap_mib}M\nidle_timeout = 0\n\n"
               + body)
    big = json.dumps({"cmd": "status"}).encode() + b"\n"
    with d.connect() as s:  # the reply's size, and the daemon's heap after building one
        s.sendall(big)
        size = len(read_line(s))
    assert size > 512 * 1024, size
    base = _kib(d.p.pid, "VmRSS")
    with open(f"/proc/{d.p.pid}/clear_refs", "w") as f:
        f.write("5")  # VmHWM from here: the start's own peak is not the replies'
    stuck, ids = [], []
    try:
        for _ in range(n):
            s = d.connect()
            s.sendall(big)
            stuck.append(s)
            r = d.request({"cmd": "ping"})  # served, after the reply was built and held
            assert r["ok"]
        peak = _kib(d.p.pid, "VmHWM")
        allowed = cap_mib * 1024 + 8 * 1024 + 16 * n
        assert n * size // 1024 > 2 * allowed  # what they asked for, in all: far more
        assert peak - base < allowed, f"peak RSS {peak} KiB, {base} KiB before ({n} x {size} B asked)"
        ids = [int(m) for m in re.findall(r"client (\d+) \(pid \d+\): dropped: the slowest reader",
                                          d.log())]
        assert len(ids) >= n // 2, d.log()[-2000:]
        assert ids == sorted(ids), ids  # the one behind for longest first
        last = json.loads(read_line(stuck[-1]))  # kept: it gets every byte, late as it reads
        assert len(last["services"]) == services
        assert len(d.status()) == services  # a client that reads gets its whole reply
        print(f"{n} clients not reading a {size // 1024} KiB reply, cap {cap_mib} MiB: "
              f"RSS {base} KiB before, peak {peak} KiB (+{(peak - base) // 1024} MiB), "
              f"{len(ids)} dropped")
        d.stop()
    finally:
        for s in stuck:
            s.close()
