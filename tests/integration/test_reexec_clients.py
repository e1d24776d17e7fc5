"""What control clients see around `evmon ctl reexec` (issue 15): the loop
serves on while the new binary is asked its state format (a gate holds that
question open here), a second reexec meanwhile is refused, a shutdown
meanwhile answers the requester; a connection with a request half sent at
the exec is handed over with what it sent, and the new image answers it
once the rest comes (before, it was closed)."""
import json
import os
import re
import shutil
import signal
import subprocess

import pytest

from conftest import EVMON, SLOW, wait_for
from daemon_util import Daemon, LineReader, read_line
from test_continuity import all_running, config, marker, marker_pids, own_copy, start_with  # noqa: F401 (marker: a fixture)


def gated_copy(tmp_path):
    """The daemon's binary at its path, behind a script that holds the
    --state-format question until the gate FIFO is written to (and says
    when it is waiting there by creating the file 'asked')."""
    real = own_copy(tmp_path)
    inner = str(tmp_path / "inner" / "evmon")  # what the gate runs (called evmon: not init)
    os.makedirs(os.path.dirname(inner))
    shutil.copy(real, inner)
    gate, asked = str(tmp_path / "gate"), str(tmp_path / "asked")
    os.mkfifo(gate)
    exe = str(tmp_path / "bin" / "evmon-gated")
    with open(exe, "w") as f:
        f.write(f'#!/bin/sh\nif [ "$2" = --state-format ]; then : > {asked}; read x < {gate}; fi\n'
                f'exec {inner} "$@"\n')
    os.chmod(exe, 0o755)
    return real, exe, gate, asked


def start_gated(procs, tmp_path, marker, n=3):
    d = Daemon(procs, tmp_path, config(marker, n=n), start=False)
    real, exe, gate, asked = gated_copy(tmp_path)
    start_with(d, real)
    before = wait_for(lambda: all_running(d, n), what=f"{n} running")
    os.rename(exe, real)  # the path the daemon re-executes is the gate now
    return d, before, gate, asked


def open_gate(gate):
    fd = os.open(gate, os.O_WRONLY)  # the script waits on the other end
    os.write(fd, b"go\n")
    os.close(fd)


def test_served_while_the_binary_is_asked(procs, tmp_path, marker):
    d, before, gate, asked = start_gated(procs, tmp_path, marker)
    r = procs.spawn([EVMON, "ctl", "-S", d.sock, "reexec"], stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE)
    wait_for(lambda: os.path.exists(asked), what="the binary asked its state format")
    # the question is open: the loop answers (before, it waited for the answer)
    assert d.request({"cmd": "ping"})["pid"] == d.p.pid
    assert d.status()["w:0"]["pid"] == before["w:0"]["pid"]
    again = d.request({"cmd": "reexec"})
    assert not again["ok"] and "a re-exec is under way" in again["error"], again
    # SIGUSR2 the same: refused, and said (it was dropped without a word)
    d.p.send_signal(signal.SIGUSR2)
    wait_for(lambda: re.search(r"received SIGUSR2 from pid \d+: a re-exec is under way: not "
                               r"re-executing", d.log()), what="the SIGUSR2 refused")
    assert r.poll() is None  # the first one waits for its answer
    open_gate(gate)
    out, err = r.communicate(timeout=30 * SLOW)
    assert r.returncode == 0, out + err
    assert b"3 of 3 services kept running" in out
    assert {k: v["pid"] for k, v in d.status().items()} == {k: v["pid"] for k, v in before.items()}
    assert "re-exec: the loop served again" in d.log()
    d.stop()
    assert marker_pids(marker) == []


def test_shutdown_while_the_binary_is_asked(procs, tmp_path, marker):
    d, before, gate, asked = start_gated(procs, tmp_path, marker)
    s = d.connect()
    s.sendall(b'{"cmd":"reexec","id":7}\n')
    wait_for(lambda: os.path.exists(asked), what="the binary asked its state format")
    d.p.send_signal(signal.SIGTERM)
    reply = json.loads(read_line(s))
    assert not reply["ok"] and "shutting down: not re-executing" in reply["error"], reply
    assert reply["id"] == 7
    assert d.p.wait(timeout=60 * SLOW) == 0, d.log()  # the question was killed, not waited for
    assert marker_pids(marker) == []


