"""`evmon daemon` and `evmon ctl` against the real binaries: config errors,
every ctl command, reload, the events stream, and clean shutdown."""
import ctypes
import errno
import json
import os
import re
import select
import signal
import subprocess
import time

import pytest


from conftest import EVMON, HELPER, PID_NS, children_of, wait_for
from daemon_util import (SLOW, Daemon, LineReader, alive, ctl_events, follow_reloads, read_line,
                         record_text, reload_until_dropped, stops_slowly, stuck_subscriber,
                         wait_signal_state)

BASIC = """
[evmon]
stop_timeout = 5

[service:web]
command = HELPER pause
start_secs = 0.2

[service:job]
command = HELPER exit 0
restart = never
start_secs = 0

[service:idle]
command = HELPER pause
autostart = false
"""


# ------------------------------------------------------------------ config


def test_config_errors_are_reported_with_file_and_line(procs, tmp_path):
    cfg = tmp_path / "bad.ini"
    cfg.write_text(
        "[evmon]\n"                                   # 1
        "stop_timeout = forever\n"                    # 2
        "[service:a]\n"                               # 3
        "command = true\n"                            # 4
        "colour = blue\n"                             # 5
        "[service:a]\n"                               # 6
        "command = true\n"                            # 7
        "[service:b]\n"                               # 8
        "restart = always\n"                          # 9
        "[service:c]\n"                               # 10
        "command = true\n"                            # 11
        "user = no-such-user-for-evmon\n"             # 12
        "[service:d]\n"                               # 13
        "command = no-such-program-for-evmon\n")      # 14
    want = [
        (2, "stop_timeout: 'forever' is not a duration"),
        (5, "unknown key 'colour'"),
        (6, "duplicate service 'a' (first on line 3)"),
        (8, "service b: missing 'command'"),
    ]
    # lines 12 and 14: what the machine lacks is not a mistake (test_daemon_resilience.py)
    for argv in ([EVMON, "daemon", "--check", "-c", str(cfg)],
                 [EVMON, "daemon", "-c", str(cfg), "-S", str(tmp_path / "s.sock")]):
        r = procs.run(argv, timeout=20)
        assert r.returncode == 1, r
        for line, msg in want:
            assert f"{cfg}:{line}: " in r.stderr and msg in r.stderr, (line, msg, r.stderr)
        assert "4 errors" in r.stderr and "no-such" not in r.stderr
        assert not os.path.exists(tmp_path / "s.sock")

    good = tmp_path / "good.ini"
    good.write_text(BASIC.replace("HELPER", HELPER))
    r = procs.run([EVMON, "daemon", "--check", "-c", str(good)], timeout=20)
    assert r.returncode == 0, r.stderr
    assert "OK: 3 services" in r.stdout


BAD_LINES = [
    ("orphan = 1", "'orphan' outside of any section"),
    ("[evmon]", None),
    ("log_max_bytes = lots", "log_max_bytes: 'lots' is not a size"),
    ("bogus = 1", "unknown key 'bogus'"),
    ("[nosuchsection]", "unknown section [nosuchsection]"),
    ("x = 1", None),
    ("[service:a b]", "bad service name 'a b'"),
    ("command = true", None),
    ("[service:c]", None),
    ("command = true", None),
    ("umask = 999", "umask: '999' is not an octal umask"),
    ("stop_signal = SIGFOO", "stop_signal: 'SIGFOO' is not a signal"),
    ("restart = sometimes", "restart: 'sometimes' is not one of"),
    ("instances = 0", "instances: '0' is not a number from 1"),
    ("exit_codes = 0,x", "exit_codes: '0,x' is not a list of exit codes"),
    ("stdout = file", "stdout: 'file' is not one of inherit, null, log"),
    ("autostart = maybe", "autostart: 'maybe' is not a boolean"),
    ("group = no-such-group-for-evmon", None),  # not a mistake: test_daemon_resilience.py
    ("start_secs = -1", "start_secs: '-1' is not a duration"),
    ("stop_timeout = 99999999999999999", "stop_timeout: '99999999999999999' is too long a duration "
     "(at most 10000000000 s, about 317 years)"),
    ("log_backups = -3", "log_backups: '-3' is not a whole number"),
    ("environment = NOEQUALS", "environment: 'NOEQUALS' is not KEY=VALUE"),
    ("directory = no/such/dir", None),
    ("command = false", "duplicate key 'command' (first set on line 10)"),
    ("no equals here", "expected 'key = value', '[section]' or a comment"),
    ("[service:d]", None),
    ("command = echo | cat", "command: unquoted shell syntax"),
    ("[service:e]", None),
    ("command =", "command: empty command"),
    ("[service:f]", None),
    ("command = true", None),
    ("stdout = log", "service f: stdout/stderr = log needs log_dir"),
    ("[service:g]", "service g: missing 'command'"),
    ("[service:h]", "service h: backoff_initial (60000 ms) is longer than backoff_max (30000 ms)"),
    ("command = true", None),
    ("backoff_initial = 1m", None),
    # a mistake keeps the default: checked against 30 s above, not against 0 ms
    ("backoff_max = -1", "backoff_max: '-1' is not a duration"),
    # names that would share a file with another service's: its cgroup, its log
    ("[service:_cgroup.a]", "service name '_cgroup.a' is reserved: _cgroup.X.service is the "
     "cgroup of service cgroup.X"),
    ("[service:a.err]", "service name 'a.err' is reserved: NAME.err.log is the stderr log of "
     "service NAME"),
    ("[service:i]", None),
    ("command = '' x", "command: empty program name ('')"),  # was a warning: not in PATH
    ("[service:j]", None),
    ("command = true", None),
    ("ready = fd:1000", "service j: ready = fd:1000 is past its limit_nofile (64)"),
    ("limit_nofile = 64", None),
]


def test_every_mistake_is_reported_in_file_order(procs, tmp_path):
    """Each kind of mistake names FILE:LINE, all of them at once, top to bottom
    (some are only found at the end of their section, e.g. an unknown group)."""
    cfg = tmp_path / "bad.ini"
    cfg.write_text("".join(text + "\n" for text, _ in BAD_LINES))
    want = [(i + 1, msg.replace("DIR", str(tmp_path))) for i, (_, msg) in enumerate(BAD_LINES) if msg]
    r = procs.run([EVMON, "daemon", "--check", "-c", str(cfg)], timeout=20)
    assert r.returncode == 1, r
    got = r.stderr.splitlines()
    assert got[-1] == f"evmon daemon: {cfg}: {len(want)} errors", got
    assert len(got) == len(want) + 1, got
    for (line, msg), out in zip(want, got):
        assert out.startswith(f"evmon daemon: {cfg}:{line}: ") and msg in out, (line, msg, out)
    assert r.stdout == ""

    # a directory is not an empty config
    r = procs.run([EVMON, "daemon", "--check", "-c", str(tmp_path)], timeout=20)
    assert r.returncode == 1 and f"{tmp_path}: Is a directory" in r.stderr, r


def test_nul_byte_is_refused_with_file_and_line(procs, tmp_path):
    """A NUL byte would end the line for a text reader: `command = echo visible\\0
    hidden` must not quietly run `echo visible` (issue 18.10)."""
    cfg = tmp_path / "nul.ini"
    cfg.write_bytes(b"[service:a]\n"
                    b"command = /bin/echo visible\0 hidden-arg\n"
                    b"[service:b]\n"
                    b"command = /bin/true\n"
                    b"environment = A=\0\0B\n")
    for argv in ([EVMON, "daemon", "--check", "-c", str(cfg)],
                 [EVMON, "daemon", "-c", str(cfg), "-S", str(tmp_path / "s.sock")]):
        r = procs.run(argv, timeout=20)
        assert r.returncode == 1, r
        got = r.stderr.splitlines()
        assert got[:2] == [f"evmon daemon: {cfg}:2: NUL byte in the line: a config file is text",
                           f"evmon daemon: {cfg}:5: NUL byte in the line: a config file is text"], got
        assert not os.path.exists(tmp_path / "s.sock")


def test_check_output_and_warnings(procs, tmp_path):
    cfg = tmp_path / "c.ini"
    logs = tmp_path / "logs"
    cfg.write_text(f"[evmon]\nlog_dir = {logs}\n[service:x]\ncommand = true\nstdout = log\n"
                   "instances = 3\n[service:y]\ncommand = true\n")
    sock = tmp_path / "run" / "s.sock"
    argv = [EVMON, "daemon", "--check", "-c", str(cfg), "-S", str(sock)]
    # valid, but the log directory and the socket's directory do not exist yet
    r = procs.run(argv, timeout=20)
    assert r.returncode == 0, r
    assert r.stdout == (f"{cfg}: OK: 4 services from 2 definitions; control socket {sock}; "
                        f"log_dir {logs} (see the warnings)\n")
    warn = r.stderr.splitlines()
    assert warn == [
        f"evmon daemon: {cfg}: warning: log_dir {logs}: No such file or directory: the output of 3 "
        "services with stdout or stderr = log would be discarded",
        f"evmon daemon: {cfg}: warning: control socket {sock}: {sock.parent}: No such file or "
        "directory: the daemon would not start"], warn
    # --strict: what would stop the daemon or discard output fails the check
    r = procs.run(argv + ["--strict"], timeout=20)
    assert r.returncode == 1 and r.stdout == "", r
    assert r.stderr.splitlines()[2:] == [f"evmon daemon: {cfg}: 2 errors (--strict)"], r.stderr
    # with a service's problem too, every one is said (the log_dir's and the socket's were
    # not: the check stopped at the first kind)
    both = tmp_path / "both.ini"
    both.write_text(cfg.read_text() + "[service:z]\ncommand = /no/such/prog-evmon\n")
    r = procs.run([EVMON, "daemon", "--check", "-c", str(both), "-S", str(sock), "--strict"],
                  timeout=20)
    assert r.returncode == 1 and "/no/such/prog-evmon" in r.stderr, r
    assert f"log_dir {logs}" in r.stderr and f"control socket {sock}" in r.stderr, r.stderr
    assert r.stderr.endswith(f"evmon daemon: {both}: 3 errors (--strict)\n"), r.stderr
    logs.mkdir()
    sock.parent.mkdir()
    r = procs.run(argv, timeout=20)
    assert r.returncode == 0 and r.stderr == "", r
    assert r.stdout == f"{cfg}: OK: 4 services from 2 definitions; control socket {sock}; log_dir {logs}\n"
    assert procs.run(argv + ["--strict"], timeout=20).returncode == 0
    # a log directory anyone can write to is refused by the daemon: --check says so
    os.chmod(logs, 0o777)
    r = procs.run(argv, timeout=20)
    assert r.returncode == 0 and "is writable by every user and not sticky" in r.stderr, r
    os.chmod(logs, 0o755)
    # a file that is not a socket: --check said OK
    r = procs.run(argv[:-1] + [str(cfg)], timeout=20)
    assert r.returncode == 0 and r.stderr == (
        f"evmon daemon: {cfg}: warning: control socket {cfg}: exists and is not a socket: the "
        "daemon would not start\n"), r
    assert procs.run(argv[:-1] + [str(cfg), "--strict"], timeout=20).returncode == 1
    # a socket path too long to bind, by -S or socket =: a mistake, as the start says it (it
    # was a warning, exit 0, for a file the daemon refuses)
    bad = tmp_path / ("x" * 100)
    said = f"evmon daemon: control socket {bad}: socket path longer than 101 bytes\n"
    start = procs.run([EVMON, "daemon", "-c", str(cfg), "-S", str(bad)], timeout=20)
    assert start.returncode == 1 and start.stderr == said, start
    r = procs.run(argv[:-1] + [str(bad)], timeout=20)
    assert r.returncode == 1 and r.stdout == "", r
    assert r.stderr == said + f"evmon daemon: {cfg}: 1 error\n", r
    in_file = tmp_path / "long.ini"
    in_file.write_text(f"[evmon]\nsocket = {bad}\n" + cfg.read_text().replace("[evmon]\n", ""))
    r = procs.run([EVMON, "daemon", "--check", "-c", str(in_file)], timeout=20)
    assert r.returncode == 1 and r.stderr == said + f"evmon daemon: {in_file}: 1 error\n", r


