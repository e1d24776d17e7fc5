"""The control socket against a hostile local client (issue 18 item e): slow
senders, a request of 100 MB without a newline, a flood of connections, and
files planted where the daemon puts its socket and lock. (A subscriber that
never reads is test_daemon_load.py's test_client_that_never_reads and the
total cap's tests; other uids are test_security.py's and test_daemon_load.py's
test_peer_uid_is_checked.)"""
import json
import os
import select
import socket
import threading
import time

import pytest

from conftest import EVMON, HELPER, SAN, needs_root, wait_for
from daemon_util import SLOW, Daemon, LineReader, read_line
from reliability_util import ODD_UID, fds, rss_kb

PAUSE = """
[evmon]
idle_timeout = IDLE

[service:web]
command = HELPER pause
start_secs = 0
stop_timeout = 2
"""


def pause_daemon(procs, tmp_path, idle="10s"):
    d = Daemon(procs, tmp_path, PAUSE.replace("IDLE", idle))
    d.wait_state("web", "running")
    for _ in range(10):
        d.status()  # the daemon's buffers as after ordinary use
    wait_for(lambda: clients(d) == 1, what="the daemon to close our earlier connections")
    return d


def clients(d):
    """The daemon's count of connections, this one's included."""
    return d.request({"cmd": "ping"})["clients"]


def read_until_closed(s, timeout):
    """Every line the daemon sends until it closes the connection (EOF, or a reset:
    closing with our unread bytes in its buffer resets the connection)."""
    s.settimeout(timeout)
    buf = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except ConnectionResetError:
        pass
    return [json.loads(line) for line in buf.split(b"\n") if line]


def test_slow_senders_are_closed_and_do_not_hold_others_up(procs, tmp_path):
    """Twenty clients that each send a request one byte at a time, never finishing it
    (slowloris): ctl is served meanwhile, and each is told 'idle' and closed once
    idle_timeout passes: a partial line does not restart the idle clock."""
    d = pause_daemon(procs, tmp_path, idle="2s")
    fd0 = len(fds(d.p.pid))
    stop = threading.Event()
    results = {}

    def slow(i):
        s = d.connect()
        s.sendall(b'{"cmd":"status","x":"')
        try:
            while not stop.is_set():
                s.sendall(b"x")
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed by the daemon
        results[i] = read_until_closed(s, 30 * SLOW)
        s.close()

    ts = [threading.Thread(target=slow, args=(i,)) for i in range(20)]
    for t in ts:
        t.start()
    try:
        for _ in range(5):
            r = d.ctl("ping")
            assert r.returncode == 0, r
        wait_for(lambda: len(results) == 20, timeout=120 * SLOW, what="every slow sender closed")
    finally:
        stop.set()
        for t in ts:
            t.join()
    for i, lines in results.items():
        assert [x.get("error", "")[:5] for x in lines] == ["idle:"], (i, lines)
    assert d.log().count("dropped: idle: no request") >= 20
    wait_for(lambda: len(fds(d.p.pid)) <= fd0, what="the daemon's fds back to where they were")
    d.stop()


def test_a_huge_request_is_refused_and_the_connection_closed(procs, tmp_path):
    """100 MB without a newline: one error saying why, then the daemon closes the
    connection instead of reading on (the sender cannot get the 100 MB in), and its
    memory is back to where it was."""
    d = pause_daemon(procs, tmp_path, idle="1h")  # only the size may end the connection
    rss0 = rss_kb(d.p.pid)
    s = d.connect(timeout=120)
    sent = [0]

    def flood():
        chunk = b"x" * (1 << 20)
        try:
            for _ in range(100):
                s.sendall(chunk)
                sent[0] += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
    t = threading.Thread(target=flood)
    t.start()
    lines = read_until_closed(s, 120 * SLOW)
    t.join()
    s.close()
    assert len(lines) == 1 and not lines[0]["ok"], lines
    assert lines[0]["error"] == "request line longer than 65536 bytes: closing the connection"
    assert sent[0] < 100 << 20, "the daemon read the whole 100 MB"
    assert "request line longer than 65536 bytes: closing the connection" in d.log()
    bound = 64 * 1024 if SAN else 8 * 1024
    assert rss_kb(d.p.pid) - rss0 < bound, f"RSS {rss0} kB -> {rss_kb(d.p.pid)} kB"
    assert d.ctl("ping").returncode == 0
    d.stop()