def test_requester_gone_while_the_binary_is_asked(procs, tmp_path, marker):
    """The re-exec goes on without whoever asked for it (as for SIGUSR2)."""
    d, before, gate, asked = start_gated(procs, tmp_path, marker)
    s = d.connect()
    s.sendall(b'{"cmd":"reexec"}\n')
    wait_for(lambda: os.path.exists(asked), what="the binary asked its state format")
    s.close()
    open_gate(gate)
    wait_for(lambda: "re-exec: the loop served again" in d.log(), what="the re-exec")
    assert {k: v["pid"] for k, v in d.status().items()} == {k: v["pid"] for k, v in before.items()}
    d.stop()


def test_half_sent_request_is_answered_after_the_exec(procs, tmp_path, marker):
    """A request cut in two around the exec: its first half read by the old
    image, its second by the new one, which answers it. And a follower with
    half a request of its own keeps both its stream and the request."""
    d = Daemon(procs, tmp_path, config(marker, n=2))
    wait_for(lambda: all_running(d, 2), what="2 running")
    half = d.connect()
    half.sendall(b'{"cmd":"status","names":["w:1"],')
    follower = d.connect()
    follower.sendall(b'{"cmd":"events"}\n')
    assert json.loads(read_line(follower))["ok"]
    follower.sendall(b'{"cmd":"pi')
    # sent before this ping: read in the same turn of the loop as it, or an earlier one
    assert d.request({"cmd": "ping"})["ok"]
    pid = d.p.pid
    r = d.ctl("reexec")
    assert r.returncode == 0, r.stdout + r.stderr
    half.sendall(b'"id":"x"}\n')
    reply = json.loads(read_line(half))
    assert reply["ok"] and reply["id"] == "x" and [s["name"] for s in reply["services"]] == ["w:1"]
    follower.sendall(b'ng"}\n')
    lines = []
    while not lines or "event" in lines[-1]:  # events, then the ping's answer
        lines += [json.loads(l) for l in read_line(follower).splitlines()]
    assert any(l.get("event") == "reexec" for l in lines), lines
    assert lines[-1]["ok"] and lines[-1]["pid"] == pid, lines
    half.close()
    follower.close()
    d.stop()


def test_requests_pipelined_after_reexec_are_answered(procs, tmp_path, marker):
    """Requests sent on the reexec's connection behind it: the new image
    answers the reexec, then them (before, the connection closed)."""
    d = Daemon(procs, tmp_path, config(marker, n=1))
    wait_for(lambda: all_running(d, 1), what="w running")
    with d.connect() as s:
        s.sendall(b'{"cmd":"reexec"}\n{"cmd":"ping","id":1}\n{"cmd":"st')
        first = s.makefile("rb")
        reexec = json.loads(first.readline())
        assert reexec["ok"] and reexec["kept"] == 1, reexec
        ping = json.loads(first.readline())
        assert ping["ok"] and ping["id"] == 1
        s.sendall(b'atus"}\n')
        status = json.loads(first.readline())
        assert status["ok"] and [x["name"] for x in status["services"]] == ["w"]
    d.stop()


