"""Fault injection against the real `evmon daemon` (docs/RELIABILITY.md): the
machine runs out of processes or file descriptors, children misbehave (stop
themselves, close their output, ignore SIGTERM, leave 1,000 orphans), and
the daemon itself is killed with SIGKILL. In every case the daemon must keep
running and serving `evmon ctl`, report what happened as events, and recover
when the fault goes away."""
import json
import os
import re
import resource
import signal
import socket
import subprocess
import time

import pytest

from conftest import EVMON, HELPER, children_of, proc_state, requires_root, wait_for, zombies_of
from daemon_util import SLOW, Daemon, LineReader, alive
from reliability_util import (ODD_UID, VALGRIND, OpenDir, PrefixedDaemon, cpu_ticks, fds, ppid_of,
                              set_nproc)

pytestmark = requires_root("rlimits of other uids, namespaces")


def uid_procs(uid):
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n


def events(d):
    """A connection subscribed to the event stream."""
    s = d.connect()
    s.sendall(b'{"cmd":"events"}\n')
    rd = LineReader(s)
    assert rd.next()["ok"]
    return s, rd


# ------------------------------------------------------------ resources


def test_fork_fails_services_back_off_and_recover(procs):
    """RLIMIT_NPROC of the daemon's uid at 1: every fork fails with EAGAIN. Services
    that exit cannot be restarted and wait in backoff (the error in their status and
    events); running ones are untouched; ctl keeps working. Once the limit is lifted
    they all run again, none gave up (FATAL) for the machine's state."""
    with OpenDir(owner=ODD_UID) as top:
        d = PrefixedDaemon(procs, top, """
[evmon]
start_secs = 0
backoff_initial = 20ms
backoff_max = 200ms
stop_timeout = 2

[service:steady]
command = HELPER pause

[service:flappy]
command = HELPER sleep 50 exit 3
restart = always
instances = 2
""", prefix=["setpriv", f"--reuid={ODD_UID}", f"--regid={ODD_UID}", "--clear-groups"])
        pid = d.daemon_pid()
        wait_for(lambda: all(s["restarts"] >= 1 for n, s in d.status().items() if n != "steady"),
                 what="flappy restarting")
        steady = d.status("steady")["steady"]["pid"]
        set_nproc(pid, "1")
        f0 = {n: s["failures"] for n, s in d.status().items()}

        def starved(s):
            return s["state"] == "backoff" and "Resource temporarily unavailable" in s.get("error", "")
        # more failed forks in a row than start_retries (3) allows failed starts
        wait_for(lambda: all(starved(s) and s["failures"] >= f0[n] + 8
                             for n, s in d.status().items() if n != "steady"),
                 timeout=20 * SLOW, what="flappy failing to fork, over and over")
        # a restart asked for now fails the same way, and nothing else breaks
        r = d.request({"cmd": "restart", "names": ["steady"]})
        assert r["ok"], r
        wait_for(lambda: starved(d.status("steady")["steady"]), what="steady cannot fork either")
        assert not alive(steady) and d.ctl("ping").returncode == 0
        # the state line says it once (proto.c leaves out an error its message says)
        assert re.search(r"fork \S+: Resource temporarily unavailable", d.log()), d.log()
        assert not any(s["state"] == "fatal" for s in d.status().values())

        set_nproc(pid, "hard")
        wait_for(lambda: d.status("steady")["steady"]["state"] == "running", timeout=10 * SLOW,
                 what="steady running again")
        before = {n: s["restarts"] for n, s in d.status().items()}
        wait_for(lambda: all(s["restarts"] > before[n] + 2 for n, s in d.status().items() if n != "steady"),
                 timeout=10 * SLOW, what="flappy restarting again")
        assert d.p.poll() is None
        d.stop()


