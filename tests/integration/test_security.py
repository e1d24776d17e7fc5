"""Security audit of `evmon daemon`, one test per point (docs/RELIABILITY.md):
who may use the control socket, how a service drops privileges, which fds
a service gets, that nothing runs through a shell by accident, and that no
request can make the daemon's memory or fd table grow without bound.

(test_daemon_load.py already covers a root daemon's socket against a client
run as nobody, 100 concurrent clients, an events subscriber that never reads
and the basic malformed requests; these tests go further.)"""
import json
import os
import subprocess
import re
import socket
import threading

import pytest

from conftest import EVMON, HELPER, SAN, requires_root, wait_for
from daemon_util import SLOW, Daemon, LineReader, read_line
from reliability_util import (ODD_UID, VALGRIND, OpenDir, PrefixedDaemon, fds, ppid_of, rss_kb,
                              status_fields)

pytestmark = requires_root("other uids, setuid services")

PAUSE = """
[service:web]
command = HELPER pause
start_secs = 0
stop_timeout = 2
"""


def as_uid(uid, gid=None):
    gid = uid if gid is None else gid
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]


def ctl_as(d, uid, *args):
    return d.procs.run(as_uid(uid) + [EVMON, "ctl", "-S", d.sock] + list(args), timeout=30 * SLOW)


def test_socket_is_private_to_the_daemons_user(procs):
    """A daemon run as an ordinary uid, even with umask 000: socket and lock file are
    0600 and its own; root and that uid are served, any other uid is refused by
    SO_PEERCRED even once the socket's mode is opened up."""
    with OpenDir(owner=ODD_UID) as top:
        prefix = ["sh", "-c", 'umask 000; exec "$@"', "sh"] + as_uid(ODD_UID)
        d = PrefixedDaemon(procs, top, PAUSE, prefix=prefix)
        d.wait_state("web", "running")
        for path in (d.sock, d.sock + ".lock"):
            st = os.stat(path)
            assert (st.st_uid, st.st_mode & 0o777) == (ODD_UID, 0o600), path
        assert d.ctl("status").returncode == 0  # root
        assert ctl_as(d, ODD_UID, "status").returncode == 0  # the daemon's own uid
        r = ctl_as(d, 65534, "status")
        assert r.returncode == 3 and "Permission denied" in r.stderr, r
        os.chmod(d.sock, 0o666)
        # ctl itself refuses a server of another uid (issue 18.12); a raw client is refused by the daemon
        r = ctl_as(d, 65534, "status")
        assert r.returncode == 3 and "refusing to talk to it" in r.stderr, r
        raw = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);"
               "print(s.makefile().readline())")  # the refusal comes unasked
        r = d.procs.run(as_uid(65534) + ["/usr/bin/python3", "-c", raw, d.sock], timeout=30 * SLOW)
        assert "permission denied" in r.stdout, r
        assert "uid 65534 is neither root nor the daemon's uid" in d.log()
        # a refused client changed nothing, and the daemon still serves
        assert d.status()["web"]["state"] == "running"
        d.stop()


def strace_order(path, pid):
    """The credential syscalls of pid in an strace -f log, in order, with results."""
    calls = []
    for line in open(path):
        m = re.match(r"(\d+)\s+(set\w+)\(.*\)\s+=\s+(-?\d+)", line)
        if m and int(m.group(1)) == pid:
            calls.append((m.group(2), int(m.group(3))))
    return calls


