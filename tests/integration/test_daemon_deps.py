"""Dependencies between services (requires, after): config errors, start
order with parallelism, a failed dependency, `ctl start` pulling in what a
service requires, `ctl stop` and the shutdown stopping dependents first.

Order is read from the daemon's log, where every event has its line in the
order it happened; no assertion depends on how long anything takes."""
import json
import os
import re
import signal
import time

import pytest

from conftest import EVMON, HELPER
from daemon_util import Daemon, LineReader, alive, record_text, wait_for, wait_signal_state, SLOW

TRANS = re.compile(r"evmon(?: daemon)?: service (\S+): (\w+) -> (\w+)")


def transitions(d):
    return [m.groups() for m in map(TRANS.search, d.log().splitlines()) if m]


def index(tr, name, new, old=None, start=0):
    """Position of the first transition of name into state new (from old) at or after start."""
    for i, (n, o, s) in enumerate(tr):
        if i >= start and n == name and s == new and (old is None or o == old):
            return i
    raise AssertionError(f"no {name} -> {new} in {tr}")


def check(procs, tmp_path, text):
    cfg = tmp_path / "c.ini"
    cfg.write_text(text)
    r = procs.run([EVMON, "daemon", "--check", "-c", str(cfg)], timeout=30 * SLOW)
    return r.returncode, r.stderr


def wait_count(d, state, n):
    """Wait (120 s, scaled) until n services are in state."""
    wait_for(lambda: sum(x["state"] == state for x in d.status().values()) == n,
             timeout=120 * SLOW, what=f"{n} services {state}")


def then_reexec(d, request):
    """request (one JSON line) and `reexec` right behind it on one connection: both ok."""
    with d.connect() as s:
        s.sendall(request + b'{"cmd":"reexec"}\n')
        r = LineReader(s)
        assert r.next(60)["ok"]
        rx = r.next(120)
        assert rx["ok"], rx


def catching(d, *names):
    """Wait until each of names runs a process with a SIGTERM handler (SigCgt): a service
    is running from its spawn on (start_secs = 0), and a stop sent before its linger (or
    trap) is in place kills it at once. The pids."""
    return [wait_signal_state(d, n, "SigCgt") for n in names]


def db_and_slow_web(procs, tmp_path, slow="web"):
    """A daemon running db and web (requires db), slow (web, or db) taking 4 s to stop, its
    SIGTERM handler in place."""
    d = Daemon(procs, tmp_path, f"""
[service:db]
command = HELPER {"linger 4000 " if slow == "db" else ""}pause
start_secs = 0

[service:web]
command = HELPER {"linger 4000 " if slow == "web" else ""}pause
requires = db
start_secs = 0
""")
    wait_for(lambda: all(x["state"] == "running" for x in d.status().values()),
             what="db and web running")
    catching(d, slow)
    return d


def then_crash(d, request, names, word):
    """request, then kill -9 of the daemon once its record on disk (format 2) ends the line of
    each of names with word (format 7's flag, statewrite.c), and a new daemon on its socket."""
    with d.connect() as s:
        s.sendall(request)
        assert LineReader(s).next(60)["ok"]

    seen = []

    def recorded():
        try:
            with open(d.sock + ".state") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return False
        seen[:] = lines
        # FLAGS ("stopping", ...), or format 7's flag after NEXT_START (then health=, deadline=)
        says = {w[1]: (w[5], *w[12:]) for w in map(str.split, lines) if w[0] == "service"}
        return lines[0] == "evmon-state 2" and all(word in says.get(n, ()) for n in names)
    try:
        wait_for(recorded, timeout=30 * SLOW, what=f"{names} {word} in the record")
    except AssertionError as e:
        raise AssertionError(f"{e}; the record: {seen}; the log: {d.log()[-3000:]}") from None
    d.crash()
    d.start()


def hand_over(d, how, request, names, word):
    """request, then a new daemon: by `ctl reexec` right behind it, or after a crash once the
    record on disk says what names wait for (word)."""
    if how == "reexec":
        then_reexec(d, request)
    else:
        then_crash(d, request, names, word)


def test_dependency_mistakes_are_config_errors_with_file_and_line(procs, tmp_path):
    rc, err = check(procs, tmp_path,
                    "[service:a]\n"              # 1
                    "command = true\n"           # 2
                    "requires = nosuch\n"        # 3
                    "[service:b]\n"              # 4
                    "command = true\n"           # 5
                    "after = b\n"                # 6
                    "[service:c]\n"              # 7
                    "command = true\n"           # 8
                    "requires = a:sometime\n"    # 9
                    "[service:d]\n"              # 10
                    "command = true\n"           # 11
                    "after = a:ready\n"          # 12
                    "[service:e]\n"              # 13
                    "command = true\n"           # 14
                    "requires = a:0\n")          # 15
    assert rc == 1
    path = str(tmp_path / "c.ini")
    assert f"{path}:3: requires: unknown service 'nosuch'" in err, err
    assert f"{path}:6: after: service b depends on itself" in err, err
    assert f"{path}:9: requires: 'a:sometime': the condition can be :ready" in err, err
    assert f"{path}:12: after: 'a:ready': after takes names only" in err, err
    assert f"{path}:15: requires: 'a:0': an instance cannot be named: the definition's name " \
        "stands for all its instances" in err, err


def test_a_cycle_is_a_config_error_naming_it(procs, tmp_path):
    rc, err = check(procs, tmp_path,
                    "[service:a]\n"             # 1
                    "command = true\n"          # 2
                    "requires = b\n"            # 3
                    "[service:b]\n"             # 4
                    "command = true\n"          # 5
                    "after = ok c\n"            # 6
                    "[service:c]\n"             # 7
                    "command = true\n"          # 8
                    "requires = ok a:ready\n"   # 9
                    "[service:ok]\n"            # 10
                    "command = true\n")         # 11
    assert rc == 1
    path = str(tmp_path / "c.ini")
    assert f"{path}:9: requires: dependency cycle: a -> b -> c -> a" in err, err
    assert err.count("dependency cycle") == 1, err
    # the same graph without the edge that closes it is fine
    rc, err = check(procs, tmp_path, "[service:a]\ncommand = true\nrequires = b\n"
                    "[service:b]\ncommand = true\nafter = ok c\n"
                    "[service:c]\ncommand = true\nrequires = ok\n[service:ok]\ncommand = true\n")
    assert rc == 0, err


DIAMOND = """
[evmon]
stop_timeout = 10
start_secs = 0.3

[service:d]
command = HELPER linger 50 pause
requires = b c

[service:b]
command = HELPER linger 50 pause
requires = a

[service:c]
command = HELPER linger 50 pause
requires = a:ready

[service:a]
command = HELPER linger 50 pause

[service:free]
command = HELPER pause
"""


def test_diamond_starts_in_order_with_parallelism_and_stops_in_reverse(procs, tmp_path):
    d = Daemon(procs, tmp_path, DIAMOND)
    d.wait_state("d", "running")
    tr = transitions(d)
    # independent services start at once, the others wait
    assert index(tr, "d", "waiting") < index(tr, "a", "starting")
    assert index(tr, "free", "starting") < index(tr, "a", "running")
    a_up = index(tr, "a", "running")
    # b and c both start as a becomes ready, before either of them is ready
    assert {tr[a_up + 1][0], tr[a_up + 2][0]} == {"b", "c"}, tr
    assert tr[a_up + 1][2] == tr[a_up + 2][2] == "starting", tr
    assert index(tr, "d", "starting") > max(index(tr, "b", "running"), index(tr, "c", "running"))
    # it leaves waiting, said as such (the library's own old state is stopped)
    assert index(tr, "d", "starting") == index(tr, "d", "starting", old="waiting"), tr
    st = d.status()
    assert all(s["state"] == "running" for s in st.values()), st
    n = len(tr)
    d.stop()
    tr = transitions(d)
    # d stops first; a only once b and c are down; free at once
    assert index(tr, "d", "stopping", start=n) < index(tr, "b", "stopping", start=n)
    assert index(tr, "d", "stopped", start=n) < index(tr, "c", "stopping", start=n)
    assert index(tr, "free", "stopping", start=n) < index(tr, "b", "stopping", start=n)
    assert index(tr, "a", "stopping", start=n) > max(index(tr, "b", "stopped", start=n),
                                                        index(tr, "c", "stopped", start=n))


def test_status_says_what_a_waiting_service_waits_for(procs, tmp_path):
    """A service whose dependencies are not there yet is `waiting`; `ctl status` says for
    what (its INFO column; "waiting_for" in --json), not an empty line a user must puzzle
    out from the config."""
    d = Daemon(procs, tmp_path, """
[service:db]
command = HELPER pause
ready = exec:/bin/false
ready_interval = 1s
ready_timeout = 0

[service:cache]
command = HELPER pause

[service:web]
command = HELPER pause
requires = cache db
""")
    d.wait_state("cache", "running")
    d.wait_state("web", "waiting")
    assert d.status("web")["web"]["waiting_for"] == ["db"]
    r = d.ctl("status", "web")  # exit status 3: not running, as systemctl status says it
    row = r.stdout.splitlines()[1].split()
    assert row[:2] == ["web", "waiting"] and row[-3:] == ["waiting", "for", "db"], r.stdout
    d.stop()



def test_a_service_named_twice_is_one_dependency(procs, tmp_path):
    """A name in both requires and after is one dependency, of the strongest kind: web
    waited "for db db" (two edges), and `after = db` beside `requires = db` must still
    need db ready."""
    d = Daemon(procs, tmp_path, """
[service:db]
command = HELPER pause
ready = exec:/bin/sh -c "test -e FLAG"
ready_interval = 50ms
ready_timeout = 0

[service:pool]
command = HELPER pause
instances = 2

[service:web]
command = HELPER pause
after = db pool
requires = pool db
""".replace("FLAG", str(tmp_path / "flag")))
    d.wait_state("pool:0", "running")
    d.wait_state("pool:1", "running")
    d.wait_state("web", "waiting")
    assert d.status("web")["web"]["waiting_for"] == ["db"]
    r = d.ctl("status", "web")
    row = r.stdout.splitlines()[1].split()
    assert row[-3:] == ["waiting", "for", "db"], r.stdout
    (tmp_path / "flag").write_text("")
    r = d.ctl("wait", "web", "--for", "ready")
    assert r.returncode == 0, r
    assert d.status("db")["db"]["state"] == "running"
    d.stop()

