"""essential = true | exit: the end of an essential service stops every
service (dependents first) and the daemon exits with its code, 128+N for a
signal."""
import re

from daemon_util import SLOW, Daemon, alive, ini

TRANS = re.compile(r"evmon(?: daemon)?: service (\S+): (\w+) -> (\w+)")


def ended(d):
    rc = d.p.wait(timeout=60 * SLOW)
    d.logf.close()
    return rc


def test_essential_fails_for_good_and_the_daemon_exits_with_its_code(procs, tmp_path):
    d = Daemon(procs, tmp_path, ini(
        {"stop_timeout": 10},
        db="HELPER linger 50 pause",
        app={"command": "HELPER linger 50 sleep 1000 exit 3", "restart": "never", "requires": "db",
             "essential": "true"},
        side="HELPER pause"))
    pids = d.pids()
    assert ended(d) == 3, d.log()
    log = d.log()
    assert "essential service app exited with code 3 (exited): stopping 2 services" in log, log
    tr = [m.groups() for m in map(TRANS.search, log.splitlines()) if m]
    assert ("db", "running", "stopping") in tr and ("side", "running", "stopping") in tr, tr
    assert not [p for p in pids if alive(p)]


def test_essential_exit_by_signal_is_128_plus_n(procs, tmp_path):
    d = Daemon(procs, tmp_path, ini(
        main={"command": "HELPER sleep 300 kill 9", "restart": "always", "essential": "exit"},
        other="HELPER pause"))
    assert ended(d) == 128 + 9, d.log()
    assert "essential service main was killed by signal 9 (backoff)" in d.log()


def test_essential_restarting_service_ends_only_when_fatal(procs, tmp_path):
    d = Daemon(procs, tmp_path, """
        [service:flaky]
        command = HELPER exit 7
        restart = on-failure
        start_secs = 5
        start_retries = 2
        backoff_initial = 0.01
        essential = true
        """)
    assert ended(d) == 7, d.log()
    log = d.log()
    assert log.count("flaky: starting -> backoff") == 2, log
    assert "essential service flaky exited with code 7 (fatal)" in log


def test_a_reload_cancelling_an_essential_services_restart_ends_the_daemon(procs, tmp_path):
    """essential = true, waiting in backoff after an exit; a reload keeps it essential and sets
    restart = never: its restart is cancelled, it is exited and its policy does not restart
    it: the daemon exits with its code, judged after the reload, with its settings."""
    def conf(restart):
        return f"""
[service:e]
command = HELPER exit 4
restart = {restart}
essential = true
backoff_initial = 1h
backoff_max = 1h
start_secs = 0

[service:other]
command = HELPER pause
start_secs = 0
"""
    d = Daemon(procs, tmp_path, conf("always"))
    d.wait_state("e", "backoff")
    pids = d.pids()
    d.write(conf("never"))
    r = d.ctl("reload")
    assert r.returncode == 0 and "updated: e" in r.stdout, r
    assert ended(d) == 4, d.log()
    assert "essential service e exited with code 4 (exited)" in d.log(), d.log()
    assert not [p for p in pids if alive(p)]


def test_stopping_an_essential_service_by_hand_is_not_its_end(procs, tmp_path):
    d = Daemon(procs, tmp_path, ini(main={"command": "HELPER pause", "essential": "exit"}))
    r = d.ctl("stop", "main")
    assert r.returncode == 0, r
    assert d.ctl("ping").returncode == 0
    d.stop()


def test_essential_crash_loop_of_exits_0_is_not_a_success(procs, tmp_path):
    """A service that exits 0 before start_secs, again and again, gave up (fatal): a
    failure, so the daemon exits 1, not its last code 0, which told the orchestrator all
    was well."""
    d = Daemon(procs, tmp_path, """
        [service:quick]
        command = HELPER exit 0
        restart = always
        start_secs = 5
        start_retries = 2
        backoff_initial = 0.01
        essential = true
        """)
    assert ended(d) == 1, d.log()
    assert "essential service quick exited with code 0 (fatal), a failure: exit status 1: no service is up: exiting" in d.log()


def test_essential_stopped_for_unhealthy_ends_the_daemon(procs, tmp_path):
    """health_action = stop on an essential service: a stop for a failure, not one asked
    for, so the daemon ends, with its exit (TERM: 143). It kept running with nothing to
    do."""
    d = Daemon(procs, tmp_path, ini(
        main={"command": "HELPER pause", "essential": "exit", "health_cmd": "/bin/false",
              "health_interval": "100ms", "health_retries": 1, "health_action": "stop"},
        other="HELPER pause"))
    assert ended(d) == 128 + 15, d.log()
    assert "essential service main was killed by signal 15" in d.log()


def test_essential_that_cannot_start_ends_the_daemon(procs, tmp_path):
    """An essential service whose dependency failed for good never runs: the daemon ends
    with 1 and says why. It ran on for good with nothing to do (in a container, never
    ending)."""
    d = Daemon(procs, tmp_path, ini(
        dep={"command": "HELPER sleep 500 exit 1", "restart": "never", "start_secs": 5},
        main={"command": "HELPER pause", "essential": "true", "requires": "dep"},
        other="HELPER pause"))
    assert ended(d) == 1, d.log()
    assert "essential service main cannot run: not started: requires dep, which is exited" \
        in d.log(), d.log()


def test_a_client_start_that_cannot_run_does_not_end_the_daemon(procs, tmp_path):
    """An essential service stopped by hand is started again by `ctl start` once what it
    requires fails for good: the start fails, saying why, and the daemon carries on (a
    stop asked for is not its end; nor is a start asked for that cannot run). It ended
    the daemon: an operator's `evmon ctl start` took the container down."""
    ok = tmp_path / "dep-may-run"
    ok.touch()
    d = Daemon(procs, tmp_path, ini(
        dep={"command": f"sh -c 'test -e {ok} || exit 3; exec sleep 400211'", "restart": "never",
             "start_secs": "1"},
        main={"command": "HELPER pause", "essential": "true", "requires": "dep"},
        other="HELPER pause"))
    d.wait_state("main", "running")
    assert d.ctl("stop", "main").returncode == 0
    ok.unlink()
    d.ctl("restart", "dep")  # exits 3, restart = never: over for good
    d.wait_state("dep", "exited")
    r = d.ctl("start", "main")  # starts dep again (it requires it): exits 3 again
    assert r.returncode != 0 and "requires dep, which is exited" in r.stdout + r.stderr, r
    assert "essential service main cannot run: not started: requires dep, which is exited: " \
           "its start was a client's: the daemon carries on" in d.log(), d.log()
    assert d.p.poll() is None and d.status("other")["other"]["state"] == "running"
    # the daemon's own start of it still ends it: as at the start (test above)
    ok.touch()
    d.stop()