def test_a_flood_of_connections_while_ctl_is_served(procs, tmp_path):
    """200 connections opened at once, none saying anything: ctl still answers, then
    each of them is answered too, and once they close the daemon's fds are back."""
    d = pause_daemon(procs, tmp_path, idle="1h")
    fd0 = len(fds(d.p.pid))
    conns = [None] * 200

    def connect(i):
        conns[i] = d.connect(timeout=60)
    ts = [threading.Thread(target=connect, args=(i,)) for i in range(200)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(conns)
    r = d.ctl("ping")
    assert r.returncode == 0, r
    wait_for(lambda: clients(d) == 201, what="all 200 accepted")
    for i, c in enumerate(conns):
        c.sendall(json.dumps({"cmd": "ping", "id": i}).encode() + b"\n")
    for i, c in enumerate(conns):
        r = json.loads(read_line(c))
        assert r["ok"] and r["id"] == i, r
        c.close()
    wait_for(lambda: len(fds(d.p.pid)) <= fd0, what="the daemon's fds back to where they were")
    d.stop()


def test_a_short_client_that_reads_none_of_its_stream_is_dropped(procs, tmp_path):
    """`logs` without -f of a log of megabytes, asked for and never read: once its socket
    is full and it takes none of the rest for idle_timeout, the daemon drops it (and the
    log file it held). Such clients were never timed out: 1,030 of them locked `ctl
    status` out ("too many clients") for as long as they stayed."""
    logs = tmp_path / "logs"
    logs.mkdir()
    d = Daemon(procs, tmp_path, f"""
[evmon]
idle_timeout = 1s
log_dir = {logs}

[service:big]
command = HELPER lines 200000 pause
stdout = log
start_secs = 0
""")
    wait_for(lambda: (logs / "big.log").exists() and (logs / "big.log").stat().st_size > 2_000_000,
             timeout=60 * SLOW, what="a log of megabytes")
    fd0 = len(fds(d.p.pid))
    s = d.connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b'{"cmd":"logs","name":"big","lines":1000000}\n')
    wait_for(lambda: "took none of its output in 1000 ms" in d.log(), timeout=30 * SLOW,
             what="the reader that never reads dropped")
    assert clients(d) == 1
    wait_for(lambda: len(fds(d.p.pid)) <= fd0, what="its connection and the log file closed")
    s.settimeout(10 * SLOW)
    while s.recv(65536):  # what it had been sent, then the end
        pass
    s.close()
    d.stop()


def test_a_metrics_reader_that_reads_none_of_it_is_dropped(procs, tmp_path):
    """`ctl metrics` of 1,000 services (a reply of ~365 KB, built in pieces as the
    socket takes it), asked for and never read: once its socket is full and it takes
    none of the rest for idle_timeout, the daemon drops it, as it does a `logs`
    reader. Such a client was never dropped: 100 of them held ~45 MB of the daemon
    and their slots for good."""
    d = Daemon(procs, tmp_path, "[evmon]\nidle_timeout = 1s\ncgroup = no\n")
    r = d.ctl("add", "--no-start", "-n", 1000, "many", "--", HELPER, "pause", timeout=120)
    assert r.returncode == 0, r
    s = d.connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.sendall(b'{"cmd":"metrics"}\n')
    wait_for(lambda: "took none of its output in 1000 ms" in d.log(), timeout=30 * SLOW,
             what="the metrics reader that never reads dropped")
    assert clients(d) == 1
    r = d.ctl("status", "many:0")  # 3: not running, as asked
    assert r.returncode == 3 and "many:0  stopped" in r.stdout, r
    s.settimeout(10 * SLOW)
    got = b""
    try:
        while chunk := s.recv(65536):  # what it had been sent, then the end
            got += chunk
    except ConnectionResetError:
        pass
    assert not got.endswith(b"]}\n"), "the whole reply went: the test proves nothing"
    s.close()
    d.stop()