def test_stopping_a_dependency_tells_its_waiting_dependents(procs, tmp_path):
    """`ctl stop db` while web (requires db:healthy) and api (requires web) wait for it:
    both leave `waiting` with a state event saying why (which ends a `ctl wait web --for
    ready` with 1). They went to `stopped` with no event and no log line, and such a wait
    ran to its timeout saying web was waiting."""
    d = Daemon(procs, tmp_path, """
[service:db]
command = HELPER pause
start_secs = 30
autostart = false

[service:web]
command = HELPER pause
requires = db:healthy
autostart = false

[service:api]
command = HELPER pause
requires = web
start_secs = 0
autostart = false
""")
    assert d.ctl("-t", "0", "start", "api").returncode == 0
    d.wait_state("web", "waiting")
    d.wait_state("api", "waiting")
    s = d.connect()
    s.sendall(b'{"cmd":"events","names":["web","api"]}\n')
    rd = LineReader(s)
    assert rd.next()["ok"]
    assert d.ctl("-t", "0", "stop", "db").returncode == 0
    got = {}
    while len(got) < 2:
        ev = rd.next(timeout=30)
        if ev.get("event") == "state" and ev.get("old_state") == "waiting":
            got[ev["service"]] = (ev["state"], ev.get("message"))
    assert got == {"web": ("stopped", "not started: requires db, which was stopped"),
                   "api": ("stopped", "not started: requires web, which was stopped")}, got
    assert d.status("web")["web"]["state"] == "stopped"
    s.close()
    d.stop()


def test_a_failed_dependency_keeps_the_service_from_starting_and_says_why(procs, tmp_path):
    d = Daemon(procs, tmp_path, """
        [service:db]
        command = HELPER exit 3
        restart = never
        start_secs = 1h

        [service:web]
        command = HELPER pause
        requires = db
        start_secs = 0
        """)
    st = wait_for(lambda: (s := d.status("web")["web"]).get("error") and s, timeout=15 * SLOW,
                  what="web blocked")
    assert st["state"] == "stopped"
    assert st["error"] == "not started: requires db, which is exited", st
    assert st["pid"] is None
    assert "web: waiting -> stopped" in d.log()
    # asking again fails the same way, with the reason (db is started again and fails again)
    r = d.ctl("start", "web", "-t", 30)
    assert r.returncode == 1, r
    assert "web (stopped)" in r.stderr and "requires db" in r.stdout + r.stderr, r
    d.stop()


def test_a_reload_cancelling_a_requirements_restart_settles_its_dependents(procs, tmp_path):
    """db and job exit within their start period (a failed start) and wait in backoff for a
    restart, web (requires db) and app (requires job) waiting for them. A reload gives them
    a policy that does not restart after that exit: db (exit 3, restart = never) is exited
    with a failure, web is blocked saying why; job (exit 0, on-failure) is exited with a
    success, a job done, and app starts. Before, both waited for a restart (in an hour)."""
    def conf(db_restart, job_restart):
        return f"""
[service:db]
command = sh -c 'echo run >> {tmp_path}/runs-db; exit 3'
restart = {db_restart}
start_secs = 1h
backoff_initial = 1h
backoff_max = 1h

[service:web]
command = HELPER pause
requires = db
start_secs = 0

[service:job]
command = sh -c 'echo run >> {tmp_path}/runs-job; exit 0'
restart = {job_restart}
start_secs = 1h
backoff_initial = 1h
backoff_max = 1h

[service:app]
command = HELPER pause
requires = job
start_secs = 0
"""
    d = Daemon(procs, tmp_path, conf("always", "always"))
    d.wait_state("db", "backoff")
    d.wait_state("job", "backoff")
    st = d.status()
    assert st["web"]["state"] == "waiting" and st["app"]["state"] == "waiting", st
    d.write(conf("never", "on-failure"))
    r = d.ctl("reload")
    assert r.returncode == 0 and "updated: db job" in r.stdout, r
    st = wait_for(lambda: (s := d.status("web")["web"]).get("error") and s, timeout=15 * SLOW,
                  what="web blocked")
    assert st["state"] == "stopped" and st["pid"] is None, st
    assert st["error"] == "not started: requires db, which is exited", st
    d.wait_state("job", "exited")
    app = d.wait_state("app", "running")
    assert app["pid"], app
    assert d.status("db")["db"]["state"] == "exited"
    assert (tmp_path / "runs-db").read_text() == "run\n"
    assert (tmp_path / "runs-job").read_text() == "run\n"
    d.stop()


def test_ctl_start_starts_what_is_required_and_stop_stops_dependents_first(procs, tmp_path):
    d = Daemon(procs, tmp_path, """
        [evmon]
        autostart = false
        start_secs = 0.2
        stop_timeout = 10

        [service:db]
        command = HELPER linger 100 pause

        [service:api]
        command = HELPER linger 50 pause
        requires = db

        [service:web]
        command = HELPER pause
        requires = api

        [service:side]
        command = HELPER pause
        after = db
        """)
    r = d.ctl("start", "web")
    assert r.returncode == 0, r
    st = d.status()
    assert st["web"]["state"] == st["api"]["state"] == st["db"]["state"] == "running", st
    assert st["side"]["state"] == "stopped"  # after is ordering only: not pulled in
    tr = transitions(d)
    assert index(tr, "db", "running") < index(tr, "api", "starting")
    assert index(tr, "api", "running") < index(tr, "web", "starting")
    n = len(tr)
    r = d.ctl("stop", "db")
    assert r.returncode == 0, r
    st = d.status()
    assert st["web"]["state"] == st["api"]["state"] == st["db"]["state"] == "stopped", st
    tr = transitions(d)
    assert index(tr, "web", "stopped", start=n) < index(tr, "api", "stopping", start=n)
    assert index(tr, "api", "stopped", start=n) < index(tr, "db", "stopping", start=n)
    d.stop()


def test_after_waits_for_a_service_that_starts_too_but_not_for_its_success(procs, tmp_path):
    d = Daemon(procs, tmp_path, """
        [service:migrate]
        command = HELPER exit 1
        restart = never
        start_secs = 1h

        [service:app]
        command = HELPER pause
        after = migrate
        start_secs = 0
        """)
    d.wait_state("app", "running")
    tr = transitions(d)
    assert index(tr, "migrate", "exited") < index(tr, "app", "running")
    d.stop()


def test_a_restart_of_a_stopped_service_starts_what_it_requires_first(procs, tmp_path):
    """`ctl restart web` of a stopped web that requires a stopped db is a start: db first,
    then web, as `ctl start web` does. It started web alone, db left stopped."""
    d = Daemon(procs, tmp_path, """
        [service:db]
        command = HELPER pause
        start_secs = 0
        autostart = no

        [service:web]
        command = HELPER pause
        requires = db
        start_secs = 0
        autostart = no
        """)
    assert d.ctl("restart", "web").returncode == 0
    wait_for(lambda: all(x["state"] == "running" for x in d.status().values()),
             what="db and web running")
    tr = transitions(d)
    assert index(tr, "db", "running") < index(tr, "web", "running"), tr
    d.stop()


def web_with_db_down(procs, tmp_path, db_start_secs=0, web="HELPER pause", web_keys=""):
    """A daemon running web, which requires db; db runs once, then exits 3 (not
    restarted: down under a running web); its next runs stay up, and take db_start_secs
    to be ready. (d, web's pid); a web that lingers has its SIGTERM handler in place."""
    gate = tmp_path / "gate"
    once = tmp_path / "once"
    d = Daemon(procs, tmp_path, f"""
[service:db]
command = /bin/sh -c 'test -e {once} && exec sleep 1000; touch {once}; while ! test -e {gate}; do sleep 0.05; done; exit 3'
restart = never
start_secs = {db_start_secs}

[service:web]
command = {web}
requires = db
start_secs = 0
{web_keys}
""")
    pid = catching(d, "web")[0] if "linger" in web else d.wait_state("web", "running")["pid"]
    gate.touch()
    d.wait_state("db", "exited")
    return d, pid


@pytest.mark.parametrize("cmd", ["start", "restart"])
def test_a_start_of_a_running_service_starts_what_it_requires_that_is_down(procs, tmp_path,
                                                                            cmd):
    """web runs, db (which web requires) exited with a failure and is not restarted:
    `ctl start web` starts db again, as `systemctl start` pulls in Requires= of an active
    unit; `ctl restart web` starts db, then web once db is up. Both left db down."""
    d, web = web_with_db_down(procs, tmp_path)
    assert d.status()["web"]["pid"] == web
    n = len(transitions(d))
    r = d.ctl(cmd, "web")
    assert r.returncode == 0, r
    st = wait_for(lambda: (s := d.status())["db"]["state"] == "running" and
                  s["web"]["state"] == "running" and s, what="db and web running")
    tr = transitions(d)
    if cmd == "start":
        assert st["web"]["pid"] == web, st["web"]
    else:
        assert st["web"]["pid"] != web, st["web"]
        # web stopped, then started once db ran
        assert index(tr, "db", "running", start=n) < index(tr, "web", "running", start=n), tr
    d.stop()


def test_a_start_during_a_restart_held_for_a_requirement_waits_for_it_too(procs, tmp_path):
    """`ctl restart web` with db down (2 s to start again) holds web stopped until db runs;
    a `ctl start web` while web still stops (or a second restart) waits as well. It
    started web after its exit (a start of a service still stopping), before db was up."""
    d, web = web_with_db_down(procs, tmp_path, 2 * SLOW, "HELPER linger 1000 pause")
    n = len(transitions(d))
    with d.connect() as s:  # all three while web still stops (1 s)
        s.sendall(b'{"cmd":"restart","names":["web"]}\n'
                  b'{"cmd":"start","names":["web"]}\n'
                  b'{"cmd":"restart","names":["web"]}\n')
        r = LineReader(s)
        assert r.next(60)["ok"] and r.next(60)["ok"] and r.next(60)["ok"]
    st = wait_for(lambda: (s := d.status())["web"]["state"] == "running" and s,
                  timeout=30 * SLOW, what="web running again")
    assert st["web"]["pid"] != web and st["db"]["state"] == "running", st
    tr = transitions(d)
    assert index(tr, "db", "running", start=n) < index(tr, "web", "running", start=n), tr
    d.stop()