@pytest.mark.skipif(VALGRIND, reason="valgrind keeps fds of its own at the top of the limit")
def test_idle_clients_cannot_take_the_services_descriptors(procs, tmp_path):
    """RLIMIT_NOFILE of 256 and max_clients at its default (1024): idle connections
    took every descriptor, then the reserve's (kept as clients), and a service's
    restart could not make its log pipe ("Too many open files") while they stayed. Clients are now a quarter of the limit at most (64
    here), those over it refused as "too many clients"; the restarts go on."""
    logs = tmp_path / "logs"
    logs.mkdir()
    d = PrefixedDaemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}
idle_timeout = 1h

[service:flap]
command = sh -c 'echo hi; sleep 0.2; exit 1'
start_secs = 0
restart = always
backoff_initial = 0.05
backoff_max = 0.05
stdout = log
""", prefix=["prlimit", "--nofile=256:256"])
    d.wait_state("flap", "running")
    ctl = d.connect()  # connected before the others: served while they stay
    ctlrd = LineReader(ctl)

    def restarts():
        ctl.sendall(b'{"cmd":"status","names":["flap"]}\n')
        return ctlrd.next(timeout=60)["services"][0]["restarts"]
    conns, refused = [], 0
    for _ in range(300):
        c = d.connect()
        conns.append(c)
    for c in conns:
        c.settimeout(0.05)
        try:
            line = c.recv(4096)
        except socket.timeout:
            continue  # kept
        refused += not line or b"too many clients" in line
    assert 300 - 64 <= refused <= 300 - 60, refused
    assert len(fds(d.p.pid)) < 200
    # restarts go on with their log pipes while the clients stay
    before = restarts()
    wait_for(lambda: restarts() >= before + 3, timeout=30 * SLOW, what="three more restarts")
    assert "Too many open files" not in d.log(), d.log()[-3000:]
    assert "cut to a quarter of RLIMIT_NOFILE" in d.log()
    for c in conns + [ctl]:
        c.close()
    d.stop()


@pytest.mark.skipif(VALGRIND, reason="valgrind keeps fds of its own at the top of the limit, "
                                     "and asserts when a pidfd lands there")
def test_fds_run_out_the_daemon_keeps_serving(procs, tmp_path):
    """RLIMIT_NOFILE of 48: the daemon needs a pidfd per child and an fd per client.
    Past the limit children are watched through SIGCHLD (a warning event says so),
    new clients are refused cleanly (the daemon keeps a spare fd to accept and
    refuse them), a service whose log file cannot be opened is reported, not
    fatal; connected clients are served throughout. The pidfds of the running
    children fill the table to the limit, so fds come back when children exit:
    then everything works again, and every service stops."""
    logs = tmp_path / "logs"
    logs.mkdir()
    d = PrefixedDaemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}
start_secs = 0
stop_timeout = 2

[service:web]
command = HELPER pause
""", prefix=["prlimit", "--nofile=48:48"])
    d.wait_state("web", "running")
    s, rd = events(d)
    ctl = d.connect()
    ctlrd = LineReader(ctl)

    def request(obj):
        ctl.sendall(json.dumps(obj).encode() + b"\n")
        return ctlrd.next(timeout=60)
    # 60 more children than there are fds
    r = request({"cmd": "add", "wait": True, "timeout": 60,
                 "service": {"name": "many", "command": [HELPER, "pause"], "instances": 60}})
    assert r["ok"] and len(r["services"]) == 60, r
    assert all(x["state"] == "running" for x in r["services"])
    warning = None
    while warning is None:
        ev = rd.next()
        if ev.get("event") == "warning":
            warning = ev
    assert "SIGCHLD" in warning["message"], warning
    # the daemon has no other thread: nobody else could take a SIGCHLD
    assert "other threads" not in d.log()
    # connections until the daemon has no fd left
    conns, refused = [], 0
    for _ in range(60):
        c = d.connect()
        try:
            c.sendall(b'{"cmd":"ping"}\n')
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed already; the reason is still there to read
        line = read_line_or_eof(c)
        conns.append(c)
        if not line:
            continue
        refused += "out of file descriptors" in line
    assert refused > 0, "no client was refused"
    assert len(fds(d.p.pid)) <= 48
    # no fd for a log pipe now: the service runs with its output on /dev/null, an event says so
    r = request({"cmd": "add", "service": {"name": "logged", "command": [HELPER, "pause"],
                                           "stdout": "log"}})
    assert r["ok"], r
    ev = rd.next()
    while not (ev.get("event") == "log" and ev.get("service") == "logged"):
        ev = rd.next()
    assert "cannot capture its output: pipe: Too many open files" in ev["message"], ev
    for c in conns:
        c.close()
    # the children hold the pidfds: fds come back when they stop, then all works again
    r = request({"cmd": "stop", "names": ["many"], "wait": True, "timeout": 30})
    assert r["ok"], r
    r = request({"cmd": "start", "names": ["logged"], "wait": True, "timeout": 20})
    assert r["ok"], r
    assert d.ctl("ping").returncode == 0
    r = request({"cmd": "stop", "names": ["*"], "wait": True, "timeout": 30})
    assert r["ok"], r
    assert all(x["state"] == "stopped" for x in d.status().values())
    ctl.close()
    s.close()
    d.stop()


