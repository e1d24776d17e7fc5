"""Helpers for the `evmon daemon` / `evmon ctl` tests: start a daemon on a
config in the test's tmp_path, talk to it (ctl or raw JSON lines), and shut
it down checking that nothing it started is left."""
import json
import os
import pwd
import signal
import socket
import struct
import subprocess
import textwrap
import threading
import time

from conftest import EVMON, FAILURE_LOGS, HELPER, SLOW, children_of, proc_state, wait_for  # noqa: F401 (SLOW: for importers)


def alive(pid):
    """True if pid exists and is not a zombie."""
    return proc_state(pid) not in (None, "Z")


def ini(evmon=None, **services):
    """A config file's text: [evmon] with the keys of the dict evmon, then one
    [service:NAME] per keyword, its value the command or a dict of its keys
    (command first). A service gets start_secs = 0 (running as soon as it is
    spawned) unless it says otherwise. HELPER stands for the helper binary, as
    in any config given to Daemon."""
    def keys(d):
        return "".join(f"{k} = {v}\n" for k, v in d.items())
    parts = ["[evmon]\n" + keys(evmon)] if evmon else []
    for name, svc in services.items():
        svc = {"command": svc} if isinstance(svc, str) else dict(svc)
        svc.setdefault("start_secs", 0)
        parts.append(f"[service:{name}]\n" + keys(svc))
    return "\n".join(parts)


def stops_slowly(mark, name="ig", cgroup="no", extra="", stop_timeout=3):
    """A config of one service whose process (`sleep MARK`) ignores SIGTERM: each of its
    stops takes the whole stop_timeout (3 s), then SIGKILL. extra: more of its keys.
    A test whose stop must outlast a re-exec (its two checks of the binary) or a daemon's
    start gives 3 * SLOW: seconds under ASan on a slow host."""
    return f"""
[evmon]
cgroup = {cgroup}
[service:{name}]
command = sh -c 'trap "" TERM; exec sleep {mark}'
stop_timeout = {stop_timeout}
start_secs = 0
{extra}"""


class Daemon:
    def __init__(self, procs, tmp_path, config, args=(), name="d", start=True, env=None, cwd=None,
                 wrap=()):
        """wrap: a command that runs the daemon (e.g. prlimit and its options), exec'ing it."""
        self.procs = procs
        self.wrap = list(wrap)
        self.dir = tmp_path
        self.sock = str(tmp_path / f"{name}.sock")
        self.cfg = str(tmp_path / f"{name}.ini")
        self.logpath = str(tmp_path / f"{name}.log")
        FAILURE_LOGS.append(self.logpath)
        self.args = list(args)
        self.env = env
        self.cwd = cwd
        self.p = None
        self.write(config)
        if start:
            self.start()

    def write(self, config):
        with open(self.cfg, "w") as f:
            f.write(textwrap.dedent(config).replace("HELPER", HELPER))

    def start(self):
        self.logf = open(self.logpath, "ab")
        self.p = self.procs.spawn(self.wrap + [EVMON, "daemon", "-c", self.cfg, "-S", self.sock] + self.args,
                                  stdout=self.logf, stderr=subprocess.STDOUT, env=self.env,
                                  cwd=self.cwd)
        wait_for(lambda: self.answers() or self.p.poll() is not None,
                 timeout=20 * SLOW, what="the control socket")
        assert self.p.poll() is None, f"daemon exited: {self.log()}"
        return self

    def answers(self):
        """The daemon accepts connections on its socket, and a live process listens there:
        a daemon killed with SIGKILL left its listener in a child of it that was between its
        clone and its exec, which takes connections into its backlog until the exec."""
        try:
            with self.connect(timeout=1) as s:
                cred = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            pid = struct.unpack("3i", cred)[0]  # of the listen()
            return pid <= 0 or alive(pid)
        except OSError:
            return False

    def log(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def ctl(self, *args, timeout=60, user=None):
        argv = [EVMON, "ctl", "-S", self.sock] + [str(a) for a in args]
        if user:
            pw = pwd.getpwnam(user)
            argv = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups"] + argv
        return self.procs.run(argv, timeout=timeout * SLOW)

    def request(self, obj, timeout=30):
        """One raw JSON request on a fresh connection; returns the decoded answer."""
        with self.connect(timeout) as s:
            s.sendall(json.dumps(obj).encode() + b"\n")
            return json.loads(read_line(s))

    def connect(self, timeout=30):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout * SLOW)
        s.connect(self.sock)
        return s

    def status(self, *names):
        r = self.request({"cmd": "status", "names": list(names)} if names else {"cmd": "status"})
        assert r["ok"], r
        return {s["name"]: s for s in r["services"]}

    def wait_state(self, name, state, timeout=15):
        return wait_for(lambda: self.status(name)[name]["state"] == state and self.status(name)[name],
                        timeout=timeout * SLOW, what=f"{name} {state}")

    def pids(self):
        return [s["pid"] for s in self.status().values() if s.get("pid")]

    def crash(self):
        """kill -9 the daemon: its services stay, re-parented."""
        self.p.kill()
        self.p.wait()
        self.logf.close()

    def record_stamp(self):
        """What tells one state record on disk from the next: each is a new file renamed
        over the last (an inode number may be reused: its mtime too)."""
        st = os.stat(self.sock + ".state")
        return st.st_ino, st.st_mtime_ns

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stop the daemon; it must exit 0 and leave none of its processes behind."""
        pids = self.pids()
        kids = set(children_of(self.p.pid))
        self.p.send_signal(sig)
        rc = self.p.wait(timeout=timeout * SLOW)
        assert rc == 0, f"daemon exit {rc}: {self.log()}"
        left = [p for p in pids + list(kids) if alive(p)]
        assert not left, f"left behind: {left}"
        assert not os.path.exists(self.sock)
        assert not os.path.exists(self.sock + ".lock")
        self.logf.close()
        return rc


def hand_over(d, how):
    """A new daemon takes over d's services: by `ctl reexec` (how == "reexec"), or
    started again after a kill -9."""
    if how == "reexec":
        r = d.ctl("reexec")
        assert r.returncode == 0, r.stdout + r.stderr
    else:
        d.crash()
        d.start()


def wait_signal_state(d, name, field, sig=signal.SIGTERM):
    """Wait until service name runs a process whose /proc status line field (SigCgt: a
    handler; SigIgn: ignored) has sig, and return its pid: a service is running from its
    spawn on (start_secs = 0), so a stop sent before its handler or SIG_IGN is in place
    ends it at once."""
    def has(name):
        pid = d.status(name)[name].get("pid")
        try:
            with open(f"/proc/{pid}/status") as f:
                mask = next(l for l in f if l.startswith(field + ":"))
        except (OSError, StopIteration):
            return None
        return pid if int(mask.split()[1], 16) >> (sig - 1) & 1 else None
    return wait_for(lambda: has(name), what=f"{name}'s {field} with signal {sig}")


def record_text(d):
    """The daemon's state record (SOCK.state), or "" when there is none."""
    try:
        with open(d.sock + ".state") as f:
            return f.read()
    except OSError:
        return ""


