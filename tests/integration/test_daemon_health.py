"""Health checks (issue 16.3), Docker's HEALTHCHECK semantics: health_cmd,
health_interval, health_timeout, health_retries, health_start_period,
health_action; `requires = X:healthy`, `ctl wait --for healthy`, `ctl health`.

Each check is a script that reads a file the test writes (0: pass, else the
exit code), and appends a line to a file per run, so a test decides every
verdict and counts runs; nothing asserts on how long anything takes. Order
is read from the health events (on a subscription, or the daemon's log)."""
import os
import re
import signal
import time

import pytest

from conftest import children_of
from daemon_util import (SLOW, Daemon, LineReader, alive, config_errors, hand_over, ini,
                         wait_for, wait_signal_state)

HEALTH = re.compile(r"evmon daemon: service (\S+): health (?:(\w+) -> )?(\w+)")


def check_script(tmp_path, name="check", extra=""):
    """A check that exits with the number in NAME.state and logs each run to NAME.runs."""
    state, runs = tmp_path / f"{name}.state", tmp_path / f"{name}.runs"
    state.write_text("0\n")
    path = tmp_path / f"{name}.sh"
    path.write_text(f"""#!/bin/sh
echo run >> {runs}
{extra}
s=$(cat {state})
echo "check says $s"
echo "to stderr" >&2
exit $s
""")
    path.chmod(0o755)
    return path, state, runs


def runs_of(path):
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def health_log(d, name):
    return [m.groups()[1:] for m in map(HEALTH.search, d.log().splitlines()) if m and m[1] == name]


def health(d, name):
    return d.status(name)[name].get("health")


def wait_health(d, name, want, timeout=30):
    return wait_for(lambda: health(d, name) == want and d.status(name)[name], timeout=timeout * SLOW,
                    what=f"{name} {want}")


def subscribe(d, *names):
    s = d.connect()
    s.sendall(b'{"cmd":"events","names":[%s]}\n' % ",".join(f'"{n}"' for n in names).encode())
    rd = LineReader(s)
    assert rd.next() == {"ok": True, "events": True}
    return s, rd


def next_health(rd):
    while True:
        ev = rd.next(timeout=30)
        if ev["event"] == "health":
            return ev


def paused(procs, tmp_path, cwd=None, **services):
    """A daemon (stop_timeout = 5) whose services each run HELPER pause (start_secs = 0),
    their other keys given as dicts."""
    return Daemon(procs, tmp_path, ini({"stop_timeout": 5}, **{
        name: {"command": "HELPER pause", **keys} for name, keys in services.items()}), cwd=cwd)


def test_transitions_and_retries(procs, tmp_path):
    chk, state, runs = check_script(tmp_path)
    d = paused(procs, tmp_path, db=dict(health_cmd=chk, health_interval="50ms", health_retries=3))
    wait_health(d, "db", "healthy")
    assert ("starting", "healthy") in health_log(d, "db"), d.log()
    s, rd = subscribe(d, "db")  # healthy was told: what comes is new
    # failures: still healthy until the third in a row
    n0 = runs_of(runs)
    state.write_text("1\n")
    ev = next_health(rd)
    assert ev["health"] == "unhealthy" and ev["old_health"] == "healthy", ev
    assert ev["failing_streak"] == 3 and ev["exit_code"] == 1, ev
    assert ev["output"] == "check says 1\nto stderr\n", ev
    # three failures ran; the first may have started (and logged its run) before n0 was read
    assert runs_of(runs) - n0 >= 2
    st = d.status("db")["db"]
    assert st["health"] == "unhealthy" and st["state"] == "running"
    assert st["health_check"]["last"]["exit_code"] == 1
    # one success is enough to be healthy again
    state.write_text("0\n")
    ev = next_health(rd)
    assert ev["health"] == "healthy" and ev["old_health"] == "unhealthy" and ev["failing_streak"] == 0
    assert ("healthy", "unhealthy") in health_log(d, "db") and ("unhealthy", "healthy") in health_log(d, "db")
    r = d.ctl("status", "db")
    assert r.returncode == 0
    assert re.search(r"db +running .* healthy$", r.stdout.splitlines()[1]), r.stdout
    assert "db: health check: healthy, 0 failures in a row; last: exit 0" in r.stdout, r.stdout
    assert "    check says 0\n    to stderr\n" in r.stdout, r.stdout
    s.close()
    d.stop()


