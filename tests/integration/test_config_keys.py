"""The config keys supervisord and systemd users expect (issue 18.22):
include = conf.d/*.ini, env_file = PATH, limit_*, nice and oom_score_adj,
seen where they take effect: the service's /proc entries and environment."""
import os
import re

from conftest import EVMON, HELPER, wait_for
from daemon_util import Daemon


def proc_nice(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])  # field 19: nice


def proc_limit(pid, label):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith(label):
                return line[len(label):].split()[:2]
    raise AssertionError(label)


def test_include_env_file_limits_nice_oom(procs, tmp_path):
    own_nice = os.nice(0)
    with open("/proc/self/oom_score_adj") as f:
        own_oom = int(f.read())
    nice, oom = min(own_nice + 7, 19), min(own_oom + 300, 1000)
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "web.env").write_text("# the web service\nQUEUE='from the file'\nEXTRA=\"a \\\"b\\\"\"\n")
    (tmp_path / "conf.d" / "20-web.ini").write_text(f"""
[service:web]
command = {HELPER} env QUEUE env EXTRA env KEEP pause
environment = QUEUE=env KEEP=kept
env_file = ../web.env -../absent.env
start_secs = 0
limit_nofile = 200:300
limit_core = 0
nice = {nice}
oom_score_adj = {oom}
""")
    (tmp_path / "conf.d" / "10-plain.ini").write_text(f"[service:plain]\ncommand = {HELPER} pause\nstart_secs = 0\n")
    d = Daemon(procs, tmp_path, "[evmon]\nstop_timeout = 5\ninclude = conf.d/*.ini\n")
    web = d.wait_state("web", "running")
    plain = d.wait_state("plain", "running")
    assert list(d.status()) == ["plain", "web"]  # sorted, as read
    wait_for(lambda: "KEEP=kept" in d.log(), what="web's environment")
    log = d.log()
    assert "QUEUE=from the file" in log and 'EXTRA=a "b"' in log, log
    pid = web["pid"]
    assert proc_limit(pid, "Max open files") == ["200", "300"]
    assert proc_limit(pid, "Max core file size") == ["0", "0"]
    assert proc_nice(pid) == nice
    with open(f"/proc/{pid}/oom_score_adj") as f:
        assert int(f.read()) == oom
    # the other service has the daemon's
    assert proc_nice(plain["pid"]) == own_nice
    with open(f"/proc/{plain['pid']}/oom_score_adj") as f:
        assert int(f.read()) == own_oom

    # a reload reads the env file again: web (only) restarts with the new value
    (tmp_path / "web.env").write_text("QUEUE=changed\n")
    r = d.ctl("reload")
    assert r.returncode == 0 and "changed: web" in r.stdout, r
    wait_for(lambda: "QUEUE=changed" in d.log(), what="web restarted with the new file")
    assert d.status("plain")["plain"]["pid"] == plain["pid"]
    d.stop()


def test_include_mistakes_name_their_file(procs, tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.ini").write_text("[service:a]\ncommand = true\nlimit_nofile = lots\n")
    (tmp_path / "conf.d" / "b.ini").write_text("include = ../main.ini\n")
    (tmp_path / "conf.d" / "c.ini").write_text("[service:c]\ncommand = true\nenv_file = nope.env\n")
    main = tmp_path / "main.ini"
    main.write_text("[evmon]\ninclude = conf.d/*.ini\n")
    r = procs.run([EVMON, "daemon", "--check", "-c", str(main)], timeout=20)
    assert r.returncode == 1, r
    d = tmp_path / "conf.d"
    assert r.stderr.splitlines() == [
        f"evmon daemon: {d}/a.ini:3: limit_nofile: 'lots' is not a limit (N or SOFT:HARD, "
        "SOFT <= HARD: numbers with k, M or G, or infinity)",
        f"evmon daemon: {d}/b.ini:1: include: {d}/../main.ini: include loop: {main} is being read",
        f"evmon daemon: {d}/c.ini:3: env_file: {d}/nope.env: No such file or directory",
        f"evmon daemon: {main}: 3 errors",
    ], r.stderr


def test_line_lengths_as_documented(procs, tmp_path):
    """A line of the config holds 65533 bytes, its newline apart (one of 65533 and its
    newline was refused as "longer than 65533 bytes"); an env_file's lines are not bound by
    it (evmon.ini(5) says both)."""
    head = "[service:s]\ncommand = true\nenvironment = A="
    sock = str(tmp_path / "s.sock")
    for n, ok in ((65533, True), (65534, False)):
        cfg = tmp_path / f"c{n}.ini"
        cfg.write_text(head + "x" * (n - len("environment = A=")) + "\n")
        r = procs.run([EVMON, "daemon", "--check", "-c", str(cfg), "-S", sock], timeout=20)
        assert (r.returncode == 0) == ok, (n, r.stderr[:300])
        if not ok:
            assert r.stderr.startswith(f"evmon daemon: {cfg}:3: line longer than 65533 bytes\n")
    (tmp_path / "long.env").write_text("A=" + "x" * 100000 + "\n")
    cfg = tmp_path / "env.ini"
    cfg.write_text("[service:s]\ncommand = true\nenv_file = long.env\n")
    r = procs.run([EVMON, "daemon", "--check", "-c", str(cfg), "-S", sock], timeout=20)
    assert r.returncode == 0 and r.stderr == "", r.stderr[:300]
    # the kernel passes a variable of 32 pages at most (its NUL counted): a longer one
    # failed the service's start with E2BIG ("Argument list too long"), --check said nothing
    most = 32 * os.sysconf("SC_PAGESIZE") - 1
    for n, ok in ((most, True), (most + 1, False)):
        # the value goes on over a second line: the mistake names the line it starts on
        (tmp_path / "long.env").write_text("# big\nA=" + "x" * 10 + "\\\n" +
                                           "x" * (n - 12) + "\n")
        r = procs.run([EVMON, "daemon", "--check", "-c", str(cfg), "-S", sock], timeout=20)
        assert (r.returncode == 0) == ok, (n, r.stderr[:300])
        if not ok:
            assert r.stderr.startswith(
                f"evmon daemon: {cfg}:3: env_file: {tmp_path}/long.env: line 2: a variable "
                f"longer than the {most} bytes the kernel passes one (KEY=VALUE): the service "
                "could not start\n"), r.stderr[:300]
    # and the longest one does reach the service
    (tmp_path / "long.env").write_text("A=" + "x" * (most - 2) + "\n")
    d = Daemon(procs, tmp_path, f"[service:s]\ncommand = sh -c 'echo ${{#A}} > {tmp_path}/len'\n"
               "env_file = long.env\nrestart = never\nstart_secs = 0\n")
    d.wait_state("s", "exited")
    assert (tmp_path / "len").read_text() == f"{most - 2}\n"
    d.stop()