def cloexec_missing(pid):
    """The daemon's descriptors above 2 without FD_CLOEXEC, with what they are."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                flags = next(int(l.split()[1], 8) for l in f if l.startswith("flags:"))
            what = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if int(fd) > 2 and not flags & 0o2000000:
            out.append((int(fd), what))
    return sorted(out)


def test_what_crossed_the_exec_is_close_on_exec_again(procs, tmp_path, marker):
    """What crosses the exec has its FD_CLOEXEC cleared for it; the new image
    sets it again on all of it (handed-over clients and pidfds included), or
    a second re-exec would carry, unnamed, whatever the first handed over and
    the second did not (a client with a request under way hangs forever)."""
    d = Daemon(procs, tmp_path, config(marker, n=2, extra=f"log_dir = {tmp_path}/logs")
               + "stdout = log\n")
    wait_for(lambda: all_running(d, 2), what="2 running")
    follower = d.connect()
    follower.sendall(b'{"cmd":"events"}\n')
    assert json.loads(read_line(follower))["ok"]
    half = d.connect()
    half.sendall(b'{"cmd":"pi')
    assert d.request({"cmd": "ping"})["ok"]
    assert cloexec_missing(d.p.pid) == []
    r = d.ctl("reexec")
    assert r.returncode == 0, r.stdout + r.stderr
    assert cloexec_missing(d.p.pid) == []
    follower.close()
    half.close()
    d.stop()


def test_reexec_reply_has_the_id_and_the_requester_keeps_following(procs, tmp_path, marker):
    """The new image's answer to `reexec` echoes the request's "id", as every
    reply does (before, it had none); a requester that followed events
    before it asked follows them after (before, the subscription was lost):
    the 'reexec' event comes to it behind the answer, then its next reply."""
    d = Daemon(procs, tmp_path, config(marker, n=2))
    wait_for(lambda: all_running(d, 2), what="2 running")
    r = LineReader(d.connect())
    r.s.sendall(b'{"cmd":"events","names":["w:1"]}\n')
    assert r.next()["ok"]
    r.s.sendall(b'{"cmd":"reexec","id":{"n":42}}\n')
    reply = r.next(timeout=30)
    while "event" in reply:  # events before the exec (none expected: all are running)
        reply = r.next(timeout=30)
    assert reply["ok"] and reply["id"] == {"n": 42} and reply["kept"] == 2, reply
    r.s.sendall(b'{"cmd":"ping","id":2}\n')
    ev = r.next()
    assert ev.get("event") == "reexec" and ev["pid"] == d.p.pid, ev  # still a follower
    ping = r.next()
    assert ping["ok"] and ping["id"] == 2, ping
    # with its names: w:0's exit is not sent to it, w:1's is
    os.kill(d.status("w:0")["w:0"]["pid"], signal.SIGKILL)
    wait_for(lambda: d.status("w:0")["w:0"]["restarts"] == 1, what="w:0 restarted")
    os.kill(d.status("w:1")["w:1"]["pid"], signal.SIGKILL)
    seen = [r.next()]
    while not (seen[-1].get("service") == "w:1" and seen[-1].get("state") == "running"):
        seen.append(r.next())
    assert {e.get("service") for e in seen} == {"w:1"}, seen
    r.s.close()
    d.stop()


def test_handed_over_idle_client_is_timed_out(procs, tmp_path, marker):
    """A client between requests handed over to the new image counts its
    idle time there too (before, it had no idle timer until its first
    callback: one that never sent again held its slot for ever). Its idle
    clock restarts at the exec, so the old image's cannot have closed it."""
    idle = 5 * SLOW
    d = Daemon(procs, tmp_path, config(marker, n=1, extra=f"idle_timeout = {idle}s"))
    wait_for(lambda: all_running(d, 1), what="w running")
    quiet = d.connect(timeout=60)
    quiet.sendall(b'{"cmd":"ping"}\n')
    assert json.loads(read_line(quiet))["ok"]  # its idle clock starts again here
    r = d.ctl("reexec")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(lambda: "re-exec: the loop served again" in d.log(), what="the re-exec")
    assert "dropped: idle" not in d.log(), d.log()  # not timed out before the exec
    line = json.loads(read_line(quiet))  # waits up to 60 * SLOW s: about idle
    assert not line["ok"] and line["error"].startswith("idle: no request in"), line
    with pytest.raises(EOFError):
        read_line(quiet)
    log = d.log()
    assert log.index("re-exec: the loop served again") < log.index("dropped: idle"), log
    quiet.close()
    d.stop()