def test_status_shows_a_checks_backslashes_apart_from_its_escapes(procs, tmp_path):
    """A check's output with a literal backslash beside control characters: ctl status
    escapes the controls and doubles the backslash, so its printed "\\x1b" (text) reads
    apart from an ESC (\\x1b); a CRLF ends a line, and a line of plain text is shown as
    it is. Before, both were shown as \\x1b."""
    chk, _, _ = check_script(tmp_path, extra=r"printf 'lit \\x1b.\033[31m red\r\nnext\n'")
    d = paused(procs, tmp_path, db=dict(health_cmd=chk, health_interval="50ms"))
    wait_health(d, "db", "healthy")
    r = d.ctl("status", "db")
    assert r.returncode == 0, r
    assert "    lit \\\\x1b.\\x1b[31m red\n    next\n    check says 0\n" in r.stdout, r.stdout
    d.stop()


def test_start_period_failures_do_not_count_until_a_success(procs, tmp_path):
    chk, state, runs = check_script(tmp_path)
    state.write_text("1\n")
    d = paused(procs, tmp_path,
               slow=dict(health_cmd=chk, health_interval="50ms", health_retries=1,
                         health_start_period="1h"))
    wait_for(lambda: d.status("slow")["slow"]["health_check"]["failures"] >= 4, timeout=30 * SLOW,
             what="4 failed checks")
    st = d.status("slow")["slow"]
    assert st["health"] == "starting" and st["health_check"]["failing_streak"] == 0, st
    r = d.ctl("health", "slow")
    assert r.returncode == 1 and "slow: starting" in r.stdout, r
    state.write_text("0\n")
    wait_health(d, "slow", "healthy")
    # the start period ends with the first success: one failure (retries = 1) now counts
    state.write_text("1\n")
    st = wait_health(d, "slow", "unhealthy")
    assert st["health_check"]["failing_streak"] >= 1
    d.stop()


def test_start_interval_checks_often_while_starting(procs, tmp_path):
    """Docker 25's start_interval: during the start period a starting service is checked at
    health_start_interval (default 5s, or health_interval if shorter), then at health_interval."""
    chk, state, runs = check_script(tmp_path)
    state.write_text("1\n")
    d = paused(procs, tmp_path,
               db=dict(health_cmd=chk, health_interval="1h", health_start_period="1h",
                       health_start_interval="50ms"),
               app=dict(requires="db:healthy"),
               dflt=dict(health_cmd="/bin/false", health_interval="1h", health_start_period="1h"),
               short=dict(health_cmd="/bin/false", health_interval="40ms",
                          health_start_period="1h"),
               noperiod=dict(health_cmd="/bin/true", health_interval="1h"))
    # a 1h interval, yet failed checks come one after the other while it starts
    wait_for(lambda: runs_of(runs) >= 3, timeout=30 * SLOW, what="3 checks of db")
    st = d.status("db")["db"]
    assert st["health"] == "starting" and st["health_check"]["interval_ms"] == 50, st
    assert d.status("app")["app"]["state"] == "waiting"
    state.write_text("0\n")
    d.wait_state("app", "running", timeout=30)
    st = wait_health(d, "db", "healthy")
    wait_for(lambda: d.status("db")["db"]["health_check"].get("interval_ms") == 3600000,
             timeout=10 * SLOW, what="db's next check at health_interval")
    # failing checks keep dflt and short starting: their interval stays the start one
    for name, want in (("dflt", 5000), ("short", 40), ("noperiod", 3600000)):
        d.wait_state(name, "running")
        hc = wait_for(lambda: d.status(name)[name]["health_check"].get("interval_ms"),
                      timeout=10 * SLOW, what=f"{name}'s check scheduled")
        assert hc == want, (name, hc)
    d.stop()


def test_action_restart(procs, tmp_path):
    chk, state, runs = check_script(tmp_path)
    d = paused(procs, tmp_path,
               web=dict(health_cmd=chk, health_interval="50ms", health_retries=2,
                        health_action="restart"))
    first = wait_health(d, "web", "healthy")["pid"]
    s, rd = subscribe(d, "web")
    state.write_text("1\n")
    seen = []
    while True:  # unhealthy, then the restart: a new process, whose health starts again
        ev = rd.next(timeout=30)
        seen.append((ev["event"], ev["health"] if ev["event"] == "health" else ev.get("state")))
        if ev["event"] == "state" and ev["state"] == "running" and ev["pid"] != first:
            break
    # stopped as for a missed watchdog: its exit a failure, the restart after the backoff
    assert seen.index(("health", "unhealthy")) < seen.index(("state", "backoff")), seen
    assert ev.get("health") == "starting", ev
    assert not alive(first)
    assert "web: unhealthy: restarting it (health_action = restart)" in d.log()
    state.write_text("0\n")
    st = wait_health(d, "web", "healthy")
    assert st["pid"] != first
    s.close()
    d.stop()