def test_daemon_own_variables_are_said(procs, tmp_path):
    """A variable the daemon sets itself (EVMON_SERVICE, EVMON_DAEMON_ID, EVMON_INSTANCE of
    instances, a check's EVMON_CHECK) in environment or an env_file is replaced: a warning names the service and
    the key (it was dropped without a word), a mistake with --strict; EVMON_INSTANCE of a
    service without instances is passed on, and not said."""
    (tmp_path / "e.env").write_text("A=1\nEVMON_SERVICE=f\n")
    cfg = tmp_path / "c.ini"
    cfg.write_text("[service:s]\ncommand = true\nenvironment = EVMON_SERVICE=z EVMON_INSTANCE=3\n"
                   "env_file = e.env\n[service:t]\ncommand = true\ninstances = 2\n"
                   "environment = EVMON_INSTANCE=9 EVMON_DAEMON_ID=0 EVMON_CHECK=health\n")
    argv = [EVMON, "daemon", "--check", "-c", str(cfg), "-S", str(tmp_path / "s.sock")]
    said = [f"{cfg}:3: service s: environment: EVMON_SERVICE is set by the daemon: this value is "
            "not used",
            f"{cfg}:4: service s: env_file {tmp_path}/e.env: EVMON_SERVICE is set by the daemon: "
            "this value is not used",
            f"{cfg}:8: service t: environment: EVMON_DAEMON_ID is set by the daemon: this value "
            "is not used",
            f"{cfg}:8: service t: environment: EVMON_INSTANCE is set by the daemon: this value is "
            "not used",
            f"{cfg}:8: service t: environment: EVMON_CHECK is set by the daemon: this value is "
            "not used"]
    r = procs.run(argv, timeout=20)
    assert r.returncode == 0 and "(see the warnings)" in r.stdout, r
    assert r.stderr.splitlines() == [f"evmon daemon: warning: {m}" for m in said], r.stderr
    r = procs.run(argv + ["--strict"], timeout=20)
    assert r.returncode == 1, r
    assert r.stderr.splitlines() == [f"evmon daemon: {m}" for m in said] + [
        f"evmon daemon: {cfg}: 5 errors (--strict)"], r.stderr


def test_demo_config(procs, tmp_path):
    """examples/demo.ini (what `make run` starts) shows what it says it shows,
    and `evmon ctl logs NAME` works for its services (issue 18.21)."""
    src = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "demo.ini")
    # the same layout as the source tree: examples/demo.ini, its logs in build/demo-logs
    (tmp_path / "examples").mkdir()
    (tmp_path / "build" / "demo-logs").mkdir(parents=True)
    demo = tmp_path / "examples" / "demo.ini"
    with open(src) as f:
        demo.write_text(f.read())
    r = procs.run([EVMON, "daemon", "--check", "-c", str(demo)], timeout=20)
    assert r.returncode == 0 and "OK: 5 services from 4 definitions" in r.stdout, r
    assert f"log_dir {tmp_path}/examples/../build/demo-logs" in r.stdout, r
    # what the comments at its top and `make run` say to type
    with open(src) as f:
        head = f.read().split("[evmon]")[0]
    mk = open(os.path.join(os.path.dirname(src), "..", "Makefile")).read()
    assert "-S build/cc/demo.sock" in head and "DEMO_SOCK = $(abspath $(BUILD))/demo.sock" in mk
    assert "mkdir -p build/demo-logs" in head and "mkdir -p build/demo-logs" in mk
    d = Daemon(procs, tmp_path, "", start=False)
    d.cfg = str(demo)
    d.start()
    for n in ("web:0", "web:1", "worker"):
        d.wait_state(n, "running")
    mig = d.wait_state("migrate", "exited")
    assert mig["last_exit"]["code"] == 0
    # the crash loop backs off (and does not give up)
    wait_for(lambda: d.status("crashy")["crashy"]["restarts"] >= 1
             and d.status("crashy")["crashy"]["state"] in ("backoff", "running"),
             timeout=20 * SLOW, what="crashy restarted")
    assert "backoff" in d.log() and "fatal" not in d.status("crashy")["crashy"]["state"]
    # worker stops on its stop_signal (INT) and exits 0 from its trap, which is
    # set once it has said its queue (running after start_secs does not say so)
    wait_for(lambda: "worker: queue=jobs" in d.ctl("logs", "worker").stdout,
             what="the worker's INT trap")
    r = d.ctl("stop", "worker")
    assert r.returncode == 0, r.stderr
    w = d.status("worker")["worker"]
    assert w["state"] == "stopped" and w["last_exit"]["code"] == 0, w
    for name, text in (("web:0", "web 0 up"), ("web:1", "web 1 up"), ("migrate", "migrate: done"),
                       ("crashy", "crashy: failing in 1 s"), ("worker", "worker: bye")):
        r = d.ctl("logs", name, "-n", "100")
        assert r.returncode == 0 and text in r.stdout, (name, r)
    assert "worker: queue=jobs" in d.ctl("logs", "worker").stdout
    d.stop()


def test_usage_errors(procs, tmp_path):
    r = procs.run([EVMON, "daemon"], timeout=10)
    assert r.returncode == 2 and "-c FILE" in r.stderr
    r = procs.run([EVMON, "ctl", "-S", str(tmp_path / "none.sock"), "bogus"], timeout=10)
    assert r.returncode == 2
    r = procs.run([EVMON, "ctl", "-S", str(tmp_path / "none.sock"), "status"], timeout=10)
    assert r.returncode == 3
    assert "no daemon at" in r.stderr and "evmon daemon -c FILE" in r.stderr


# ------------------------------------------------------------------ commands


def test_service_process_setup(procs, tmp_path):
    """command quoting, directory, environment and umask reach the process."""
    work = tmp_path / "work dir"
    work.mkdir()
    d = Daemon(procs, tmp_path, f"""
[evmon]
stop_timeout = 5

[service:env]
command = HELPER pause 'two words' "a \\"quoted\\" one" back\\ slash
directory = {work}
environment = QUEUE=jobs "GREETING=hello world" EMPTY=
umask = 027
start_secs = 0

[service:plain]
command = HELPER pause
start_secs = 0
""")
    pid = d.wait_state("env", "running")["pid"]

    def cmdline():
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[:-1]
    # start_secs = 0 reports running as the spawn returns: the exec may still be under way
    wait_for(lambda: cmdline()[1:2] == [b"pause"], what="the helper's exec")
    argv = cmdline()
    assert argv[1:] == [b"pause", b"two words", b'a "quoted" one', b"back slash"], argv
    assert os.readlink(f"/proc/{pid}/cwd") == str(work)
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if e)
    assert env[b"QUEUE"] == b"jobs" and env[b"GREETING"] == b"hello world" and env[b"EMPTY"] == b""
    assert env[b"EVMON_SERVICE"] == b"env" and b"EVMON_INSTANCE" not in env
    assert env[b"PATH"] == os.environ["PATH"].encode()  # added to the daemon's, not instead

    def umask(p):
        with open(f"/proc/{p}/status") as f:
            return next(l.split()[1] for l in f if l.startswith("Umask:"))
    assert umask(pid) == "0027"
    # without the keys: the daemon's directory and umask, no QUEUE
    plain = d.wait_state("plain", "running")["pid"]
    assert os.readlink(f"/proc/{plain}/cwd") == os.readlink(f"/proc/{d.p.pid}/cwd")
    assert umask(plain) == umask(d.p.pid)
    with open(f"/proc/{plain}/environ", "rb") as f:
        assert b"QUEUE=jobs" not in f.read().split(b"\0")
    d.stop()




def test_status_table_and_json(procs, tmp_path):
    d = Daemon(procs, tmp_path, BASIC)
    d.wait_state("web", "running")
    d.wait_state("job", "exited")
    r = d.ctl("status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["NAME", "STATE", "PID", "UPTIME", "RESTARTS",
                                              "LAST EXIT", "INFO"]
    rows = {l.split()[0]: l for l in lines[1:]}
    assert set(rows) == {"web", "job", "idle"}
    web = rows["web"].split()
    assert web[1] == "running" and int(web[2]) > 0
    assert rows["job"].split()[1] == "exited" and "code 0" in rows["job"]
    assert rows["idle"].split()[1] == "stopped"
    # columns are aligned: STATE starts at the same offset on every line
    offs = {l.index(l.split()[1], len(l.split()[0])) for l in lines}
    assert len(offs) == 1, lines

    r = d.ctl("--json", "status", "web")
    assert r.returncode == 0
    o = json.loads(r.stdout)
    assert o["ok"] and [s["name"] for s in o["services"]] == ["web"]
    s = o["services"][0]
    assert s["state"] == "running" and s["pid"] > 0 and s["restarts"] == 0
    assert d.ctl("status", "nope").returncode == 4  # unknown: LSB's code (issue 18.21)
    d.stop()


def test_start_stop_restart_signal(procs, tmp_path):
    out = tmp_path / "sig.txt"
    d = Daemon(procs, tmp_path, BASIC + f"""
[service:trap]
command = sh -c 'trap "echo usr1 >> {out}" USR1; echo ready >> {out}; while :; do sleep 0.05; done'
start_secs = 0
""")
    web = d.wait_state("web", "running")
    r = d.ctl("stop", "web")
    assert r.returncode == 0, r.stderr
    assert "web: stopped" in r.stdout
    assert not alive(web["pid"])
    assert d.status("web")["web"]["state"] == "stopped"

    r = d.ctl("start", "web", "idle")
    assert r.returncode == 0, r.stderr
    st = d.status()
    assert st["web"]["state"] == "running" and st["idle"]["state"] == "running"

    old = st["web"]["pid"]
    r = d.ctl("restart", "web")
    assert r.returncode == 0, r.stderr
    new = d.status("web")["web"]
    assert new["state"] == "running" and new["pid"] != old and not alive(old)

    wait_for(lambda: out.exists() and "ready" in out.read_text(), what="trap ready")
    r = d.ctl("signal", "trap", "USR1")
    assert r.returncode == 0 and "signaled: trap" in r.stdout, r.stderr
    wait_for(lambda: "usr1" in out.read_text(), what="USR1 delivered")
    r = d.ctl("signal", "job", "HUP")  # exited: nothing to signal
    assert r.returncode == 1 and "job: not running" in r.stderr
    r = d.ctl("signal", "web", "NOSUCHSIG")
    assert r.returncode == 2

    r = d.ctl("stop", "nosuch")
    assert r.returncode == 1 and "no such service: nosuch" in r.stderr
    d.stop()


def test_start_reports_failure(procs, tmp_path):
    d = Daemon(procs, tmp_path, """
[service:bad]
command = HELPER exit 3
start_secs = 10
start_retries = 1
backoff_initial = 10ms
autostart = false
""")
    r = d.ctl("start", "bad")
    assert r.returncode == 1
    assert "bad: fatal" in r.stdout and "not running: bad (fatal)" in r.stderr
    s = d.status("bad")["bad"]
    assert s["state"] == "fatal" and s["last_exit"]["code"] == 3
    d.stop()


def test_add_and_remove(procs, tmp_path):
    d = Daemon(procs, tmp_path, BASIC)
    r = d.ctl("add", "-e", "GREETING=hi there", "--restart", "always", "extra", "--",
              HELPER, "pause")
    assert r.returncode == 0, r.stderr
    assert "extra: running" in r.stdout
    s = d.status("extra")["extra"]
    assert s["added"] and s["restart"] == "always"
    with open(f"/proc/{s['pid']}/environ", "rb") as f:
        env = f.read().split(b"\0")
    assert b"GREETING=hi there" in env and b"EVMON_SERVICE=extra" in env
    assert not [e for e in env if e.startswith(b"EVMON_INSTANCE=")]

    # from JSON, like `docker run`, with instances
    spec = {"name": "pool", "command": [HELPER, "pause"], "instances": 2, "start_secs": 0}
    r = d.ctl("add", "--json", json.dumps(spec))
    assert r.returncode == 0, r.stderr
    st = d.status()
    assert st["pool:0"]["state"] == "running" and st["pool:1"]["state"] == "running"

    r = d.ctl("add", "extra", "--", HELPER, "pause")
    assert r.returncode == 1 and "already exists" in r.stderr
    r = d.ctl("add", "x2", "--", "/no/such/binary")
    assert r.returncode == 1 and "/no/such/binary" in r.stderr
    r = d.ctl("add", "-s", "colour=red", "x3", "--", HELPER, "pause")
    assert r.returncode == 1 and "unknown key 'colour'" in r.stderr
    r = d.request({"cmd": "add", "service": {"name": "x4"}})
    assert not r["ok"] and "missing 'command'" in r["error"]

    pids = [st["pool:0"]["pid"], st["pool:1"]["pid"], s["pid"]]
    r = d.ctl("remove", "pool", "extra")
    assert r.returncode == 0, r.stderr
    assert "removed: pool:0 pool:1 extra" in r.stdout
    wait_for(lambda: not any(alive(p) for p in pids), what="removed services gone")
    assert set(d.status()) == {"web", "job", "idle"}
    d.stop()


def test_ping_and_shutdown_command(procs, tmp_path):
    d = Daemon(procs, tmp_path, BASIC)
    r = d.ctl("ping")
    assert r.returncode == 0 and f"pid {d.p.pid}" in r.stdout
    pids = d.pids()
    r = d.ctl("shutdown")
    assert r.returncode == 0, r.stderr
    assert d.p.wait(timeout=30 * SLOW) == 0
    assert not any(alive(p) for p in pids)
    assert not os.path.exists(d.sock)