def test_a_requirement_restarting_keeps_its_dependent_waiting(procs, tmp_path):
    """`ctl restart db` (db takes a moment to stop) and `ctl start web` (requires db)
    right behind it: web waits while db stops, stays waiting while db is stopped for the
    iteration until its spawn turn, and starts once db runs again. It gave up at that
    stopped: "not started: requires db, which is stopped"."""
    d = Daemon(procs, tmp_path, """
        [service:db]
        command = HELPER linger 300 pause
        start_secs = 0

        [service:web]
        command = HELPER pause
        requires = db
        start_secs = 0
        autostart = no
        """)
    old, = catching(d, "db")
    with d.connect() as s:
        s.sendall(b'{"cmd":"restart","names":["db"]}\n{"cmd":"start","names":["web"]}\n')
        r = LineReader(s)
        assert r.next(60)["ok"] and r.next(60)["ok"]
    st = wait_for(lambda: (s := d.status())["web"]["state"] in ("running", "stopped") and s,
                  timeout=30 * SLOW, what="web started or given up")
    assert st["web"]["state"] == "running" and not st["web"].get("error"), st["web"]
    assert st["db"]["state"] == "running" and st["db"]["pid"] != old, st["db"]
    d.stop()


def test_those_waiting_for_one_that_will_not_start_are_told(procs, tmp_path):
    """c requires b, b requires a, a fails its start for good: `ctl start c` ends with b
    and c both stopped with the reason (c's names b's). c waited on, "waiting" for good:
    nothing else it waited for changed."""
    d = Daemon(procs, tmp_path, """
        [service:a]
        command = HELPER exit 1
        restart = never
        start_secs = 1h
        autostart = no

        [service:b]
        command = HELPER pause
        requires = a
        autostart = no

        [service:c]
        command = HELPER pause
        requires = b
        autostart = no
        """)
    r = d.ctl("start", "c", timeout=20)  # waits for c to run, or to fail
    assert r.returncode == 1 and "requires b, which was not started" in r.stdout, r
    st = d.status()
    assert st["b"]["state"] == "stopped" and "requires a" in st["b"].get("error", ""), st["b"]
    assert st["c"]["state"] == "stopped" and "requires b, which was not started" in \
        st["c"].get("error", ""), st["c"]
    # b's reason once, not "which was not started: not started: requires a"
    assert st["c"]["error"] == "not started: requires b, which was not started: requires a, " \
        "which is exited", st["c"]
    d.stop()


def test_a_job_that_exited_successfully_satisfies_requires(procs, tmp_path):
    d = Daemon(procs, tmp_path, """
        [service:migrate]
        command = HELPER sleep 100 exit 0
        restart = never
        start_secs = 30

        [service:app]
        command = HELPER pause
        requires = migrate
        start_secs = 0
        """)
    d.wait_state("app", "running")
    tr = transitions(d)
    assert index(tr, "migrate", "exited") < index(tr, "app", "running")
    d.stop()


def test_ctl_add_checks_and_follows_requires(procs, tmp_path):
    d = Daemon(procs, tmp_path, """
        [service:db]
        command = HELPER pause
        start_secs = 0.2
        autostart = false
        """)
    r = d.ctl("add", "-s", "requires=nosuch", "x", "--", "true")
    assert r.returncode == 1 and "requires: unknown service 'nosuch'" in r.stderr, r
    r = d.ctl("add", "-s", "requires=db", "-s", "start_secs=0", "app", "--", d.cfg and "sleep", "1000")
    assert r.returncode == 0, r
    st = d.status()
    assert st["db"]["state"] == st["app"]["state"] == "running", st
    tr = transitions(d)
    assert index(tr, "db", "running") < index(tr, "app", "running")
    d.stop()


def test_ctl_add_refuses_a_dependency_cycle(procs, tmp_path):
    """add p, add q after p, remove p, add p requiring (or after) q: a cycle the
    config's check never sees. It was accepted, and then `ctl stop q` timed out and the
    daemon's shutdown waited for good (SIGTERM only said "already shutting down"). (With
    q requiring p, the remove of p is refused now: q would require a missing service.)"""
    d = Daemon(procs, tmp_path, "[service:base]\ncommand = HELPER pause\nstart_secs = 0\n")
    assert d.ctl("add", "-s", "start_secs=0", "p", "--", "sleep", "400241").returncode == 0
    assert d.ctl("add", "-s", "after=p", "-s", "start_secs=0", "q", "--", "sleep",
                 "400242").returncode == 0
    assert d.ctl("add", "-s", "after=q", "-s", "start_secs=0", "r", "--", "sleep",
                 "400243").returncode == 0
    assert d.ctl("remove", "p").returncode == 0
    for key in ("requires=q", "after=r", "requires=base q"):
        r = d.ctl("add", "-s", key, "p", "--", "sleep", "400244")
        assert r.returncode == 1 and "depends on p: a dependency cycle" in r.stderr, (key, r)
    r = d.ctl("add", "-s", "requires=base", "-s", "start_secs=0", "p", "--", "sleep", "400245")
    assert r.returncode == 0, r  # no cycle through base
    assert d.ctl("-t", "30", "stop", "q").returncode == 0
    d.stop()


def test_reload_applies_new_dependencies_without_restarting(procs, tmp_path):
    conf = """
        [service:db]
        command = HELPER pause
        start_secs = 0
        autostart = false

        [service:app]
        command = HELPER pause
        start_secs = 0
        autostart = false
        """
    d = Daemon(procs, tmp_path, conf)
    with open(d.cfg, "a") as f:
        f.write("requires = db\n")
    r = d.ctl("reload")
    assert r.returncode == 0, r
    # said as such (it was "unchanged: 2", yet it applies)
    assert "updated: app" in r.stdout and "unchanged: 1" in r.stdout, r.stdout
    r = d.ctl("start", "app")
    assert r.returncode == 0, r
    st = d.status()
    assert st["db"]["state"] == st["app"]["state"] == "running", st
    d.stop()


@pytest.mark.parametrize("n", [100, pytest.param(1000, marks=pytest.mark.scale)])
def test_a_graph_of_chains_all_become_ready_in_order(procs, tmp_path, n):
    """n services in chains of 10 (issue 16.7): every one ready, each after the one it
    requires; the shutdown stops each chain from its end."""
    chains = n // 10
    conf = ["[evmon]\nstop_timeout = 10\n"]
    for c in range(chains):
        for i in range(10):
            conf.append(f"[service:c{c}_{i}]\ncommand = HELPER pause\nstart_secs = 0\n"
                        + (f"requires = c{c}_{i - 1}\n" if i else ""))
    d = Daemon(procs, tmp_path, "\n".join(conf))
    wait_for(lambda: all(s["state"] == "running" for s in d.status().values()),
             timeout=120 * SLOW, what=f"{n} services running")
    st = d.status()
    assert len(st) == n and len({s["pid"] for s in st.values()}) == n
    tr = transitions(d)
    up = {name: i for i, (name, old, new) in enumerate(tr) if new == "running"}
    for c in range(chains):
        for i in range(1, 10):
            assert up[f"c{c}_{i - 1}"] < up[f"c{c}_{i}"], (c, i)
    m = len(tr)
    d.stop(timeout=120)
    tr = transitions(d)
    down = {name: i for i, (name, old, new) in enumerate(tr) if i >= m and new == "stopped"}
    stopping = {name: i for i, (name, old, new) in enumerate(tr) if i >= m and new == "stopping"}
    for c in range(chains):
        for i in range(1, 10):
            assert down[f"c{c}_{i}"] < stopping[f"c{c}_{i - 1}"], (c, i)


def test_shutdown_timeout_is_shared_along_a_chain(procs, tmp_path):
    """shutdown_timeout = 2s and a chain c requires b requires a, each ignoring SIGTERM
    with an hour of stop_timeout: each gets SIGKILL at its share of the time left (a
    third for c, then half of the rest for b, a the rest), so c is down before b is
    asked to stop and b before a, and the daemon exits with all three dead long before
    any stop_timeout. Before, all three got SIGKILL together at 2 s, a first."""
    logs = tmp_path / "logs"
    logs.mkdir()
    svc = """
command = HELPER ignore 15 print up pause
stdout = log
stop_timeout = 1h
start_secs = 0
"""
    d = Daemon(procs, tmp_path, f"""
[evmon]
shutdown_timeout = 2s
log_dir = {logs}

[service:a]{svc}
[service:b]{svc}requires = a

[service:c]{svc}requires = b
""")
    for name in "abc":
        d.wait_state(name, "running")
        wait_for(lambda: "up" in (logs / f"{name}.log").read_text(errors="replace")
                 if (logs / f"{name}.log").exists() else False,
                 timeout=20 * SLOW, what=f"{name}'s TERM ignored")
    pids = [s["pid"] for s in d.status().values()]
    n = len(transitions(d))
    t0 = time.monotonic()
    d.stop()  # SIGTERM; exit 0 with nothing left (Daemon.stop checks both)
    # far below the hour of stop_timeout; 2 s of grace plus slack for a loaded machine
    assert time.monotonic() - t0 < 2 + 10 * SLOW
    tr = transitions(d)
    assert index(tr, "c", "stopped", start=n) < index(tr, "b", "stopping", start=n), tr[n:]
    assert index(tr, "b", "stopped", start=n) < index(tr, "a", "stopping", start=n), tr[n:]
    log = d.log()
    assert "service c: its share of shutdown_timeout passed: SIGKILL (2 to stop after it)" in log
    assert "service b: its share of shutdown_timeout passed: SIGKILL (1 to stop after it)" in log
    assert "shutdown_timeout (2.0s) passed" in log
    assert not [p for p in pids if os.path.exists(f"/proc/{p}")]