@requires_root("a root daemon's env_file checks")
@pytest.mark.parametrize("layout", ["safe", "open-dir", "others-link", "link-to-open-dir"])
def test_root_reads_an_env_file_only_where_root_alone_can_change_it(procs, tmp_path, layout):
    """A root daemon reads an env_file only if root alone can change it, and a file's owner
    and mode were all it looked at: a user who may write the directory on the way put a
    symlink there to one of root's secrets (0600), and the service (run as that user) got
    it in its environment. Now every name on the way, symlinks followed hop by hop, must be
    root's and every directory root's alone (or sticky); a symlink of root's is fine."""
    secret = tmp_path / "secret.env"
    secret.write_text("TOKEN=s3cr3t\n")
    os.chmod(secret, 0o600)
    top = tmp_path / "pub"
    top.mkdir()
    env = top / "app.env"
    why = None
    if layout == "safe":  # a symlink of root's, in root's directories
        env.symlink_to(secret)
    elif layout == "open-dir":
        os.chmod(top, 0o777)
        env.symlink_to(secret)
        why = rf"{re.escape(str(top))} is writable by others \(mode 0777\)"
    elif layout == "others-link":  # sticky, as /tmp: the link is another user's
        os.chmod(top, 0o1777)
        env.symlink_to(secret)
        os.lchown(env, ODD_UID, ODD_UID)
        why = rf"{re.escape(str(env))} is owned by uid {ODD_UID}"
    else:  # root's link, to a file in a directory others may write
        hole = tmp_path / "hole"
        hole.mkdir()
        os.chmod(hole, 0o777)
        (hole / "x.env").symlink_to(secret)
        env.symlink_to(hole / "x.env")
        why = rf"{re.escape(str(hole))} is writable by others \(mode 0777\)"
    d = Daemon(procs, tmp_path, f"[service:a]\ncommand = HELPER env TOKEN pause\nenv_file = {env}\n",
               start=False)
    r = procs.run([EVMON, "daemon", "--check", "-c", d.cfg], timeout=30 * SLOW)
    if why is None:
        assert r.returncode == 0, r.stderr
        return
    assert r.returncode != 0, r
    assert re.search(rf"env_file: {re.escape(str(env))}: {why}: a root daemon reads only an "
                     r"env_file that root alone can change", r.stderr), r.stderr


@requires_root("a root daemon's env_file checks")
def test_a_relative_env_file_path_is_checked_from_the_root(procs, tmp_path):
    """A config given by a relative path names its env_file relative to it: the walk took
    the working directory on trust, an open one too."""
    top = tmp_path / "open"
    (top / "sub").mkdir(parents=True)
    os.chmod(top, 0o777)
    (top / "sub" / "app.env").write_text("A=1\n")
    (top / "d.ini").write_text("[service:a]\ncommand = /bin/true\nenv_file = sub/app.env\n")
    r = procs.run([EVMON, "daemon", "--check", "-c", "d.ini"], cwd=top, timeout=30 * SLOW)
    assert r.returncode != 0 and f"{top} is writable by others (mode 0777)" in r.stderr, r


@pytest.mark.parametrize("mode,owner,why", [
    (0o644, 0, None),
    (0o600, 0, None),
    (0o664, 0, r"is writable by its group \(mode 0664\)"),
    (0o646, 0, r"is writable by every user \(mode 0646\)"),
    (0o644, ODD_UID, rf"is owned by uid {ODD_UID}, not root"),
])
def test_root_refuses_a_config_others_can_change(procs, tmp_path, mode, owner, why):
    """Whoever can change a root daemon's config runs commands as root: the daemon,
    --check and a reload refuse a config that is not root's alone (file:0: why)."""
    d = Daemon(procs, tmp_path, "[service:a]\ncommand = HELPER pause\n", start=False)
    cfg = d.cfg
    os.chmod(cfg, mode)
    os.chown(cfg, owner, 0)
    r = procs.run([EVMON, "daemon", "--check", "-c", cfg], timeout=30 * SLOW)
    if why is None:
        assert r.returncode == 0, r.stderr
        return
    assert r.returncode != 0
    assert re.search(rf"{re.escape(cfg)}: {why}: a root daemon runs only a config "
                     r"that root alone can change", r.stderr), r.stderr
    # the same file, made safe, runs; made unsafe again, a reload keeps the old config
    os.chown(cfg, 0, 0)
    os.chmod(cfg, 0o644)
    d.start()
    d.wait_state("a", "running")
    d.write("[service:b]\ncommand = HELPER pause\n")
    os.chmod(cfg, mode)
    os.chown(cfg, owner, 0)
    assert d.ctl("reload").returncode != 0
    wait_for(lambda: re.search(why, d.log()), what="the reload refused")
    assert set(d.status()) == {"a"}
    d.stop()


