"""`evmon ctl wait NAME... --for STATE` and `evmon ctl health NAME`: exit 0
when reached, 1 when it can no longer be reached, 3 at the timeout. The
waits end on events; the only timeout used is the one under test."""
import json
import socket
import subprocess
import threading

import pytest

from conftest import EVMON, wait_for
from daemon_util import SLOW, Daemon

CONF = """
[evmon]
stop_timeout = 5

[service:slow]
command = HELPER pause
start_secs = 3600

[service:quick]
command = HELPER pause
start_secs = 0.2

[service:job]
command = HELPER sleep 200 exit 0
restart = never
start_secs = 0

[service:broken]
command = HELPER exit 1
restart = never
start_secs = 1h

[service:after_broken]
command = HELPER pause
requires = broken
start_secs = 0

[service:idle]
command = HELPER pause
autostart = false
"""


def test_wait_for_each_state_and_the_exit_codes(procs, tmp_path):
    d = Daemon(procs, tmp_path, CONF)
    r = d.ctl("wait", "quick", "--for", "ready")
    assert r.returncode == 0, r
    assert d.status("quick")["quick"]["state"] == "running"
    r = d.ctl("wait", "slow", "quick")  # running: starting counts
    assert r.returncode == 0, r
    r = d.ctl("wait", "job", "--for", "exited")
    assert r.returncode == 0, r
    assert d.status("job")["job"]["state"] == "exited"
    r = d.ctl("wait", "idle", "--for", "stopped")
    assert r.returncode == 0, r
    # the timeout: slow stays starting for an hour
    r = d.ctl("wait", "slow", "--for", "ready", "-t", "0.5")
    assert r.returncode == 3, r
    assert "timed out after 0.5 s: slow is starting (waiting for ready)" in r.stderr, r
    # cannot be reached: exited with a failure, or kept from starting by it
    r = d.ctl("wait", "broken", "--for", "ready", "-t", "60")
    assert r.returncode == 1, r
    assert "broken is exited: it cannot become ready" in r.stderr, r
    r = d.ctl("wait", "after_broken", "-t", "60")
    assert r.returncode == 1, r
    assert "after_broken is stopped: not started: requires broken" in r.stderr, r
    r = d.ctl("wait", "nosuch", "-t", "60")
    assert r.returncode == 1 and "no such service: nosuch" in r.stderr, r
    r = d.ctl("wait", "quick", "--for", "sometime")
    assert r.returncode == 2, r
    # -t 0: one look, no wait (it always timed out, before the status was read)
    for t in ("0", "0.001"):
        r = d.ctl("wait", "quick", "--for", "ready", "-t", t)
        assert r.returncode == 0, r
        r = d.ctl("wait", "slow", "--for", "ready", "-t", t)
        assert r.returncode == 3 and "slow is starting (waiting for ready)" in r.stderr, r
    for t in ("nan", "inf", "-1", "", "1e9", "1e1", "0x10", " 5", "1.2.3"):
        r = d.ctl("wait", "quick", "-t", t)
        assert r.returncode == 2 and f"bad timeout '{t}'" in r.stderr, r
    d.stop()


def test_json_wait_prints_what_it_ended_on(procs, tmp_path):
    d = Daemon(procs, tmp_path, CONF)
    r = d.ctl("--json", "wait", "quick", "--for", "ready")
    assert r.returncode == 0, r
    assert json.loads(r.stdout) == {"ok": True, "for": "ready", "result": "reached", "services": [
        {"name": "quick", "state": "running", "reached": True}]}, r
    r = d.ctl("--json", "wait", "quick", "slow", "--for", "ready", "-t", "0.2")
    assert r.returncode == 3 and "timed out" in r.stderr, r
    o = json.loads(r.stdout)
    assert (o["ok"], o["result"]) == (False, "timeout"), o
    assert [(s["name"], s["state"], s["reached"]) for s in o["services"]] == [
        ("quick", "running", True), ("slow", "starting", False)], o
    r = d.ctl("--json", "wait", "after_broken", "-t", "60")
    assert r.returncode == 1, r
    o = json.loads(r.stdout)
    assert o["result"] == "unreachable", o
    assert o["services"][0]["why"] == "not started: requires broken, which is exited", o
    r = d.ctl("--json", "wait", "nosuch", "-t", "60")  # the daemon's refusal, as it is
    assert r.returncode == 1 and json.loads(r.stdout)["ok"] is False, r
    d.stop()