CRASHING_DEPENDENCY = """
[service:db]
command = HELPER exit 1
restart = always
backoff_initial = 100ms
backoff_max = 100ms
start_secs = 0

[service:app]
command = HELPER ignore 15 pidlog {up} pause
requires = db
stop_timeout = 1h
start_secs = 0
"""


@pytest.mark.parametrize("how", ["shutdown", "ctl stop"])
def test_a_restarting_dependency_is_not_started_again_while_its_dependents_stop(procs, tmp_path,
                                                                                how):
    """db crash-loops (restarts every 100 ms, so it is mostly in backoff) under app, which
    requires it and ignores SIGTERM (held in stopping until the test kills it). Stopping
    both (the daemon's shutdown, or `ctl stop db`) stops app first, and db waits for app
    to be down; but db has no process to stop: its restart is cancelled at once (backoff
    -> stopped), and it is not started again while app is still stopping. Before, its
    backoff timer kept firing and db ran again and again during the stop."""
    up = tmp_path / "app.up"
    d = Daemon(procs, tmp_path, CRASHING_DEPENDENCY.format(up=up))
    wait_for(up.exists, timeout=20 * SLOW, what="app ignoring SIGTERM")
    app = d.status("app")["app"]["pid"]
    wait_for(lambda: sum(1 for t in transitions(d) if t[0] == "db" and t[2] == "running") >= 3,
             timeout=20 * SLOW, what="db restarting")
    n0 = len(transitions(d))
    if how == "shutdown":
        d.p.send_signal(signal.SIGTERM)
    else:
        ctl = procs.spawn([EVMON, "ctl", "-S", d.sock, "stop", "db"])
    wait_for(lambda: ("app", "running", "stopping") in transitions(d)[n0:], what="app stopping")
    n = transitions(d).index(("app", "running", "stopping"), n0)

    def db_stopped():  # at once (it was in backoff) or once its run ended
        return [t for t in transitions(d)[n0:] if t[0] == "db" and t[2] == "stopped"]

    def db_started():  # after app was asked to stop
        return [t for t in transitions(d)[n:] if t[0] == "db" and t[2] in ("running", "starting")]
    wait_for(lambda: db_stopped() or db_started(), what="db stopped (or started again)")
    assert db_started() == [], transitions(d)[n0:]
    assert db_stopped(), transitions(d)[n0:]
    assert alive(app), "app (held in stopping) is gone: the test proved nothing"
    if how == "ctl stop":
        # db is down, app is not: `ctl stop db` waits for what it took down, app included
        assert d.status("app")["app"]["state"] == "stopping"
        assert ctl.poll() is None, "ctl stop db returned while app, stopped with it, was stopping"
    os.kill(app, signal.SIGKILL)
    if how == "shutdown":
        assert d.p.wait(timeout=30 * SLOW) == 0, d.log()
        d.logf.close()
    else:
        assert ctl.wait(timeout=30 * SLOW) == 0
        d.wait_state("app", "stopped")
        assert d.status("db")["db"]["state"] == "stopped"
        d.stop()
    assert db_started() == [], transitions(d)[n0:]


def test_many_let_go_at_once_start_in_bursts_and_requests_are_served_between(procs, tmp_path):
    """1,000 services started by one request (half of them after a service, half with no
    dependency) start 64 a loop iteration (START_BATCH), the rest queued and shown "waiting":
    a status pipelined behind the start is answered while most still wait (it was answered
    after all 1,000 spawns before, 2 s of a daemon that answered nothing). One stopped while
    queued is not started. Every other one runs, each once."""
    n = 1000
    conf = ["[service:base]\ncommand = HELPER pause\nstart_secs = 0\nautostart = no\n"]
    for i in range(n):
        conf.append(f"[service:s{i}]\ncommand = HELPER pause\nstart_secs = 0\nautostart = no\n"
                    + ("after = base\n" if i % 2 else ""))
    d = Daemon(procs, tmp_path, "\n".join(conf))
    with d.connect() as s:
        s.sendall(b'{"cmd":"start","names":["s*"]}\n{"cmd":"status"}\n'
                  b'{"cmd":"stop","names":["s999"]}\n')
        r = LineReader(s)
        assert r.next(60)["ok"]
        st = r.next(60)
        assert st["ok"], st
        states = [x["state"] for x in st["services"] if x["name"] != "base"]
        assert len(states) == n
        waiting = states.count("waiting")
        assert waiting >= n - 3 * 64, {k: states.count(k) for k in set(states)}
        assert r.next(60)["ok"]
    wait_count(d, "running", n - 1)
    st = d.status()
    assert st["s999"]["state"] == "stopped" and not st["s999"].get("pid"), st["s999"]
    assert st["base"]["state"] == "stopped"
    assert len({x["pid"] for x in st.values() if x.get("pid")}) == n - 1
    assert "not started: stopped while waiting" in d.log()
    assert sum(1 for x in transitions(d) if x[0] != "base" and x[2] == "running") == n - 1
    d.stop(timeout=120)


@pytest.mark.parametrize("how", ["reexec", "crash"])
def test_a_reexec_keeps_the_starts_still_waiting(procs, tmp_path, how):
    """`ctl start` of autostart = no services, then `ctl reexec` right behind it on the same
    connection: those still waiting then (for a dependency still starting, or for their turn
    in the start queue) are started by the new image, each once. The old image carried them
    as plain stopped services (the state record had no word for "asked to start"), and the
    new one left them stopped. A queued one says so: stopped -> waiting, like one waiting
    for a dependency. After a crash (kill -9 once the record says so) the same holds for
    those waiting for a dependency: the record on disk ends their lines with "start" (the
    queue's turns last a few iterations: a record at most one iteration old may miss them).
    The dependency, still starting, is taken over as starting: they start once it is ready."""
    n, m = 20, 600 if how == "reexec" else 0
    flag = tmp_path / "flag"
    conf = ["[service:gate]\ncommand = HELPER pause\nautostart = no\nready_interval = 20ms\n"
            f"ready = exec:/bin/sh -c \"test -e {flag}\"\n"]
    conf += [f"[service:w{i}]\ncommand = HELPER pause\nstart_secs = 0\nautostart = no\n"
             "requires = gate\n" for i in range(n)]
    conf += [f"[service:q{i}]\ncommand = HELPER pause\nstart_secs = 0\nautostart = no\n"
             for i in range(m)]
    d = Daemon(procs, tmp_path, "\n".join(conf))
    req = {"cmd": "start", "names": ["w*", "q*"] if m else ["w*"]}
    hand_over(d, how, json.dumps(req).encode() + b"\n", [f"w{i}" for i in range(n)], "start")
    assert d.ctl("ping").returncode == 0
    assert d.status("gate")["gate"]["state"] == "starting"
    wait_count(d, "running", m)
    assert all(d.status(f"w{i}")[f"w{i}"]["state"] == "waiting" for i in range(n))
    flag.touch()
    wait_count(d, "running", n + m + 1)
    st = d.status()
    assert len({x["pid"] for x in st.values()}) == n + m + 1
    tr = transitions(d)
    for name in st:
        if name == "gate" and how == "crash":
            assert st[name].get("adopted"), st[name]  # started before, so adopted
            continue
        # a start (gate's "starting -> running" is its readiness, after the flag)
        started = [x for x in tr if x[0] == name and x[2] in ("starting", "running")
                   and x[1] != "starting"]
        assert len(started) == 1 and started[0][1] in ("stopped", "waiting"), (name, started)
    log = d.log()
    assert "service w0: stopped -> waiting" in log, log[-3000:]
    queued = sum(1 for x in tr if x[0].startswith("q") and x[1:] == ("stopped", "waiting"))
    assert queued >= m - 3 * 64, queued
    d.stop(timeout=120)


def test_a_stop_of_many_goes_in_bursts_and_requests_are_served_between(procs, tmp_path):
    """`ctl stop` of 1,000 running services signals 64 a loop iteration (START_BATCH), like
    the starts: a status pipelined behind the stop finds most still running (each stop walks
    its cgroup: 3,000 in one iteration held the loop ~300 ms). One started again while
    it waits for its turn is not stopped; every other one stops, once."""
    n = 1000
    conf = [f"[service:s{i}]\ncommand = HELPER pause\nstart_secs = 0\n"
            for i in range(n)]
    d = Daemon(procs, tmp_path, "\n".join(conf))
    wait_count(d, "running", n)
    before = d.status()["s999"]["pid"]
    with d.connect() as s:
        s.sendall(b'{"cmd":"stop","names":["s*"]}\n{"cmd":"status"}\n'
                  b'{"cmd":"start","names":["s999"]}\n')
        r = LineReader(s)
        assert r.next(60)["ok"]
        st = r.next(60)
        assert st["ok"], st
        states = [x["state"] for x in st["services"]]
        assert states.count("running") >= n - 3 * 64, {k: states.count(k) for k in set(states)}
        assert r.next(60)["ok"]
    wait_count(d, "stopped", n - 1)
    st = d.status()
    assert st["s999"]["state"] == "running" and st["s999"]["pid"] == before, st["s999"]
    tr = transitions(d)
    for i in range(n - 1):
        assert sum(1 for x in tr if x[0] == f"s{i}" and x[2] == "stopping") == 1, (i, tr[-5:])
    assert not [x for x in tr if x[0] == "s999" and x[2] == "stopping"]
    d.stop(timeout=120)


def test_a_reexec_keeps_the_stops_still_queued(procs, tmp_path):
    """`ctl stop` of 600 running services and `ctl reexec` right behind it: those still
    waiting for their turn to stop are passed as stopping, and the new image stops them:
    none is left running or started again. (One stopping already at the exec is taken over
    as stopping: test_one_stopping_gets_no_second_stop_signal_from_the_next_daemon.)"""
    n = 600
    conf = [f"[service:s{i}]\ncommand = HELPER pause\nstart_secs = 0\n" for i in range(n)]
    d = Daemon(procs, tmp_path, "\n".join(conf))
    wait_count(d, "running", n)
    then_reexec(d, b'{"cmd":"stop","names":["s*"]}\n')
    wait_count(d, "stopped", n)
    tr = transitions(d)
    for i in range(n):
        mine = [x[2] for x in tr if x[0] == f"s{i}"]
        after = mine[mine.index("stopping"):]
        assert "running" not in after and "starting" not in after, (i, mine)
    d.stop(timeout=120)