SHADOW = "root:*:20228:0:99999:7:::\n"  # what a root secret's lines look like


@pytest.mark.parametrize("layout", ["safe", "open-dir", "others-link", "open-main-dir"])
def test_root_reads_a_config_only_where_root_alone_can_change_it(procs, tmp_path, layout):
    """The config and its includes follow env_file's rule: only the file's owner and mode
    were looked at, so a user who may write a directory on the way to an include (0777,
    not sticky) put a symlink there to /etc/shadow, and --check and a reload said its
    lines in their mistakes ("got 'root:*:...'"). Now every name on the way, symlinks
    followed, must be root's and every directory root's alone (or sticky): else the file
    is refused, naming the directory or the link and why, and nothing of it is read."""
    secret = tmp_path / "shadow"
    secret.write_text(SHADOW)
    os.chmod(secret, 0o600)
    top = tmp_path / "conf"
    top.mkdir()
    ww = top / "ww"
    ww.mkdir()
    inc = ww / "inc.ini"
    inc.symlink_to(secret)
    main = top / "m.ini"
    main.write_text("[evmon]\ninclude = ww/inc.ini\n\n[service:a]\ncommand = /bin/true\n")
    why = None
    if layout == "open-dir":
        os.chmod(ww, 0o777)
        why = rf"{re.escape(str(ww))} is writable by others \(mode 0777\)"
    elif layout == "others-link":  # sticky, as /tmp: the link is another user's
        os.chmod(ww, 0o1777)
        os.lchown(inc, ODD_UID, ODD_UID)
        why = rf"{re.escape(str(inc))} is owned by uid {ODD_UID}"
    elif layout == "open-main-dir":  # the main file's own directory
        os.chmod(top, 0o777)
        why = rf"{re.escape(str(top))} is writable by others \(mode 0777\)"
    r = procs.run([EVMON, "daemon", "--check", "-c", str(main)], timeout=30 * SLOW)
    assert r.returncode != 0, r
    if why is None:  # root's own link in root's directories: read (shadow is no config)
        assert "root:*:20228" in r.stderr, r.stderr
        return
    assert "root:*" not in r.stderr, r.stderr
    where = f"{re.escape(str(main))}:2: include: {re.escape(str(inc))}: " \
        if layout != "open-main-dir" else f"{re.escape(str(main))}: "
    assert re.search(rf"{where}{why}: a root daemon runs only a config that root alone can "
                     r"change", r.stderr), r.stderr


def test_a_reload_refuses_an_include_planted_in_an_open_directory(procs, tmp_path):
    """A running root daemon's reload: an include that became a symlink to a secret in a
    directory others may write is refused, the old config kept, and the secret's lines are
    neither in the reply nor in the daemon's log."""
    secret = tmp_path / "shadow"
    secret.write_text(SHADOW)
    os.chmod(secret, 0o600)
    d = Daemon(procs, tmp_path, "[evmon]\ninclude = ww/*.ini\n\n[service:a]\ncommand = HELPER pause\n",
               start=False)
    ww = tmp_path / "ww"
    ww.mkdir()
    d.start()
    d.wait_state("a", "running")
    os.chmod(ww, 0o777)
    (ww / "inc.ini").symlink_to(secret)
    r = d.ctl("reload")
    assert r.returncode != 0, r
    assert f"{ww} is writable by others (mode 0777)" in r.stdout + r.stderr, r
    assert "root:*" not in r.stdout + r.stderr + d.log(), r
    assert set(d.status()) == {"a"}
    d.stop()


def test_an_env_file_mistake_does_not_say_the_files_text(procs, tmp_path):
    """`ctl add -s env_file=/etc/shadow`: the mistake said the file's first line ("'root:*:...'
    is not KEY=VALUE"), so an error told what the daemon could read and its client maybe
    not. Now it says the line and what is wrong with it, not its text."""
    secret = tmp_path / "shadow"
    secret.write_text(SHADOW)
    os.chmod(secret, 0o600)
    d = Daemon(procs, tmp_path, PAUSE)
    d.wait_state("web", "running")
    r = d.ctl("add", "-s", f"env_file={secret}", "peek", "--", "/bin/true")
    assert r.returncode != 0, r
    out = r.stdout + r.stderr
    assert f"{secret}: line 1: not KEY=VALUE: no '=' on the line" in out, r
    assert "root:*" not in out + d.log(), r
    assert set(d.status()) == {"web"}
    d.stop()