@pytest.mark.skipif(VALGRIND, reason="valgrind keeps fds of its own at the top of the limit")
def test_low_fd_limit_every_logged_service_starts(procs, tmp_path):
    """RLIMIT_NOFILE of 64 and 12 services with stdout and stderr logged apart: the
    pipes alone would need 48 fds. Captures that cannot be made go to /dev/null with
    an event, and every service still runs: a spawn needs no fd of its own (stdin and
    the streams that go nowhere are the daemon's one /dev/null), and the log files
    with evmon's lines about failures cannot take the descriptors the spawns need."""
    logs = tmp_path / "logs"
    logs.mkdir()
    services = "".join(f"""
[service:s{i}]
command = HELPER print out{i} pause
stdout = log
stderr = log
""" for i in range(12))
    d = PrefixedDaemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}
start_secs = 0
stop_timeout = 2
{services}""", prefix=["prlimit", "--nofile=64:64"])
    wait_for(lambda: all(s["state"] == "running" for s in d.status().values()),
             timeout=20 * SLOW, what="every service running")
    assert len(d.status()) == 12
    assert "it goes to /dev/null" in d.log()
    assert "Too many open files" not in "".join(s.get("error", "") for s in d.status().values())
    # the services whose output is captured write their log files
    wait_for(lambda: any("out" in p.read_text() for p in logs.iterdir()), what="logged output")
    assert len(fds(d.p.pid)) <= 64
    assert d.ctl("ping").returncode == 0
    r = d.request({"cmd": "stop", "names": ["*"], "wait": True, "timeout": 30})
    assert r["ok"], r
    d.stop()


@pytest.mark.skipif(VALGRIND, reason="valgrind keeps fds of its own at the top of the limit")
def test_restarts_at_the_fd_limit_keep_the_reserve(procs, tmp_path):
    """RLIMIT_NOFILE of 64, pidfds up to the library's limit, services that exit at
    once and restart over and over, 18 clients holding the daemon's last free
    descriptors and a few of its reserve, and more clients that are accepted on a
    reserve descriptor only to be refused (max_clients). What a refused client had
    must go back to the reserve, not to the next restart's pidfd for good: the
    reserve never runs dry (it drained to 0 in a second before), and is whole once
    the clients leave. The daemon reaps (cgroup = no), where the library would watch
    these few children through SIGCHLD: EVM_REAPER_PIDFDS gives each its pidfd."""
    services = "".join(f"""