@pytest.mark.parametrize("how", ["reexec", "crash"])
def test_a_reexec_keeps_a_stop_waiting_for_its_dependents(procs, tmp_path, how):
    """`ctl stop db` while web requires db and takes 4 s to stop, and `ctl reexec` right
    behind it: db, still waiting for web to be down, is passed as to stop ("stop", state
    format 7) and the new image stops it after web, as the old one would have. It was
    passed as running: the new image kept it running. After a crash the record on disk
    says so too (its db line ends with "stop"): the new daemon adopts both and does the
    same."""
    d = db_and_slow_web(procs, tmp_path)
    hand_over(d, how, b'{"cmd":"stop","names":["db"]}\n', ["db"], "stop")
    wait_for(lambda: all(x["state"] == "stopped" for x in d.status().values()),
             timeout=30 * SLOW, what="db and web stopped")
    tr = transitions(d)
    assert index(tr, "web", "stopped") < index(tr, "db", "stopping"), tr
    d.stop()


@pytest.mark.parametrize("how", ["reexec", "crash"])
def test_one_stopping_gets_no_second_stop_signal_from_the_next_daemon(procs, tmp_path, how):
    """`ctl stop web` while web ignores SIGTERM (it counts them) and has 3 s to stop, then
    `ctl reexec` (or a kill -9 once the record says "stopping", and a new daemon): the new
    image takes web over as stopping (EVM_ADOPT_STOPPING) and only its SIGKILL is left.
    It took it over as running and stopped it again: a second SIGTERM, which to many
    programs means "quit now" (a second ^C)."""
    terms = tmp_path / "terms"
    d = Daemon(procs, tmp_path, f"""
[service:web]
command = sh -c 'trap "echo term >> {terms}" TERM; while :; do sleep 0.05; done'
start_secs = 0
stop_timeout = 3
""")
    catching(d, "web")
    hand_over(d, how, b'{"cmd":"stop","names":["web"]}\n', ["web"], "stopping")
    st = wait_for(lambda: (s := d.status("web")["web"])["state"] == "stopped" and s,
                  timeout=30 * SLOW, what="web stopped")
    assert st["last_exit"].get("signal") == 9 or st["last_exit"].get("status_unknown"), st
    assert terms.read_text() == "term\n"
    d.stop()


def test_a_restart_takes_a_service_out_of_a_stop_it_waits_for(procs, tmp_path):
    """`ctl stop db` while web requires db and takes 4 s to stop: db waits for web. `ctl
    restart db` right behind it: db restarts now and runs on, web stops. db stayed queued to
    stop, and was stopped once web was down: the restart asked last was lost (a start
    already took a service out of its stop)."""
    d = db_and_slow_web(procs, tmp_path)
    old = d.status("db")["db"]["pid"]
    with d.connect() as s:
        s.sendall(b'{"cmd":"stop","names":["db"]}\n{"cmd":"restart","names":["db"]}\n')
        r = LineReader(s)
        assert r.next(60)["ok"] and r.next(60)["ok"]
    wait_for(lambda: d.status("web")["web"]["state"] == "stopped", timeout=30 * SLOW,
             what="web stopped")
    for _ in range(20):  # loop iterations after web's stop: when db's queued stop came
        assert d.ctl("ping").returncode == 0
    st = d.status("db")["db"]
    assert st["state"] == "running" and st["pid"] != old, st
    tr = transitions(d)
    assert [x[2] for x in tr if x[0] == "db"][-1] == "running", tr
    d.stop()


@pytest.mark.parametrize("cmd", ["start", "restart"])
@pytest.mark.parametrize("lingers", ["web", "db"])
def test_a_start_of_a_dependent_during_its_requirements_stop_keeps_the_requirement(
        procs, tmp_path, lingers, cmd):
    """`ctl stop db`, web requiring db, and `ctl start web` (or restart) right behind it, while web takes
    4 s to stop (db waits for it) or once web is down and db takes 4 s to stop: the start
    wins, as a start after the stop is over does (it starts db first) and as systemctl start
    replaces the stop of a Requires= unit. db keeps running (its stop is dropped) or starts
    again once its process is gone, and web runs again after it. web was started again while
    db went on to stop under it (web ran without what it requires), or was refused."""
    d = db_and_slow_web(procs, tmp_path, lingers)
    old = {k: v["pid"] for k, v in d.status().items()}
    with d.connect() as s:
        s.sendall(b'{"cmd":"stop","names":["db"]}\n')
        assert LineReader(s).next(60)["ok"]
    if lingers == "db":
        wait_for(lambda: (s := d.status())["web"]["state"] == "stopped" and
                 s["db"]["state"] == "stopping", what="web stopped, db stopping")
    r = d.ctl(cmd, "web", timeout=60)
    assert r.returncode == 0, r
    st = d.status()
    assert st["web"]["state"] == "running" and st["web"]["pid"] != old["web"], st
    assert st["db"]["state"] == "running", st
    assert (st["db"]["pid"] == old["db"]) == (lingers == "web"), (old, st)
    for _ in range(20):  # loop iterations after web's start: db's stop would come in them
        assert d.ctl("ping").returncode == 0
    st2 = d.status()
    assert all(st2[k]["state"] == "running" and st2[k]["pid"] == st[k]["pid"] for k in st), st2
    tr = transitions(d)
    web_up = max(i for i, x in enumerate(tr) if x[0] == "web" and x[2] == "running")
    assert not [x for x in tr[web_up:] if x[0] == "db"], tr
    d.stop()


def test_a_reloads_start_of_a_dependent_leaves_a_requirements_stop_alone(procs, tmp_path):
    """`ctl stop db` while web (requires db) takes 4 s to stop, then a reload that changes
    web: its new copy starts when the old one is gone, a start no client asked for, and db's
    stop asked for stays: db stops, web is not started ("requires db, which is stopped").
    Only a client's start takes a requirement out of its stop."""
    d = db_and_slow_web(procs, tmp_path)
    with d.connect() as s:
        s.sendall(b'{"cmd":"stop","names":["db"]}\n')
        assert LineReader(s).next(60)["ok"]
    d.wait_state("web", "stopping")
    with open(d.cfg, "a") as f:
        f.write("environment = CHANGED=1\n")  # web's section is the last
    r = d.ctl("reload")
    assert r.returncode == 0, r
    st = wait_for(lambda: (s := d.status())["db"]["state"] == "stopped" and
                  s["web"].get("error") and s, timeout=30 * SLOW, what="db stopped, web refused")
    assert st["web"]["state"] == "stopped", st["web"]
    assert "requires db, which is stopped" in st["web"]["error"], st["web"]
    d.stop()


@pytest.mark.parametrize("cmd", [("start", "web"), ("restart", "db")])
def test_a_stop_undone_by_a_later_start_tells_its_waiter(procs, tmp_path, cmd):
    """`ctl stop db` waits for web (requires db, 4 s to stop); `ctl start web` or `ctl
    restart db` meanwhile takes db out of its stop: the stop's wait is answered then, a
    failure that says why. It waited out its whole timeout and said "timed out waiting"."""
    d = db_and_slow_web(procs, tmp_path)
    with d.connect() as s:
        s.sendall(b'{"cmd":"stop","names":["db"],"wait":true,"timeout":30}\n')
        d.wait_state("web", "stopping")
        r = d.ctl(*cmd)
        assert r.returncode == 0, r
        a = LineReader(s).next(60)
    assert not a["ok"] and a["error"].startswith("not stopped: db (") and \
        a["error"].endswith(": a start or restart asked since took it out of its stop)"), a
    d.stop()


@pytest.mark.parametrize("target", ["web", "db"])
def test_a_start_undone_by_a_later_stop_tells_its_waiter(procs, tmp_path, target):
    """`ctl start web` waits for db (which web requires) to be ready (3 s); `ctl stop web`,
    or `ctl stop db`, meanwhile takes web out of its start: the start's wait is answered
    then, a failure that says why. It waited out its whole timeout and said "timed out
    waiting"."""
    d = Daemon(procs, tmp_path, """
[service:db]
command = HELPER pause
start_secs = 3
autostart = no

[service:web]
command = HELPER pause
requires = db
start_secs = 0
autostart = no
""")
    with d.connect() as s:
        s.sendall(b'{"cmd":"start","names":["web"],"wait":true,"timeout":30}\n')
        d.wait_state("db", "starting")
        r = d.ctl("stop", target)
        assert r.returncode == 0, r
        a = LineReader(s).next(60)
    assert not a["ok"] and a["error"] == \
        "not running: web (stopped: a stop asked since took it out of its start)", a
    d.stop()


@pytest.mark.parametrize("how", ["reexec", "crash"])
def test_a_reexec_keeps_a_restart_under_way(procs, tmp_path, how):
    """`ctl restart web` while web takes 4 s to stop, and `ctl reexec` right behind it:
    web, stopping to start again, is passed as such ("restart", state format 7) and the new
    image starts it once its old process is gone. It was passed as stopping: the new image
    stopped it for good. After a crash, the same from the record on disk (its line ends
    with "restart"): the new daemon takes over the old process's stop, then starts web."""
    # a crash waits for the record and starts a daemon (seconds under ASan on a slow host)
    # while web lingers: long enough that the new daemon still finds it stopping
    linger = 4000 if how == "reexec" else 4000 * (SLOW + 1)
    d = Daemon(procs, tmp_path, f"""
[service:web]
command = HELPER linger {linger} pause
start_secs = 0
stop_timeout = {linger // 1000 + 2 * SLOW}
""")
    old, = catching(d, "web")
    hand_over(d, how, b'{"cmd":"restart","names":["web"]}\n', ["web"], "restart")
    if how == "crash":  # still lingering: the new daemon takes over its stop
        assert alive(old)
    new = wait_for(lambda: (s := d.status("web")["web"])["state"] == "running" and
                   s["pid"] != old and s["pid"], timeout=30 * SLOW, what="web running again")
    assert not alive(old)
    tr = [x for x in transitions(d) if x[0] == "web"]
    assert tr[-1][2] == "running" and new, tr
    d.stop()