@pytest.mark.parametrize("user,group,want_gid,want_groups", [
    ("nobody", None, 65534, {65534}),
    (str(ODD_UID), str(ODD_UID + 1), ODD_UID + 1, {ODD_UID + 1}),
])
def test_privilege_drop(procs, tmp_path, user, group, want_gid, want_groups):
    """setgroups, then setgid, then setuid (the only order that works: after setuid
    the others are refused, and without setgroups root's groups would stay), seen
    with strace; and the result in /proc/PID/status: every uid and gid field, the
    supplementary groups, and no capabilities left."""
    if not os.path.exists("/usr/bin/strace"):
        pytest.skip("no strace")
    uid = 65534 if user == "nobody" else int(user)
    trace = tmp_path / "strace.log"
    cfg = f"""
[service:low]
command = HELPER pause
user = {user}
{"group = " + group if group else ""}
start_secs = 0
stop_timeout = 2
"""
    # LeakSanitizer cannot run under ptrace
    env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
    d = PrefixedDaemon(procs, tmp_path, cfg, env=env, prefix=[
        "strace", "-f", "-qq", "-o", str(trace),
        "-e", "trace=setgroups,setgid,setuid,setresgid,setresuid,setregid,setreuid,setfsuid,setfsgid"])
    st = d.wait_state("low", "running")
    pid = st["pid"]
    f = status_fields(pid)
    assert f["Uid"].split() == [str(uid)] * 4, f["Uid"]
    assert f["Gid"].split() == [str(want_gid)] * 4, f["Gid"]
    assert {int(g) for g in f["Groups"].split()} == want_groups, f["Groups"]
    for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(f[cap], 16) == 0, (cap, f[cap])
    calls = strace_order(trace, pid)
    names = [c for c, _ in calls]
    assert all(r == 0 for _, r in calls), calls
    kinds = ["groups" if "groups" in n else "uid" if "uid" in n else "gid" for n in names]
    assert kinds and kinds.index("groups") < kinds.index("gid") < kinds.index("uid"), calls
    assert "groups" not in kinds[kinds.index("uid"):] and "gid" not in kinds[kinds.index("uid"):], calls
    d.stop()


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@requires_root("to run the daemon as nobody")
def test_a_daemon_not_root_runs_a_service_as_its_own_user(procs):
    """A daemon not root asked for its own user or group (a container running as app,
    with user = app) sets nothing: the service runs (it tried setgroups, refused with
    EPERM at every start, and went fatal, though --check --strict said OK)."""
    with OpenDir(owner=65534) as top:
        cfg = """
[service:me]
command = HELPER pause
user = nobody
start_secs = 0

[service:grp]
command = HELPER pause
group = nogroup
start_secs = 0
"""
        d = PrefixedDaemon(procs, top, cfg, prefix=NOBODY, start=False)
        os.chmod(d.cfg, 0o644)
        r = procs.run(NOBODY + [EVMON, "daemon", "--check", "--strict", "-c", d.cfg], timeout=20)
        assert r.returncode == 0 and "OK: 2 services" in r.stdout, (r.stdout, r.stderr)
        d.start()
        r = d.ctl("add", "-u", "65534", "-s", "group=65534", "-s", "start_secs=0", "added", "--",
                  HELPER, "pause")
        assert r.returncode == 0, (r.stdout, r.stderr)
        for name in ("me", "grp", "added"):
            f = status_fields(d.wait_state(name, "running")["pid"])
            assert f["Uid"].split() == ["65534"] * 4 and f["Gid"].split() == ["65534"] * 4, f
        assert "Operation not permitted" not in d.log(), d.log()
        d.stop()


