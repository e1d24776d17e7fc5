"""What the reliability tests (test_security.py, test_faults.py, test_soak.py,
test_reexec_load.py) share: a Daemon started behind a command prefix (setpriv,
prlimit, strace, unshare), a directory any user can reach, the figures read from
/proc (resident memory, open fds, states, ids), and an event stream checked as it
is read."""
import collections
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

from conftest import EVMON, children_of, wait_for
from daemon_util import SLOW, Daemon, alive

# a uid and gid with no passwd entry and no other process: RLIMIT_NPROC counts per uid
ODD_UID = 47113
# evmon runs under valgrind (make valgrind-test)
VALGRIND = bool(os.environ.get("EVMON_VALGRIND"))


def set_nproc(pid, soft):
    """The soft RLIMIT_NPROC of a process of ODD_UID ("hard": up to its hard limit), set
    by that uid: root here may lack CAP_SYS_RESOURCE, which changing another uid's
    limits needs."""
    if soft == "hard":
        with open(f"/proc/{pid}/limits") as f:
            soft = [l.split()[3] for l in f if l.startswith("Max processes")][0]
    subprocess.run(["setpriv", f"--reuid={ODD_UID}", f"--regid={ODD_UID}", "--clear-groups",
                    "prlimit", "--pid", str(pid), f"--nproc={soft}:"], check=True)


class PrefixedDaemon(Daemon):
    """A Daemon whose command line starts with prefix (e.g. ["prlimit", "--nofile=64"])."""

    def __init__(self, procs, tmp_path, config, prefix=(), **kw):
        self.prefix = list(prefix)
        super().__init__(procs, tmp_path, config, **kw)

    def start(self):
        self.logf = open(self.logpath, "ab")
        self.p = self.procs.spawn(self.prefix + [EVMON, "daemon", "-c", self.cfg, "-S", self.sock] + self.args,
                                  stdout=self.logf, stderr=subprocess.STDOUT, env=self.env)
        wait_for(lambda: self.answers() or self.p.poll() is not None,
                 timeout=20 * SLOW, what="the control socket")
        assert self.p.poll() is None, f"daemon exited: {self.log()}"
        return self

    def daemon_pid(self):
        """The daemon's own pid (self.p may be a prefix program that exec'd it or forked it)."""
        return self.request({"cmd": "ping"})["pid"]

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Daemon.stop, with the signal sent to the daemon rather than to a prefix (strace)."""
        pid = self.daemon_pid()
        pids = self.pids()
        kids = set(children_of(pid))
        os.kill(pid, sig)
        rc = self.p.wait(timeout=timeout * SLOW)
        assert rc == 0, f"daemon exit {rc}: {self.log()}"
        left = [p for p in pids + list(kids) if alive(p)]
        assert not left, f"left behind: {left}"
        assert not os.path.exists(self.sock)
        self.logf.close()
        return rc


class OpenDir:
    """A directory under /tmp that every user can reach (pytest's tmp_path is root's only)."""

    def __init__(self, owner=None):
        self.path = Path(tempfile.mkdtemp(prefix="evmon-rel-"))
        os.chmod(self.path, 0o755)
        if owner is not None:
            os.chown(self.path, owner, owner)

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def status_fields(pid):
    """/proc/PID/status as a dict of strings."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def rss_kb(pid):
    return int(status_fields(pid)["VmRSS"].split()[0])


def fds(pid):
    """{fd number: link target} of a process."""
    out = {}
    d = f"/proc/{pid}/fd"
    for n in os.listdir(d):
        try:
            out[int(n)] = os.readlink(os.path.join(d, n))
        except OSError:
            pass
    return out


def ppid_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        st = f.read()
    return int(st[st.rfind(")") + 2:].split()[1])


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        st = f.read()
    rest = st[st.rfind(")") + 2:].split()
    return int(rest[11]) + int(rest[12])


class EventStream(threading.Thread):
    """Reads a daemon's event stream (`ctl events` lines on sock) and checks it as it
    goes: per watched service a process starts, then exits, then the next one starts
    (no exit lost or reported twice). spawns, exits, exited (pid -> exits) and errors
    (the first 20) hold what it saw, under lock. A subclass adds checks in take()
    and on_exit(ev)."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock, self.lock = sock, threading.Lock()
        self.running = {}  # service -> pid started and not yet exited
        self.spawns = self.exits = 0
        self.exited = collections.Counter()  # pid -> exits
        self.errors = []
        self.closed = False

    @classmethod
    def follow(cls, d):
        """One reading d's events from now on: connected, subscribed (the answer read a
        byte at a time, leaving the events to the thread) and started."""
        s = d.connect()
        s.settimeout(None)
        s.sendall(b'{"cmd":"events"}\n')
        first = b""
        while not first.endswith(b"\n"):
            first += s.recv(1)
        assert json.loads(first)["ok"]
        stream = cls(s)
        stream.start()
        return stream

    def run(self):
        buf = b""
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                with self.lock:
                    for line in lines:
                        self.take(json.loads(line))
        except OSError:
            pass
        self.closed = True

    def error(self, msg):
        if len(self.errors) < 20:
            self.errors.append(msg)

    def watched(self, svc):
        return True

    def on_exit(self, ev):
        pass

    def take(self, ev):
        kind, svc = ev.get("event"), ev.get("service")
        if kind == "state" and self.watched(svc):
            active = ("starting", "running")
            if ev["state"] in active and ev["old_state"] not in active:
                if svc in self.running:
                    self.error(f"{svc}: pid {ev.get('pid')} started before {self.running[svc]} exited")
                self.running[svc] = ev["pid"]
                self.spawns += 1
        elif kind == "exit" and self.watched(svc):
            pid = ev["pid"]
            if self.running.get(svc) != pid:
                self.error(f"{svc}: exit of pid {pid}, the running one is {self.running.get(svc)}")
            self.running.pop(svc, None)
            self.exits += 1
            self.exited[pid] += 1
            self.on_exit(ev)