def test_subscribers_that_stay_leave_slots_for_requests(procs, tmp_path):
    """Event subscribers are never idle: max_clients of them refused every other
    connection, root's `ctl status` too, for as long as they stayed (and each refused
    connection was a log line). The last 16 slots are kept for requests."""
    (tmp_path / "logs").mkdir()
    d = Daemon(procs, tmp_path, PAUSE.replace("IDLE", "1h").replace(
        "[evmon]", f"[evmon]\nmax_clients = 40\nlog_dir = {tmp_path}/logs").replace(
        "start_secs = 0", "start_secs = 0\nstdout = log"))
    d.wait_state("web", "running")
    subs, refused = [], 0
    for _ in range(40):
        s = d.connect(timeout=30)
        s.sendall(b'{"cmd":"events"}\n')
        r = json.loads(read_line(s))
        if r.get("ok"):
            subs.append(s)
        else:
            assert "too many subscribers" in r["error"], r
            refused += 1
            s.close()
    assert len(subs) == 24 and refused == 16, (len(subs), refused)
    for _ in range(3):
        r = d.ctl("status", "web")
        assert r.returncode == 0 and "running" in r.stdout, r
    r = d.ctl("logs", "-f", "web")  # a follower is one that stays too
    assert r.returncode != 0 and "too many subscribers" in r.stderr, r
    # and so is a subscription that ends by itself (ctl wait's), and a wait: nothing is done
    r = d.ctl("wait", "web", "--for", "running")
    assert r.returncode != 0 and "too many subscribers" in r.stderr, r
    r = d.ctl("restart", "web")
    assert r.returncode != 0 and "too many subscribers" in r.stderr, r
    assert d.status("web")["web"]["restarts"] == 0
    subs.pop().close()
    r = d.ctl("wait", "web", "--for", "running")  # a slot that stays, free again
    assert r.returncode == 0, r
    for s in subs:
        s.close()
    d.stop()


@pytest.mark.parametrize("kind", ["brief", "wait"])
def test_subscribers_that_end_by_themselves_leave_slots_for_requests(procs, tmp_path, kind):
    """A brief subscription (ctl wait's) and a request's wait hold their connection
    until they end, which a client decides (a wait's timeout may be a year): a
    thousand of them refused every `evmon ctl status`, for good. They take the slots
    that stay, as subscribers do; the last 16 are kept for requests."""
    d = Daemon(procs, tmp_path, PAUSE.replace("IDLE", "1h").replace(
        "[evmon]", "[evmon]\nmax_clients = 40") + """
[service:never]
command = HELPER pause
ready = notify
ready_timeout = 0
autostart = false
""")
    d.wait_state("web", "running")
    req = (b'{"cmd":"events","brief":true,"names":["web"]}\n' if kind == "brief" else
           b'{"cmd":"start","names":["never"],"wait":true,"timeout":1e9}\n')
    conns = []
    for _ in range(40):
        conns.append(d.connect(timeout=30))
        conns[-1].sendall(req)
    # a subscription is answered at once; a wait is not (until it ends): a refusal is
    replies = {}

    def answered():
        for s in conns:
            if s not in replies and select.select([s], [], [], 0)[0]:
                replies[s] = json.loads(read_line(s))
        return len([r for r in replies.values() if not r.get("ok")]) >= 16 and (
            kind == "wait" or len(replies) == 40)
    wait_for(answered, timeout=30 * SLOW, what="16 refusals")
    time.sleep(0.2)  # a wait answered late would be one more
    answered()
    refused = [s for s, r in replies.items() if not r.get("ok")]
    assert all("too many subscribers" in replies[s]["error"] for s in refused), replies
    held = [s for s in conns if s not in refused]
    assert len(held) == 24 and len(refused) == 16, (len(held), len(refused))
    for s in refused:
        s.close()
    for _ in range(3):
        r = d.ctl("status", "web")
        assert r.returncode == 0 and "running" in r.stdout, r
    for s in held:
        s.close()
    d.stop()