def test_waiting_request_is_answered_after_the_exec(procs, tmp_path, marker):
    """A request waiting for its services at the exec (start with "wait")
    crosses it: the new image answers it at once, with its id, that its
    wait was cut (before, the connection closed with no word), then answers
    what was sent behind it; the service started keeps its process."""
    d = Daemon(procs, tmp_path, config(marker, n=1) + f"""
[service:slow]
command = sleep {marker}
start_secs = 3600
autostart = no
""")
    wait_for(lambda: d.status("w")["w"]["state"] == "running", what="w running")
    s = d.connect()
    s.sendall(b'{"cmd":"start","names":["slow"],"wait":true,"id":"w1"}\n')
    st = wait_for(lambda: (x := d.status("slow")["slow"])["state"] == "starting" and x,
                  what="slow starting")
    s.sendall(b'{"cmd":"ping","id":"p"}\n')  # waits behind the start
    r = d.ctl("reexec")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = LineReader(s)  # the two answers may come in one read
    cut = lines.next()
    assert not cut["ok"] and cut["id"] == "w1", cut
    assert "its wait was not carried over" in cut["error"], cut
    ping = lines.next()
    assert ping["ok"] and ping["id"] == "p", ping
    after = d.status("slow")["slow"]
    # its process kept (the start period is not carried across an exec: it is adopted running)
    assert after["pid"] == st["pid"] and after.get("adopted"), after
    s.close()
    d.stop()


def test_logs_follow_is_told_the_stream_ended(procs, tmp_path, marker):
    """`ctl logs -f` cannot cross the exec: it is closed, and ctl says so
    (exit status 3) instead of ending as if the log had; the old image logs it."""
    d = Daemon(procs, tmp_path, config(marker, n=1, extra="log_dir = logs") + """
[service:talk]
command = sh -c 'i=0; while :; do i=$((i+1)); echo "line $i"; sleep 0.01; done'
stdout = log
""", start=False)
    os.makedirs(tmp_path / "logs")
    d.start()
    wait_for(lambda: d.status("talk")["talk"]["state"] == "running", what="talk running")
    log = tmp_path / "logs" / "talk.log"
    wait_for(lambda: log.exists() and b"line " in log.read_bytes(), what="talk's first lines")
    p = procs.spawn([EVMON, "ctl", "-S", d.sock, "logs", "-f", "talk"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: d.request({"cmd": "ping"})["clients"] == 2, what="the follower connected")
    r = d.ctl("reexec")
    assert r.returncode == 0, r.stdout + r.stderr
    out, err = p.communicate(timeout=30 * SLOW)
    assert p.returncode == 3, (out[-200:], err)
    assert b"the daemon ended the stream" in err, err
    assert b"line " in out
    assert "re-exec: 1 connection with a stream or a reply under way" in d.log()
    d.stop()


def test_a_binary_that_hangs_is_killed_with_what_it_started(procs, tmp_path, marker):
    """The binary at the daemon's path hangs when asked its state format, with a child of
    its own: after 5 s the re-exec is refused ("gave no answer") and both are killed. The
    child was left running (only the binary was killed)."""
    d = Daemon(procs, tmp_path, config(marker, n=1), start=False)
    real = own_copy(tmp_path)
    start_with(d, real)
    wait_for(lambda: all_running(d, 1), what="1 running")
    child = tmp_path / "child.pid"
    hang = tmp_path / "hang"
    hang.write_text(f"#!/bin/sh\nsleep 1000 &\necho $! > {child}\nwait\n")
    os.chmod(hang, 0o755)
    os.rename(hang, real)
    r = d.ctl("reexec")
    assert r.returncode != 0 and "no answer" in r.stdout + r.stderr, r
    pid = int(child.read_text())
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
             open(f"/proc/{pid}/stat").read().split()[2] == "Z", what="the hung binary's child killed")
    assert d.ctl("ping").returncode == 0
    d.stop()
