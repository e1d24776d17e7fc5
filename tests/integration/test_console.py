"""`stdout = console` (issue 19.2): a container's `evmon daemon` as PID 1 sends
its services' lines to its own stdout/stderr, each behind the service's
prefix, whole lines only (never two services' bytes in one line), coloured
only on a terminal."""
import os
import pty
import re
import select
import subprocess
import time

from conftest import EVMON, HELPER
from daemon_util import SLOW, Daemon, wait_for


def outputs(d):
    """The daemon's stdout and stderr, kept apart (Daemon merges them)."""
    return open(d.dir / "out.txt", errors="replace").read(), open(d.dir / "err.txt", errors="replace").read()


def start(procs, tmp_path, config, env=None):
    d = Daemon(procs, tmp_path, config, start=False)
    out, err = open(tmp_path / "out.txt", "wb"), open(tmp_path / "err.txt", "wb")
    d.logf = err
    d.p = procs.spawn([EVMON, "daemon", "-c", d.cfg, "-S", d.sock], stdout=out, stderr=err, env=env)
    d.logpath = str(tmp_path / "err.txt")
    wait_for(lambda: d.answers() or d.p.poll() is not None, timeout=20 * SLOW, what="the socket")
    assert d.p.poll() is None, outputs(d)
    return d


def test_lines_are_whole_and_prefixed(procs, tmp_path):
    """two services writing 5,000 lines each at once: every line whole, behind its own prefix, in order"""
    d = start(procs, tmp_path, f"""
[service:alpha]
command = {HELPER} lines 5000 pause
stdout = console
start_secs = 0

[service:b]
command = {HELPER} lines 5000 pause
stdout = console
start_secs = 0

[service:slow]
command = sh -c 'printf "half "; sleep 0.3; echo whole; echo to-err >&2; exec sleep 400300'
stdout = console
stderr = stdout
start_secs = 0

[service:errs]
command = sh -c 'echo err-only >&2; echo on-stdout; exec sleep 400301'
stdout = null
stderr = console
start_secs = 0
""")
    wait_for(lambda: outputs(d)[0].count("\n") >= 10002 and "err-only" in outputs(d)[1],
             timeout=60 * SLOW, what="every line")
    out, err = outputs(d)
    lines = out.splitlines()
    seen = {"alpha": [], "b": [], "slow": []}
    for line in lines:
        m = re.fullmatch(r"(alpha|b|slow) \| (.*)", line)
        assert m, repr(line)
        seen[m.group(1)].append(m.group(2))
    want = [f"line {k}" for k in range(1, 5001)]
    assert seen["alpha"] == want and seen["b"] == want
    assert seen["slow"] == ["half whole", "to-err"]  # one line, though written in two pieces
    assert "errs | err-only\n" in err and "on-stdout" not in out + err
    assert "\033" not in out + err  # not a terminal: no colour
    # evmon's own lines about these services are the daemon's log, not repeated
    assert "evmon: started pid" not in out
    d.stop()


def test_custom_prefix_and_exit_flush(procs, tmp_path):
    """console_prefix with {name}; an unfinished last line is written with a newline at the exit"""
    d = start(procs, tmp_path, f"""
[evmon]
console_prefix = "[{{name}}] "

[service:w]
command = sh -c 'echo one; printf last'
stdout = console
restart = never
start_secs = 0

[service:pool]
command = sh -c 'echo hi; exec sleep 400302'
instances = 2
stdout = console
start_secs = 0
""")
    d.wait_state("w", "exited")
    wait_for(lambda: outputs(d)[0].count("hi") == 2, timeout=20 * SLOW, what="pool's lines")
    out = outputs(d)[0]
    assert [line for line in out.splitlines() if line.startswith("[w] ")] == ["[w] one", "[w] last"]
    assert "[pool:0] hi\n" in out and "[pool:1] hi\n" in out
    d.stop()


def test_colour_only_on_a_terminal(procs, tmp_path):
    """on a pty the prefix is coloured (a service keeps its colour); NO_COLOR turns it off"""
    for no_color, coloured in ((False, True), (True, False)):
        master, slave = pty.openpty()
        cfg = tmp_path / f"c{int(no_color)}.ini"
        cfg.write_text(f"[service:web]\ncommand = sh -c 'echo a; echo b; exec sleep 400303'\n"
                       "stdout = console\nstart_secs = 0\n")
        env = dict(os.environ)
        env.pop("NO_COLOR", None)
        if no_color:
            env["NO_COLOR"] = "1"
        sock = str(tmp_path / f"s{int(no_color)}.sock")
        p = procs.spawn([EVMON, "daemon", "-c", str(cfg), "-S", sock], stdout=slave,
                        stderr=subprocess.DEVNULL, env=env)
        os.close(slave)
        buf = b""
        deadline = time.monotonic() + 30 * SLOW
        while buf.count(b"\n") < 2 and time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 1)
            if r:
                buf += os.read(master, 4096)
        p.terminate()
        p.wait(timeout=30 * SLOW)
        os.close(master)
        text = buf.decode(errors="replace").replace("\r\n", "\n")
        if coloured:
            m = re.findall(r"\033\[(3[1-6])mweb \| \033\[0m(a|b)\n", text)
            assert len(m) == 2 and m[0][0] == m[1][0], repr(text)
        else:
            assert "web | a\nweb | b\n" in text and "\033" not in text, repr(text)


def test_console_values(procs, tmp_path):
    """console is a value of stdout and stderr; console_prefix is checked"""
    for body, why in (("[service:a]\ncommand = /bin/true\nstdout = consol\n",
                       "'consol' is not one of inherit, null, log, console"),
                      ("[evmon]\nconsole_prefix = " + "x" * 65 + "\n", "console_prefix: longer than 64 bytes")):
        cfg = tmp_path / "bad.ini"
        cfg.write_text(body)
        r = procs.run([EVMON, "daemon", "--check", "-c", str(cfg), "-S", str(tmp_path / "x.sock")])
        assert r.returncode != 0 and why in r.stderr, (body, r.stderr)


def test_shutdown_timeout_bounds_the_whole_shutdown(procs, tmp_path):
    """SIGTERM with shutdown_timeout = 1s: a service that ignores TERM, with an hour of
    stop_timeout, is killed after the total grace, and the daemon exits 0"""
    d = start(procs, tmp_path, f"""
[evmon]
shutdown_timeout = 1s

[service:stubborn]
command = {HELPER} ignore 15 print up pause
stdout = console
stop_timeout = 1h
start_secs = 0

[service:polite]
command = {HELPER} pause
stdout = console
start_secs = 0
""")
    d.wait_state("stubborn", "running")
    wait_for(lambda: "stubborn | up" in outputs(d)[0], timeout=20 * SLOW, what="stubborn's TERM ignored")
    pid = d.status("stubborn")["stubborn"]["pid"]
    d.stop()  # SIGTERM; must exit 0 long before the hour, with nothing left
    err = outputs(d)[1]
    assert "shutdown_timeout (1.0s) passed: SIGKILL to every service still running" in err, err
    assert f"pid {pid} killed by signal KILL" in err, err