def test_wait_and_timeout_must_be_what_they_say(procs, tmp_path):
    """"wait": "true" or 1 was no wait, and a timeout of "x", -5 or "0.001" a wait of
    120 s, in silence: each is an error now, and nothing is done."""
    d = pause_daemon(procs, tmp_path)
    for extra, why in (('"wait":"true"', '"wait" must be true or false'),
                       ('"wait":1', '"wait" must be true or false'),
                       ('"wait":true,"timeout":"x"', '"timeout" must be a number'),
                       ('"wait":true,"timeout":-5', '"timeout" must be a number'),
                       ('"wait":true,"timeout":0', '"timeout" must be a number'),
                       ('"wait":true,"timeout":"0.001"', '"timeout" must be a number')):
        r = d.request(json.loads('{"cmd":"restart","names":["web"],%s}' % extra))
        assert not r["ok"] and why in r["error"], (extra, r)
    assert d.status("web")["web"]["restarts"] == 0
    r = d.request({"cmd": "restart", "names": ["web"], "wait": True, "timeout": 30 * SLOW})
    assert r["ok"], r
    d.stop()


def plant(kind, path, victim):
    if kind == "symlink":
        os.symlink(victim, path)
    elif kind == "hardlink":
        os.link(victim, path)
    elif kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind == "foreign":
        with open(path, "w") as f:
            f.write("")
        os.chown(path, ODD_UID, ODD_UID)
        os.chmod(path, 0o666)


@pytest.mark.parametrize("kind", ["foreign", "writable", "symlink", "hardlink"])
def test_a_planted_state_record_is_not_taken_over(procs, tmp_path, kind):
    """SOCK.state names the processes a daemon that died left running: the next daemon
    adopts them, or kills those whose definition changed. One another user left there
    (where -S points into a shared directory), or one others may write, or a link, is
    ignored and left as it is: a root daemon used to kill the process it named."""
    if kind in ("foreign", "hardlink"):
        needs_root("a file of another uid")
    victim = procs.spawn(["sleep", "300"])
    with open(f"/proc/{victim.pid}/stat") as f:
        start = f.read().rsplit(")", 1)[1].split()[19]
    record = (f"evmon-state 2\ndaemon 999999 id=0123456789abcdef\n"
              f"service web {victim.pid} {start} 0000000000000000 run running 0 0 0 0 0\nend 1\n")
    d = Daemon(procs, tmp_path, PAUSE.replace("IDLE", "10s"), start=False)
    path = d.sock + ".state"
    if kind in ("symlink", "hardlink"):
        other = tmp_path / "elsewhere"
        other.write_text(record)
        os.chmod(other, 0o600)
        (os.symlink if kind == "symlink" else os.link)(other, path)
    else:
        with open(path, "w") as f:
            f.write(record)
        os.chmod(path, 0o600 if kind == "foreign" else 0o622)
        if kind == "foreign":
            os.chown(path, ODD_UID, ODD_UID)
    d.start()
    d.wait_state("web", "running")
    log = d.log()
    assert "taking over" not in log and "left running by daemon" not in log, log
    if kind != "symlink":  # a link is refused by the open itself (ELOOP)
        assert "ignored and left as it is" in log, log
    assert d.status("web")["web"]["pid"] != victim.pid
    assert victim.poll() is None, "the process the planted record named was killed"
    d.stop()
    assert victim.poll() is None


