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
        app={"command": "HELPER linger 50 sleep 300 exit 3", "restart": "never", "requires": "db",
             "essential": "true"},
        side="HELPER pause"))
    pids = d.pids()
    assert ended(d) == 3, d.log()
    log = d.log()
    assert "essential service app exited with code 3 (exited): stopping 3 services" in log, log
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


def test_stopping_an_essential_service_by_hand_is_not_its_end(procs, tmp_path):
    d = Daemon(procs, tmp_path, ini(main={"command": "HELPER pause", "essential": "exit"}))
    r = d.ctl("stop", "main")
    assert r.returncode == 0, r
    assert d.ctl("ping").returncode == 0
    d.stop()