@requires_root("to run the daemon as nobody")
def test_a_daemon_not_root_refuses_a_user_whose_groups_it_cannot_set(procs):
    """Its own uid, but supplementary groups other than the daemon's: it cannot set
    them, which --check says (a mistake, as another user is), not a start failing with
    EPERM again and again. A group alone (no user's groups to set) is its own gid."""
    with OpenDir(owner=65534) as top:
        d = PrefixedDaemon(procs, top, """
[service:me]
command = HELPER pause
user = nobody

[service:grp]
command = HELPER pause
group = nogroup
""", start=False)
        os.chmod(d.cfg, 0o644)
        extra = ["setpriv", "--reuid=65534", "--regid=65534", f"--groups={ODD_UID}"]
        r = procs.run(extra + [EVMON, "daemon", "--check", "-c", d.cfg], timeout=20)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert f"{d.cfg}:4: user: the daemon runs as uid 65534 and cannot set supplementary " \
            f"groups: user nobody's groups differ from the daemon's (it has group {ODD_UID} " \
            "besides)" in r.stderr, r.stderr
        assert "grp" not in r.stderr and ":8:" not in r.stderr, r.stderr


@pytest.mark.parametrize("mode", ["direct", "helper"])
def test_no_daemon_fd_reaches_a_service(procs, tmp_path, mode):
    if mode == "helper" and VALGRIND:
        pytest.skip("valgrind ends the process at the spawn helper's clone(CLONE_VM)")
    """With clients connected, an events subscriber, log files open and other
    services running, every service process has exactly fds 0, 1 and 2; both for
    spawns from the daemon and through the spawn helper."""
    logs = tmp_path / "logs"
    logs.mkdir()
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}
start_secs = 0
stop_timeout = 2

[service:a]
command = HELPER pause
stdout = log
stderr = log

[service:b]
command = HELPER pause
instances = 3

[service:c]
command = HELPER pause
stdout = null
""", env=dict(os.environ, EVM_SPAWN_MODE=mode))
    names = ["a", "b:0", "b:1", "b:2", "c"]
    wait_for(lambda: all(s["state"] == "running" for s in d.status().values()), what="running")
    clients = [d.connect() for _ in range(5)]
    sub = d.connect()
    sub.sendall(b'{"cmd":"events"}\n')
    rd = LineReader(sub)
    assert rd.next()["ok"]
    # new processes while all of that is open
    r = d.request({"cmd": "restart", "names": ["*"], "wait": True}, timeout=30)
    assert r["ok"], r
    daemon_fds = set(fds(d.p.pid).values())
    for n in names:
        pid = d.status(n)[n]["pid"]
        # (an ASan build of the helper opens files of its own while it starts up)
        wait_for(lambda: sorted(fds(pid)) == [0, 1, 2], what=f"{n}: fds {fds(pid)}")
        got = fds(pid)
        assert got[0] == "/dev/null"
        # nothing the daemon holds but what the config gave it (its own stdout, a log file)
        for fd in (1, 2):
            assert got[fd] in daemon_fds or got[fd].startswith(str(logs)) or got[fd] == "/dev/null", (n, got)
    for s in clients + [sub]:
        s.close()
    d.stop()


def test_no_command_goes_through_a_shell(procs, tmp_path):
    # shell syntax is refused, not passed to a shell nobody asked for
    for cmd in ["HELPER print a; touch x", "HELPER print a | cat", "HELPER print $(id)",
                "HELPER print `id`", "HELPER print a > f", "HELPER print $HOME"]:
        d = Daemon(procs, tmp_path, f"[service:x]\ncommand = {cmd}\n", start=False)
        r = procs.run([EVMON, "daemon", "--check", "-c", d.cfg], timeout=20)
        assert r.returncode == 1 and "unquoted shell syntax" in r.stderr, (cmd, r.stderr)
    # quoted, the same characters reach the program as they are, with no shell between
    marker = tmp_path / "pwned"
    d = Daemon(procs, tmp_path, f"""