def test_json_wait_prints_no_result_when_the_daemon_goes_away(procs, tmp_path):
    """The daemon gone after its status answer: its message, exit 3, and no result (it
    printed one saying "timeout", exit 3 being the timeout's code too). A stand-in daemon
    answers the subscription and the status, then hangs up: nothing left to chance."""
    path = str(tmp_path / "fake.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(30 * SLOW)
    served = []

    def serve():
        c, _ = srv.accept()
        with c, c.makefile("rwb") as f:
            assert json.loads(f.readline())["cmd"] == "events"
            f.write(b'{"ok":true}\n')
            f.flush()
            assert json.loads(f.readline())["cmd"] == "status"
            f.write(b'{"ok":true,"services":[{"name":"slow","state":"starting"}]}\n')
            f.flush()
        served.append(True)  # the wait had its status when we hung up

    t = threading.Thread(target=serve)
    t.start()
    try:
        r = procs.run([EVMON, "ctl", "-S", path, "--json", "wait", "slow", "--for", "ready",
                       "-t", "120"], timeout=60 * SLOW)
    finally:
        t.join()
        srv.close()
    assert served
    assert r.returncode == 3 and r.stdout == "" and r.stderr, r


def test_wait_follows_events_after_it_began(procs, tmp_path):
    d = Daemon(procs, tmp_path, CONF)
    p = procs.spawn([EVMON, "ctl", "-S", d.sock, "wait", "idle", "--for", "ready", "-t", "120"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # idle is started (1 s of start_secs) while the wait waits or just began: only the
    # event of its end of start period (after the wait's status) can end the wait
    r = d.ctl("start", "idle")
    assert r.returncode == 0, r
    assert p.wait(timeout=60 * SLOW) == 0, p.stderr.read()
    p = procs.spawn([EVMON, "ctl", "-S", d.sock, "wait", "quick", "--for", "ready", "-t", "120"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.wait(timeout=60 * SLOW) == 0
    p = procs.spawn([EVMON, "ctl", "-S", d.sock, "wait", "idle", "--for", "stopped", "-t", "120"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    r = d.ctl("stop", "idle")
    assert r.returncode == 0, r
    assert p.wait(timeout=60 * SLOW) == 0, p.stderr.read()
    d.stop()


def test_a_wait_for_exited_fails_when_the_service_is_stopped(procs, tmp_path):
    """`wait --for exited` of a service stopped meanwhile: it stays stopped, never exited by
    itself, so the wait fails (1) as the other targets do, where it waited out its -t (120
    s by default). Stopped and started until the wait has seen a stop: one before it began
    is no news to it."""
    d = Daemon(procs, tmp_path, CONF)
    d.wait_state("quick", "running")
    p = procs.spawn([EVMON, "ctl", "-S", d.sock, "wait", "quick", "--for", "exited", "-t", "120"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(100):
        assert d.ctl("stop", "quick").returncode == 0
        if p.poll() is not None:
            break
        assert d.ctl("start", "quick").returncode == 0
    assert p.wait(timeout=60 * SLOW) == 1, p.stderr.read()
    assert "quick is stopped" in p.stderr.read()
    d.stop()


def test_health_is_ready_without_a_health_check(procs, tmp_path):
    d = Daemon(procs, tmp_path, CONF)
    d.wait_state("quick", "running")
    r = d.ctl("health", "quick")
    assert r.returncode == 0 and r.stdout == "quick: ready (no health check)\n", r
    r = d.ctl("health", "idle")
    assert r.returncode == 1 and r.stdout == "idle: stopped\n", r
    r = d.ctl("health", "nosuch")
    assert r.returncode == 1 and "no such service" in r.stderr, r
    d.stop()


def gated(go, env="V=1"):
    """r is ready once the file go exists (its exec: check)."""
    return f"""
[evmon]
stop_timeout = 5

[service:r]
command = HELPER pause
environment = {env}
ready = exec:test -e {go}
ready_interval = 0.05
ready_timeout = 0
"""


def spawn_wait(procs, d, *args):
    """A ctl wait, connected (ping's clients: itself and the wait). Its status request
    follows its subscription's answer at once: a few round trips later it has its starting
    point, so what the test does next comes after it (the fixed behaviour holds in either
    order: only the failures before the fix needed this one)."""
    p = procs.spawn([EVMON, "ctl", "-S", d.sock, "wait", *args, "-t", "120"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: d.request({"cmd": "ping"})["clients"] == 2, what="the wait connected")
    for _ in range(5):
        d.request({"cmd": "ping"})
    return p


@pytest.mark.parametrize("target", ["ready", "healthy"])
def test_a_wait_goes_on_when_a_reload_replaces_the_service(procs, tmp_path, target):
    """A reload that changes r while a wait for it waits: the old copy's last event, under
    the same name, said "removed", and the wait gave up ("r is removed: it cannot become
    ready") while the new copy came up. That copy's events say "replaced": the wait follows
    the new one."""
    go = tmp_path / "go"
    d = Daemon(procs, tmp_path, gated(go))
    old = d.wait_state("r", "starting")["pid"]
    p = spawn_wait(procs, d, "r", "--for", target)
    d.write(gated(go, env="V=2"))
    r = d.ctl("reload")
    assert r.returncode == 0 and "changed: r" in r.stdout, r
    wait_for(lambda: (s := d.status("r")["r"])["state"] == "starting" and s["pid"] != old,
             what="the new copy starting")
    go.touch()
    assert p.wait(timeout=60 * SLOW) == 0, p.stderr.read()
    d.stop()


def test_a_wait_for_ready_goes_on_across_a_restart(procs, tmp_path):
    """`ctl restart r` by another client while a wait for r's readiness waits: the restart's
    stop (stopping, stopped, then starting again) ended the wait, "r is stopped", and r came
    back ready. Those events say "restarting": the wait goes on. A plain stop ends it still."""
    go = tmp_path / "go"
    d = Daemon(procs, tmp_path, gated(go))
    old = d.wait_state("r", "starting")["pid"]
    p = spawn_wait(procs, d, "r", "--for", "ready")
    r = d.ctl("-t", "0", "restart", "r")
    assert r.returncode == 0, r
    wait_for(lambda: (s := d.status("r")["r"])["state"] == "starting" and s["pid"] != old,
             what="r started again")
    go.touch()
    assert p.wait(timeout=60 * SLOW) == 0, p.stderr.read()
    go.unlink()
    assert d.ctl("-t", "0", "restart", "r").returncode == 0
    p = spawn_wait(procs, d, "r", "--for", "ready")
    assert d.ctl("stop", "r").returncode == 0
    assert p.wait(timeout=60 * SLOW) == 1
    assert "r is stopped: it cannot become ready" in p.stderr.read()
    d.stop()


@pytest.mark.parametrize("how", ["remove", "reload"])
def test_a_wait_ends_when_the_service_is_removed(procs, tmp_path, how):
    """A real removal (ctl remove, a reload that drops it) still ends a wait: removed."""
    go = tmp_path / "go"
    d = Daemon(procs, tmp_path, gated(go) + "[service:other]\ncommand = HELPER pause\n")
    d.wait_state("r", "starting")
    p = spawn_wait(procs, d, "r", "--for", "ready")
    if how == "remove":
        assert d.ctl("remove", "r").returncode == 0
    else:
        d.write("[service:other]\ncommand = HELPER pause\n")
        r = d.ctl("reload")
        assert r.returncode == 0 and "removed: r" in r.stdout, r
    assert p.wait(timeout=60 * SLOW) == 1
    assert "r is removed: it cannot become ready" in p.stderr.read()
    d.stop()