[service:p{i}]
command = HELPER pause
""" for i in range(44)) + "".join(f"""
[service:r{i}]
command = HELPER exit 1
restart = always
backoff_initial = 10ms
backoff_max = 20ms
""" for i in range(6))
    d = PrefixedDaemon(procs, tmp_path, f"""
[evmon]
start_secs = 0
stop_timeout = 2
max_clients = 19
idle_timeout = 0
cgroup = no
{services}""", prefix=["prlimit", "--nofile=64:64"], env=dict(os.environ, EVM_REAPER_PIDFDS="1"))
    wait_for(lambda: all(s["state"] == "running" for n, s in d.status().items() if n[0] == "p"),
             timeout=20 * SLOW, what="the pausing services running")
    # asked on a connection made while fds are free: a new one could take a reserve fd
    ctl = d.connect()
    ctlrd = LineReader(ctl)

    def reserve():
        ctl.sendall(b'{"cmd":"metrics"}\n')
        lines = ctlrd.next(timeout=30)["lines"]
        return {m.group(1): int(m.group(2)) for m in
                (re.fullmatch(r'evmon_fd_reserve\{held="(\w+)"\} (\d+)', x) for x in lines) if m}
    assert reserve() == {"now": 64 // 8, "wanted": 64 // 8}
    held = [d.connect() for _ in range(18)]
    for c in held:  # each answered: accepted
        c.sendall(b'{"cmd":"ping"}\n')
        assert LineReader(c).next(timeout=30)["ok"]
    seen = []
    for _ in range(30):
        for _ in range(5):
            try:
                d.connect().close()
            except OSError:
                pass
        time.sleep(0.05)
        seen.append(reserve()["now"])
    assert min(seen) > 0 and min(seen) < 64 // 8, seen
    for c in held:
        c.close()
    wait_for(lambda: reserve()["now"] == 64 // 8, timeout=10 * SLOW, what="the reserve whole again")
    ctl.close()
    assert d.ctl("ping").returncode == 0
    d.stop()


def test_fd_limit_below_use_no_busy_loop(procs, tmp_path):
    """The fd limit lowered below what the daemon holds (prlimit on the running
    daemon): not even the spare fd kept to refuse a client can be had. The daemon
    stops watching its socket and tries again every 250 ms instead of waking up for
    the waiting client over and over (it burned a CPU before); once the limit is
    back, the waiting client is answered. When an fd comes free now and then, the
    log says when the episode began and when it ended (how long, how many pauses),
    not each pause and each accept in between (two lines every 250 ms before)."""
    d = Daemon(procs, tmp_path, """
[evmon]
start_secs = 0