[service:lit]
command = HELPER argv '$HOME' '*' 'a; touch {marker}' "`id`" '$(id)' '>x'
restart = never
start_secs = 0
""")
    wait_for(lambda: "[2] >x" in d.log(), what="the service's argv")
    for word in ["$HOME", "*", f"a; touch {marker}", "`id`", "$(id)", ">x"]:
        assert f"[{len(word)}] {word}\n" in d.log(), word
    assert not marker.exists()
    # an executable without #! is not handed to /bin/sh (execvp would): exec fails
    script = tmp_path / "noshebang"
    script.write_text(f"touch {marker}\n")
    script.chmod(0o755)
    r = d.request({"cmd": "add", "wait": True, "timeout": 10,
                   "service": {"name": "script", "command": [str(script)], "restart": "never",
                               "start_retries": 0}})
    st = d.status("script")["script"]
    assert "Exec format error" in st.get("error", ""), (r, st)
    assert not marker.exists()
    # ctl add with an argv array: each word as it is
    r = d.request({"cmd": "add", "wait": True, "service": {
        "name": "arr", "command": [HELPER, "argv", "x; touch " + str(marker), "$(id)"],
        "restart": "never", "start_secs": 0}})
    wait_for(lambda: f"[{len('x; touch ' + str(marker))}] x; touch {marker}" in d.log(), what="argv")
    assert not marker.exists()
    # the process the daemon started is the program itself, its child
    d2 = Daemon(procs, tmp_path, PAUSE, name="d2")
    pid = d2.wait_state("web", "running")["pid"]
    assert os.readlink(f"/proc/{pid}/exe") == os.path.realpath(HELPER)
    assert ppid_of(pid) == d2.p.pid
    d2.stop()
    d.stop()


def test_requests_cannot_exhaust_memory_or_fds(procs, tmp_path):
    """Oversized lines, deep nesting, floods of pipelined requests from a client that
    does not read, and more connections than max_clients: the daemon answers or
    refuses, its resident memory and fd count stay bounded, and it keeps serving."""
    d = Daemon(procs, tmp_path, """
[evmon]
max_clients = 16
# the client that never reads must keep its slot for the whole test, however slow the machine
idle_timeout = 1h

[service:web]
command = HELPER pause
start_secs = 0
stop_timeout = 2
""")
    d.wait_state("web", "running")
    for _ in range(20):
        d.status()
    rss0, fd0 = rss_kb(d.p.pid), len(fds(d.p.pid))

    # 64 MiB in one line: refused, and that connection closed (test_control_hostile.py)
    big = d.connect(timeout=120)
    chunk = b"x" * (1 << 20)

    def flood():
        try:
            for _ in range(64):
                big.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
    t = threading.Thread(target=flood)
    t.start()
    r = LineReader(big).next(timeout=120)
    assert not r["ok"] and "longer than 65536 bytes" in r["error"], r
    t.join()
    big.close()

    s = d.connect(timeout=120)
    rd = LineReader(s)

    # nesting far deeper than the parser allows: an error, not a stack overflow
    s.sendall(b"[" * 60000 + b"\n")
    r = rd.next()
    assert not r["ok"] and "nested too deep" in r["error"], r
    s.sendall(b'{"cmd":"status","names":' + b"[" * 30000 + b"]" * 30000 + b"}\n")
    assert not rd.next()["ok"]

    # 200,000 pipelined requests from a client that does not read its answers
    mute = d.connect()
    mute.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    mute.setblocking(False)
    sent = 0
    burst = b'{"cmd":"status"}\n' * 1000
    for _ in range(200):
        try:
            sent += mute.send(burst)
        except BlockingIOError:
            break  # the daemon stopped reading us: our own socket buffer is full
    assert d.ctl("ping").returncode == 0  # everyone else is served meanwhile

    # more connections than max_clients: the extra ones are refused and closed
    conns = [d.connect() for _ in range(40)]
    refused = 0
    for c in conns:
        try:
            c.sendall(b'{"cmd":"ping"}\n')
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused: the daemon said why, then closed
        r = json.loads(read_line(c))
        refused += not r["ok"] and r["error"] == "too many clients"
    assert refused >= 40 + 2 - 16, refused  # s and mute hold two of the 16 slots
    assert len(fds(d.p.pid)) <= fd0 + 16 + 2
    for c in conns:
        c.close()

    rss1, fd1 = rss_kb(d.p.pid), len(fds(d.p.pid))
    bound = 64 * 1024 if SAN else 16 * 1024
    assert rss1 - rss0 < bound, f"RSS {rss0} kB -> {rss1} kB"
    mute.close()
    s.close()
    wait_for(lambda: len(fds(d.p.pid)) <= fd0, what="the daemon's fds back to where they were")
    assert d.ctl("status").returncode == 0
    print(f"\nrequests: RSS {rss0} -> {rss1} kB, fds {fd0} -> {fd1} -> {len(fds(d.p.pid))}")
    d.stop()


# ---------------------------------------------------------------- issue 18.12

def default_env(tmpdir):
    """An ordinary user's environment with no socket chosen: the default applies."""
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "EVMON_SOCKET")}
    env["TMPDIR"] = str(tmpdir)
    return env