def test_action_restart_is_a_failure_for_the_policy(procs, tmp_path):
    """A service that is never healthy, health_action = restart: each restart is a failure
    for its policy, as a missed watchdog is (backoff, max_retries): after max_retries it is
    fatal, its restarts counted. It was an explicit restart, which resets the count and the
    backoff: restarted every check period, forever. With restart = never it is restarted
    at once all the same (what health_action asks)."""
    d = paused(procs, tmp_path,
               web=dict(health_cmd="false", health_interval="50ms", health_retries=1,
                        health_action="restart", max_retries=2, backoff_initial="0.05"),
               once=dict(health_cmd="false", health_interval="50ms", health_retries=1,
                         health_action="restart", restart="never"))
    st = wait_for(lambda: (s := d.status("web")["web"])["state"] == "fatal" and s,
                  timeout=30 * SLOW, what="web fatal")
    assert st["restarts"] == 2, st
    assert d.log().count("web: unhealthy: restarting it (health_action = restart)") == 3
    # why, when the stop begins and at the exit: the health check, not a watchdog
    assert "service web: unhealthy (health_action = restart): stopping it" in d.log()
    assert "the service said it failed" not in d.log(), d.log()
    first = d.status("once")["once"]["pid"]
    wait_for(lambda: (s := d.status("once")["once"])["state"] == "running" and
             s["pid"] not in (first, None), timeout=30 * SLOW, what="once restarted")
    d.stop()


def test_action_stop_stops_dependents_first_and_no_check_runs_after(procs, tmp_path):
    chk, state, runs = check_script(tmp_path)
    wchk, _, wruns = check_script(tmp_path, "witness")
    d = paused(procs, tmp_path,
               db=dict(health_cmd=chk, health_interval="50ms", health_retries=1,
                       health_action="stop"),
               app=dict(requires="db:healthy"),
               witness=dict(health_cmd=wchk, health_interval="50ms"))
    d.wait_state("app", "running")
    state.write_text("1\n")
    d.wait_state("db", "stopped")
    assert d.status("app")["app"]["state"] == "stopped"
    log = d.log()
    assert log.index("service app: running -> stopping") < log.index("service db: running -> stopping")
    st = d.status("db")["db"]
    assert "health" not in st and st["health_check"]["last"]["exit_code"] == 1, st
    # no check runs for a service that is down: the witness's checks go on meanwhile
    n = runs_of(runs)
    w = runs_of(wruns)
    wait_for(lambda: runs_of(wruns) >= w + 5, timeout=30 * SLOW, what="5 witness checks")
    assert runs_of(runs) == n
    d.stop()


def test_a_hanging_check_is_killed_with_its_children(procs, tmp_path):
    pids = tmp_path / "pids"
    chk, state, runs = check_script(tmp_path, extra=f"echo $$ >> {pids}\nsleep 1000 &\necho $! >> {pids}\nwait")
    # each check has until its timeout to write both pids (a shell, a fork): seconds, not
    # the 300 ms it had, which a loaded machine can take before the shell's first line
    ms = 2000 * SLOW
    d = paused(procs, tmp_path,
               hang=dict(health_cmd=chk, health_interval="50ms", health_timeout=f"{ms}ms",
                         health_retries=2, health_action="stop"))
    d.wait_state("hang", "stopped", timeout=60)
    st = d.status("hang")["hang"]
    last = st["health_check"]["last"]
    assert last["timed_out"] is True and last["exit_code"] is None, st
    assert last["output"].startswith(f"health check timed out after {ms} ms: killed"), last
    assert st["health_check"]["failures"] == 2
    got = [int(p) for p in pids.read_text().split()]
    assert len(got) == 4, got  # two checks: the shell and its sleep each
    wait_for(lambda: not any(alive(p) for p in got), timeout=10 * SLOW, what="the checks' processes gone")
    d.stop()


def test_output_is_bounded(procs, tmp_path):
    chk, state, runs = check_script(tmp_path, extra="head -c 10000 /dev/zero | tr '\\0' x")
    d = paused(procs, tmp_path, big=dict(health_cmd=chk, health_interval="50ms"))
    st = wait_health(d, "big", "healthy")
    last = st["health_check"]["last"]
    assert len(last["output"]) == 4096 and last["output"] == "x" * 4096, len(last["output"])
    assert last["output_truncated"] is True
    d.stop()