[service:web]
command = HELPER pause
""")
    d.wait_state("web", "running")
    pid = d.p.pid
    limit = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, limit[1]))
    c = d.connect()
    c.sendall(b'{"cmd":"ping"}\n')
    wait_for(lambda: "not even one to refuse a client" in d.log(), what="accepting paused")
    t0 = cpu_ticks(pid)
    time.sleep(2)
    # a daemon woken by the waiting client without end would burn a CPU: allow a tenth
    assert cpu_ticks(pid) - t0 < os.sysconf("SC_CLK_TCK") // 5 * SLOW
    # an fd comes free now and then: each lets one client in between pauses
    for _ in range(3):
        resource.prlimit(pid, resource.RLIMIT_NOFILE, limit)
        r = LineReader(c).next(timeout=20 * SLOW)
        assert r["ok"] and r["pid"] == pid, r
        c.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, limit[1]))
        c = d.connect()
        c.sendall(b'{"cmd":"ping"}\n')
        time.sleep(0.3)  # not asserted on: time to pause again
    resource.prlimit(pid, resource.RLIMIT_NOFILE, limit)
    rd = LineReader(c)
    r = rd.next(timeout=20 * SLOW)
    assert r["ok"] and r["pid"] == pid, r
    # the episode is told once as it begins and once as it ends, not at every pause
    wait_for(lambda: "accepting clients again" in d.log(), what="accepting again")
    log = d.log()
    assert log.count("not even one to refuse a client") == 1, log
    assert log.count("accepting clients again") == 1, log
    assert re.search(r"accepting clients again \(out of file descriptors for [\d.]+ s: "
                     r"paused \d+ times\)", log), log
    c.close()
    assert d.ctl("ping").returncode == 0
    d.stop()


def test_disk_full_for_logs(procs, tmp_path):
    """The log directory is a 64 KiB tmpfs in the daemon's own mount namespace, most
    of it taken by a filler file. The service writes lines without pause: once the
    disk is full its output is discarded (the pipe is still drained, so it never
    blocks), one event tells it, ctl keeps working. A retry while the disk is still
    full is the same episode (no second event). The file holds whole lines only: the
    write the disk cut short is cut back out. Once the filler is removed, logging
    resumes: the file says how many bytes were lost, on a line of its own written
    together with the next lines (alone, it would fit into what the cut left of the
    last block and end the episode early), and the lines go on."""
    import re
    logs = tmp_path / "logs"
    logs.mkdir()
    mount = (f"mount -t tmpfs -o size=64k,mode=755 tmpfs {logs} && "
             f"head -c 49152 /dev/zero > {logs}/filler && exec \"$@\"")
    d = PrefixedDaemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}

[service:w]
command = sh -c 'i=0; while :; do seq $i $((i+99)); i=$((i+100)); sleep 0.01; done'
stdout = log
kill_group = true
start_secs = 0
autostart = false
""", prefix=["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh"])
    # subscribed before w starts: the disk may be full before a late subscription took effect
    ev, rd = events(d)
    assert d.request({"cmd": "start", "names": ["w"]})["ok"]

    def next_log_event():
        e = rd.next(timeout=20 * SLOW)
        while e.get("event") != "log" or e.get("service") != "w":
            e = rd.next(timeout=20 * SLOW)
        return e

    e = next_log_event()
    assert e["error"] == "No space left on device", e
    assert "output is discarded until it can be written" in e["message"], e
    daemon = d.daemon_pid()

    def log_text():
        r = subprocess.run(["nsenter", "-t", str(daemon), "-m", "cat", f"{logs}/w.log"],
                           capture_output=True, timeout=10)
        return r.stdout.decode(errors="replace")

    def whole_lines(text):
        """The numbers of a log that holds whole lines only: evmon's first line, then 0, 1, ..."""
        lines = text.split("\n")
        assert lines[-1] == "", f"the log ends in the middle of a line: {text[-200:]!r}"
        assert "evmon: started pid" in lines[0], lines[0]
        nums = [int(x) for x in lines[1:-1]]  # a cut line would not be a number in sequence
        assert nums == list(range(len(nums))), text[-2000:]
        return nums
    # the write that found the disk full was cut back: the file ends with a whole line
    assert len(whole_lines(log_text())) > 1000
    pid = d.status("w")["w"]["pid"]
    assert d.request({"cmd": "ping"})["ok"]
    # a retry on a disk still full (reopen-logs makes it happen now): no new event
    assert d.ctl("reopen-logs").returncode == 0
    time.sleep(0.5)  # lets the service write into the full disk again
    assert d.request({"cmd": "ping"})["ok"]
    subprocess.run(["nsenter", "-t", str(daemon), "-m", "rm", f"{logs}/filler"], check=True,
                   timeout=10)
    assert d.ctl("reopen-logs").returncode == 0
    e = next_log_event()
    assert "writing again" in e["message"] and "error" not in e, e
    assert d.status("w")["w"]["pid"] == pid  # the service never noticed
    ts = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    pat = ts + r" evmon: (\d+) bytes of output were discarded: \S+/w\.log: write: No space left on device\n"
    wait_for(lambda: re.search(pat + r"(\d+\n){100}", log_text()), what="lines after the gap")
    text = log_text()
    m = re.search(pat, text)
    assert len(re.findall(pat, text)) == 1, re.findall(ts + " evmon: .*", text)
    assert int(m.group(1)) > 0
    # the notice starts a line of its own, after the last whole line written before the gap
    before = whole_lines(text[:m.start()])
    after = [int(x) for x in text[m.end():].split("\n")[:-1]]
    assert len(before) > 1000
    assert after[0] > before[-1] + 1 and after == list(range(after[0], after[0] + len(after)))
    ev.close()
    d.stop()


