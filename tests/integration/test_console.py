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

from conftest import EVMON
from daemon_util import SLOW, Daemon, ini, wait_for


def outputs(d):
    """The daemon's stdout and stderr, kept apart (Daemon merges them)."""
    return open(d.dir / "out.txt", errors="replace").read(), open(d.dir / "err.txt", errors="replace").read()


def start(procs, tmp_path, config, stdout=None):
    """A daemon whose stdout is out.txt (or stdout), its stderr err.txt (its log)."""
    d = Daemon(procs, tmp_path, config, start=False)
    out = stdout if stdout is not None else open(tmp_path / "out.txt", "wb")
    d.logf = open(tmp_path / "err.txt", "wb")
    d.logpath = str(tmp_path / "err.txt")
    d.p = procs.spawn([EVMON, "daemon", "-c", d.cfg, "-S", d.sock], stdout=out, stderr=d.logf)
    wait_for(lambda: d.answers() or d.p.poll() is not None, timeout=20 * SLOW, what="the socket")
    assert d.p.poll() is None, d.log()
    return d


def console(command, **keys):
    """A service's keys with stdout = console."""
    return {"command": command, "stdout": "console", **keys}


def test_lines_are_whole_and_prefixed(procs, tmp_path):
    """two services writing 5,000 lines each at once: every line whole, behind its own prefix, in order"""
    d = start(procs, tmp_path, ini(
        alpha=console("HELPER lines 5000 pause"),
        b=console("HELPER lines 5000 pause"),
        slow=console("""sh -c 'printf "half "; sleep 0.3; echo whole; echo to-err >&2; exec sleep 400300'""",
                     stderr="stdout"),
        errs={"command": "sh -c 'echo err-only >&2; echo on-stdout; exec sleep 400301'",
              "stdout": "null", "stderr": "console"}))
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
    d = start(procs, tmp_path, ini(
        {"console_prefix": '"[{name}] "'},
        w=console("sh -c 'echo one; printf last'", restart="never"),
        pool=console("sh -c 'echo hi; exec sleep 400302'", instances=2)))
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
    d = start(procs, tmp_path, ini(
        {"shutdown_timeout": "1s"},
        stubborn=console("HELPER ignore 15 print up pause", stop_timeout="1h"),
        polite=console("HELPER pause")))
    d.wait_state("stubborn", "running")
    wait_for(lambda: "stubborn | up" in outputs(d)[0], timeout=20 * SLOW, what="stubborn's TERM ignored")
    pid = d.status("stubborn")["stubborn"]["pid"]
    d.stop()  # SIGTERM; must exit 0 long before the hour, with nothing left
    err = outputs(d)[1]
    assert "shutdown_timeout (1.0s) passed: SIGKILL to every service still running" in err, err
    assert f"pid {pid} killed by signal KILL" in err, err


def start_unread(procs, tmp_path, config):
    """A daemon whose stdout is a pipe nobody reads yet; returns (daemon, the read end)."""
    r, w = os.pipe()
    d = start(procs, tmp_path, config, stdout=w)
    os.close(w)
    return d, r


FLOOD = console("HELPER lines 300000", restart="never")


def test_a_console_nobody_reads_never_blocks_the_loop(procs, tmp_path):
    """stdout is a pipe nobody reads (docker logs paused) and a service writes 4 MB of lines:
    the daemon goes on answering; what does not fit its buffer is dropped in whole lines,
    and once the pipe is read a line says how much; received + dropped = written"""
    d, r = start_unread(procs, tmp_path, ini(flood=FLOOD))
    # exited: the daemon read all of it (at the exit, to the end) while nobody read its stdout
    d.wait_state("flood", "exited", timeout=60)
    for _ in range(5):
        p = d.ctl("ping", timeout=10)
        assert p.returncode == 0, p.stderr
    dropped = d.ctl("metrics").stdout
    m = re.search(r'^evmon_console_dropped_bytes_total\{stream="stdout"\} (\d+)$', dropped, re.M)
    assert m and int(m.group(1)) > 0, dropped
    # now read: the buffered lines come, then the notice
    os.set_blocking(r, False)
    got = b""
    notice = re.compile(rb"\d{4}-\d\d-\d\dT[\d:.]+Z evmon daemon: (\d+) bytes \((\d+) lines\) "
                        rb"dropped: stdout was not read\n")

    def read_all():
        nonlocal got
        try:
            while chunk := os.read(r, 65536):
                got += chunk
        except BlockingIOError:
            pass
        return notice.search(got)
    wait_for(read_all, timeout=30 * SLOW, what="the dropped-bytes notice")
    numbers, lost_bytes, lost_lines = [], 0, 0
    for line in got.splitlines(keepends=True):
        n = notice.fullmatch(line)
        if n:
            lost_bytes += int(n.group(1))
            lost_lines += int(n.group(2))
            continue
        k = re.fullmatch(rb"flood \| line (\d+)\n", line)
        assert k, line  # whole lines only
        numbers.append(int(k.group(1)))
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert numbers[0] == 1 and lost_lines > 0
    assert len(numbers) + lost_lines == 300000
    written = sum(len(f"flood | line {k}\n") for k in range(1, 300001))
    assert sum(len(f"flood | line {k}\n") for k in numbers) + lost_bytes == written
    assert lost_bytes == int(m.group(1))
    os.close(r)
    d.stop()


def test_shutdown_with_a_console_nobody_reads(procs, tmp_path):
    """SIGTERM while the daemon's stdout is full and unread: it still exits, 0, at once"""
    d, r = start_unread(procs, tmp_path, ini(flood=FLOOD, other=console("HELPER pause")))
    d.wait_state("flood", "exited", timeout=60)
    d.stop()
    os.close(r)


def test_empty_console_prefix(procs, tmp_path):
    """console_prefix = "": the lines as they are"""
    d = start(procs, tmp_path, ini({"console_prefix": '""'},
                                   bare=console("sh -c 'echo plain; exec sleep 400304'")))
    wait_for(lambda: "plain" in outputs(d)[0], timeout=20 * SLOW, what="the line")
    assert outputs(d)[0] == "plain\n"
    d.stop()