@pytest.mark.parametrize("req,error", [
    (r'{"cmd":"signal","names":["web"],"signal":9.99}', "\"signal\" must name a signal"),
    (r'{"cmd":"signal","names":["web"],"signal":1e20}', "\"signal\" must name a signal"),
    (r'{"cmd":"signal","names":["web"],"signal":"KILL\u0000x"}', "a NUL character"),
    (r'{"cmd":"stop","names":["web\u0000x"]}', "a NUL character"),
    ('{"cmd":"signal","names":["web"],"signal":"KILL\0 x"}', "a raw control character (0x00 at byte 46)"),
    ('{"cmd":"stop","names":["web\0x"]}', "a raw control character (0x00 at byte 27)"),
    ('{"cmd":"stop","names":["web\x1b"]}', "a raw control character (0x1b at byte 27)"),
    (r'{"cmd":"ping"} {"cmd":"stop","names":["web"]}', "text after the request's object (at byte 15)"),
])
def test_requests_that_say_less_than_they_seem_are_refused(procs, tmp_path, req, error):
    """A signal number that is not an integer (9.99 was KILL, 1.5 HUP), a string with an
    escaped NUL (its C string ends there: "KILL\u0000x" was KILL) or a raw one (the same),
    and a second request on the line (it went unanswered) are refused, and nothing is
    done; an escaped backslash before u0000 is no NUL."""
    d = pause_daemon(procs, tmp_path)
    pid = d.status("web")["web"]["pid"]
    with d.connect() as s:
        s.sendall(req.encode() + b"\n")
        r = json.loads(read_line(s))
    assert r["ok"] is False and error in r["error"], r
    assert d.status("web")["web"]["pid"] == pid and d.status("web")["web"]["state"] == "running"
    with d.connect() as s:
        s.sendall(rb'{"cmd":"status","names":["w\\u0000"]}' + b"\n")
        r = json.loads(read_line(s))
    assert r == {"ok": False, "error": "no such service: w\\u0000"}, r
    d.stop()


def test_a_planted_state_tmp_file_is_not_written_into(procs, tmp_path):
    """The record is written to SOCK.state.tmp, then renamed over SOCK.state: a .tmp file
    another user left there used to be filled and renamed into place, still theirs (and
    so theirs to rewrite before the next daemon reads it). It is replaced by a new file."""
    needs_root("a file of another uid")
    d = Daemon(procs, tmp_path, PAUSE.replace("IDLE", "10s"), start=False)
    tmp = d.sock + ".state.tmp"
    with open(tmp, "w") as f:
        f.write("")
    os.chown(tmp, ODD_UID, ODD_UID)
    os.chmod(tmp, 0o666)
    d.start()
    d.wait_state("web", "running")
    wait_for(lambda: os.path.exists(d.sock + ".state"), what="the record")
    st = os.stat(d.sock + ".state")
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o600, (st.st_uid, oct(st.st_mode))
    d.stop()


@pytest.mark.parametrize("what,kind,why", [
    ("lock", "symlink", "a symbolic link: refusing to use it as the lock"),
    ("lock", "hardlink", "has 2 links (a hard link to another file?): refusing to use it as the lock"),
    ("lock", "fifo", "not a regular file: refusing to use it as the lock"),
    ("lock", "foreign", f"owned by uid {ODD_UID}, not by the daemon's uid 0: refusing"),
    ("sock", "symlink", "exists and is not a socket (a symbolic link): refusing to replace it"),
])
def test_planted_files_at_the_socket_or_lock_are_refused(procs, tmp_path, what, kind, why):
    """What another user could leave at SOCK.lock or SOCK (where -S points into a shared
    directory): the daemon does not start, says why, and leaves it and what it points
    to as they were (a root daemon used to truncate and write its pid through a hard
    link, and opened a FIFO as its lock)."""
    if kind in ("hardlink", "foreign"):
        needs_root("a file of another uid")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    d = Daemon(procs, tmp_path, PAUSE.replace("IDLE", "10s"), start=False)
    path = d.sock + ".lock" if what == "lock" else d.sock
    plant(kind, path, victim)
    before = os.lstat(path)
    r = procs.run([EVMON, "daemon", "-c", d.cfg, "-S", d.sock], timeout=30 * SLOW)
    assert r.returncode != 0, r
    assert f"{path}: {why}" in r.stderr, r.stderr
    assert victim.read_text() == "precious\n"
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode, after.st_uid) == (before.st_ino, before.st_mode, before.st_uid)
    assert what == "sock" or not os.path.exists(d.sock)