def read_line_or_eof(c):
    """The first line the daemon sends, or "" when it closed the connection first."""
    buf = b""
    c.settimeout(30 * SLOW)
    while not buf.endswith(b"\n"):
        try:
            chunk = c.recv(4096)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            break
        buf += chunk
    return buf.decode()


# ------------------------------------------------------- children misbehaving


def test_child_that_stops_itself(procs, tmp_path):
    """A service that SIGSTOPs itself is still running (no exit reported), and stopping
    it takes its stop signal, not the SIGKILL of stop_timeout: the daemon sends
    SIGCONT after the stop signal."""
    d = Daemon(procs, tmp_path, """
[service:stopper]
command = HELPER stop pause
start_secs = 0
stop_timeout = 1h
""")
    pid = d.wait_state("stopper", "running")["pid"]
    wait_for(lambda: proc_state(pid) == "T", what="the child stopped")
    st = d.status("stopper")["stopper"]
    assert st["state"] == "running" and st["pid"] == pid and "last_exit" not in st
    r = d.request({"cmd": "stop", "names": ["stopper"], "wait": True, "timeout": 20})
    assert r["ok"], r
    x = d.status("stopper")["stopper"]["last_exit"]
    assert x["signal_name"] == "TERM", x
    d.stop()


def test_child_that_closes_its_stdout(procs, tmp_path):
    """Output to a log file and to the daemon's own stdout, then the child closes
    its stdout and lives on: nothing changes for the daemon (no exit, no busy loop),
    and it stops normally."""
    logs = tmp_path / "logs"
    logs.mkdir()
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}
start_secs = 0
stop_timeout = 5

[service:logged]
command = HELPER print before closeout pause
stdout = log

[service:inherited]
command = HELPER print before-inherited closeout pause
""")
    wait_for(lambda: "before-inherited" in d.log(), what="output before the close")
    wait_for(lambda: any("before" in p.read_text() for p in logs.iterdir()), what="logged output")
    pids = [d.wait_state(n, "running")["pid"] for n in ("logged", "inherited")]
    wait_for(lambda: all(1 not in fds(p) for p in pids), what="stdout closed")
    t0 = cpu_ticks(d.p.pid)
    time.sleep(1)
    # a daemon polling a closed stream would burn a CPU: allow a tenth of one
    assert cpu_ticks(d.p.pid) - t0 < os.sysconf("SC_CLK_TCK") // 10 * SLOW
    assert all(s["state"] == "running" and "last_exit" not in s for s in d.status().values())
    d.stop()


def test_child_that_ignores_sigterm(procs, tmp_path):
    """SIGTERM ignored: SIGKILL after stop_timeout; the daemon serves ctl meanwhile."""
    d = Daemon(procs, tmp_path, """