def test_ctl_options_anywhere(procs, tmp_path):
    """Options after the command and its names, as systemctl, docker and kubectl
    take them (issue 18.14); for add, the options end at the command to run."""
    logs = tmp_path / "logs"
    logs.mkdir()
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}
stdout = log
restart = never
start_secs = 0

[service:web]
command = HELPER print one print two print three pause

[service:idle]
command = HELPER pause
autostart = false
""")
    d.wait_state("web", "running")

    def logged(name, text):
        f = logs / f"{name}.log"
        return f.exists() and text in f.read_text()

    wait_for(lambda: logged("web", "three"), what="web's lines in its log")
    env = dict(os.environ, POSIXLY_CORRECT="1")  # no difference: the order is ours

    def run(*args):
        return procs.run([EVMON, "ctl"] + list(args), timeout=60 * SLOW, env=env)

    r = run("status", "--json", "-S", d.sock)
    assert r.returncode == 0, r.stderr
    assert {s["name"] for s in json.loads(r.stdout)["services"]} == {"web", "idle"}
    r = run("status", "web", "-S", d.sock, "--json")
    assert [s["name"] for s in json.loads(r.stdout)["services"]] == ["web"]
    r = run("logs", "web", "-n", "2", "-S", d.sock)
    assert r.returncode == 0 and r.stdout.splitlines()[-2:] == ["two", "three"], r
    r = run("-S", d.sock, "logs", "--lines=1", "web")
    assert r.stdout.splitlines() == ["three"], r
    r = run("start", "idle", "-t", "0", "-S", d.sock)
    assert r.returncode == 0, r.stderr
    # add: options before NAME and after it; what follows the command's first word
    # (or --) is the command's own
    r = run("add", "-S", d.sock, "echoer", "-r", "never", "--", HELPER, "argv", "--json", "-t")
    assert r.returncode == 0, r.stderr
    r = run("add", "lister", "-S", d.sock, "--restart=never", HELPER, "argv", "-x", "--y")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: logged("echoer", "-t") and logged("lister", "--y"), what="their argv")
    assert (logs / "echoer.log").read_text().count("[6] --json\n[2] -t\n") == 1
    assert (logs / "lister.log").read_text().count("[2] -x\n[3] --y\n") == 1
    r = run("status", "-Q", "-S", d.sock)
    assert r.returncode == 2 and "usage" in r.stderr
    d.stop()


def test_ctl_prints_only_the_error_on_refusal(procs, tmp_path):
    """A refused request prints its error, not a table header or made-up values
    (issue 18.15); a request that acted on services still shows them."""
    d = Daemon(procs, tmp_path, BASIC)
    r = d.ctl("status", "nosuch")
    assert r.returncode == 4 and r.stdout == "", r  # status NAME: LSB's "unknown"
    assert "no such service: nosuch" in r.stderr
    r = d.ctl("signal", "nosuch", "HUP")
    assert r.returncode == 1 and r.stdout == "" and "no such service" in r.stderr, r
    d.stop()

    # refused before any request: the one client a daemon allows is connected
    m = Daemon(procs, tmp_path, BASIC.replace("[evmon]\n", "[evmon]\nmax_clients = 1\nidle_timeout = 1h\n"), name="m")

    def hold():  # the start's probe may still count until the daemon sees it gone
        s = m.connect()
        try:  # refused: its answer, or (closed before our write or its answer) EPIPE, EOF
            s.sendall(b'{"cmd":"ping"}\n')
            if json.loads(read_line(s)).get("ok"):
                return s
        except (BrokenPipeError, ConnectionResetError, EOFError):
            pass
        s.close()

    with wait_for(hold, what="the one client slot"):
        r = m.ctl("ping")
        assert r.returncode == 1 and r.stdout == "", r
        assert "too many clients" in r.stderr
    m.stop()


def test_ctl_add_says_the_warnings_a_config_file_would_get(procs, tmp_path):
    """The definition of `ctl add` gets the warnings --check and a reload give a file's
    (a variable the daemon sets, health keys without a check, a check's program missing):
    in the answer, on ctl's stderr, and in the log. It got none."""
    d = Daemon(procs, tmp_path, BASIC)
    r = d.ctl("add", "-e", "EVMON_SERVICE=other", "-s", "health_retries=3", "w1", "--",
              HELPER, "pause")
    assert r.returncode == 0 and "w1: running" in r.stdout, r
    assert r.stderr.splitlines() == [
        "evmon ctl: warning: service w1: environment: EVMON_SERVICE is set by the daemon: "
        "this value is not used",
        "evmon ctl: warning: service w1: health_retries has no effect without a health "
        "check (health_cmd, health_tcp or health_http)"], r.stderr
    assert "add: warning: service w1: health_retries has no effect" in d.log()
    # also when the answer waits for nothing, and in JSON
    r = d.ctl("--json", "-t", "0", "add", "-s", "health_cmd=/no/such/check", "w2", "--",
              HELPER, "pause")
    assert r.returncode == 0, r
    warnings = json.loads(r.stdout)["warnings"]
    assert len(warnings) == 1 and warnings[0].startswith("health_cmd: /no/such/check"), warnings
    # none: no "warnings" at all
    r = d.ctl("--json", "add", "w3", "--", HELPER, "pause")
    assert r.returncode == 0 and "warnings" not in json.loads(r.stdout), r
    d.stop()


def test_ctl_add_refuses_options_it_would_drop_or_the_daemon_would_misname(procs, tmp_path):
    """--json is the whole service: -n, --no-start and the rest beside it were
    dropped (one instance, started); -s name=... renamed the service NAME is; an
    option given twice was refused in the daemon's words ("duplicate key 'restart'")."""
    d = Daemon(procs, tmp_path, BASIC)
    spec = json.dumps({"name": "p14", "command": [HELPER, "pause"]})
    for args, says in (
            (["--json", spec, "-n", "2"], "--json is the whole service: -n/--instances too"),
            (["--no-start", "--json", spec], "--json is the whole service: --no-start too"),
            (["-r", "never", "-e", "A=1", "--json", spec, "-w", "/", "-u", "nobody", "-s", "x=1"],
             "-r/--restart, -e/--env, -w/--workdir, -u/--user, -s/--set too (put them in"),
            (["--json", spec, "--json", spec], "--json given twice"),
            (["-s", "name=zzz", "p7", HELPER, "pause"], "-s name: the name is NAME"),
            (["-s", "command=true", "p7", HELPER, "pause"],
             "-s command: the command is what follows NAME"),
            (["-r", "always", "-r", "never", "p7", HELPER, "pause"], "-r/--restart given twice"),
            (["--no-start", "--no-start", "p7", HELPER, "pause"], "--no-start given twice"),
            (["-s", "restart=always", "--restart=never", "p7", HELPER, "pause"],
             "-s restart and -r/--restart both set 'restart'"),
            (["-e", "A=1", "-s", "environment=B=2", "p7", HELPER, "pause"],
             "-e/--env and -s environment both set 'environment'"),
            (["-s", "stop_signal=INT", "-s", "stop_signal=TERM", "p7", HELPER, "pause"],
             "-s stop_signal given twice")):
        r = d.ctl("add", *args)
        assert r.returncode == 2 and says in r.stderr, (args, r)
        assert "duplicate key" not in r.stderr
    assert set(d.status()) == {"web", "job", "idle"}
    # -e is repeatable; alone, each of the others is taken
    r = d.ctl("add", "-e", "A=1", "-e", "B=2", "-n", "2", "--no-start", "-s", "stop_signal=INT",
              "p7", HELPER, "pause")
    assert r.returncode == 0, r
    st = d.status()
    assert st["p7:0"]["state"] == st["p7:1"]["state"] == "stopped", st
    d.stop()


def _ctl_to(d, stdout, *args, timeout=30):
    """evmon ctl ARGS on d with stdout as given (a file, or a pipe's write end)."""
    return d.procs.run([EVMON, "ctl", "-S", d.sock] + list(args), stdout=stdout,
                       timeout=timeout * SLOW)


def _closed_pipe():
    """A pipe's write end whose reader has gone (as after `| head -1`'s exit)."""
    r, w = os.pipe()
    os.close(r)
    return w


def test_ctl_output_errors_end_it(procs, tmp_path):
    """Write errors on stdout were ignored: `ctl events | head -1` never ended
    (SIGPIPE ignored, EPIPE unchecked) and `status > /dev/full` exited 0. A reader
    gone ends ctl quietly, with the command's own status; another error is said
    and fails it (1; 4 for status NAME's state)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    d = Daemon(procs, tmp_path, BASIC.replace("[evmon]\n", f"[evmon]\nlog_dir = {logs}\n")
               .replace("command = HELPER pause\nstart_secs = 0.2",
                        "command = HELPER print hello pause\nstart_secs = 0.2\nstdout = log"))
    d.wait_state("web", "running")
    wait_for(lambda: (logs / "web.log").exists() and "hello" in (logs / "web.log").read_text(),
             what="web's line in its log")
    full = "No space left on device"
    with open("/dev/full", "w") as f:
        for args, rc in ((["status"], 1), (["--json", "status"], 1), (["metrics"], 1),
                         (["logs", "--raw", "web"], 1), (["logs", "web"], 1), (["ping"], 1),
                         (["status", "web"], 4), (["is-active", "web"], 4), (["--help"], 1)):
            r = _ctl_to(d, f, *args)
            assert r.returncode == rc and f"evmon ctl: stdout: {full}" in r.stderr, (args, r)
            assert r.stderr.count("stdout") == 1, (args, r.stderr)
    # a reader gone: quiet, the status the command had
    for args, rc in ((["status"], 0), (["metrics"], 0), (["logs", "web"], 0),
                     (["status", "idle"], 3), (["logs", "-f", "web"], 0), (["events"], 0),
                     (["--json", "events", "web"], 0)):
        w = _closed_pipe()
        try:
            r = _ctl_to(d, w, *args, timeout=10)  # events, logs -f: nothing more comes
        finally:
            os.close(w)
        assert r.returncode == rc and r.stderr == "", (args, r)

    # events whose reader goes while it follows, and events to a full disk
    p = procs.spawn([EVMON, "ctl", "-S", d.sock, "events"])

    def following():  # subscribed once a reload's line comes: reload until one does
        assert d.ctl("reload").returncode == 0
        return select.select([p.stdout], [], [], 0.2)[0]
    wait_for(following, timeout=10 * SLOW, what="ctl events following")
    assert b"reload" in p.stdout.readline()
    p.stdout.close()
    assert p.wait(timeout=10 * SLOW) == 0 and p.stderr.read() == b""
    with open("/dev/full", "w") as f:
        p = procs.spawn([EVMON, "ctl", "-S", d.sock, "events"], stdout=f)

        def ended():
            assert d.ctl("reload").returncode == 0
            return p.poll() is not None
        wait_for(ended, timeout=10 * SLOW, interval=0.1, what="events to /dev/full ended")
    assert p.returncode == 1 and f"evmon ctl: stdout: {full}" in p.stderr.read().decode()
    d.stop()


def test_ctl_following_ends_when_stdout_hangs_up(procs, tmp_path):
    """stdout the read end of a pipe whose writer is gone (POLLHUP, set for good): a
    follower waiting for its next line (events, logs -f) took it for nothing and polled
    again at once, 100% CPU until a line came. It ends as when its reader is gone:
    quietly, with its status."""
    logs = tmp_path / "logs"
    logs.mkdir()
    d = Daemon(procs, tmp_path, BASIC.replace("[evmon]\n", f"[evmon]\nlog_dir = {logs}\n")
               .replace("command = HELPER pause\nstart_secs = 0.2",
                        "command = HELPER pause\nstart_secs = 0.2\nstdout = log"))
    d.wait_state("web", "running")
    for args in (["events"], ["--json", "events", "web"], ["logs", "-f", "-n", "0", "web"]):
        r, w = os.pipe()
        os.close(w)
        try:
            got = _ctl_to(d, r, *args, timeout=10)  # it never ended: nothing comes
        finally:
            os.close(r)
        assert got.returncode == 0 and got.stderr == "", (args, got)
    d.stop()


# ------------------------------------------------------------------ reload


RELOAD_A = """
[service:same]
command = HELPER pause
start_secs = 0

[service:changed]
command = HELPER pause
start_secs = 0

[service:gone]
command = HELPER pause
start_secs = 0
"""

RELOAD_B = """
[service:same]
command = HELPER pause
start_secs = 0

[service:changed]
command = HELPER sleep 100000
start_secs = 0

[service:new]
command = HELPER pause
start_secs = 0
"""


def test_reload_add_remove_change_unchanged(procs, tmp_path):
    d = Daemon(procs, tmp_path, RELOAD_A)
    for n in ("same", "changed", "gone"):
        d.wait_state(n, "running")
    before = {n: s["pid"] for n, s in d.status().items()}

    d.write(RELOAD_B)
    r = d.ctl("reload")
    assert r.returncode == 0, r.stderr
    assert "added: new" in r.stdout and "removed: gone" in r.stdout
    assert "changed: changed" in r.stdout and "unchanged: 1" in r.stdout
    wait_for(lambda: set(d.status()) == {"same", "changed", "new"}, what="new service set")
    d.wait_state("new", "running")
    after = d.wait_state("changed", "running")
    assert after["pid"] != before["changed"]
    # the replacement starts at once; the old process stops in the background
    wait_for(lambda: not alive(before["changed"]), what="changed service's old process stopped")
    def cmdline(pid):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    # exec'd when the spawn returns, but not under valgrind (its clone is a fork)
    wait_for(lambda: b"sleep" in cmdline(after["pid"]), what="the new command's exec")
    assert d.status("same")["same"]["pid"] == before["same"]  # not touched
    wait_for(lambda: not alive(before["gone"]), what="removed service stopped")

    # a broken config is refused and the running one kept
    d.write(RELOAD_B + "\n[service:broken]\nrestart = never\n")
    r = d.ctl("reload")
    assert r.returncode == 1
    assert "service broken: missing 'command'" in r.stderr and f"{d.cfg}:" in r.stderr
    assert set(d.status()) == {"same", "changed", "new"}

    # a command that cannot start: applied (the file is valid), and the answer says why it
    # will fail, not only the daemon's log (it printed "changed: changed" and nothing else)
    d.write(RELOAD_B.replace("[service:new]", "[service:new]\ndirectory = /no/such/dir-evmon"))
    r = d.ctl("reload")
    assert r.returncode == 0, r
    assert "evmon ctl: reload: warning: " in r.stderr and "/no/such/dir-evmon" in r.stderr, r
    resp = d.request({"cmd": "reload"})
    assert any("/no/such/dir-evmon" in w for w in resp["warnings"]), resp
    d.write(RELOAD_B)
    r = d.ctl("reload")
    assert r.returncode == 0 and r.stderr == "", r
    # keys read only at the daemon's start: said, not silently ignored
    d.write("[evmon]\nmax_clients = 7\nidle_timeout = 3s\ncgroup = no\n" + RELOAD_B)
    resp = d.request({"cmd": "reload"})
    for key in ("max_clients", "idle_timeout", "cgroup"):
        assert f"{key}: changes at the next start of the daemon" in resp["warnings"], resp
    d.write(RELOAD_B)
    assert d.ctl("reload").returncode == 0

    # SIGHUP does the same as ctl reload
    d.write(RELOAD_A)
    d.p.send_signal(signal.SIGHUP)
    wait_for(lambda: set(d.status()) == {"same", "changed", "gone"}, what="reload on SIGHUP")
    d.wait_state("gone", "running")
    assert d.status("same")["same"]["pid"] == before["same"]
    assert "received SIGHUP" in d.log()
    d.stop()


def sleeps(mark):
    """Live processes `sleep mark` (in this test's PID namespace)."""
    found = []
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if f.read() == b"sleep\0%d\0" % mark:
                    with open(f"/proc/{p}/stat") as g:
                        if g.read().rsplit(")", 1)[1].split()[0] != "Z":
                            found.append(int(p))
        except (OSError, ValueError):
            pass
    return found


def test_reload_warns_of_start_only_keys_against_what_is_in_effect(procs, tmp_path):
    """A key read only at the start is compared with its value in effect, not with the
    file read last: 100 -> 5 warns, 5 again warns again (5 is still not in effect), back to
    100 does not (it warned, and said nothing for the second 5)."""
    def conf(clients):
        return f"[evmon]\nmax_clients = {clients}\n[service:a]\ncommand = HELPER pause\n"
    d = Daemon(procs, tmp_path, conf(100))
    said = "max_clients: changes at the next start of the daemon"
    for clients, warns in ((5, True), (5, True), (100, False)):
        d.write(conf(clients))
        resp = d.request({"cmd": "reload"})
        assert resp["ok"], resp
        assert (said in resp.get("warnings", [])) == warns, (clients, resp)
    d.stop()


def test_reload_cancels_a_restart_the_new_policy_would_not_do(procs, tmp_path):
    """A service waiting in backoff to be restarted after an exit, given by a reload a policy
    that would not restart after that exit (restart = never; on-failure after what its new
    exit_codes call a success), is exited right after the reload: the pending restart ran
    once. One the new policy still restarts stays in backoff."""
    def svc(name, code, restart, codes=None):
        return f"""
[service:{name}]
command = sh -c 'echo run >> {tmp_path}/runs-{name}; exit {code}'
restart = {restart}
{f"exit_codes = {codes}" if codes else ""}
backoff_initial = 1h
backoff_max = 1h
start_secs = 0
"""
    before = (("never1", 1, "always"), ("onf0", 0, "always"), ("onf1", 1, "always"),
              ("codes3", 3, "on-failure"))
    after = (("never1", 1, "never"), ("onf0", 0, "on-failure"), ("onf1", 1, "on-failure"),
             ("codes3", 3, "on-failure", "0 3"))
    d = Daemon(procs, tmp_path, "".join(svc(*a) for a in before))
    for name, *_ in before:
        d.wait_state(name, "backoff")
    d.write("".join(svc(*a) for a in after))
    r = d.ctl("reload")
    assert r.returncode == 0 and "updated: never1 onf0 onf1 codes3" in r.stdout, r
    for name in ("never1", "onf0", "codes3"):
        st = d.wait_state(name, "exited")
        assert st["pid"] is None, st
    # the checks ran in one turn of the daemon's loop: onf1's is done, it still waits
    assert d.status("onf1")["onf1"]["state"] == "backoff"
    log = d.log()
    for name in ("never1", "onf0", "codes3"):
        assert f"{name}: backoff -> exited" in log, log[-3000:]
        assert (tmp_path / f"runs-{name}").read_text() == "run\n"  # not started again
    assert "restart cancelled" in log, log[-3000:]
    # a start still starts it
    assert d.ctl("start", "never1").returncode == 0
    wait_for(lambda: (tmp_path / "runs-never1").read_text().count("run") == 2,
             what="never1's second run")
    d.wait_state("never1", "exited")
    d.stop()


def test_reload_lowering_max_retries_gives_up_a_service_in_backoff_past_it(procs, tmp_path):
    """A service failing in a row, waiting in backoff, given by a reload a max_retries its
    failures are past, gives up (fatal) right after the reload. It was restarted once more."""
    def cfg(backoff, retries=0):
        return f"""
[service:f]
command = sh -c 'echo run >> {tmp_path}/runs; exit 1'
backoff_initial = {backoff}
backoff_max = 1h
start_secs = 0
max_retries = {retries}
"""
    d = Daemon(procs, tmp_path, cfg("10ms"))
    d.wait_state("f", "backoff")
    d.write(cfg("1h"))  # its next backoff is an hour: it waits there for the next reload
    assert d.ctl("reload").returncode == 0
    wait_for(lambda: (s := d.status("f")["f"])["state"] == "backoff" and
             s["next_start_ms"] > 600000, what="f failed again and waits an hour")
    runs = (tmp_path / "runs").read_text()
    d.write(cfg("1h", 1))
    assert d.ctl("reload").returncode == 0
    st = d.wait_state("f", "fatal")
    assert "gave up after" in st.get("error", "") + st.get("message", "") or \
        "gave up after" in d.log(), (st, d.log()[-2000:])
    assert "(max_retries is now 1)" in d.log(), d.log()[-2000:]
    assert (tmp_path / "runs").read_text() == runs  # not started again
    d.stop()


def test_reload_making_a_backing_off_essential_service_non_essential_and_never(procs, tmp_path):
    """essential = true, waiting in backoff after an exit; a reload sets essential = false and
    restart = never: it is exited, and the daemon goes on. The first version of the
    cancelled restart exited it within the reload, before the unit had its new settings:
    judged essential, the daemon shut down ("essential service e exited with code 1")."""
    def conf(essential, restart):
        return f"""
[service:e]
command = sh -c 'echo run >> {tmp_path}/runs; exit 1'
restart = {restart}
essential = {essential}
backoff_initial = 1h
backoff_max = 1h
start_secs = 0

[service:other]
command = HELPER pause
start_secs = 0
"""
    d = Daemon(procs, tmp_path, conf("true", "always"))
    d.wait_state("e", "backoff")
    other = d.status("other")["other"]["pid"]
    d.write(conf("false", "never"))
    r = d.ctl("reload")
    assert r.returncode == 0 and "updated: e" in r.stdout, r
    d.wait_state("e", "exited")
    assert d.p.poll() is None, d.log()
    st = d.status()
    assert st["other"]["state"] == "running" and st["other"]["pid"] == other, st
    assert "essential service" not in d.log(), d.log()
    assert (tmp_path / "runs").read_text() == "run\n"
    d.stop()


def test_reload_starts_again_a_changed_service_a_user_started(procs, tmp_path):
    """autostart = false, started by `ctl start`, then its command changed by a reload:
    stopped and started again with the new command, as every changed service that runs
    (it was stopped and left down); one not running stays down."""
    def conf(mark):
        return (f"[service:m]\ncommand = sleep {mark}\nautostart = false\nstart_secs = 0\n"
                f"[service:idle]\ncommand = sleep 1{mark}\nautostart = false\n")
    d = Daemon(procs, tmp_path, conf(400231))
    assert d.ctl("start", "m").returncode == 0
    d.write(conf(400232))
    assert d.ctl("reload").returncode == 0
    st = d.wait_state("m", "running")
    assert sleeps(400232) == [st["pid"]] and sleeps(400231) == []
    assert d.status("idle")["idle"]["state"] == "stopped" and sleeps(1400232) == []
    d.stop()


@pytest.mark.parametrize("then", ["reload", "crash", "stop"])
def test_a_start_deferred_behind_an_old_copy_is_kept_or_cancelled(procs, tmp_path, then):
    """A changed service a user had started (autostart = false) whose old copy stops
    slowly: its new copy waits. Meanwhile a second reload (of another service), or a
    crash of the daemon, keeps that start (the record says it: the next daemon starts it
    once the old copy is gone), also when the reload changes it again; a `ctl stop`
    cancels it. The second reload and the crash lost it (the service stayed down)."""
    def conf(mark, other="400271"):
        return (f"[service:m]\ncommand = sh -c 'trap \"\" TERM; exec sleep {mark}'\n"
                f"autostart = false\nstart_secs = 0\nstop_timeout = 2\n"
                f"[service:o]\ncommand = sleep {other}\nstart_secs = 0\n")
    d = Daemon(procs, tmp_path, conf(400272))
    assert d.ctl("start", "m").returncode == 0
    old = wait_signal_state(d, "m", "SigIgn")
    d.write(conf(400273))
    assert d.ctl("-t", "0", "reload").returncode == 0
    assert alive(old) and sleeps(400273) == []
    mark = 400273
    if then == "reload":  # changed again: the copy that never ran is replaced in turn
        mark = 400275
        d.write(conf(mark, other="400274"))
        assert d.ctl("-t", "0", "reload").returncode == 0
    elif then == "crash":
        wait_for(lambda: f" old={old}:" in record_text(d), what="the old copy in the record")
        d.crash()
        d.start()
    else:
        assert d.ctl("-t", "0", "stop", "m").returncode == 0
    wait_for(lambda: not alive(old), timeout=30 * SLOW, what="the old copy's end")
    if then == "stop":
        time.sleep(0.5)
        assert sleeps(mark) == [] and d.status("m")["m"]["state"] == "stopped"
    else:
        st = d.wait_state("m", "running", timeout=30)
        # running from its spawn (start_secs = 0): its shell may not have exec'd sleep yet
        wait_for(lambda: sleeps(mark) == [st["pid"]], what="the new copy's sleep")
        assert sleeps(400273 if mark != 400273 else 0) == []
    d.stop()


def test_reload_without_cgroups_stops_the_old_copy_before_the_new(procs, tmp_path):
    """A reload that changes a running service's command stops it and starts the new one
    once it is gone, also without cgroups (with them the new copy waited for the cgroup
    to empty; without, both ran side by side until the old one's stop_timeout). A crash
    in between: test_a_crash_lets_an_old_copy_stop_in_its_time."""
    d = Daemon(procs, tmp_path, stops_slowly(400141))
    old = wait_signal_state(d, "ig", "SigIgn")  # a SIGTERM before its trap would end it
    d.write(stops_slowly(400142))
    r = d.ctl("reload")
    assert r.returncode == 0, r
    # while the old copy ignores its SIGTERM (3 s), no new one runs
    for _ in range(10):
        assert not (sleeps(400141) and sleeps(400142)), "two copies side by side"
        time.sleep(0.1)
    wait_for(lambda: d.status("ig")["ig"]["state"] == "running" and sleeps(400142),
             timeout=30 * SLOW, what="the new copy")
    assert not alive(old) and sleeps(400141) == []
    assert len(sleeps(400142)) == 1
    d.stop()


@pytest.mark.parametrize("how", ["start", "restart"])
@pytest.mark.parametrize("cgroup", ["no", "auto"])
def test_a_start_while_the_old_copy_stops_waits_for_it(procs, tmp_path, cgroup, how):
    """`ctl start` (or restart) of a service a reload replaced, while its old copy still
    ignores its SIGTERM: the new copy starts once the old one is gone, and the request's
    reply waits for that. It started at once, beside the old copy (and with a cgroup the
    old copy's SIGKILL, a cgroup.kill, then took the new one down with it)."""
    d = Daemon(procs, tmp_path, stops_slowly(400191, cgroup=cgroup))
    old = wait_signal_state(d, "ig", "SigIgn")
    d.write(stops_slowly(400192, cgroup=cgroup))
    assert d.ctl("-t", "0", "reload").returncode == 0
    c = procs.spawn([EVMON, "ctl", "-S", d.sock, how, "ig"])
    while True:
        new, answered = sleeps(400192), c.poll() is not None
        if not alive(old):  # still alive after the look: what it saw was while it was
            break
        assert new == [], "a new copy beside the old one"
        assert not answered, "the start answered before the old copy was gone"
        time.sleep(0.05)
    out, err = c.communicate(timeout=30 * SLOW)
    assert c.returncode == 0, (out, err)
    st = d.status("ig")["ig"]
    assert st["state"] == "running", st
    # running from its spawn on: its sh execs sleep a moment later
    wait_for(lambda: sleeps(400192) == [st["pid"]], what="the new copy's sleep")
    time.sleep(0.3)  # the old copy's end took nothing of the new one's with it
    assert sleeps(400192) == [st["pid"]] and d.status("ig")["ig"]["pid"] == st["pid"]
    d.stop()


def test_a_wait_goes_on_when_a_reload_replaces_the_service(procs, tmp_path):
    """`ctl restart` waiting for a service still starting (start_secs) when a reload
    changes it: the new copy, stopped until the old one is gone, with the old copy's
    counters, ended the wait at once as "not running: n (stopped)". It waits for the
    new copy now, and answers once that runs."""
    conf = """
[service:n]
command = sleep {mark}
start_secs = {secs}
"""
    d = Daemon(procs, tmp_path, conf.format(mark=400211, secs=0))
    d.wait_state("n", "running")
    d.write(conf.format(mark=400211, secs=2 * SLOW))
    assert d.ctl("reload").returncode == 0
    c = d.connect()
    c.sendall(json.dumps({"cmd": "restart", "names": ["n"], "wait": True,
                          "timeout": 60 * SLOW}).encode() + b"\n")
    wait_for(lambda: d.status("n")["n"]["state"] == "starting" and sleeps(400211),
             what="the restart starting")
    d.write(conf.format(mark=400212, secs=2 * SLOW))
    assert d.ctl("reload").returncode == 0
    r = json.loads(read_line(c))
    assert r["ok"], r
    assert [x["state"] for x in r["services"]] == ["running"], r
    wait_for(lambda: sleeps(400212) and not sleeps(400211), what="only the new copy's sleep")
    c.close()
    d.stop()


@pytest.mark.parametrize("cmd", ["start", "restart", "stop"])
def test_a_wait_for_a_service_removed_meanwhile(procs, tmp_path, cmd):
    """A service removed while a start or restart waits for it: the answer was ok,
    with no service and nothing printed. Removed is not started: not ok, and it says
    so. A stop's wait is over (the service is stopped, and gone)."""
    d = Daemon(procs, tmp_path, stops_slowly(400213, stop_timeout=5 * SLOW) + """
[service:other]
command = sleep 400214
start_secs = 0
""")
    wait_signal_state(d, "ig", "SigIgn")
    if cmd == "start":
        d.write(stops_slowly(400213, stop_timeout=5 * SLOW, extra="environment = X=1") + """
[service:other]
command = sleep 400214
start_secs = 0
""")
        assert d.ctl("reload").returncode == 0  # changed: the new copy waits for the old
        assert d.status("ig")["ig"].get("old_pid")
    c = d.connect()
    c.sendall(json.dumps({"cmd": cmd, "names": ["ig"], "wait": True,
                          "timeout": 60 * SLOW}).encode() + b"\n")
    wait_for(lambda: d.status("ig")["ig"]["state"] in ("stopping", "stopped") or
             d.status("ig")["ig"].get("old_pid"), what="the request under way")
    assert d.ctl("-t", "0", "remove", "ig").returncode == 0
    r = json.loads(read_line(c))
    if cmd == "stop":
        assert r["ok"], r
    else:
        assert not r["ok"] and "ig (removed)" in r["error"], r
    c.close()
    d.stop()


@pytest.mark.parametrize("counts", [(2, 1), (1, 2)])
def test_a_change_of_instances_waits_for_the_old_copies(procs, tmp_path, counts):
    """A reload that changes instances (2 -> 1: web:0 and web:1 become web; 1 -> 2) of a
    service whose processes ignore SIGTERM: the new copies start once the old ones are
    gone. They started at once beside them (other names, so not waited for)."""
    def conf(mark, n):
        return (f"[service:web]\ncommand = sh -c 'trap \"\" TERM; exec sleep {mark}'\n"
                f"instances = {n}\nstop_timeout = 2\nstart_secs = 0\n")
    before, after = counts
    d = Daemon(procs, tmp_path, conf(400291, before))
    names = ["web"] if before == 1 else [f"web:{k}" for k in range(before)]
    olds = [wait_signal_state(d, n, "SigIgn") for n in names]
    d.write(conf(400292, after))
    assert d.ctl("-t", "0", "reload").returncode == 0
    while True:
        new = sleeps(400292)
        if not any(alive(p) for p in olds):
            break
        assert new == [], "a new copy beside the old ones"
        time.sleep(0.05)
    wait_for(lambda: len(sleeps(400292)) == after, timeout=30 * SLOW, what="the new copies")
    st = d.status()
    assert sorted(st) == (["web"] if after == 1 else [f"web:{k}" for k in range(after)]), st
    assert all(s["state"] == "running" for s in st.values()), st
    d.stop()


@pytest.mark.parametrize("how", ["replaced", "removed"])
@pytest.mark.parametrize("cgroup", ["no", "auto"])
def test_a_crash_lets_an_old_copy_stop_in_its_time(procs, tmp_path, cgroup, how):
    """kill -9 of the daemon while a reload's old copy of a service (replaced, or removed
    from the file) ignores its SIGTERM: the next daemon takes that stop over from the
    record (" old=PID:START:MS"): SIGKILL when it was due, not at once (before, no record
    named the old copy: the next daemon killed it on sight, a database's clean shutdown
    cut short), and a replacement still starts only once it is gone."""
    def conf(mark, with_ig=True):
        ig = f"""
[service:ig]
command = sh -c 'trap "" TERM; exec sleep {mark}'
stop_timeout = 5
start_secs = 0
""" if with_ig else ""
        return f"[evmon]\ncgroup = {cgroup}\n{ig}[service:other]\ncommand = HELPER pause\n"
    d = Daemon(procs, tmp_path, conf(400171))
    old = wait_signal_state(d, "ig", "SigIgn")
    d.write(conf(400172, with_ig=how == "replaced"))
    t0 = time.monotonic()
    assert d.ctl("-t", "0", "reload").returncode == 0
    wait_for(lambda: f" old={old}:" in record_text(d), what="the old copy in the record")
    d.crash()
    d.start()
    wait_for(lambda: f"service ig: old copy pid {old}, being stopped by daemon" in d.log(),
             what="the old copy's stop taken over")
    while alive(old):  # never two copies side by side; nothing new while it stops
        assert sleeps(400172) == [], "a new copy beside the old one"
        assert time.monotonic() - t0 < 30 * SLOW, "the old copy never stopped"
        time.sleep(0.05)
    # it ignores SIGTERM: only its SIGKILL ended it, due 5 s after the reload
    assert time.monotonic() - t0 >= 4.5, "killed before its stop_timeout"
    if how == "replaced":
        wait_for(lambda: d.status("ig")["ig"]["state"] == "running" and sleeps(400172),
                 timeout=30 * SLOW, what="the new copy")
        assert len(sleeps(400172)) == 1
    else:
        wait_for(lambda: "ig" not in d.status() and f" old={old}:" not in record_text(d),
                 what="the removed service gone, from the record too")
    assert "other" in d.status() and d.p.poll() is None
    d.stop()


@pytest.mark.parametrize("cgroup", ["no", "auto"])
def test_a_replaced_service_is_shown_and_told_in_order(procs, tmp_path, cgroup):
    """While a replaced service's old process stops, `ctl status` says so (old_pid, "old
    pid N stopping") instead of a bare `stopped`; the events come in the order things
    happen: the old one's removal, then the new one's start (the start used to be told
    first, its time before the removal's). Its stop outlasts the ctl runs (ASan: 3 * SLOW)."""
    d = Daemon(procs, tmp_path, stops_slowly(400151, cgroup=cgroup, stop_timeout=3 * SLOW))
    old = wait_signal_state(d, "ig", "SigIgn")
    s = d.connect()
    s.sendall(b'{"cmd":"events","names":["ig"]}\n')
    rd = LineReader(s)
    assert rd.next()["ok"]
    d.write(stops_slowly(400152, cgroup=cgroup, stop_timeout=3 * SLOW))
    assert d.ctl("reload").returncode == 0
    st = d.status("ig")["ig"]
    assert st.get("old_pid") == old and st["pid"] is None, st
    assert st["state"] == "waiting", st  # to start, once the old one is gone: not "stopped"
    r = d.ctl("status", "ig")
    assert f"old pid {old} stopping" in r.stdout, r.stdout
    events = []
    while not (any(e.get("removed") for e in events) and
               any(e.get("state") == "running" for e in events)):
        ev = rd.next(timeout=30)
        if ev.get("event") in ("state", "exit"):
            events.append(ev)
    times = [e["time"] for e in events]
    assert times == sorted(times), events
    removed = next(i for i, e in enumerate(events) if e.get("removed"))
    # the new copy's spawn (its "waiting" for the old one, told at the reload, has no pid)
    start = next(i for i, e in enumerate(events)
                 if e["event"] == "state" and e.get("pid") not in (None, old))
    assert removed < start, events
    assert "old_pid" not in d.status("ig")["ig"]
    s.close()
    d.stop()


def test_ctl_stop_waits_for_the_old_copy_too(procs, tmp_path):
    """`ctl stop NAME` while a reload's replaced copy of NAME still stops (SIGTERM ignored:
    SIGKILL at stop_timeout, 3 s): it returned at once, "stopped (old pid N stopping)",
    and a `stop db && backup` ran beside the old process. It returns once that is gone."""
    d = Daemon(procs, tmp_path, stops_slowly(400153, stop_timeout=3 * SLOW))
    old = wait_signal_state(d, "ig", "SigIgn")
    d.write(stops_slowly(400154, stop_timeout=3 * SLOW))
    assert d.ctl("reload").returncode == 0
    assert d.status("ig")["ig"].get("old_pid") == old
    r = d.ctl("stop", "ig")
    assert r.returncode == 0, r
    assert not alive(old), f"ctl stop returned while the old copy {old} runs: {r.stdout}"
    d.stop()


@pytest.mark.parametrize("cgroup", ["no", "auto"])
def test_shutdown_timeout_ends_the_old_copies_too(procs, tmp_path, cgroup):
    """SIGTERM to the daemon while a reload's old copies stop, one replaced and one
    removed, both ignoring SIGTERM with an hour of stop_timeout: shutdown_timeout = 1s
    ends them too (SIGKILL, with what is left in their cgroups), and the daemon exits 0
    with nothing left, not an hour later."""
    def conf(mark, with_rm=True):
        rm = """
[service:rm]
command = sh -c 'trap "" TERM; exec sleep 400182'
stop_timeout = 1h
start_secs = 0
""" if with_rm else ""
        return f"""[evmon]
cgroup = {cgroup}
shutdown_timeout = 1s
[service:ig]
command = sh -c 'trap "" TERM; exec sleep {mark}'
stop_timeout = 1h
start_secs = 0
{rm}"""
    d = Daemon(procs, tmp_path, conf(400181))
    old = wait_signal_state(d, "ig", "SigIgn")
    rm = wait_signal_state(d, "rm", "SigIgn")
    d.write(conf(400183, with_rm=False))
    assert d.ctl("-t", "0", "reload").returncode == 0
    wait_for(lambda: f" old={old}:" in record_text(d) and f" old={rm}:" in record_text(d),
             what="both old copies in the record")
    assert alive(old) and alive(rm) and sleeps(400183) == []
    d.stop()  # exit 0 within its timeout, nothing of the daemon's left
    assert not alive(old) and not alive(rm) and sleeps(400183) == []
    assert "shutdown_timeout (1.0s) passed: SIGKILL to every service still running" in d.log()


@pytest.mark.parametrize("cgroup", ["no", "auto"])
def test_removed_and_added_again_while_the_old_one_stops(procs, tmp_path, cgroup):
    """Reloads that remove, add, remove and add a service whose process ignores SIGTERM,
    faster than its stop: each new copy waits for the old one, which was recorded as
    draining twice; the entry left over pointed at the freed service, and the next
    status (or the next add) read freed memory: a crash (ASan: use after free in
    events_status), or a service never started again. In the end one copy runs."""
    a = stops_slowly(400161, cgroup=cgroup)
    b = a[:a.index("[service:ig]")] + "[service:other]\ncommand = HELPER pause\nstart_secs = 0\n"
    d = Daemon(procs, tmp_path, a)
    old = wait_signal_state(d, "ig", "SigIgn")  # a SIGTERM before its trap would end it
    for text in (b, a, b):
        d.write(text)
        assert d.ctl("-t", "0", "reload").returncode == 0
    wait_for(lambda: not alive(old) and "ig" not in d.status(), timeout=30 * SLOW,
             what="the old copy's SIGKILL")
    d.write(a)
    assert d.ctl("-t", "0", "reload").returncode == 0
    d.status()  # what read freed memory
    # running from its spawn (start_secs = 0): its shell may not have exec'd sleep yet
    wait_for(lambda: d.status("ig")["ig"]["state"] == "running" and sleeps(400161),
             timeout=30 * SLOW, what="the last copy running")
    assert len(sleeps(400161)) == 1 and d.p.poll() is None
    d.stop()


def test_reload_event_and_log_line_name_what_changed(procs, tmp_path):
    d = Daemon(procs, tmp_path, RELOAD_A)
    for n in ("same", "changed", "gone"):
        d.wait_state(n, "running")
    s = d.connect()
    s.sendall(b'{"cmd":"events"}\n')
    rd = LineReader(s)
    assert rd.next() == {"ok": True, "events": True}

    d.write(RELOAD_B)
    assert d.ctl("reload").returncode == 0
    ev = rd.next()
    while ev["event"] != "reload":
        ev = rd.next()
    assert (ev["added"], ev["removed"], ev["changed"], ev["unchanged"]) == (
        ["new"], ["gone"], ["changed"], 1), ev
    line = f"{d.cfg}: 1 added (new), 1 removed (gone), 1 changed (changed), 1 unchanged"
    assert ev["message"] == line and "error" not in ev
    wait_for(lambda: f"evmon daemon: reload: {line}" in d.log(), what="the reload line")

    # a failed reload is an event too, with every mistake
    d.write(RELOAD_B + "\n[service:broken]\nrestart = never\ncolour = red\n")
    assert d.ctl("reload").returncode == 1
    ev = rd.next()
    while ev["event"] != "reload":
        ev = rd.next()
    assert len(ev["errors"]) == 2 and ev["error"] == ev["errors"][0], ev
    assert any("unknown key 'colour'" in e for e in ev["errors"])
    assert any("service broken: missing 'command'" in e for e in ev["errors"])
    assert ev["message"].startswith(f"{d.cfg}: 2 errors, the running configuration is kept: ")
    assert "added" not in ev

    # many names: the line shows the first few, the event has them all
    d.write(RELOAD_B + "".join(f"\n[service:n{i:03}]\ncommand = HELPER pause\n" for i in range(60)))
    assert d.ctl("reload").returncode == 0
    ev = rd.next()
    while ev["event"] != "reload":
        ev = rd.next()
    assert ev["added"] == [f"n{i:03}" for i in range(60)] and ev["unchanged"] == 3
    m = re.search(r"60 added \((n000, n001, .*) and (\d+) more\)", ev["message"])
    assert m, ev["message"]
    shown = m.group(1).split(", ")
    assert shown == [f"n{i:03}" for i in range(len(shown))]
    assert len(shown) + int(m.group(2)) == 60
    s.close()
    d.stop()


def test_reload_instances(procs, tmp_path):
    d = Daemon(procs, tmp_path, """
[service:w]
command = HELPER pause
instances = 2
start_secs = 0
""")
    d.wait_state("w:1", "running")
    p0 = d.status("w:0")["w:0"]["pid"]

    def environ():
        with open(f"/proc/{p0}/environ", "rb") as f:
            return f.read().split(b"\0")
    # the environment is read once the helper runs, not at the first moment the pid exists
    wait_for(lambda: b"EVMON_SERVICE=w:0" in environ(), what="w:0's environment")
    assert b"EVMON_INSTANCE=0" in environ()
    d.write("""
[service:w]
command = HELPER pause
instances = 3
start_secs = 0
""")
    r = d.ctl("reload")
    assert r.returncode == 0 and "added: w:2" in r.stdout and "unchanged: 2" in r.stdout
    d.wait_state("w:2", "running")
    assert d.status("w:0")["w:0"]["pid"] == p0
    r = d.ctl("stop", "w")  # the definition's name means all its instances
    assert r.returncode == 0 and r.stdout.count("stopped") == 3
    d.stop()


def test_reload_conflict_with_added_service(procs, tmp_path):
    d = Daemon(procs, tmp_path, BASIC)
    assert d.ctl("add", "extra", "--", HELPER, "pause").returncode == 0
    d.write(BASIC + "\n[service:extra]\ncommand = HELPER pause\n")
    r = d.ctl("reload")
    assert r.returncode == 1 and "added with `evmon ctl add`" in r.stderr
    # services added at run time survive a reload that does not mention them
    d.write(BASIC)
    assert d.ctl("reload").returncode == 0
    assert "extra" in d.status()
    d.stop()


def test_add_refuses_the_name_of_a_definition_with_other_instances(procs, tmp_path):
    """`ctl add base` next to a definition base with instances (base:0, base:1), or `ctl
    add -n 2 x` next to a service x: the name would then mean both (a stop of base hit
    only the added one, and what required base now required it). Refused; so is a
    reload that would do the same to an added service."""
    d = Daemon(procs, tmp_path, BASIC + "\n[service:base]\ncommand = HELPER pause\ninstances = 2\n")
    r = d.ctl("add", "base", "--", HELPER, "pause")
    assert r.returncode == 1 and "service base already exists (as a definition with instances)" \
        in r.stderr, r
    assert d.ctl("add", "x", "--", HELPER, "pause").returncode == 0
    r = d.ctl("add", "-n", "2", "x", "--", HELPER, "pause")
    assert r.returncode == 1 and "service x already exists (as one service, not instances)" \
        in r.stderr, r
    assert sorted(n for n in d.status() if n.startswith(("x", "base"))) == \
        ["base:0", "base:1", "x"]
    d.write(BASIC + "\n[service:base]\ncommand = HELPER pause\ninstances = 2\n"
            "\n[service:x]\ncommand = HELPER pause\ninstances = 2\n")
    r = d.ctl("reload")
    assert r.returncode == 1 and "service x: a service of that name was added" in r.stderr, r
    assert "x:0" not in d.status()
    d.stop()


# ------------------------------------------------------------------ events


def test_events_of_no_such_service_is_an_error_not_a_silent_wait(procs, tmp_path):
    """`ctl events webb` (a typo) used to wait for good on a stream nothing would ever
    match: like every request, each name must match a service."""
    d = Daemon(procs, tmp_path, BASIC)
    s = d.connect()
    s.sendall(b'{"cmd":"events","names":["web","webb"]}\n')
    assert LineReader(s).next() == {"ok": False, "error": "no such service: webb"}
    s.close()
    r = procs.run([EVMON, "ctl", "-S", d.sock, "events", "webb"], timeout=30 * SLOW)
    assert r.returncode == 1 and "no such service: webb" in r.stderr, r
    d.stop()


def test_ctl_events_says_the_daemon_went_away_not_that_it_never_answered(procs, tmp_path):
    """A daemon killed under a running `ctl events` had answered (the stream was running):
    ctl said "closed the connection before it answered"."""
    d = Daemon(procs, tmp_path, BASIC)
    d.wait_state("web", "running")
    ev, lines, t = ctl_events(procs, d)  # returned once the stream runs
    d.crash()
    t.join(timeout=30 * SLOW)
    ev.wait(timeout=30 * SLOW)
    err = ev.stderr.read().decode()
    assert ev.returncode != 0 and lines
    assert "the daemon closed the connection (it stopped" in err, err
    assert "before it answered" not in err
    d.start()  # takes the services over, to stop them
    d.stop()


def test_events_stream_content_and_order(procs, tmp_path):
    d = Daemon(procs, tmp_path, BASIC)
    d.wait_state("web", "running")
    pid = d.status("web")["web"]["pid"]
    s = d.connect()
    s.sendall(b'{"cmd":"events","names":["web"]}\n')
    rd = LineReader(s)
    assert rd.next() == {"ok": True, "events": True}
    assert d.ctl("restart", "web").returncode == 0
    # job events are filtered out; web's come in order
    got = [rd.next() for _ in range(5)]
    kinds = [(e["event"], e.get("old_state"), e.get("state")) for e in got]
    assert kinds == [("state", "running", "stopping"), ("exit", None, None),
                     ("state", "stopping", "stopped"), ("state", "stopped", "starting"),
                     ("state", "starting", "running")], got
    assert all(e["service"] == "web" for e in got)
    assert got[1]["pid"] == pid and got[1]["signal"] == signal.SIGTERM
    assert got[1]["signal_name"] == "TERM" and got[1]["code"] is None
    new = got[3]["pid"]
    assert new != pid and got[4]["pid"] == new
    times = [e["time"] for e in got]
    assert times == sorted(times)

    # the human form from ctl (subscribed before the stop: ctl_events waits for that)
    p, lines, reader = ctl_events(procs, d)
    assert d.ctl("stop", "web").returncode == 0
    d.stop()
    assert p.wait(timeout=10 * SLOW) == 3  # the daemon went away
    reader.join(10 * SLOW)
    out = "".join(lines)
    assert re.search(r"service web: running -> stopping, pid \d+", out), out
    assert re.search(r"service web: pid \d+ killed by signal TERM", out), out
    s.close()


def test_reply_comes_before_the_events_it_causes(procs, tmp_path):
    """A subscriber's own request: its reply first, then the events the request
    caused (the fan-out waits until the reply is written)."""
    d = Daemon(procs, tmp_path, BASIC)
    d.wait_state("web", "running")
    s = d.connect()
    rd = LineReader(s)
    s.sendall(b'{"cmd":"events","names":["web","idle"]}\n')
    assert rd.next() == {"ok": True, "events": True}
    s.sendall(b'{"cmd":"stop","names":["web"],"id":1}\n{"cmd":"start","names":["idle"],"id":2}\n')
    first, second = rd.next(), rd.next()
    assert first.get("id") == 1 and first["ok"] is True, (first, second)
    assert first["services"][0]["state"] == "stopping"
    assert second.get("event") == "state" and second["old_state"] == "running", second
    # the second request's reply comes after the first's events, before its own
    got = [rd.next() for _ in range(4)]
    replies = [i for i, e in enumerate(got) if e.get("id") == 2]
    assert replies, got
    own = [e for e in got[replies[0]:] if e.get("service") == "idle"]
    before = [e for e in got[:replies[0]] if e.get("service") == "idle"]
    assert before == [] and own, got
    s.close()
    d.stop()


def test_events_include_spawn_failures_and_crashes(procs, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("#!/bin/sh\nexit 7\n")
    victim.chmod(0o755)
    d = Daemon(procs, tmp_path, f"""
[service:crash]
command = {victim}
start_secs = 0
backoff_initial = 200ms
autostart = false
""")
    s = d.connect()
    s.sendall(b'{"cmd":"events"}\n')
    rd = LineReader(s)
    rd.next()
    d.request({"cmd": "start", "names": ["crash"]})
    ev = [rd.next() for _ in range(4)]
    assert [e["event"] for e in ev] == ["state", "exit", "state", "state"], ev
    assert ev[1]["code"] == 7
    assert ev[2]["state"] == "backoff" and ev[2]["delay_ms"] == 200
    os.unlink(victim)  # the next start fails at exec
    while True:
        e = rd.next()
        if e["event"] == "state" and e.get("error"):
            break
    assert e["state"] in ("backoff", "fatal")
    assert "No such file or directory" in e["error"] and e["error"].startswith("exec")
    assert "No such file" in d.status("crash")["crash"]["error"]
    s.close()
    d.stop()


# ------------------------------------------------------------------ shutdown


def test_a_failed_exec_says_what_its_errno_hides(procs, tmp_path):
    """A script whose #! interpreter does not exist failed with "No such file or
    directory" though the script is there; one without #! with "Exec format error"
    only; limit_nofile = 0 with "stdio: Bad file descriptor". The daemon, once the
    failure is reported, says why: in the service's log, its own and status. And
    "Permission denied" for a file without x, a directory, or a #! naming one."""
    logs = tmp_path / "logs"
    logs.mkdir()
    scripts = {"interp": b"#!/nonexistent/interp\necho hi\n", "plain": b"echo hi\n",
               "crlf": b"#!/bin/sh\r\necho hi\r\n",
               # a control byte last in the name: never raw into a log (it was, there)
               "esc": b"#!/nonexistent/x\x1b\necho hi\n"}
    for name, text in scripts.items():
        (tmp_path / name).write_bytes(text)
        os.chmod(tmp_path / name, 0o755)
    cfg = f"[evmon]\nlog_dir = {logs}\n"
    for name in scripts:
        cfg += f"\n[service:{name}]\ncommand = {tmp_path}/{name}\nstdout = log\nstart_retries = 0\n"
    cfg += "\n[service:nofile]\ncommand = /bin/true\nlimit_nofile = 0\nstdout = log\nstart_retries = 0\n"
    # "Permission denied": a file without x, a directory, a #! naming a file without x,
    # and a bare name that the search path finds without x
    (tmp_path / "nox").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(tmp_path / "nox", 0o644)
    (tmp_path / "adir").mkdir()
    (tmp_path / "viaint").write_bytes(f"#!{tmp_path}/nox\necho hi\n".encode())
    os.chmod(tmp_path / "viaint", 0o755)
    for name, cmd in (("nox", f"{tmp_path}/nox"), ("adir", f"{tmp_path}/adir"),
                      ("viaint", f"{tmp_path}/viaint"), ("bare", "nox")):
        cfg += f"\n[service:{name}]\ncommand = {cmd}\nenvironment = PATH={tmp_path}:/bin\n" \
               "stdout = log\nstart_retries = 0\n"
    d = Daemon(procs, tmp_path, cfg)
    want = {
        "interp": ("exec", f"{tmp_path}/interp", "No such file or directory",
                   "its interpreter /nonexistent/interp, named by its #! line, does not exist"),
        "plain": ("exec", f"{tmp_path}/plain", "Exec format error",
                  "not an executable format: a script needs a #! line"),
        "crlf": ("exec", f"{tmp_path}/crlf", "No such file or directory",
                 "its #! line ends in a carriage return, a CRLF line end: its interpreter "
                 "/bin/sh\\r does not exist"),
        "esc": ("exec", f"{tmp_path}/esc", "No such file or directory",
                "its interpreter /nonexistent/x?, named by its #! line, does not exist"),
        "nofile": ("stdio", "/bin/true", "Bad file descriptor",
                   "limit_nofile = 0 leaves no room for its stdin, stdout and stderr, "
                   "descriptors 0 to 2"),
        "nox": ("exec", f"{tmp_path}/nox", "Permission denied", "no execute permission: chmod +x"),
        "adir": ("exec", f"{tmp_path}/adir", "Permission denied", "it is a directory"),
        "viaint": ("exec", f"{tmp_path}/viaint", "Permission denied",
                   f"its interpreter {tmp_path}/nox, named by its #! line: no execute "
                   "permission: chmod +x"),
        "bare": ("exec", "nox", "Permission denied",
                 f"{tmp_path}/nox: no execute permission: chmod +x"),
    }
    for name, (stage, path, err, why) in want.items():
        st = d.wait_state(name, "fatal")
        assert st["error"] == f"{stage}: {err} ({why})", st
        said = f"{stage} {path}: {err} ({why}); gave up after 1 failed starts in a row"
        assert (logs / f"{name}.log").read_text().splitlines()[-1].endswith(
            f" evmon: cannot start it: {said}"), (logs / f"{name}.log").read_text()
        assert f"service {name}: stopped -> fatal: {said}\n" in d.log(), d.log()
    d.stop()


def test_shutdown_with_nothing_up_says_so(procs, tmp_path):
    """A shutdown with no service up says so, not "stopping 0 services"."""
    d = Daemon(procs, tmp_path, """
[service:idle]
command = HELPER pause
autostart = false
""")
    d.wait_state("idle", "stopped")
    d.stop()
    log = d.log()
    assert re.search(r"received SIGTERM from pid \d+: no service is up: exiting", log), log
    assert "stopping 0 services" not in log, log


def test_shutdown_stops_everything(procs, tmp_path):
    ignoring = tmp_path / "ignoring"
    d = Daemon(procs, tmp_path, f"""
[service:stubborn]
command = HELPER ignore 15 pidlog {ignoring} pause
stop_timeout = 300ms
start_secs = 0

[service:family]
command = sh -c 'sleep 100000 & sleep 100000 & wait'
kill_group = true
start_secs = 0

[service:polite]
command = sh -c 'trap "sleep 0.1; exit 0" TERM; while :; do sleep 0.05; done'
start_secs = 0
""")
    for n in ("stubborn", "family", "polite"):
        d.wait_state(n, "running")
    # running with start_secs = 0 comes before the helper ignores SIGTERM
    wait_for(lambda: ignoring.exists(), what="stubborn ignores SIGTERM")
    fam = d.status("family")["family"]["pid"]
    def children():  # the shell starts its two sleeps one after the other: wait for both
        kids = [int(p) for p in open(f"/proc/{fam}/task/{fam}/children").read().split()]
        return kids if len(kids) == 2 else None

    grandkids = wait_for(children, what="family's two children")
    d.stop(signal.SIGINT)
    assert not any(alive(p) for p in grandkids)
    log = d.log()
    assert "received SIGINT" in log and "all services stopped" in log
    assert re.search(r"service stubborn: pid \d+ killed by signal KILL", log), log


def test_stop_ends_the_process_group_without_cgroups(procs, tmp_path):
    """kill_mode = tree (the default) without a cgroup is the session (test_subreaper.py):
    the shell's background children end with it; kill_mode = process leaves
    them running (without a cgroup nothing ends them after that: we do)."""
    d = Daemon(procs, tmp_path, """
[evmon]
cgroup = no
start_secs = 0
[service:tree]
command = sh -c 'sleep 400131 & sleep 400132 & wait'
[service:proc]
command = sh -c 'sleep 400133 & sleep 400134 & wait'
kill_mode = process
""")
    kids = {}
    for n in ("tree", "proc"):
        pid = d.wait_state(n, "running")["pid"]

        def children():  # the shell starts its two sleeps one after the other
            k = [int(p) for p in open(f"/proc/{pid}/task/{pid}/children").read().split()]
            return k if len(k) == 2 else None

        kids[n] = wait_for(children, what=f"{n}'s two children")
    for n in ("tree", "proc"):
        assert d.ctl("stop", n).returncode == 0
    wait_for(lambda: not any(alive(p) for p in kids["tree"]), what="tree's children gone")
    assert all(alive(p) for p in kids["proc"])
    for p in kids["proc"]:
        os.kill(p, signal.SIGKILL)
    d.stop()


def test_terminal_signals_do_not_reach_services(procs, tmp_path):
    """Ctrl-C hits the daemon's whole process group; services get their stop_signal only."""
    out = tmp_path / "sigs.txt"
    d = Daemon(procs, tmp_path, f"""
[service:w]
command = sh -c 'trap "echo INT >> {out}" INT; trap "echo TERM >> {out}; exit 0" TERM; echo up >> {out}; while :; do sleep 0.05; done'
start_secs = 0
""")
    pid = d.wait_state("w", "running")["pid"]
    wait_for(lambda: out.exists() and "up" in out.read_text(), what="service up")
    assert os.getsid(pid) == pid and os.getpgid(pid) != os.getpgid(d.p.pid)
    pids = d.pids()
    os.killpg(d.p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    assert d.p.wait(timeout=30 * SLOW) == 0
    assert out.read_text().split() == ["up", "TERM"]
    assert not any(alive(p) for p in pids)


def kill_all(pids):
    """SIGKILL to each of pids still running (a killed daemon's services)."""
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_second_daemon_refused_and_stale_socket_replaced(procs, tmp_path):
    d = Daemon(procs, tmp_path, BASIC)
    r = procs.run([EVMON, "daemon", "-c", d.cfg, "-S", d.sock], timeout=20)
    assert r.returncode == 1 and "another evmon daemon is running" in r.stderr
    assert d.ctl("ping").returncode == 0  # the first one is untouched
    pids = d.pids()
    # a daemon killed outright leaves a stale socket; a new one replaces it
    os.killpg(d.p.pid, signal.SIGKILL)
    d.p.wait()
    kill_all(pids)
    assert os.path.exists(d.sock)
    d.start()
    assert d.ctl("ping").returncode == 0
    d.stop()


def copies_of_fds(pid):
    """Copies of every descriptor of pid (pidfd_getfd(2)), close-on-exec: what a child of
    pid has between its clone and its exec."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    fds = []
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            fd = libc.syscall(438, pidfd, int(name), 0)  # SYS_pidfd_getfd (x86_64, aarch64)
            if fd < 0 and ctypes.get_errno() != errno.EBADF:  # EBADF: closed since the listing
                for f in fds:
                    os.close(f)
                raise OSError(ctypes.get_errno(), f"pidfd_getfd {pid} {name}")
            if fd >= 0:
                fds.append(fd)
    finally:
        os.close(pidfd)
    return fds


def test_started_again_at_once_after_a_kill_during_a_spawn(procs, tmp_path):
    """A daemon killed with SIGKILL while a child of it is between its clone and its exec:
    the child has a copy of every descriptor of the daemon (the lock file's, the listener)
    until its exec. Here the test holds such copies across the kill. A daemon started
    meanwhile is not refused: the lock is a record lock, which only the dead process held,
    and the process that listened on the socket has ended. (With an flock it was refused:
    'another evmon daemon is running'.)"""
    d = Daemon(procs, tmp_path, BASIC)
    pids = d.pids()
    held = copies_of_fds(d.p.pid)
    try:
        os.kill(d.p.pid, signal.SIGKILL)
        d.p.wait()
        kill_all(pids)
        d.start()  # (waits for a live listener: the held one takes connections too)
        assert d.ctl("ping").returncode == 0
    finally:
        for f in held:
            os.close(f)
    d.stop()


def test_reaper_mode_reaps_orphans(procs, tmp_path):
    """Every orphan is an event; the log says the 1st, 2nd, 4th, ... (as PID 1 of a
    container a shell loop's 3,000 orphans were 3,000 lines)."""
    d = Daemon(procs, tmp_path, """
[service:forker]
command = HELPER orphans 100 exit 0
restart = never
start_secs = 0
""", args=["--reaper"])
    wait_for(lambda: "(64 orphans reaped so far)" in d.log(), timeout=10 * SLOW, what="orphans reaped")
    assert d.log().count("reaped orphan") == 7, d.log()
    assert not [l for l in d.log().splitlines() if "warning" in l]
    # one that fails is said whatever its number
    r = d.ctl("add", "failer", "--restart", "never", "--", "sh", "-c", "(sleep 0.2; exit 3) & exit 0")
    assert r.returncode == 0, r
    wait_for(lambda: re.search(r"reaped orphan pid \d+: exited with code 3 \(1\d\d orphans", d.log()),
             timeout=10 * SLOW, what="the failed orphan in the log")
    d.stop()


@pytest.mark.parametrize("mount_proc", [True, False])
def test_as_pid1_a_proc_of_another_namespace_is_said(procs, tmp_path, mount_proc):
    """PID 1 of a namespace whose /proc is not its own (unshare -p without --mount-proc, a
    container spec without the mount) reads other processes there: said, as evmon init
    says it; not said with its own /proc. It ran without a word."""
    d = Daemon(procs, tmp_path, "[service:web]\ncommand = HELPER pause\n", start=False)
    ns = PID_NS if mount_proc else [x for x in PID_NS if x != "--mount-proc"]
    p = procs.spawn(ns + [EVMON, "daemon", "-c", d.cfg, "-S", d.sock],
                    stdout=open(d.logpath, "ab"), stderr=subprocess.STDOUT)
    wait_for(lambda: "daemon 1 started" in d.log(), timeout=20 * SLOW, what="the daemon started")
    assert ("/proc is not this PID namespace's (or is missing)" in d.log()) != mount_proc, d.log()
    assert d.ctl("shutdown").returncode == 0
    assert p.wait(timeout=30 * SLOW) == 0


@pytest.mark.parametrize("sig", ["SIGQUIT", "SIGPWR"])
def test_as_pid1_sigquit_and_sigpwr_stop_it(procs, tmp_path, sig):
    """As PID 1 the kernel drops a signal the daemon does not handle: a container whose stop
    signal is SIGQUIT (STOPSIGNAL of nginx's image) or SIGPWR (lxc-stop) sat on it until its
    runtime's SIGKILL killed every service unstopped. They stop it as SIGTERM does."""
    d = Daemon(procs, tmp_path, "[service:web]\ncommand = HELPER pause\n", start=False)
    p = procs.spawn(PID_NS + [EVMON, "daemon", "-c", d.cfg, "-S", d.sock],
                    stdout=open(d.logpath, "ab"), stderr=subprocess.STDOUT)
    wait_for(lambda: "service web: starting -> running" in d.log(), timeout=20 * SLOW,
             what="web running")
    daemon, = wait_for(lambda: children_of(p.pid), what="the daemon under unshare")
    os.kill(daemon, getattr(signal, sig))
    assert p.wait(timeout=30 * SLOW) == 0, d.log()
    assert f"received {sig} from outside its pid namespace: stopping 1 service" in d.log()
    assert "all services stopped" in d.log()


def test_as_pid1_it_reaps_orphans(procs, tmp_path):
    """As PID 1 of a PID namespace (a container) the daemon reaps without --reaper."""
    d = Daemon(procs, tmp_path, """
[service:forker]
command = HELPER orphans 4 exit 0
restart = never
start_secs = 0

[service:web]
command = HELPER pause
""", start=False)
    p = procs.spawn(PID_NS + [EVMON, "daemon", "-c", d.cfg, "-S", d.sock],
                    stdout=open(d.logpath, "ab"), stderr=subprocess.STDOUT)
    wait_for(d.answers, timeout=20 * SLOW, what="the daemon in its namespace")
    assert d.request({"cmd": "ping"})["pid"] == 1
    wait_for(lambda: "(4 orphans reaped so far)" in d.log(), timeout=10 * SLOW, what="orphans reaped")
    assert "reaping orphans" in d.log()
    # a signal from outside the namespace comes from pid 0 there: said so, not "pid 0"
    daemon, = wait_for(lambda: children_of(p.pid), what="the daemon under unshare")
    os.kill(daemon, signal.SIGHUP)
    wait_for(lambda: "received SIGHUP from outside its pid namespace: reloading" in d.log(),
             what="the SIGHUP said")
    assert d.ctl("shutdown").returncode == 0
    assert p.wait(timeout=30 * SLOW) == 0
    assert "all services stopped" in d.log()


def test_service_output_to_log_dir(procs, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}

[service:chatty]
command = sh -c 'echo to-out; echo to-err >&2; exec {HELPER} pause'
stdout = log
stderr = log
start_secs = 0

[service:quiet]
command = sh -c 'echo should-not-appear'
stdout = null
restart = never
""")
    out, err = logs / "chatty.log", logs / "chatty.err.log"
    wait_for(lambda: out.exists() and "to-out" in out.read_text(), what="stdout log")
    wait_for(lambda: err.exists() and "to-err" in err.read_text(), what="stderr log")
    # SIGUSR1 reopens (after logrotate moved the files): the next line creates the file again
    os.rename(out, logs / "chatty.log.1")
    d.p.send_signal(signal.SIGUSR1)
    wait_for(lambda: "log files: they are created again" in d.log(), what="reopened logs")
    assert not out.exists()
    assert d.ctl("restart", "chatty").returncode == 0
    wait_for(lambda: "to-out" in out.read_text(), what="output in the new file")
    d.stop()
    assert "should-not-appear" not in d.log()


# ------------------------------------------------------------ idle clients

def test_idle_clients_are_closed_but_not_subscribers_or_waiters(procs, tmp_path):
    """A connection with no request for idle_timeout is told and closed, so
    max_clients idle connections lock ctl out only until then (issue 18.3); an
    events subscriber and a client awaiting a deferred reply are not idle."""
    d = Daemon(procs, tmp_path, f"""
[evmon]
max_clients = 8
idle_timeout = {3 * SLOW}s

[service:web]
command = HELPER pause
start_secs = 0

[service:slow]
command = HELPER pause
start_secs = 1h
autostart = false
""")
    d.wait_state("web", "running")
    sub = d.connect()
    sub.sendall(b'{"cmd":"events"}\n')
    events = LineReader(sub)
    assert events.next()["ok"]
    waiter = d.connect()
    waiter.sendall(b'{"cmd":"start","names":["slow"],"wait":true,"timeout":3600}\n')
    d.wait_state("slow", "starting")
    idle = [d.connect() for _ in range(6)]  # with sub and waiter: all 8 slots
    # a ninth, on a raw connection queued right behind them: refused whenever the daemon
    # accepts them (a ctl process may take longer than idle_timeout to start on a loaded
    # machine, and come after the idle ones were closed)
    ninth = d.connect()  # told why as it is refused, before any request
    r = json.loads(read_line(ninth))
    assert not r["ok"] and r["error"] == "too many clients", r
    ninth.close()
    for c in idle:  # each is told why, then closed
        c.settimeout(60 * SLOW)
        line = read_line(c)
        assert "idle" in json.loads(line)["error"], line
        assert c.recv(100) == b""
    r = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(d.ctl("ping")),
                 what="ping answered once the idle clients are gone")
    # the subscriber and the waiter outlived every idle client
    assert d.ctl("stop", "slow").returncode == 0
    reply = LineReader(waiter).next(60)
    assert "services" in reply or "error" in reply, reply
    assert any(events.next(60).get("service") == "slow" for _ in range(2)), "an event of slow"
    assert "idle" in d.log()
    d.stop()


def test_a_huge_event_is_capped_and_keeps_its_readers(procs, tmp_path):
    """A reload refused with ~1.7 MB of errors (more than client_buffer) publishes one
    capped event (errors_omitted says how many were left out) and a subscriber that
    keeps up stays connected (issue 18.7)."""
    d = Daemon(procs, tmp_path, """
[evmon]
client_buffer = 1M

[service:web]
command = HELPER pause
start_secs = 0
""")
    d.wait_state("web", "running")
    sub = d.connect()
    sub.sendall(b'{"cmd":"events"}\n')
    events = LineReader(sub)
    assert events.next()["ok"]
    good = open(d.cfg).read()
    with open(d.cfg, "a") as f:
        for i in range(12000):
            f.write(f"no_such_key_{i:05d}_to_make_a_long_error_message_for_the_reload = 1\n")
    r = d.ctl("reload", timeout=120)
    assert r.returncode == 1, r.returncode
    # the reply holds the first 1,000 (errlist.h's ERRLIST_MAX) and counts the rest; the
    # request's error is the first again, which ctl does not repeat
    assert r.stderr.count("unknown key 'no_such_key_") == 1000, r.stderr[-300:]
    assert "evmon ctl: ... and 11000 more errors\n" in r.stderr, r.stderr[-300:]
    ev = events.next(120)
    while ev.get("event") != "reload":
        ev = events.next(120)
    assert ev["errors_omitted"] > 0 and len(ev["errors"]) + ev["errors_omitted"] == 12000, \
        {k: v for k, v in ev.items() if k != "errors"}
    assert len(json.dumps(ev)) <= 64 * 1024
    with open(d.cfg, "w") as f:
        f.write(good)
    assert d.ctl("stop", "web").returncode == 0
    assert any(events.next(60).get("service") == "web" for _ in range(3)), "the reader still gets events"
    d.stop()


def test_stuck_subscribers_are_bounded_in_total(procs, tmp_path):
    """Subscribers that never read hold at most events_buffer_total together: past it
    the slowest reader (behind for longest) is dropped (issue 18.6), each while still
    under client_buffer; a subscriber that reads keeps everything."""
    d = Daemon(procs, tmp_path, """
[evmon]
client_buffer = 4M
events_buffer_total = 256k

[service:web]
command = HELPER pause
start_secs = 0
""")
    d.wait_state("web", "running")
    got, t = follow_reloads(d, 120)
    stuck = [stuck_subscriber(d) for _ in range(3)]
    reloads, good = reload_until_dropped(d, 200)
    assert "bytes of events not read" not in d.log()  # none passed client_buffer alone
    with open(d.cfg, "w") as f:
        f.write(good)
    assert d.ctl("reload").returncode == 0
    wait_for(lambda: len(got) >= reloads + 1, timeout=60 * SLOW, what="every reload event read")
    assert t.is_alive(), "the reader that keeps up was dropped"
    d.stop()
    for s in stuck:
        s.close()


def test_the_longest_timeout_means_never(procs, tmp_path):
    """Durations up to 10^13 ms (about 317 years) are accepted, and the longest is not cut
    short (a deadline in nanoseconds that wrapped past 2^64 had a stop's SIGKILL come at
    once). Past it a duration is a mistake naming the key and the maximum: up to 10^15 ms
    were accepted, and all past 2^64 ns (18446744074 s) were taken as that."""
    for key in ("stop_timeout", "shutdown_timeout"):
        cfg = tmp_path / "long.ini"
        cfg.write_text(("[evmon]\n" if key == "shutdown_timeout" else "[service:a]\n")
                       + f"{key} = 18446744074s\n[service:b]\ncommand = true\n")
        r = procs.run([EVMON, "daemon", "--check", "-c", str(cfg), "-S", str(tmp_path / "x.sock")],
                      timeout=20)
        assert r.returncode == 1 and f"{cfg}:2: {key}: '18446744074s' is too long a duration " \
            "(at most 10000000000 s, about 317 years)" in r.stderr, r
    d = Daemon(procs, tmp_path, """
[evmon]
cgroup = no
shutdown_timeout = 10000000000s
[service:ig]
command = sh -c 'trap "" TERM; exec sleep 1000'
stop_timeout = 10000000000000ms
start_secs = 0
""")
    pid = wait_signal_state(d, "ig", "SigIgn")
    assert d.ctl("-t", "0", "stop", "ig").returncode == 0
    wait_for(lambda: d.status("ig")["ig"]["state"] == "stopping", what="ig stopping")
    time.sleep(1)  # a wrapped deadline killed it within 0.3 s
    assert alive(pid) and d.status("ig")["ig"]["state"] == "stopping"
    os.kill(pid, signal.SIGKILL)
    d.wait_state("ig", "stopped")
    d.stop()


def test_an_exit_by_a_signal_without_a_name_says_its_number(procs, tmp_path):
    """Signals 32 and 33 (libc's own, below SIGRTMIN) have no name: the log said
    "killed by signal ?"; it says the number."""
    d = Daemon(procs, tmp_path, """
[service:s]
command = sleep 400215
start_secs = 0
restart = never
""")
    d.wait_state("s", "running")
    wait_for(lambda: sleeps(400215), what="its sleep")
    assert d.ctl("signal", "s", "32").returncode == 0
    d.wait_state("s", "exited")
    assert "killed by signal 32" in d.log(), d.log()[-2000:]
    d.stop()


def test_ctl_t_bounds_how_long_any_command_waits_for_an_answer(procs, tmp_path):
    """`evmon ctl -t 1 ping` of a daemon that does not answer (stopped) gives up after a
    second with exit 3, as a liveness probe needs. It waited 60 s whatever -t said."""
    d = Daemon(procs, tmp_path, "[service:a]\ncommand = HELPER pause\n")
    os.kill(d.p.pid, signal.SIGSTOP)
    try:
        r = d.ctl("-t", "1", "ping", timeout=20)  # raises past 20 s: under the 60 s default
    finally:
        os.kill(d.p.pid, signal.SIGCONT)
    assert r.returncode == 3 and "no answer after 1 s" in r.stderr, r
    d.stop()


def test_a_replacement_waiting_for_its_old_copy_says_waiting(procs, tmp_path):
    """A reload changes web (its old copy 1 s to stop): the new web's wait for it is a
    "waiting" state event, as status shows, before it runs. There was no event until
    "running"."""
    cfg = """
[service:web]
command = HELPER linger 1000 pause {n}
start_secs = 0
"""
    d = Daemon(procs, tmp_path, cfg.format(n=1))
    old = d.wait_state("web", "running")["pid"]
    wait_signal_state(d, "web", "SigCgt")
    s = d.connect()
    s.sendall(b'{"cmd":"events","names":["web"]}\n')
    rd = LineReader(s)
    assert rd.next()["ok"]
    d.write(cfg.format(n=2))
    assert d.ctl("reload").returncode == 0
    seen = []
    while True:
        ev = rd.next(timeout=30)
        if ev.get("event") == "state":
            seen.append((ev["old_state"], ev["state"], ev.get("pid")))
            if ev["state"] == "running" and ev.get("pid") != old:
                break
    assert ("stopped", "waiting", None) in seen, seen
    assert d.status("web")["web"]["pid"] != old
    s.close()
    d.stop()