def test_hostile_output_reaches_no_terminal_raw_and_the_json_stays_utf8(procs, tmp_path):
    """A check (or an HTTP server probed) may print anything: escape sequences
    (a window title, a screen clear), BEL, C1 controls as UTF-8 and as single
    8-bit bytes, bytes of no UTF-8 character. The daemon's log printed them
    raw (it is what an admin tails, or `docker logs` shows), and the JSON of
    `ctl status` and of events carried the stray bytes, which strict JSON
    readers refuse. Now the log escapes them, the JSON is UTF-8 with each
    stray byte a '?', and `ctl --json` prints no C1 control raw."""
    evil = r"bad \033]0;PWNED\007\033[2J \302\233 \233 \377 end"
    chk, state, runs = check_script(tmp_path, extra=f"printf '{evil}\\n'")
    state.write_text("1\n")
    d = paused(procs, tmp_path, web=dict(health_cmd=chk, health_interval="50ms", health_retries=1))
    s, rd = subscribe(d, "web")
    st = wait_health(d, "web", "unhealthy")
    out = st["health_check"]["last"]["output"]
    assert out.startswith("bad \x1b]0;PWNED\x07\x1b[2J \u009b ? ? end\n"), repr(out)
    raw = d.ctl("--json", "status", "web").stdout  # decoded by the harness, errors="replace"
    assert "\\u009b" in raw and "\x9b" not in raw and "\x1b" not in raw, repr(raw)
    assert "\ufffd" not in raw, repr(raw)  # no byte that is not UTF-8
    human = d.ctl("status", "web").stdout
    assert "\x1b" not in human and "\x07" not in human and "\\x1b]0;PWNED" in human, human
    with open(d.logpath, "rb") as f:
        log = f.read()
    line = [x for x in log.splitlines() if b"health starting -> unhealthy" in x]
    assert line and b"\\x1b]0;PWNED\\x07\\x1b[2J \\u009b" in line[0], line
    for bad in (b"\x1b", b"\x07", b"\x9b", b"\xff"):
        assert bad not in log, (bad, log[-2000:])
    # the events stream: each line strict UTF-8 JSON (LineReader decodes strictly)
    ev = next_health(rd)
    assert ev["output"].startswith("bad \x1b]0;PWNED"), ev
    s.close()
    d.stop()


def test_a_check_that_cannot_run_fails_with_the_reason(procs, tmp_path):
    d = paused(procs, tmp_path,
               nocheck=dict(health_cmd=f"{tmp_path}/no-such-check", health_interval="50ms",
                            health_retries=1))
    st = wait_health(d, "nocheck", "unhealthy")
    assert "cannot run the health check: exec: No such file or directory" in \
        st["health_check"]["last"]["output"], st
    d.stop()


def test_requires_healthy(procs, tmp_path):
    chk, state, runs = check_script(tmp_path)
    bchk, bstate, _ = check_script(tmp_path, "bad")
    state.write_text("1\n")
    bstate.write_text("1\n")
    d = paused(procs, tmp_path,
               db=dict(health_cmd=chk, health_interval="50ms", health_start_period="1h"),
               app=dict(requires="db:healthy"),
               plain=dict(requires="db"),
               bad=dict(health_cmd=bchk, health_interval="50ms", health_retries=1),
               blocked=dict(requires="bad:healthy"))
    # ready is enough for plain; app waits for db's check
    d.wait_state("plain", "running")
    wait_for(lambda: runs_of(runs) >= 3, timeout=30 * SLOW, what="3 checks of db")
    st = d.status("app")["app"]
    assert st["state"] == "waiting" and st["waiting_for"] == ["db"], st
    r = d.ctl("wait", "db", "--for", "healthy", "-t", "0.3")
    assert r.returncode == 3 and "db is running" in r.stderr, r
    r = d.ctl("health", "db")
    assert r.returncode == 1, r
    state.write_text("0\n")
    d.wait_state("app", "running")
    log = d.log()
    assert log.index("service db: health starting -> healthy") < log.index("service app: waiting -> running")
    r = d.ctl("wait", "db", "app", "--for", "healthy")
    assert r.returncode == 0, r
    r = d.ctl("health", "db")
    assert r.returncode == 0 and r.stdout == "db: healthy\n", r
    r = d.ctl("health", "app")  # no check: ready is enough
    assert r.returncode == 0 and "ready (no health check)" in r.stdout, r
    # an unhealthy requirement keeps its dependent from starting, like compose's service_healthy
    st = d.wait_state("blocked", "stopped")
    assert st["error"] == "not started: requires bad to be healthy, which is unhealthy", st
    r = d.ctl("wait", "bad", "--for", "healthy", "-t", "0.3")
    assert r.returncode == 3, r
    d.stop()


def test_check_config_mistakes(procs, tmp_path):
    cfg = tmp_path / "c.ini"
    cfg.write_text("[service:a]\n"                 # 1
                   "command = true\n"              # 2
                   "health_cmd =\n"                # 3
                   "health_interval = 0\n"         # 4
                   "health_retries = 0\n"          # 5
                   "health_action = reboot\n"      # 6
                   "health_timeout = soon\n"       # 7
                   "[service:b]\n"                 # 8
                   "command = true\n"              # 9
                   "requires = a:healthy\n")       # 10
    err = config_errors(procs, cfg, [(3, "health_cmd: empty command"),
                                     (4, "health_interval: '0' is not a duration above 0"),
                                     (5, "health_retries: '0' is not a number from 1"),
                                     (6, "health_action: 'reboot' is not none, restart or stop"),
                                     (7, "health_timeout: 'soon' is not a duration above 0")])
    assert ":10:" not in err, err