[service:stubborn]
command = HELPER ignore 15 print ignoring pause
start_secs = 0
stop_timeout = 2
""")
    pid = d.wait_state("stubborn", "running")["pid"]
    wait_for(lambda: "ignoring" in d.log(), what="SIGTERM ignored")
    r = d.request({"cmd": "stop", "names": ["stubborn"]})
    assert r["ok"] and r["services"][0]["state"] == "stopping", r
    assert alive(pid)
    assert d.request({"cmd": "ping"})["ok"]  # not blocked while it waits
    d.wait_state("stubborn", "stopped", timeout=10)
    x = d.status("stubborn")["stubborn"]["last_exit"]
    assert x["signal_name"] == "KILL", x
    assert not alive(pid)
    d.stop()


@pytest.mark.parametrize("n", [100, pytest.param(1000, marks=pytest.mark.scale)])
@pytest.mark.parametrize("reaper", [False, True])
def test_child_that_forks_grandchildren_and_exits(procs, tmp_path, reaper, n):
    """With --reaper the daemon is their subreaper: it reaps all 100 (1,000 in make
    test-scale; one orphan event each) and no zombie is left. Without, they are not its
    children at all; either way the service's own exit is reported once and the daemon
    is unaffected."""
    d = Daemon(procs, tmp_path, f"""
[service:forker]
command = HELPER orphans {n} exit 0
restart = never
start_secs = 0
""", args=["--reaper"] if reaper else [], start=False)
    # subscribe before the service starts: start the daemon with it stopped, then start it
    d.write(open(d.cfg).read() + "autostart = false\n")
    d.start()
    s, rd = events(d)
    assert d.request({"cmd": "start", "names": ["forker"]})["ok"]
    exits = orphans = 0
    deadline = time.monotonic() + 60 * SLOW
    while time.monotonic() < deadline and (exits < 1 or (reaper and orphans < n)):
        ev = rd.next(timeout=60)
        exits += ev.get("event") == "exit"
        orphans += ev.get("event") == "orphan"
    assert exits == 1
    assert orphans == (n if reaper else 0)
    wait_for(lambda: not zombies_of(d.p.pid), what="no zombies")
    assert d.status("forker")["forker"]["state"] == "exited"
    s.close()
    d.stop()


@pytest.mark.parametrize("n", [100, pytest.param(1000, marks=pytest.mark.scale)])
def test_kill_group_takes_grandchildren_that_ignore_sigterm(procs, tmp_path, n):
    """100 grandchildren (1,000 in make test-scale) that ignore SIGTERM: a stop with
    kill_group takes them all."""
    d = Daemon(procs, tmp_path, f"""
[service:tree]
command = HELPER group {n} pause
kill_group = true
start_secs = 0
stop_timeout = 1
""")
    pid = d.wait_state("tree", "running")["pid"]
    wait_for(lambda: len(children_of(pid)) == n, timeout=30 * SLOW, what=f"{n} grandchildren")
    group = children_of(pid)
    r = d.request({"cmd": "stop", "names": ["tree"], "wait": True, "timeout": 30}, timeout=60)
    assert r["ok"], r
    wait_for(lambda: not any(alive(p) for p in group), timeout=10 * SLOW, what="the whole group gone")
    d.stop()


# ------------------------------------------------------- the daemon killed


def test_daemon_killed_as_pid1_takes_everything_with_it(procs, tmp_path):
    """As PID 1 of a PID namespace (a container), SIGKILL of the daemon ends the
    namespace: the kernel kills every service. A new daemon replaces the stale socket."""
    d = Daemon(procs, tmp_path, """
[service:web]
command = HELPER pause
instances = 3
start_secs = 0
""", start=False)
    logf = open(d.logpath, "ab")
    p = procs.spawn(["unshare", "--pid", "--fork", "--mount-proc", EVMON, "daemon", "-c", d.cfg,
                     "-S", d.sock], stdout=logf, stderr=subprocess.STDOUT)
    wait_for(d.answers, timeout=20 * SLOW, what="the daemon in its namespace")
    assert d.request({"cmd": "ping"})["pid"] == 1
    wait_for(lambda: all(s["state"] == "running" for s in d.status().values()), what="running")
    init = children_of(p.pid)[0]  # the daemon, PID 1 inside
    services = children_of(init)
    assert len(services) == 3
    os.kill(init, signal.SIGKILL)
    assert p.wait(timeout=20 * SLOW) != 0
    wait_for(lambda: not any(alive(s) for s in services), what="every service gone with it")
    assert os.path.exists(d.sock)  # stale
    d.start()
    assert d.ctl("ping").returncode == 0
    d.stop()


# one pausing service, without cgroups (the daemon reaps)
WEB = """
[evmon]
cgroup = no