def test_a_reexec_keeps_a_restart_waiting_for_what_it_requires(procs, tmp_path):
    """As above, with db (which web requires) down, and 2 s to start again: web stops, to
    start once db is up (a restart after what it requires), and `ctl reexec` comes while
    web stops and db starts. web is passed on as a restart: it was passed as stopping, and
    the new image stopped web for good."""
    d, old = web_with_db_down(procs, tmp_path, 2 * SLOW, "HELPER linger 4000 pause",
                              f"stop_timeout = {4 + 2 * SLOW}")
    then_reexec(d, b'{"cmd":"restart","names":["web"]}\n')
    new = wait_for(lambda: (s := d.status("web")["web"])["state"] == "running" and
                   s["pid"] != old and s["pid"], timeout=30 * SLOW, what="web running again")
    assert not alive(old) and new
    # db's start_secs may outlast web's linger (ASan): the new image restarts web once its
    # old process is gone, not after db's start_secs (the record has no "after what")
    d.wait_state("db", "running", timeout=30)
    d.stop()


def test_a_reexec_keeps_the_restarts_waiting_for_their_spawn_turn(procs, tmp_path):
    """`ctl restart` of 600 autostart = no services and `ctl reexec` right behind it: the
    library starts 16 restarts an iteration, so at the exec many have stopped and wait for
    their spawn turn. They are passed as restarting too, and the new image starts them:
    every one runs again, with a new process. (They were passed as stopped: left so.)"""
    n = 600
    conf = [f"[service:s{i}]\ncommand = HELPER pause\nstart_secs = 0\nautostart = no\n"
            for i in range(n)]
    d = Daemon(procs, tmp_path, "\n".join(conf))
    assert d.ctl("start", "s*").returncode == 0
    wait_count(d, "running", n)
    before = {k: v["pid"] for k, v in d.status().items()}
    then_reexec(d, b'{"cmd":"restart","names":["s*"]}\n')
    wait_for(lambda: sum(x["state"] == "running" and x["pid"] != before[k]
                         for k, x in d.status().items()) == n,
             timeout=120 * SLOW, what=f"{n} services running again")
    d.stop(timeout=120)


def test_a_dependent_waits_for_a_requirement_a_reload_replaced(procs, tmp_path):
    """app requires db; db is still starting (not ready) when a reload changes its
    command: its old copy stops slowly (it ignores TERM), its replacement starts once the
    old one is gone, and app starts once the new db is ready. app was blocked for good
    ("requires db, which is stopped"): a replacement waiting for its old copy was judged
    as stopped."""
    flag = tmp_path / "ready"

    def conf(mark):
        return f"""
[service:db]
command = sh -c 'trap "" TERM; exec sleep {mark}'
ready = exec:test -e {flag}
ready_interval = 50ms
stop_timeout = 2

[service:app]
command = HELPER pause
requires = db
start_secs = 0
"""
    d = Daemon(procs, tmp_path, conf(400221))
    wait_signal_state(d, "db", "SigIgn")
    assert d.status("app")["app"]["state"] == "waiting"
    d.write(conf(400222))
    assert d.ctl("-t", "0", "reload").returncode == 0
    flag.touch()
    st = d.wait_state("app", "running", timeout=30)
    assert d.status("db")["db"]["state"] == "running", d.status()
    assert "error" not in st, st
    d.stop()


def test_a_stop_waiting_for_a_dependent_goes_when_a_reload_drops_the_dependency(procs, tmp_path):
    """ctl stop db: db waits for app, which requires it and stops slowly (it ignores
    TERM). A reload then drops app's requires: db has nothing left to wait for and stops.
    It waited for good (its stop was tried again only along the new graph), and the stop
    request timed out."""
    def conf(requires):
        return f"""
[service:db]
command = HELPER pause
start_secs = 0

[service:app]
command = sh -c 'trap "" TERM; exec sleep 400251'
{requires}
stop_timeout = 6
start_secs = 0
"""
    d = Daemon(procs, tmp_path, conf("requires = db"))
    wait_signal_state(d, "app", "SigIgn")
    assert d.ctl("-t", "0", "stop", "db").returncode == 0
    wait_for(lambda: d.status("app")["app"]["state"] == "stopping", what="app stopping first")
    assert d.status("db")["db"]["state"] == "running"
    d.write(conf(""))
    assert d.ctl("-t", "0", "reload").returncode == 0
    r = d.ctl("wait", "db", "--for", "stopped", "-t", "10")
    assert r.returncode == 0, (r, d.status())
    assert d.status("app")["app"]["state"] == "stopping"  # its own stop goes on
    d.stop()


def test_a_stop_cancels_a_dependents_start_deferred_behind_its_old_copy(procs, tmp_path):
    """app requires db; a reload changes app, whose old copy stops slowly: its new copy
    waits for it. `ctl stop db` meanwhile: app is not started when its old copy is gone
    (its start pulled db up again, undoing the stop)."""
    def conf(mark):
        return f"""
[service:db]
command = HELPER pause
start_secs = 0

[service:app]
command = sh -c 'trap "" TERM; exec sleep {mark}'
requires = db
stop_timeout = 2
start_secs = 0
"""
    d = Daemon(procs, tmp_path, conf(400281))
    old = wait_signal_state(d, "app", "SigIgn")
    d.write(conf(400282))
    assert d.ctl("-t", "0", "reload").returncode == 0
    assert d.ctl("-t", "0", "stop", "db").returncode == 0
    wait_for(lambda: not alive(old), timeout=30 * SLOW, what="the old app's end")
    # db's stop goes on once the old app is reaped: then nothing may start app
    wait_for(lambda: d.status("db")["db"]["state"] == "stopped", what="db stopped")
    time.sleep(0.5)
    st = d.status()
    assert st["db"]["state"] == "stopped" and st["app"]["state"] == "stopped", st
    d.stop()


def slow_stopper(name, log, linger, sig="TERM"):
    """A service that writes NAME term to log at its SIGTERM (or sig) and, after linger
    seconds, NAME done, then exits."""
    done = f"; sleep {linger}; echo {name} done >> {log}" if linger else ""
    return (f"sh -c 'trap \"echo {name} term >> {log}{done}; exit 0\" {sig}; "
            f"while :; do sleep 0.05; done'")


def pair_conf(log, mark="", app=True, db=True, app_mark=""):
    """db, and app requiring db (stopping in 1 s): the services a test removes or
    replaces; keep stays (the config is never empty)."""
    text = """
[service:keep]
command = HELPER pause
start_secs = 0
"""
    if db:
        text += f"""
[service:db]
command = {slow_stopper("db", log, 0)} {mark}
start_secs = 0
"""
    if app:
        text += f"""
[service:app]
command = {slow_stopper("app", log, 1)} {mark}{app_mark}
requires = db
stop_timeout = {20 * SLOW}
start_secs = 0
"""
    return text


def stop_order(log):
    """The lines the services wrote at their stops, once both stops are over."""
    wait_for(lambda: log.exists() and {"app done", "db term"} <= set(log.read_text().split("\n")),
             timeout=30 * SLOW, what="app's and db's stops")
    return log.read_text().split()


@pytest.mark.parametrize("how", ["reload-remove", "ctl-remove", "reload-replace"])
def test_old_copies_stop_in_dependency_order(procs, tmp_path, how):
    """app requires db; both are removed (by a reload, by one ctl remove) or both
    replaced (a reload changing both): app's old copy stops first and db's only once it
    is gone, as ctl stop and the shutdown order them. Both got SIGTERM at once (app,
    stopping, found db gone)."""
    log = tmp_path / "order"
    d = Daemon(procs, tmp_path, pair_conf(log).replace("sleep 1;", "sleep 3;"))
    catching(d, "app", "db")
    if how == "ctl-remove":
        assert d.ctl("-t", "0", "remove", "app", "db").returncode == 0
    else:
        d.write(pair_conf(log, mark="x").replace("sleep 1;", "sleep 3;")
                if how == "reload-replace" else pair_conf(log, app=False, db=False))
        assert d.ctl("-t", "0", "reload").returncode == 0
    if how == "reload-replace":  # the new db waits; its old copy runs on, said so
        st = d.status("db")["db"]
        assert st["state"] == "waiting" and st.get("old_held") is True, st
        r = d.ctl("status", "db")
        assert "running until what requires it stops" in r.stdout, r.stdout
    words = stop_order(log)
    assert words.index("done") < words.index("db"), words  # app done, then db term
    if how == "reload-replace":  # the new copies come up, db first
        st = d.wait_state("app", "running", timeout=30)
        assert "error" not in st, st
        tr = transitions(d)
        assert index(tr, "db", "running", start=index(tr, "app", "stopped")) < \
            index(tr, "app", "running", start=index(tr, "app", "stopped")), tr
    assert d.ctl("status", "keep").returncode == 0
    d.stop()


def test_a_stop_waits_for_an_old_copy_of_its_dependent(procs, tmp_path):
    """app requires db; a reload changes app, whose old copy stops in 1 s; `ctl stop db`
    meanwhile: db stops once the old app is gone. It stopped at once (the new graph has
    no app up), under the old app still stopping."""
    log = tmp_path / "order"
    d = Daemon(procs, tmp_path, pair_conf(log))
    catching(d, "app", "db")
    d.write(pair_conf(log, app_mark="x"))
    assert d.ctl("-t", "0", "reload").returncode == 0
    assert d.ctl("-t", "0", "stop", "db").returncode == 0
    words = stop_order(log)
    assert words.index("done") < words.index("db"), words
    r = d.ctl("wait", "db", "--for", "stopped", "-t", "10")
    assert r.returncode == 0, (r, d.status())
    d.stop()