def test_names_a_request_may_hold_and_what_a_subscription_follows(procs, tmp_path):
    """At most 64 names with a wildcard in one request (each is a walk of every service:
    16,000 globs held the loop 6 s against 10,000 services) and 1,024 names in one events
    subscription (kept as long as it stays: 1,000 subscribers of 8,120 names were 390 MB).
    Exact names are looked up, not walked: a definition's NAME selects its instances, and
    a subscriber of "web" and "db" gets the events of web:1 and db, not of other's."""
    d = Daemon(procs, tmp_path, """
[service:web]
command = HELPER pause
instances = 2
start_secs = 0

[service:db]
command = HELPER pause
start_secs = 0

[service:other]
command = HELPER pause
start_secs = 0
""")
    for n in ("web:0", "web:1", "db", "other"):
        d.wait_state(n, "running")
    r = d.request({"cmd": "status", "names": ["w*"] * 64 + ["web"] * 2000})
    assert r["ok"] and [s["name"] for s in r["services"]] == ["web:0", "web:1"], r
    r = d.request({"cmd": "status", "names": ["w*"] * 65})
    assert r == {"ok": False, "error": "65 names with a wildcard (*?[): at most 64 in one request"}, r
    r = d.request({"cmd": "events", "names": ["db"] * 1025})
    assert r == {"ok": False, "error": "1025 names: at most 1024 in one subscription (a glob "
                                       "names more)"}, r
    s = d.connect()
    s.sendall(json.dumps({"cmd": "events", "names": ["web", "db"] * 512}).encode() + b"\n")
    rs = LineReader(s)
    assert rs.next()["ok"]
    g = d.connect()
    g.sendall(json.dumps({"cmd": "events", "names": ["o*"]}).encode() + b"\n")
    rg = LineReader(g)
    assert rg.next()["ok"]
    for n in ("other", "web:1", "db"):
        assert d.ctl("restart", n).returncode == 0
    seen = set()
    while not {"web:1", "db"} <= seen:
        seen.add(rs.next(timeout=30).get("service"))
    assert "other" not in seen and "web:0" not in seen, seen
    ev = rg.next(timeout=30)
    assert ev.get("service") == "other", ev
    s.close()
    g.close()
    d.stop()