[service:web]
command = HELPER pause
start_secs = 0
"""


def crashed_with_web(procs, tmp_path):
    """A daemon running WEB, SIGKILLed once its record names web's process: (d, pid)."""
    d = Daemon(procs, tmp_path, WEB)
    old = d.wait_state("web", "running")["pid"]
    wait_for(lambda: f" {old} " in open(d.sock + ".state").read(), what="the record")
    os.kill(d.p.pid, signal.SIGKILL)
    d.p.wait()
    return d, old


def test_daemon_killed_outside_a_namespace_leaves_its_services_running(procs, tmp_path):
    """Not PID 1: the services outlive a SIGKILLed daemon (each in its own session,
    re-parented to init or the nearest subreaper) and keep running unsupervised; a
    new daemon replaces the stale socket and, from the state record the killed one
    left, adopts them instead of starting its own copies (test_continuity.py);
    its shutdown stops them."""
    d, old = crashed_with_web(procs, tmp_path)
    try:
        assert alive(old) and ppid_of(old) != d.p.pid
        assert os.getpgid(old) == old  # its own group: one killpg ends it
        assert os.path.exists(d.sock)
        d.start()
        st = d.wait_state("web", "running")
        assert st["pid"] == old and st["adopted"]
        d.stop()
        assert not alive(old)  # adopted: stopped with the rest
    finally:
        if alive(old):
            os.killpg(old, signal.SIGKILL)


def _pausing():
    """pids of the live processes running `HELPER pause`"""
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                with open(f"/proc/{e}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[:2] == [HELPER.encode(), b"pause"] and alive(int(e)):
                        out.append(int(e))
            except OSError:
                pass
    return out


def test_a_survivor_that_cannot_be_adopted_is_not_run_twice(procs, tmp_path):
    """A daemon that can neither adopt nor kill what the one before it left running
    (here a seccomp filter makes pidfd_open fail with ENOSYS, as a sandbox or a kernel
    before 5.3 would) does not start the service again, which would run it twice
    (before: a second copy started beside the first): it says so in its log and in the
    service's status, leaves the old process alone, and a start once the user has ended
    it runs the service again."""
    d, old = crashed_with_web(procs, tmp_path)
    try:
        d.wrap = [HELPER, "nosys", "434", "exec"]
        d.start()
        st = d.status("web")["web"]
        assert st["state"] == "stopped" and not st.get("pid"), st
        assert "may run still (cannot kill it: Function not implemented)" in st.get("error", ""), st
        assert "not started again (it would run twice)" in d.log(), d.log()
        assert _pausing() == [old]
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: not alive(old), what="the old process's end")
        r = d.ctl("start", "web")
        assert r.returncode == 0, r
        st = d.wait_state("web", "running")
        assert st["pid"] != old and not st.get("error"), st
        assert _pausing() == [st["pid"]]
        d.stop()
    finally:
        if alive(old):
            os.killpg(old, signal.SIGKILL)


def test_a_reexec_without_pidfd_open_keeps_its_services(procs, tmp_path):
    """Where pidfd_open is refused (seccomp: ENOSYS) a reaping daemon (cgroup = no)
    gives its children the pidfds of their clones, not pidfds opened on demand, so a
    re-exec still hands each service over with its pidfd and adopts it."""
    d = Daemon(procs, tmp_path, WEB, wrap=[HELPER, "nosys", "434", "exec"])
    old = d.wait_state("web", "running")["pid"]
    r = d.ctl("reexec")
    assert r.returncode == 0, r
    st = d.wait_state("web", "running")
    assert st["pid"] == old and st["adopted"], st
    assert _pausing() == [old]
    d.stop()