def test_default_socket_lives_in_a_private_directory(procs):
    """Without XDG_RUNTIME_DIR a user's daemon makes TMPDIR/evmon-UID (0700, its own)
    and serves evmon.sock there; ctl finds it with no -S."""
    with OpenDir() as top:
        os.chmod(top, 0o1777)
        cfg = top / "d.ini"
        cfg.write_text(PAUSE.replace("HELPER", HELPER))
        env = default_env(top)
        p = procs.spawn(as_uid(ODD_UID) + [EVMON, "daemon", "-c", str(cfg)], env=env)
        home = top / f"evmon-{ODD_UID}"
        wait_for(lambda: (home / "evmon.sock").exists() or p.poll() is not None,
                 timeout=20 * SLOW, what="the socket")
        assert p.poll() is None
        st = os.lstat(home)
        assert (st.st_uid, st.st_mode & 0o7777) == (ODD_UID, 0o700)
        r = procs.run(as_uid(ODD_UID) + [EVMON, "ctl", "ping"], env=env, timeout=30 * SLOW)
        assert r.returncode == 0 and "evmon daemon" in r.stdout, r
        r = procs.run(as_uid(ODD_UID) + [EVMON, "ctl", "shutdown"], env=env, timeout=30 * SLOW)
        assert r.returncode == 0, r
        assert p.wait(timeout=30 * SLOW) == 0


@pytest.mark.parametrize("owner,mode", [(65534, 0o700), (ODD_UID, 0o777), (ODD_UID, 0o750)])
def test_a_squatted_socket_directory_is_refused(procs, owner, mode):
    """Another user's TMPDIR/evmon-UID (or one others can enter or write): the daemon
    refuses to start and ctl refuses to talk there, both saying why."""
    with OpenDir() as top:
        os.chmod(top, 0o1777)
        cfg = top / "d.ini"
        cfg.write_text(PAUSE.replace("HELPER", HELPER))
        home = top / f"evmon-{ODD_UID}"
        home.mkdir()
        os.chown(home, owner, owner)
        os.chmod(home, mode)
        env = default_env(top)
        r = procs.run(as_uid(ODD_UID) + [EVMON, "daemon", "-c", str(cfg)], env=env, timeout=30 * SLOW)
        assert r.returncode != 0 and "refusing to use it" in r.stderr, r
        assert str(home) in r.stderr
        assert not (home / "evmon.sock").exists()
        r = procs.run(as_uid(ODD_UID) + [EVMON, "daemon", "--check", "-c", str(cfg)], env=env,
                      timeout=30 * SLOW)
        assert "refusing to use it" in r.stderr, r
        r = procs.run(as_uid(ODD_UID) + [EVMON, "ctl", "status"], env=env, timeout=30 * SLOW)
        assert r.returncode == 3 and "refusing to use it" in r.stderr, r
        # a state question's unknown (4), as with no daemon: 3 read as "not running"
        for args in (["is-active", "x"], ["status", "x"]):
            r = procs.run(as_uid(ODD_UID) + [EVMON, "ctl"] + args, env=env, timeout=30 * SLOW)
            assert r.returncode == 4 and "refusing to use it" in r.stderr, (args, r)