def test_check_warns_of_a_check_program_that_is_not_there(procs, tmp_path):
    """--check said OK for health_cmd = and ready = exec: naming no program: the service
    sat in starting until ready_timeout, or unhealthy, with nothing said beforehand. Now
    warnings (errors with --strict); the services still start."""
    from conftest import EVMON
    cfg = tmp_path / "c.ini"
    cfg.write_text("[service:a]\ncommand = true\nready = exec:no-such-prog-evmon\n"
                   "health_cmd = no-such-prog-evmon2 --x\n"
                   "[service:b]\ncommand = true\nhealth_cmd = true\n")
    r = procs.run([EVMON, "daemon", "--check", "-c", str(cfg)], timeout=20 * SLOW)
    assert r.returncode == 0 and "(see the warnings)" in r.stdout, r
    assert f"warning: {cfg}:3: ready: no-such-prog-evmon: not found in PATH" in r.stderr, r
    assert f"warning: {cfg}:4: health_cmd: no-such-prog-evmon2: not found in PATH" in r.stderr, r
    assert "true" not in r.stderr, r
    r = procs.run([EVMON, "daemon", "--check", "--strict", "-c", str(cfg)], timeout=20 * SLOW)
    assert r.returncode == 1 and "2 errors (--strict)" in r.stderr, r


def test_check_warns_of_health_keys_without_a_check(procs, tmp_path):
    """health_interval and the other keys of a check, in a service that has none, have no
    effect: each is a warning naming the service (it was taken without a word), an error
    with --strict; with a check (health_tcp too) nothing is said."""
    from conftest import EVMON
    cfg = tmp_path / "c.ini"
    cfg.write_text("[service:a]\ncommand = true\nhealth_interval = 5s\nhealth_timeout = 1s\n"
                   "health_retries = 2\nhealth_start_period = 1s\nhealth_start_interval = 1s\n"
                   "health_action = restart\n"
                   "[service:b]\ncommand = true\nhealth_tcp = 127.0.0.1:1\nhealth_interval = 5s\n")
    r = procs.run([EVMON, "daemon", "--check", "-c", str(cfg)], timeout=20 * SLOW)
    assert r.returncode == 0 and "(see the warnings)" in r.stdout, r
    keys = ("health_interval", "health_timeout", "health_retries", "health_start_period",
            "health_start_interval", "health_action")
    assert r.stderr.splitlines() == [
        f"evmon daemon: warning: {cfg}:{line}: service a: {key} has no effect without a health "
        "check (health_cmd, health_tcp or health_http)" for line, key in enumerate(keys, 3)], r
    r = procs.run([EVMON, "daemon", "--check", "--strict", "-c", str(cfg)], timeout=20 * SLOW)
    assert r.returncode == 1 and "6 errors (--strict)" in r.stderr, r


def test_reload_changes_health_keys_in_place(procs, tmp_path):
    chk, state, runs = check_script(tmp_path)
    chk2, state2, runs2 = check_script(tmp_path, "other")
    base = """
[evmon]
stop_timeout = 5
[service:web]
command = HELPER pause
start_secs = 0
"""
    d = Daemon(procs, tmp_path, base)
    pid = d.wait_state("web", "running")["pid"]
    assert "health" not in d.status("web")["web"]
    # a check added: the running process stays, its health starts
    d.write(base + f"health_cmd = {chk}\nhealth_interval = 50ms\n")
    r = d.request({"cmd": "reload"})
    assert r["ok"] and r["updated"] == ["web"], r
    assert wait_health(d, "web", "healthy")["pid"] == pid
    # another command and retries: used from the next check
    state2.write_text("3\n")
    d.write(base + f"health_cmd = {chk2}\nhealth_interval = 50ms\nhealth_retries = 1\n")
    r = d.request({"cmd": "reload"})
    assert r["ok"] and r["updated"] == ["web"], r
    st = wait_health(d, "web", "unhealthy")
    assert st["pid"] == pid and st["health_check"]["last"]["exit_code"] == 3, st
    assert runs_of(runs2) >= 1
    # dropped: no health any more
    d.write(base)
    r = d.request({"cmd": "reload"})
    assert r["ok"] and r["updated"] == ["web"], r
    st = d.status("web")["web"]
    assert "health" not in st and "health_check" not in st and st["pid"] == pid, st
    # a new command and a check: the new process's health starts over
    d.write(base.replace("HELPER pause", "HELPER sleep 3600000 pause") + f"health_cmd = {chk}\nhealth_interval = 50ms\n")
    r = d.request({"cmd": "reload"})
    assert r["ok"] and r["changed"] == ["web"], r
    st = wait_for(lambda: (s := d.status("web")["web"]).get("health") == "healthy" and s["pid"] != pid and s,
                  timeout=30 * SLOW, what="the new web healthy")
    assert st["health_check"]["failing_streak"] == 0
    d.stop()