def test_a_name_said_again_is_resolved_once(procs, tmp_path):
    """A definition's NAME 10,000 times over (one 60 KB line): each copy was expanded
    to every instance again (9,300 x 5,000 held the daemon's one loop 4-8 s, a ping
    as long). Each distinct name is now resolved once, whichever command it is (the
    cost is measured, not asserted here: see the commit); this checks what the
    answer must still be: every instance once, in the order first named, a ping
    sent meanwhile answered; the same with instance 0 removed (the NAME is then
    found by the definitions' index, not a walk each)."""
    n, copies = 2000, 10000
    d = Daemon(procs, tmp_path, "[evmon]\n")
    r = d.ctl("add", "--no-start", "-n", n, "big", "--", HELPER, "pause", timeout=120)
    assert r.returncode == 0, r

    def send(s, obj):
        s.sendall(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    def cheap(obj):
        """obj's reply, and a ping sent on another connection right after it"""
        with d.connect(timeout=60) as s, d.connect(timeout=60) as p:
            send(s, obj)
            send(p, {"cmd": "ping"})
            assert json.loads(read_line(p))["ok"]
            return json.loads(read_line(s))

    insts = [f"big:{k}" for k in range(n)]
    r = cheap({"cmd": "status", "names": ["big"] * copies})
    assert r["ok"] and [s["name"] for s in r["services"]] == insts, str(r)[:300]
    r = cheap({"cmd": "signal", "signal": "CONT", "names": ["big"] * copies})
    assert r["errors"] == [f"{i}: not running" for i in insts], str(r)[:300]
    r = cheap({"cmd": "stop", "names": ["big"] * copies})
    assert r["ok"], str(r)[:300]
    assert d.ctl("add", "--no-start", "-n", 3, "duo", "--", HELPER, "pause").returncode == 0
    assert d.ctl("remove", "big:0", "duo:0").returncode == 0
    # the first named first, then the others of NAME, each once
    r = cheap({"cmd": "status", "names": ["big:7"] + ["big"] * copies + ["big:3"]})
    assert [s["name"] for s in r["services"]] == ["big:7"] + insts[1:7] + insts[8:], str(r)[:300]
    r = d.request({"cmd": "status", "names": ["duo:2", "duo", "big:5", "duo", "big:5"]})
    assert [s["name"] for s in r["services"]] == ["duo:2", "duo:1", "big:5"], r
    r = d.request({"cmd": "status", "names": ["duo", "nope", "duo"]})
    assert r == {"ok": False, "error": "no such service: nope"}, r
    r = cheap({"cmd": "remove", "names": ["big"] * copies})
    assert r["ok"] and r["removed"] == insts[1:], str(r)[:300]
    r = d.request({"cmd": "status", "names": ["big"]})
    assert r == {"ok": False, "error": "no such service: big"}, r
    d.stop()


def test_a_subscriber_that_shuts_its_writing_side_still_gets_its_events(procs, tmp_path):
    """{"cmd":"events"} then shutdown(SHUT_WR) (what `printf ... | nc -N` does): the
    subscriber still gets the events, as a `logs -f` does (it was answered and hung up
    on), a re-exec's new image too; its connection ends when it closes for good."""
    d = pause_daemon(procs, tmp_path, idle="1s")
    s = d.connect()
    s.sendall(b'{"cmd":"events","names":["web"]}\n')
    s.shutdown(socket.SHUT_WR)
    r = LineReader(s)
    assert r.next()["ok"]
    time.sleep(1.5)  # past idle_timeout too: a subscriber is never idle
    assert d.ctl("restart", "web").returncode == 0
    ev = r.next(timeout=30)
    assert ev["event"] == "state" and ev["service"] == "web", ev
    assert clients(d) == 2
    assert d.ctl("reexec").returncode == 0  # carried over too (it was dropped unsaid)
    assert d.ctl("restart", "web").returncode == 0
    while (ev := r.next(timeout=30))["event"] != "state":
        pass
    assert ev["service"] == "web", ev
    s.close()
    wait_for(lambda: clients(d) == 1, what="the subscriber's connection closed with it")
    d.stop()


def test_a_subscribers_own_big_reply_is_not_events_it_failed_to_read(procs, tmp_path):
    """An events subscriber (client_buffer = 4k) asks for the status of 1,500 services, a
    reply bigger than its socket takes, then an event comes while the reply is still
    unsent: it is kept, and gets the reply then the event. The reply counted as unread
    events, and the subscriber was dropped ("bytes of events not read"): `ctl wait '*'`
    against 15,000 services failed 3 runs in 10."""
    d = Daemon(procs, tmp_path, """
[evmon]
client_buffer = 4k

[service:w]
command = sleep 400261
instances = 1500
start_secs = 0

[service:x]
command = HELPER pause
start_secs = 0
""")
    wait_for(lambda: len(d.status()) == 1501 and all(s["state"] == "running" for s in d.status().values()),
             timeout=60 * SLOW, what="1501 running")
    s = d.connect(timeout=60)
    s.sendall(b'{"cmd":"events","names":["x"]}\n')
    r = LineReader(s)
    assert r.next()["ok"]
    s.sendall(b'{"cmd":"status","id":"big"}\n')
    time.sleep(0.5)  # the reply is made, more of it than the socket takes
    assert d.ctl("restart", "x").returncode == 0
    reply = r.next(timeout=30)
    assert reply.get("id") == "big" and len(reply["services"]) == 1501, str(reply)[:200]
    ev = r.next(timeout=30)
    assert ev["event"] == "state" and ev["service"] == "x", ev
    assert "bytes of events not read" not in d.log()
    s.close()
    d.stop()


def test_an_id_comes_back_as_sent_or_the_request_is_refused(procs, tmp_path):
    """"id" is any JSON value, sent back in the reply; a number beyond a double's
    range (1e999, also inside an array or object) came back as null, which is not what
    was sent (nor told from an id of null): the request is refused naming "id", nothing
    is done, and the connection serves the next one."""
    d = pause_daemon(procs, tmp_path)
    pid = d.status("web")["web"]["pid"]
    with d.connect() as s:
        r = LineReader(s)
        for idv in ("x", 7, 1.5, -2, None, [1, {"a": "b"}], {"k": [True, 0.25]}):
            s.sendall(json.dumps({"cmd": "ping", "id": idv}).encode() + b"\n")
            got = r.next()
            assert got["ok"] and "id" in got and got["id"] == idv, (idv, got)
        for idv in ("1e999", "-1e999", "[1,1e999]", '{"a":{"b":-1E+400}}'):
            s.sendall(b'{"cmd":"stop","names":["web"],"id":%s}\n' % idv.encode())
            got = r.next()
            assert got["ok"] is False and "id" not in got, (idv, got)
            assert got["error"].startswith('bad "id": a number beyond a double\'s range'), got
        s.sendall(b'{"cmd":"ping","id":2}\n')
        assert r.next()["id"] == 2
    st = d.status("web")["web"]
    assert st["state"] == "running" and st["pid"] == pid, st
    d.stop()


def test_a_request_nested_too_deep_is_told_so(procs, tmp_path):
    """1,000 arrays and objects inside one another are read (cJSON's limit); one more
    was answered "malformed JSON": it says it is nested too deep, and the limit.
    Brackets inside strings (escaped quotes included) are not nesting."""
    d = pause_daemon(procs, tmp_path)

    def ask(s, line):
        s.sendall(line + b"\n")
        return json.loads(read_line(s))

    with d.connect() as s:
        deep = b'{"cmd":"ping","x":' + b"[" * 999 + b"]" * 999 + b"}"
        assert ask(s, deep)["ok"] is True
        deeper = b'{"cmd":"ping","x":' + b"[" * 1000 + b"]" * 1000 + b"}"
        r = ask(s, deeper)
        assert r == {"ok": False, "error": "nested too deep (at byte 1017): at most 1000 "
                                           "arrays and objects inside one another"}, r
        r = ask(s, b'{"cmd":"ping","x":[{"y":' + b"[" * 1000 + b"]" * 1000 + b"}]}")
        assert r["ok"] is False and r["error"].startswith("nested too deep (at byte 1021)"), r
        # strings: not nesting, an escaped quote does not end one, an escaped backslash does
        s1 = b'{"cmd":"ping","x":"' + b"[{" * 2000 + b'\\"' + b"[" * 2000 + b'"}'
        assert ask(s, s1)["ok"] is True
        s2 = b'{"cmd":"ping","x":["\\\\",' + b"[" * 999 + b"]" * 999 + b"]}"
        r = ask(s, s2)
        assert r["ok"] is False and r["error"].startswith("nested too deep"), r
        assert ask(s, b'{"cmd":"ping","id":3}')["id"] == 3
    d.stop()


def test_a_second_subscription_on_a_connection_is_refused(procs, tmp_path):
    """A connection follows one selection: a second "events" on it replaced the first's
    names in silence (ok: true), so a subscriber of web got every service's events. It is
    refused, and the first subscription goes on as it was."""
    d = Daemon(procs, tmp_path, """
[service:web]
command = HELPER pause
start_secs = 0

[service:other]
command = HELPER pause
start_secs = 0
""")
    for n in ("web", "other"):
        d.wait_state(n, "running")
    s = d.connect()
    r = LineReader(s)
    s.sendall(b'{"cmd":"events","names":["web"]}\n')
    assert r.next() == {"ok": True, "events": True}
    for again in (b'{"cmd":"events"}', b'{"cmd":"events","names":["other"]}',
                  b'{"cmd":"events","names":["web"],"brief":true}'):
        s.sendall(again + b"\n")
        got = r.next()
        assert got == {"ok": False, "error": "this connection follows events already: one "
                                             "subscription a connection (open another for "
                                             "other names)"}, (again, got)
    # other's events come first if it follows them now: the first one seen is web's
    assert d.ctl("restart", "other").returncode == 0
    assert d.ctl("restart", "web").returncode == 0
    ev = r.next(timeout=30)
    assert ev["event"] == "state" and ev["service"] == "web", ev
    s.close()
    d.stop()