class Impostor:
    """A server on path run as uid (a thread with a forked listener is not possible
    for another uid, so a small Python child); records what it received."""

    CODE = r"""
import os, socket, sys
path, got, reply = sys.argv[1], sys.argv[2], sys.argv[3].encode("latin-1")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
os.chmod(path, 0o777)
s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    data = b""
    try:
        while not data.endswith(b"\n"):
            b = c.recv(65536)
            if not b:
                break
            data += b
    except OSError:
        pass
    with open(got, "ab") as f:
        f.write(data)
    try:
        c.sendall(reply)
    except OSError:
        pass
    c.close()
"""

    def __init__(self, procs, top, uid, reply):
        self.path = str(top / "fake.sock")
        self.got = top / "got"
        self.got.touch()
        os.chmod(self.got, 0o666)
        self.p = procs.spawn(as_uid(uid) + ["/usr/bin/python3", "-c", self.CODE, self.path,
                                            str(self.got), reply],
                             stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "ready"


def test_ctl_sends_nothing_to_an_impostor(procs):
    """A socket served by another uid (not root), ctl run as an ordinary user: ctl refuses before sending a byte, so
    an add's secrets never leave it."""
    with OpenDir() as top:
        os.chmod(top, 0o1777)
        fake = Impostor(procs, top, 65534, '{"ok":true,"services":[]}\n')
        r = procs.run(as_uid(ODD_UID) + [EVMON, "ctl", "-S", fake.path, "add", "-e",
                                         "API_TOKEN=s3cret", "x", "--", "/bin/true"], timeout=30 * SLOW)
        assert r.returncode == 3 and "refusing to talk to it" in r.stderr, r
        assert "uid 65534" in r.stderr
        assert fake.got.read_bytes() == b""


ESC = '\x1b]0;owned\x07\x1b[2J\x9b31m'


@pytest.mark.parametrize("args,reply", [
    (["ping"], '{"ok":false,"error":%s}\n' % json.dumps(ESC)),
    (["status"], '{"ok":true,"services":[{"name":%s,"state":"running","error":%s}]}\n'
     % (json.dumps("web" + ESC), json.dumps(ESC))),
    (["start", "web"], '{"ok":true,"services":[{"name":"web","state":%s}]}\n' % json.dumps(ESC)),
    (["events"], '{"ok":true}\n{"event":"log","message":%s}\n' % json.dumps(ESC)),
    (["--json", "ping"], '{"ok":true,"version":"\x1b[2J\x07"}\n'),
    (["ping"], '{"ok":false,"error":"2J owned \x9b31m raw"}\n'),  # raw 8-bit CSI, not UTF-8
    (["--json", "ping"], '{"ok":true,"version":"2J owned \x9b31m \xc2\x9b"}\n'),
])
def test_ctl_escapes_control_characters_of_an_answer(procs, args, reply):
    """Whatever the server says (escaped in JSON or raw), ctl prints no control
    character: an escape sequence cannot retitle or clear the terminal."""
    with OpenDir() as top:
        fake = Impostor(procs, top, 0, reply)
        r = procs.run([EVMON, "ctl", "-S", fake.path, "-t", "0"] + args, timeout=30 * SLOW)
        out = r.stdout + r.stderr
        assert "owned" in out or "2J" in out, r
        bad = [c for c in out if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f]
        assert not bad, repr(out)
        # nor a byte that is no UTF-8 (a raw 0x9b is CSI to an 8-bit terminal): the harness
        # decodes with errors="replace"
        assert "\ufffd" not in out, repr(out)


def test_ctl_gives_up_on_a_line_without_end(procs):
    """A server that sends one line forever: ctl kept it all in memory (20 MB/s until
    the peer stopped), searching it again for each piece. It gives up at 256 MiB."""
    with OpenDir() as top:
        path = str(top / "endless.sock")
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(path)
        srv.listen(1)

        def serve():
            c, _ = srv.accept()
            c.recv(65536)
            chunk = b"x" * (1 << 20)
            try:
                for _ in range(400):
                    c.sendall(chunk)
            except OSError:
                pass
            c.close()
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        r = procs.run([EVMON, "ctl", "-S", path, "-t", "0", "ping"], timeout=60 * SLOW)
        assert r.returncode != 0 and "a line of over 256 MiB without its end" in r.stderr, r
        t.join(30)
        srv.close()