def test_metrics(procs, tmp_path):
    chk, state, runs = check_script(tmp_path)
    d = paused(procs, tmp_path, db=dict(health_cmd=chk, health_interval="50ms"), plain=dict())
    wait_health(d, "db", "healthy")
    r = d.ctl("metrics")
    assert r.returncode == 0
    assert 'evmon_service_healthy{service="db"} 1' in r.stdout, r.stdout
    assert 'evmon_service_healthy{service="plain"}' not in r.stdout
    m = re.search(r'evmon_service_health_checks_total\{service="db"\} (\d+)', r.stdout)
    assert m and int(m[1]) >= 1, r.stdout
    d.stop()


def test_check_in_the_daemons_directory_even_once_renamed(procs, tmp_path):
    """A service without a directory runs in the daemon's: its checks too (handed over by
    path), and still once that directory was renamed (the inherited one then)."""
    chk, state, runs = check_script(tmp_path, extra='echo "pwd $(pwd)"')
    (tmp_path / "here").mkdir()
    d = paused(procs, tmp_path, web=dict(health_cmd=chk, health_interval="50ms"),
               cwd=tmp_path / "here")
    st = wait_health(d, "web", "healthy")
    assert st["health_check"]["last"]["output"].startswith(f"pwd {tmp_path}/here\n"), st
    (tmp_path / "here").rename(tmp_path / "moved")
    st = wait_for(lambda: (s := d.status("web")["web"])["health_check"]["last"]["output"]
                  .startswith(f"pwd {tmp_path}/moved\n") and s, timeout=30 * SLOW,
                  what="a check in the renamed directory")
    assert st["health"] == "healthy" and st["health_check"]["failures"] == 0, st
    d.stop()


def test_check_runs_as_the_service_with_its_environment(procs, tmp_path):
    chk, state, runs = check_script(tmp_path, extra="echo \"env $EVMON_SERVICE $FOO $(pwd)\"")
    (tmp_path / "work").mkdir()
    d = paused(procs, tmp_path,
               web=dict(environment="FOO=bar", directory=f"{tmp_path}/work", health_cmd=chk,
                        health_interval="50ms"))
    st = wait_health(d, "web", "healthy")
    out = st["health_check"]["last"]["output"]
    assert out.startswith(f"env web bar {tmp_path}/work\n"), out
    # in the service's cgroup when it has one
    if st.get("cgroup"):
        # a new file renamed over the old: rewriting it in place races the 50 ms check's
        # exec of it (ETXTBSY, seen under load)
        new = chk.with_suffix(".new")
        new.write_text(chk.read_text().replace("exit $s", "cat /proc/self/cgroup; exit $s"))
        new.chmod(0o755)
        os.replace(new, chk)
        d.ctl("restart", "web")
        st = wait_for(lambda: (s := d.status("web")["web"]).get("health") == "healthy"
                      and "0::" in s["health_check"]["last"]["output"] and s, timeout=30 * SLOW)
        cg = st["health_check"]["last"]["output"].split("0::", 1)[1].split()[0]
        assert st["cgroup"].endswith(cg), (st["cgroup"], cg)
    d.stop()