def test_a_held_old_copy_that_exits_on_its_own_lets_go(procs, tmp_path):
    """app requires db, both removed by a reload; db's old copy, held for app's, exits
    by itself meanwhile (no restart: its exit is its end), and app's end then asks
    nothing of it. The daemon goes on (status, a new db of the same name starts)."""
    log = tmp_path / "order"
    d = Daemon(procs, tmp_path, pair_conf(log))
    _, db = catching(d, "app", "db")
    d.write(pair_conf(log, app=False, db=False))
    assert d.ctl("-t", "0", "reload").returncode == 0
    os.kill(db, signal.SIGKILL)
    words = stop_order_app(log)
    assert "db" not in words, words  # never asked to stop: it was gone
    d.write(pair_conf(log, app=False))
    assert d.ctl("-t", "0", "reload").returncode == 0
    d.wait_state("db", "running", timeout=30)
    d.stop()


def stop_order_app(log):
    wait_for(lambda: log.exists() and "app done" in log.read_text(), timeout=30 * SLOW,
             what="app's stop")
    return log.read_text().split()


def test_a_crash_stops_an_old_copy_held_for_a_dependent(procs, tmp_path):
    """app requires db, both removed by a reload; app stops slowly, db is held until it is
    gone: the record names db's old copy " held=PID:START:SIG:MS", and a daemon started
    after a kill -9 stops it (its stop_signal, INT here, which its trap waits for), not
    SIGKILL at once as an old copy whose stop was due."""
    log = tmp_path / "order"
    # app lingers past the re-exec's checks (ASan: times SLOW), within its stop_timeout
    conf = pair_conf(log).replace("sleep 1;", f"sleep {4 * SLOW};").replace(
        slow_stopper("db", log, 0), slow_stopper("db", log, 0, "INT") + "\nstop_signal = INT")
    d = Daemon(procs, tmp_path, conf)
    wait_signal_state(d, "app", "SigCgt")
    db = wait_signal_state(d, "db", "SigCgt", signal.SIGINT)
    d.write(pair_conf(log, app=False, db=False))
    assert d.ctl("-t", "0", "reload").returncode == 0
    wait_for(lambda: f" held={db}:" in record_text(d), what="the held old copy in the record")
    assert f" held={db}:" in record_text(d) and f":{int(signal.SIGINT)}:10000" in record_text(d)
    r = d.ctl("reexec")  # the new image would stop it at once, out of its order
    assert r.returncode != 0 and "held until what requires it stops" in r.stderr, r
    d.crash()
    d.start()
    wait_for(lambda: f"old copy pid {db}, held by daemon" in d.log(), what="its stop taken over")
    wait_for(lambda: not alive(db), timeout=30 * SLOW, what="the old db's end")
    assert "db term" in log.read_text(), log.read_text()  # stopped, not killed
    d.stop()


def test_ctl_remove_of_a_requirement_left_behind_is_refused(procs, tmp_path):
    """ctl remove db while app (staying) requires it: refused, as a reload of a file
    whose app requires a db that is gone is; removing both in one request, or an
    instance of a definition with another left, is fine. It removed db under a running
    app, whose next start went without it."""
    d = Daemon(procs, tmp_path, """
[service:db]
command = HELPER pause
start_secs = 0

[service:web]
command = HELPER pause
instances = 2
start_secs = 0

[service:app]
command = HELPER pause
requires = db web
start_secs = 0
""")
    d.wait_state("app", "running", timeout=30)
    r = d.ctl("remove", "db")
    assert r.returncode != 0 and "db is required by app: remove app too, or first" in r.stderr, r
    assert d.status("db")["db"]["state"] == "running"
    r = d.ctl("remove", "web:0", "web:1")
    assert r.returncode != 0 and "is required by app" in r.stderr, r
    assert d.ctl("remove", "web:0").returncode == 0  # web:1 is left
    assert d.ctl("remove", "db", "app").returncode == 0
    st = d.status()
    assert "db" not in st and "app" not in st, st
    d.stop()


def test_a_reload_keeps_what_an_added_service_requires(procs, tmp_path):
    """x, added with `ctl add`, requires db of the file; a reload of a file without db
    removed db under a running x (whose next start went without it), where `ctl remove db`
    is refused. The reload is refused now, saying why; with x removed first it goes."""
    d = Daemon(procs, tmp_path, "[service:db]\ncommand = HELPER pause\nstart_secs = 0\n"
                                "[service:other]\ncommand = HELPER pause\nstart_secs = 0\n")
    d.wait_state("db", "running")
    r = d.ctl("add", "-s", "requires=db", "-s", "start_secs=0", "x", "--", HELPER, "pause")
    assert r.returncode == 0, r
    d.wait_state("x", "running")
    d.write("[service:other]\ncommand = HELPER pause\nstart_secs = 0\n")
    r = d.ctl("reload")
    assert r.returncode != 0, r
    assert "service x: it was added with `evmon ctl add` and requires db, which this file no " \
           "longer has: remove x first, or keep db" in r.stdout + r.stderr, r
    assert d.status("db")["db"]["state"] == "running"
    assert d.ctl("remove", "x").returncode == 0
    assert d.ctl("reload").returncode == 0
    assert "db" not in d.status()
    d.stop()


def test_a_copy_held_by_a_later_remove_is_in_the_record(procs, tmp_path):
    """ctl remove app (slow to stop), then ctl remove db, which app's old copy needs: db is
    held, and the record says so at once (no event of the library tells it): a crash
    meanwhile would have re-added db and adopted it, undoing the remove."""
    log = tmp_path / "order"
    d = Daemon(procs, tmp_path, pair_conf(log).replace("sleep 1;", f"sleep {4 * SLOW};"))
    _, db = catching(d, "app", "db")
    assert d.ctl("-t", "0", "remove", "app").returncode == 0
    assert d.ctl("-t", "0", "remove", "db").returncode == 0
    # while app lingers (then db is stopped, and no longer held)
    wait_for(lambda: f" held={db}:" in record_text(d), timeout=3 * SLOW, what="db held, in the record")
    words = stop_order(log)
    assert words.index("done") < words.index("db"), words
    d.stop()


# names whose order in the table made the circle before (the links follow it)
@pytest.mark.parametrize("a,b,c", [("a", "b", "c"), ("c", "a", "b"), ("z", "x", "y")])
def test_old_copies_of_two_removes_never_hold_each_other_for_good(procs, tmp_path, a, b, c):
    """Old copies of different removes (made from different definitions) could need each
    other in a circle: a (later) after b, b after c, c (earlier, held for dd) after a.
    None is held for good: each stops. The links of one batch are made before those
    across batches, so the circle check sees them (it missed one: three held until the
    shutdown, for some names)."""
    d = Daemon(procs, tmp_path, "[service:base]\ncommand = HELPER pause\nstart_secs = 0\n")

    def add(name, *keys, cmd=("sleep", "400300")):
        args = ["add", "-s", "start_secs=0"]
        for k in keys:
            args += ["-s", k]
        assert d.ctl(*args, name, "--", *cmd).returncode == 0, name

    add(a)
    add(c, f"after={a}")
    add("dd", f"after={c}", "stop_timeout=3", cmd=("sh", "-c", "trap '' TERM; exec sleep 400301"))
    add(b, f"after={c}")
    wait_signal_state(d, "dd", "SigIgn")
    assert d.ctl("-t", "0", "remove", a).returncode == 0
    assert d.ctl("-t", "0", "remove", c, "dd").returncode == 0  # c held for dd
    add(a, f"after={b}", cmd=("sleep", "400302"))
    assert d.ctl("-t", "0", "remove", a, b).returncode == 0
    def left():
        found = []
        for p in os.listdir("/proc"):
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if b"sleep\x004003" in f.read():
                        found.append(p)
            except OSError:
                pass
        return found
    wait_for(lambda: not left(), timeout=30 * SLOW, what="every old copy's end")
    d.stop()


def test_held_copies_then_the_same_services_back(procs, tmp_path):
    """app and db removed by a reload (db held for app's old copy), then added back by the
    next reload at once, and a ctl add of a third service requiring db: the new copies
    wait for the old ones (db's until it is gone, app's too) and all end up running, the
    old ones stopped in order."""
    log = tmp_path / "order"
    d = Daemon(procs, tmp_path, pair_conf(log))
    old_app, old_db = catching(d, "app", "db")
    d.write(pair_conf(log, app=False, db=False))
    assert d.ctl("-t", "0", "reload").returncode == 0
    d.write(pair_conf(log))
    assert d.ctl("-t", "0", "reload").returncode == 0
    assert d.ctl("add", "-s", "requires=db", "-s", "start_secs=0", "-t", "0", "third", "--",
                 "sleep", "400321").returncode == 0
    words = stop_order(log)
    assert words.index("done") < words.index("db"), words
    for name in ("db", "app", "third"):
        st = d.wait_state(name, "running", timeout=30)
        assert st["pid"] not in (old_app, old_db), st
    assert not alive(old_app) and not alive(old_db)
    d.stop()


def test_a_shutdown_stops_held_copies(procs, tmp_path):
    """A shutdown while db's old copy is held for app's: every old copy stops (db's is
    not kept waiting for good) and the daemon exits 0."""
    log = tmp_path / "order"
    d = Daemon(procs, tmp_path, pair_conf(log))
    old_app, old_db = catching(d, "app", "db")
    d.write(pair_conf(log, app=False, db=False))
    assert d.ctl("-t", "0", "reload").returncode == 0
    assert d.stop(timeout=60) == 0
    assert not alive(old_app) and not alive(old_db)
    assert "db term" in log.read_text()


A_B_C = """
[service:a]
command = HELPER pause
ready = notify
start_secs = 0

[service:b]
command = HELPER pause
requires = a
start_secs = 0

[service:c]
command = HELPER pause
after = b
start_secs = 0
"""