def config_errors(procs, cfg, errors):
    """`evmon daemon --check` of cfg exits 1 saying each (line, message) of errors as
    CFG:LINE: MESSAGE; returns its stderr."""
    r = procs.run([EVMON, "daemon", "--check", "-c", str(cfg)], timeout=30 * SLOW)
    assert r.returncode == 1, r
    for line, msg in errors:
        assert f"{cfg}:{line}: {msg}" in r.stderr, (msg, r.stderr)
    return r.stderr


def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(1 << 20)
        if not chunk:
            raise EOFError(f"connection closed after {buf[:200]!r}")
        buf += chunk
    return buf.decode()


class LineReader:
    """Read JSON lines from a socket one at a time."""

    def __init__(self, s):
        self.s = s
        self.buf = b""

    def next(self, timeout=10):
        deadline = time.monotonic() + timeout * SLOW
        while b"\n" not in self.buf:
            self.s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


def ctl_events(procs, d, *args):
    """`evmon ctl events ARGS` on d, its output lines collected by a thread as they come:
    (the process, the list of lines, the thread: done at ctl's exit). Returned once it follows: ctl says nothing when it
    has subscribed, so d is reloaded (unchanged: an event for every subscriber, nothing
    else touched) until a reload line comes out."""
    p = procs.spawn([EVMON, "ctl", "-S", d.sock, "events"] + [str(a) for a in args])
    lines = []

    def read_all():
        for line in p.stdout:
            lines.append(line.decode(errors="replace"))
    t = threading.Thread(target=read_all, daemon=True)
    t.start()

    def following():
        if any(" reload: " in l or l.startswith("reload: ") for l in lines):
            return True
        assert p.poll() is None, f"ctl events exited {p.returncode}: {lines}"
        assert d.ctl("reload").returncode == 0
        return False
    wait_for(following, interval=0.05, what="ctl events following")
    return p, lines, t


def follow_reloads(d, timeout):
    """A subscriber that keeps up: on a connection of its own, a thread reads d's events
    (each within timeout s) and collects the reload events. (their list, the thread)."""
    s = d.connect()
    s.sendall(b'{"cmd":"events"}\n')
    events = LineReader(s)
    assert events.next()["ok"]
    got = []

    def read_all():
        try:
            while True:
                ev = events.next(timeout)
                if ev.get("event") == "reload":
                    got.append(ev)
        except (EOFError, OSError):
            pass
    t = threading.Thread(target=read_all, daemon=True)
    t.start()
    return got, t


def stuck_subscriber(d):
    """A connection subscribed to d's events (a 4 KiB receive buffer), never read again."""
    s = d.connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b'{"cmd":"events"}\n')
    assert LineReader(s).next()["ok"]
    return s


def reload_until_dropped(d, most):
    """Every reload refused with an event of ~64 KiB (3,000 bad keys appended to d's
    config), reloaded until d drops the slowest subscriber (at most `most` times): the
    reloads done, and the config as it was."""
    good = open(d.cfg).read()
    with open(d.cfg, "a") as f:
        for i in range(3000):
            f.write(f"no_such_key_{i:05d}_to_make_a_long_error_message_for_the_reload = 1\n")
    reloads = 0
    while "the slowest reader" not in d.log():
        assert d.ctl("reload", timeout=120).returncode == 1
        reloads += 1
        assert reloads < most, "no subscriber dropped"
    return reloads, good