def daemon_fds(d):
    """What the daemon's fds are (pipes counted, not told apart), once its checks are
    reaped (a check killed by the stop holds its pidfd until then); sockets left out: a
    control connection just closed may not be read yet."""
    wait_for(lambda: not children_of(d.p.pid), timeout=30 * SLOW, what="the checks reaped")
    kinds = []
    for fd in os.listdir(f"/proc/{d.p.pid}/fd"):
        try:
            t = os.readlink(f"/proc/{d.p.pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if not t.startswith("socket:"):
            kinds.append(re.sub(r"^(pipe|anon_inode):.*", r"\1", t))
    return sorted(kinds)


@pytest.mark.parametrize("nofile", [None, 96])
def test_checks_leak_no_fd_and_a_down_service_holds_none(procs, tmp_path, nofile):
    """While a service is up the daemon keeps its checks' pipe and cgroup directory (no
    open, epoll registration or close per check); past half of RLIMIT_NOFILE (nofile = 96:
    the later services' fds are past 48) each check gets a pipe of its own instead. Either
    way a check has fds 0-2 only, its output is read whole, and once the services are
    stopped the daemon holds exactly the fds it held after the first round (that round
    opens what the daemon keeps for every spawn: /dev/null, its /proc status, the cgroup
    watch)."""
    n = 1 if nofile is None else 12
    names = [f"s{i}" for i in range(n)]
    d = Daemon(procs, tmp_path, ini({"autostart": "false", "stop_timeout": 5}, **{
        name: {"command": "HELPER pause", "health_cmd": "HELPER fds print done",
               "health_interval": "20ms"} for name in names}),
        wrap=["prlimit", f"--nofile={nofile}:{nofile}"] if nofile else ())
    base = None
    for _ in range(2):
        runs = {name: st.get("health_check", {}).get("runs", 0)
                for name, st in d.status(*names).items()}
        assert d.ctl("start", *names).returncode == 0
        wait_for(lambda: all(s.get("health_check", {}).get("runs", 0) >= runs[name] + 10
                             for name, s in d.status(*names).items()),
                 timeout=60 * SLOW, what="10 checks each")
        for name, st in d.status(*names).items():
            assert st["health"] == "healthy", st
            assert st["health_check"]["last"]["output"] == "fd 0\nfd 1\nfd 2\ndone\n", st
        assert d.ctl("stop", *names).returncode == 0
        if base is None:
            base = daemon_fds(d)
    assert daemon_fds(d) == base
    d.stop()


def test_what_a_check_left_behind_cannot_write_into_later_checks(procs, tmp_path):
    """A check leaves a process behind that writes on the check's stdout forever. Its
    writes after the check's exit find the pipe gone (the daemon drops the pipe it keeps
    for the checks when something writes while no check runs), so it dies of SIGPIPE, as
    when each check had a pipe of its own; the checks after that have their own output."""
    pidf = tmp_path / "leftover.pid"
    chk, state, runs = check_script(tmp_path, extra=f"""if [ ! -e {pidf} ]; then
  (while echo leftover; do sleep 0.02; done) &
  echo $! > {pidf}
fi""")
    d = paused(procs, tmp_path, web=dict(health_cmd=chk, health_interval="50ms"))
    wait_for(lambda: pidf.exists() and pidf.read_text().strip(), timeout=30 * SLOW, what="the leftover")
    left = int(pidf.read_text())
    wait_for(lambda: not alive(left), timeout=30 * SLOW, what="the leftover dead of SIGPIPE")
    n = d.status("web")["web"]["health_check"]["runs"]
    wait_for(lambda: d.status("web")["web"]["health_check"]["runs"] >= n + 2, timeout=30 * SLOW,
             what="two more checks")
    st = d.status("web")["web"]
    assert st["health"] == "healthy", st
    assert st["health_check"]["last"]["output"] == "check says 0\nto stderr\n", st
    d.stop()


def test_a_loop_iteration_starts_a_bounded_number_of_checks(procs, tmp_path):
    """A spawn returns once its child has exec'd, and the loop runs every due timer in one
    iteration: with many checks due at once, one iteration started them all, and each
    took milliseconds on a busy machine (1,000 services checked every second: iterations
    of 0.3-0.7 s, `ctl metrics`, sent a piece per iteration, 15-35 s). Now at most 16
    checks start per iteration, the rest in the next ones, after the ready fds. The
    daemon is stopped (SIGSTOP) for longer than the interval, so that all 40 checks are
    due when it goes on; strace on the daemon (direct spawn mode: the clone3 is the
    daemon's) counts the clone3 calls between two epoll_waits after its SIGCONT."""
    from reliability_util import PrefixedDaemon
    if not os.path.exists("/usr/bin/strace"):
        pytest.skip("no strace")
    n = 40
    trace = tmp_path / "strace.log"
    names = [f"s{i}" for i in range(n)]
    # LeakSanitizer cannot run under ptrace
    env = dict(os.environ, EVM_SPAWN_MODE="direct",
               ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
    d = PrefixedDaemon(procs, tmp_path, ini({"stop_timeout": 5}, **{
        name: {"command": "HELPER pause", "start_secs": 0, "health_cmd": "HELPER exit 0",
               "health_interval": "1s", "health_start_interval": "1s"} for name in names}),
        env=env, prefix=["strace", "-qq", "-o", str(trace),
                         "-e", "trace=epoll_wait,epoll_pwait,epoll_pwait2,restart_syscall,clone3,clone,vfork"])
    assert d.ctl("wait", *names, "--for", "healthy", "-t", str(60 * SLOW),
                 timeout=70 * SLOW).returncode == 0
    runs = {name: st["health_check"]["runs"] for name, st in d.status(*names).items()}
    pid = d.daemon_pid()
    os.kill(pid, signal.SIGSTOP)
    time.sleep(2.5)  # past every check's interval: all due at the SIGCONT
    os.kill(pid, signal.SIGCONT)
    wait_for(lambda: all(s["health_check"]["runs"] > runs[name] + 1
                         for name, s in d.status(*names).items()),
             timeout=60 * SLOW, what="two more checks each")
    d.stop()
    lines = trace.read_text().splitlines()
    cont = [i for i, l in enumerate(lines) if "SIGCONT" in l]
    assert cont, lines[-20:]
    per_turn, count = [], 0
    for line in lines[cont[0]:]:
        # the epoll_wait under way at the SIGSTOP goes on as restart_syscall
        if re.match(r"(epoll_p?wait2?|restart_syscall)\(", line):
            per_turn.append(count)
            count = 0
        elif re.match(r"(clone3?|vfork)\(.*\) = [1-9]", line):  # not one ptrace restarted
            count += 1
    per_turn.append(count)
    assert sum(per_turn) >= n, per_turn
    assert max(per_turn) <= 16, per_turn


@pytest.mark.parametrize("how", ["reexec", "crash"])
def test_health_carries_over_a_reexec_and_a_crash(procs, tmp_path, how):
    """An adopted service goes on with the health the daemon before knew (healthy; unhealthy
    with its failures in a row), not from "starting" until its next check (a whole
    health_interval: a dip in every status and metric at each upgrade). The checks then
    run on as before. The record on disk carries it too (" health=STATUS:FAILURES")."""
    ok, _, _ = check_script(tmp_path, "ok")
    bad, bad_state, _ = check_script(tmp_path, "bad")
    bad_state.write_text("1\n")
    ill_chk, ill_state, _ = check_script(tmp_path, "ill")
    d = paused(procs, tmp_path, good=dict(health_cmd=ok, health_interval="1h",
                                          health_start_interval="20ms", health_start_period="1h"),
               sick=dict(health_cmd=bad, health_interval="50ms", health_retries=2),
               # restarted for it, but deaf to the stop signal (its SIGKILL is an hour away)
               ill=dict(command="HELPER ignore 15 pause", health_cmd=ill_chk,
                        health_interval="50ms", health_retries=2, health_action="restart",
                        stop_timeout="1h"))
    wait_health(d, "good", "healthy")
    wait_health(d, "sick", "unhealthy")
    wait_health(d, "ill", "healthy")
    wait_signal_state(d, "ill", "SigIgn")
    ill_state.write_text("1\n")
    wait_for(lambda: "service ill: unhealthy: restarting it" in d.log(), what="ill's restart")
    pids = {n: d.status(n)[n]["pid"] for n in ("good", "sick", "ill")}
    if how == "crash":
        def recorded():
            text = open(d.sock + ".state").read()
            return "health=healthy:0" in text and "health=unhealthy:" in text
        wait_for(recorded, what="the health in the record")
    hand_over(d, how)
    st = d.status()
    assert {n: st[n]["pid"] for n in pids} == pids
    assert st["good"]["health"] == "healthy" and st["sick"]["health"] == "unhealthy", st
    # the checks go on: sick's failures in a row keep counting from where they were
    wait_for(lambda: d.status("sick")["sick"]["health_check"]["failing_streak"] >= 5,
             what="sick's checks going on")
    # an unhealthy one with an action starts over, and gets its action again (the first
    # one's SIGKILL was not carried over: kept unhealthy, it would have run on for good)
    # (its checks fail every 50 ms: a loaded machine may see it unhealthy again already;
    # the second action below is what shows it started over)
    assert st["ill"]["health"] in ("starting", "unhealthy") and st["ill"]["pid"] == pids["ill"], \
        st["ill"]
    wait_for(lambda: d.log().count("service ill: unhealthy: restarting it") == 2,
             what="ill's action again")
    assert d.status("good")["good"]["health"] == "healthy"
    assert d.request({"cmd": "stop", "names": ["ill"]})["ok"]  # deaf to SIGTERM: then KILL
    os.kill(pids["ill"], signal.SIGKILL)
    d.wait_state("ill", "stopped")
    d.stop()


def test_a_paused_daemon_takes_the_checks_that_ended_before_their_timeouts(procs, tmp_path):
    """The daemon stopped (SIGSTOP, as a freezer's docker pause) for longer than
    health_timeout while checks run, then continued: each check that ended meanwhile
    passes. Its timeout fired first (the continue ends the loop's wait with EINTR, and the
    timers ran before the exits that were ready): "timed out", and every service
    restarted."""
    d = Daemon(procs, tmp_path, """
[service:h]
command = HELPER pause
instances = 6
start_secs = 0
health_cmd = sleep 0.3
health_interval = 100ms
health_timeout = 1s
health_retries = 1
health_action = restart
""")
    for i in range(6):
        wait_health(d, f"h:{i}", "healthy")
    pids = {n: s["pid"] for n, s in d.status().items()}
    for _ in range(3):
        time.sleep(0.15)  # checks under way (each runs 0.3 s of every 0.4 s)
        os.kill(d.p.pid, signal.SIGSTOP)
        time.sleep(2)
        os.kill(d.p.pid, signal.SIGCONT)
        # answered: the loop's first turn after the continue (its timers) is over
        assert d.ctl("ping").returncode == 0
    assert "timed out" not in d.log(), d.log()[-3000:]
    st = d.status()
    assert {n: s["pid"] for n, s in st.items()} == pids, st
    d.stop()