@pytest.mark.parametrize("how", ["stop a", "stop b", "remove b"])
def test_an_after_dependent_starts_once_what_it_waits_for_will_not_start(procs, tmp_path, how):
    """c (after b) waits while b (requires a, which never says ready) waits; then b will not
    start: a stopped, b stopped, b removed. c starts (after is an order only). It stayed
    waiting with nothing in waiting_for, for good: b was STOPPED already, so no event of the
    library came to look at c again; `ctl wait c` and `ctl start c` ran to their timeout."""
    d = Daemon(procs, tmp_path, A_B_C)
    d.wait_state("b", "waiting")
    assert d.status("c")["c"]["state"] == "waiting"
    verb, name = how.split()
    assert d.ctl("-t", "0", verb, name).returncode == 0
    r = d.ctl("-t", "30", "wait", "c")
    assert r.returncode == 0, (r, d.status())
    st = d.wait_state("c", "running")
    assert "waiting_for" not in st, st
    if "b" in d.status():
        assert d.status("b")["b"]["state"] == "stopped"
    d.stop()


def chain(n, first):
    """s0 .. s{n-1}, each requiring the one before, s0 running first."""
    conf = ["[evmon]\nrestart = never\ncgroup = no\n", f"[service:s0]\n{first}\n"]
    conf += [f"[service:s{i}]\ncommand = sleep 100000\nrequires = s{i - 1}\n" for i in range(1, n)]
    return "\n".join(conf)


def test_a_chain_of_20000_requires_does_not_overflow_the_stack(procs, tmp_path):
    """s0 fails, so each of s1 .. s19999 will not start, each for the one before: one
    blocked after the other. The walk was a recursion (try_start, retry_dependents), a frame
    of 400 bytes and more per service, and the daemon died of SIGSEGV at about 16,000."""
    n = 20000
    d = Daemon(procs, tmp_path, chain(n, "command = false"))
    last = f"s{n - 1}"
    wait_for(lambda: d.p.poll() is not None or "error" in d.status(last)[last],
             timeout=120 * SLOW, what=f"{last} blocked")
    assert d.p.poll() is None, d.log()[-2000:]
    st = d.status(last, "s1")
    assert st["s1"]["error"] == "not started: requires s0, which is exited", st
    assert st[last]["state"] == "stopped"
    assert st[last]["error"].startswith(f"not started: requires s{n - 2}, which was not started")
    d.stop(timeout=120)


def test_a_stop_under_a_chain_of_20000_waiting_does_not_overflow_the_stack(procs, tmp_path):
    """s0 never ready, s1 .. s19999 waiting for it, one for the other; `ctl stop s0` tells
    each it will not start (mark_stop, a recursion: SIGSEGV), and the daemon answers."""
    n = 20000
    d = Daemon(procs, tmp_path, chain(n, "command = sleep 100000\nready = notify"))
    last = f"s{n - 1}"
    wait_for(lambda: d.p.poll() is not None or d.status(last)[last]["state"] == "waiting",
             timeout=120 * SLOW, what=f"{last} waiting")
    r = d.ctl("-t", "60", "stop", "s0")
    assert r.returncode == 0 and d.p.poll() is None, (r, d.log()[-2000:])
    st = d.status()
    assert len(st) == n and all(s["state"] == "stopped" for s in st.values()), \
        [s for s in st.values() if s["state"] != "stopped"][:3]
    d.stop(timeout=120)


# ------------------------------------- a definition whose instance 0 is gone

def test_services_waiting_for_an_old_copy_start_once_instance_0_was_removed(procs, tmp_path):
    """web (one service, slow to stop) becomes 3 instances at a reload; `ctl remove web:0`
    while the old web still stops. web:1 and web:2 start once it is gone. They waited for
    good: the old copy's end was told to the instances found by "web:0", and the freed
    copy was read by status (garbage "old pid", a crash under ASan)."""
    cfg = """
[evmon]
stop_timeout = 3s

[service:web]
command = /bin/sh -c 'trap "" TERM; while :; do sleep 0.2; done'
start_secs = 0
instances = {n}
"""
    d = Daemon(procs, tmp_path, cfg.format(n=1))
    old = d.wait_state("web", "running")["pid"]
    wait_signal_state(d, "web", "SigIgn")
    d.write(cfg.format(n=3))
    assert d.ctl("reload").returncode == 0
    r = d.ctl("remove", "web:0")
    assert r.returncode == 0, r
    st = wait_for(lambda: (s := d.status()) and all(s.get(n, {}).get("state") == "running"
                                                   for n in ("web:1", "web:2")) and s,
                  timeout=30 * SLOW, what="web:1 and web:2 running")
    assert not alive(old)
    assert sorted(st) == ["web:1", "web:2"], st
    d.stop()


def test_dependents_keep_their_edges_to_instances_once_instance_0_was_removed(procs, tmp_path):
    """front requires web (3 instances); after `ctl remove web:0`, `ctl stop web` stops front
    first, and a start of front starts web:1 and web:2 first. front lost every edge to web
    (found by "web:0"): it kept running, and started alone."""
    d = Daemon(procs, tmp_path, """
[service:web]
command = HELPER pause
start_secs = 0
instances = 3

[service:front]
command = HELPER pause
requires = web
start_secs = 0
""")
    wait_count(d, "running", 4)
    assert d.ctl("remove", "web:0").returncode == 0
    n = len(transitions(d))
    assert d.ctl("stop", "web").returncode == 0
    st = d.status()
    assert {k: v["state"] for k, v in st.items()} == \
        {"web:1": "stopped", "web:2": "stopped", "front": "stopped"}, st
    tr = transitions(d)
    assert index(tr, "front", "stopped", start=n) < index(tr, "web:1", "stopping", start=n), tr
    n = len(tr)
    assert d.ctl("start", "front").returncode == 0
    wait_count(d, "running", 3)
    tr = transitions(d)
    assert index(tr, "web:2", "running", start=n) < index(tr, "front", "running", start=n), tr
    # and what requires web is still required: not removed behind front's back
    r = d.ctl("remove", "web:1", "web:2")
    assert r.returncode != 0 and "required by front" in r.stdout + r.stderr, r
    d.stop()


@pytest.mark.parametrize("how", ["reexec", "crash"])
def test_an_added_service_requiring_instances_without_instance_0_is_kept(procs, tmp_path, how):
    """q (added) requires p (added, 2 instances); `ctl remove p:0`; a re-exec or a crash
    keeps q running. The new daemon made q again with its requires checked by "p:0":
    "unknown service 'p'", and killed it as not in the config."""
    import daemon_util
    d = Daemon(procs, tmp_path, """
[service:idle]
command = HELPER pause
autostart = no
""")
    assert d.ctl("add", "-n", "2", "p", "--", HELPER, "pause").returncode == 0
    assert d.ctl("add", "-s", "requires=p", "q", "--", HELPER, "pause").returncode == 0
    q = d.wait_state("q", "running")["pid"]
    assert d.ctl("remove", "p:0").returncode == 0
    daemon_util.hand_over(d, how)
    st = wait_for(lambda: (s := d.status()).get("q", {}).get("state") == "running" and s,
                  timeout=30 * SLOW, what="q running")
    assert st["q"]["pid"] == q and alive(q), st
    assert st["p:1"]["state"] == "running", st
    assert "cannot make it again" not in d.log(), d.log()[-3000:]
    d.stop()


def test_ctl_add_of_a_definitions_name_is_refused_while_its_instances_are_left(procs, tmp_path):
    """`ctl add -n 3 job`, `ctl remove job:0`, `ctl add job`: refused, as with job:0 there.
    It made a service job beside job:1 and job:2."""
    d = Daemon(procs, tmp_path, """
[service:idle]
command = HELPER pause
autostart = no
""")
    assert d.ctl("add", "-n", "3", "job", "--", HELPER, "pause").returncode == 0
    assert d.ctl("remove", "job:0").returncode == 0
    r = d.ctl("add", "job", "--", HELPER, "pause")
    assert r.returncode != 0, r
    assert "job" not in d.status(), d.status()
    r = d.ctl("logs", "job")
    assert r.returncode != 0 and "job has 2 instances: name one (job:1 to job:2)" in r.stderr, r
    d.stop()


def test_a_reload_keeps_what_added_instances_require_once_instance_0_was_removed(procs, tmp_path):
    """dep (added, 2 instances) requires web (in the file); `ctl remove dep:0`; a reload of
    a file without web is refused, as with dep:0 there. It was accepted (only instance 0
    was looked at), and the next re-exec killed dep:1."""
    d = Daemon(procs, tmp_path, """
[service:web]
command = HELPER pause
start_secs = 0
""")
    assert d.ctl("add", "-n", "2", "-s", "requires=web", "dep", "--", HELPER, "pause").returncode == 0
    assert d.ctl("remove", "dep:0").returncode == 0
    d.write("""
[service:other]
command = HELPER pause
""")
    r = d.ctl("reload")
    assert r.returncode != 0 and "it was added with `evmon ctl add` and requires web" in \
        r.stdout + r.stderr, r
    assert "web" in d.status()
    d.stop()


def test_a_start_while_a_requirement_waits_to_stop_keeps_it(procs, tmp_path):
    """`ctl stop web` waits for front1 (requires web, 2 s to stop); `ctl start front2`
    (requires web too) meanwhile keeps web running and starts front2 at once, as it does
    once web's stop is over (it starts web first): front1 stops, the others run. front2
    started at once and was left running without web (then it waited, and was refused once
    web stopped: what ran depended on when the start came)."""
    d = Daemon(procs, tmp_path, """
[service:web]
command = HELPER pause
start_secs = 0

[service:front1]
command = HELPER linger 2000 pause
requires = web
start_secs = 0

[service:front2]
command = HELPER pause
requires = web
start_secs = 0
autostart = no
""")
    wait_count(d, "running", 2)
    catching(d, "front1")
    web = d.status("web")["web"]["pid"]
    with d.connect() as s:
        s.sendall(b'{"cmd":"stop","names":["web"]}\n')
        d.wait_state("front1", "stopping")
        r = d.ctl("start", "front2")
        assert r.returncode == 0 and "front2: running" in r.stdout, r
        assert LineReader(s).next(60)["ok"]
    d.wait_state("front1", "stopped")
    for _ in range(20):  # loop iterations after front1's stop: web's stop would come in them
        assert d.ctl("ping").returncode == 0
    st = d.status()
    assert {k: v["state"] for k, v in st.items()} == \
        {"web": "running", "front1": "stopped", "front2": "running"}, st
    assert st["web"]["pid"] == web, st
    d.stop()
