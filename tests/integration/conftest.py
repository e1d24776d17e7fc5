"""Shared fixtures for evmon's integration tests.

The tests drive the real binaries from the build directory named by
EVMON_BUILD (set by `make test`; defaults to build/cc). Every process a test
starts is started in its own session through `spawn()`, and killed with its
whole process group when the test ends, pass or fail.

Nothing a test starts outlives it, or the runner:
- `make test` runs pytest in its own PID namespace (tests/isolate.sh): when
  the runner dies, even by kill -9, or make does, the kernel kills every
  process left in it.
- The runner is a child subreaper, so whatever a test leaves behind (a
  daemon's services, orphans, double-forked processes) stays its descendant;
  after each test every descendant is ended (end_descendants), so a failing
  test leaks nothing into the next ones. The summary names the tests that
  left processes behind.
- Run directly (python3 -m pytest, not isolated), SIGTERM/SIGHUP and the
  normal exit end every descendant, and a watchdog process ends whatever
  still carries this run's EVMON_TEST_RUN in its environment once the runner
  is gone, kill -9 included.

Deadlines scale with one factor, SLOW: EVMON_TEST_SLOW=N (a loaded machine),
times 3 under the sanitizers. Tests that need real root (other uids, chown,
setuid services) call needs_root(why), which skips with the reason as any
other user and in a user namespace (tests/isolate.sh as non-root).
The scale tests (thousands of processes) are marked `scale`: `make test`
deselects them, `make test-scale` runs only them.
"""
import atexit
import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("EVMON_BUILD") or os.path.join(ROOT, "build", "cc")
EVMON = os.path.join(BUILD, "evmon")
HELPER = os.path.join(BUILD, "tests", "evm-helper")
SAN = bool(os.environ.get("EVMON_SAN"))
# the slowness factor: every deadline is a multiple of it (tests/unit/evmtest.h: t_slow)
SLOW = max(1, int(os.environ.get("EVMON_TEST_SLOW") or 1)) * (3 if SAN else 1)
# make test-scale
SCALE = os.environ.get("EVMON_TEST_SCALE", "0") not in ("", "0")


def _real_root():
    """uid 0 with every uid mapped: not the root of a user namespace."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split()[:3] == ["0", "0", "4294967295"]
    except OSError:
        return True


REAL_ROOT = _real_root()
# argv prefix: run as PID 1 of a new PID namespace (a non-root user needs a user
# namespace for that: unshare -r, where it is root of a single uid)
PID_NS = ["unshare"] + ([] if os.geteuid() == 0 else ["-r"]) + ["--pid", "--fork", "--mount-proc"]


def needs_root(why):
    """Skip the calling test unless we are really root, saying why."""
    __tracebackhide__ = True  # the skip is reported at the caller's line
    if not REAL_ROOT:
        pytest.skip(f"needs root: {why}")


def requires_root(why):
    """The same as a mark, for a test or a module (pytestmark)."""
    return pytest.mark.skipif(not REAL_ROOT, reason=f"needs root: {why}")


def binary(name):
    """Path of a program built in the build directory."""
    return os.path.join(BUILD, name)


class Procs:
    """Starts processes and guarantees they are gone at the end of a test."""

    def __init__(self):
        self.procs = []

    def spawn(self, argv, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def run(self, argv, timeout=None, **kw):
        """Run to completion; returns CompletedProcess-like (rc, out, err as str).
        timeout: seconds (default 30 * SLOW)."""
        timeout = timeout or 30 * SLOW
        p = self.spawn(argv, **kw)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            where = self.where()  # before the kill: who waits for what
            self.kill(p)
            try:  # a process it started (in a session of its own) may hold its pipes still
                out, err = p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                out = err = b"(its output: its pipes are held open by a process it left)"
            raise AssertionError(f"timed out after {timeout}s: {argv}\nstdout: {out!r}\nstderr: {err!r}"
                                 f"\nat the timeout:\n{where}")
        return subprocess.CompletedProcess(argv, p.returncode,
                                           out.decode(errors="replace") if out is not None else None,
                                           err.decode(errors="replace") if err is not None else None)

    # the system calls a stuck process is most likely in (x86-64 numbers; others print as such)
    SYSCALLS = {0: "read", 1: "write", 7: "poll", 23: "select", 44: "sendto", 45: "recvfrom",
                61: "wait4", 202: "futex", 232: "epoll_wait", 247: "waitid", 270: "pselect6",
                271: "ppoll", 281: "epoll_pwait", 441: "epoll_pwait2"}

    def where(self):
        """What each process started here that still runs is doing: its state, the system
        call it is in, and its Unix sockets' queues (a timed-out client, or the daemon it
        waits for: which of them holds the bytes). For the failure message of a timeout."""
        lines = []
        try:
            ss = subprocess.run(["ss", "-xpn"], capture_output=True, timeout=5).stdout.decode(
                errors="replace").splitlines()
        except (OSError, subprocess.TimeoutExpired):
            ss = []
        for p in self.procs:
            if p.poll() is not None:
                continue
            try:
                with open(f"/proc/{p.pid}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            try:  # ptrace's rules (another user's, not dumpable): the rest is still said
                with open(f"/proc/{p.pid}/syscall") as f:
                    sc = f.read().split()
            except OSError:
                sc = ["?"]
            call = self.SYSCALLS.get(int(sc[0]), sc[0]) if sc and sc[0].isdigit() else " ".join(sc)
            lines.append(f"  pid {p.pid} ({comm}): state {proc_state(p.pid)}, in {call}")
            lines += ["    " + " ".join(x.split()) for x in ss if f"pid={p.pid}," in x]
        return "\n".join(lines) or "  (nothing it started still runs)"

    @staticmethod
    def kill(p):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.kill()
        except ProcessLookupError:
            pass

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                self.kill(p)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdout, p.stderr, p.stdin):
                if f:
                    f.close()


@pytest.fixture
def procs():
    ps = Procs()
    yield ps
    ps.cleanup()


def wait_for(pred, timeout=None, interval=0.02, what="condition"):
    """Poll pred() until it is truthy; fail the test after timeout seconds
    (default 30 * SLOW: only a failing test waits it out)."""
    timeout = timeout or 30.0 * SLOW
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def proc_state(pid):
    """The state letter of /proc/PID/stat (R, S, T, Z...), or None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return None
    return st[st.rfind(")") + 2]


def _processes():
    """(pid, [state, ppid, ...]) of every process, from /proc/PID/stat (after the name)."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        yield int(d), st[st.rfind(")") + 2:].split()


def zombies_of(pid):
    """pids of zombie children of pid (from /proc)."""
    return [p for p, rest in _processes() if rest[0] == "Z" and int(rest[1]) == pid]


def children_of(pid):
    """pids whose parent is pid (from /proc)."""
    return [p for p, rest in _processes() if int(rest[1]) == pid]


def live_args():
    """(pid, its arguments as bytes) of every process that is not a zombie, from /proc."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
            with open(f"/proc/{d}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        yield int(d), args


def cmdline(pid):
    """pid's command line, its arguments joined by spaces; "" once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


@pytest.fixture(scope="session")
def evmon():
    assert os.access(EVMON, os.X_OK), f"{EVMON} not built (run make)"
    return EVMON


@pytest.fixture(scope="session")
def helper():
    assert os.access(HELPER, os.X_OK), f"{HELPER} not built (run make)"
    return HELPER


# ------------------------------------------------------------ no leftovers

PR_SET_CHILD_SUBREAPER = 36
RUN_TAG = f"EVMON_TEST_RUN={os.getpid()}"
os.environ["EVMON_TEST_RUN"] = str(os.getpid())
_watchdog = None
_leaky = []  # (test, number of processes it left)


def _stat(pid):
    """(state, ppid) of pid, or None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return None
    rest = st[st.rfind(")") + 2:].split()
    return rest[0], int(rest[1])


def descendants(root=None):
    """{pid: state} of every process below root (default: this runner), but the watchdog."""
    root = root or os.getpid()
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(d)
            if st:
                kids.setdefault(st[1], []).append((int(d), st[0]))
    out, todo = {}, [root]
    while todo:
        for pid, state in kids.get(todo.pop(), ()):
            if _watchdog is None or pid != _watchdog.pid:
                out[pid] = state
                todo.append(pid)
    return out


def end_descendants():
    """SIGKILL every descendant of the runner, until none is left, and reap the
    zombies re-parented to it (it is a subreaper). Returns how many it ended."""
    ended = set()
    for _ in range(100):
        live = [p for p, st in descendants().items() if st not in ("Z", "X")]
        if not live:
            break
        for pid in live:
            try:
                os.kill(pid, signal.SIGKILL)
                ended.add(pid)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)
    for pid, st in descendants().items():
        if st == "Z" and _stat(pid) and _stat(pid)[1] == os.getpid():
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
    return len(ended)


_WATCHDOG = r"""
import os, signal, sys, time
fd, tag = int(sys.argv[1]), sys.argv[2].encode()
while os.read(fd, 1):
    pass
for _ in range(100):  # the runner is gone: end what it started
    found = False
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if tag in env:
            found = True
            try:
                os.kill(int(d), signal.SIGKILL)
            except OSError:
                pass
    if not found:
        break
    time.sleep(0.02)
"""


def _start_watchdog():
    """A process that outlives a runner killed with kill -9 and ends what carries
    its tag; only needed when no PID namespace does it (not under tests/isolate.sh)."""
    global _watchdog
    r, w = os.pipe()  # w stays open in the runner only: EOF means it is gone
    env = {k: v for k, v in os.environ.items() if k != "EVMON_TEST_RUN"}
    _watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(r), RUN_TAG], pass_fds=(r,),
                                 env=env, start_new_session=True, stdin=subprocess.DEVNULL)
    os.close(r)
    globals()["_watchdog_pipe"] = w


def _on_term(sig, frame):
    end_descendants()
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)


def pytest_configure(config):
    config.addinivalue_line("markers", "scale: a scale test (thousands of processes): make test-scale")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if os.environ.get("EVMON_ISOLATED") not in ("pid", "userns"):
        _start_watchdog()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_term)
    atexit.register(end_descendants)


# Logs a failed test shows (their last lines): each Daemon adds its own; emptied per test
FAILURE_LOGS = []
FAILURE_LOG_LINES = 80


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report carries the end of each daemon log it made: a flake seen
    once in CI is explained by what the daemon said, not guessed at."""
    rep = (yield).get_result()
    if rep.when != "call" or not rep.failed:
        return
    for path in dict.fromkeys(FAILURE_LOGS):
        try:
            with open(path, errors="replace") as f:
                lines = f.read().splitlines()[-FAILURE_LOG_LINES:]
        except OSError:
            continue
        rep.sections.append((f"{path} (its last {len(lines)} lines)", "\n".join(lines)))


def pytest_terminal_summary(terminalreporter):
    if _leaky:
        terminalreporter.write_line(f"processes left behind and ended after {len(_leaky)} tests:")
        for name, n in _leaky:
            terminalreporter.write_line(f"  {name}: {n}")


_test_tags = iter(range(1, 1 << 62))


def _tagged(tag):
    """pids of the processes whose environment holds EVMON_TEST_TAG=tag."""
    want = b"EVMON_TEST_TAG=" + tag.encode() + b"\0"
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    if want in f.read() + b"\0":
                        out.append(int(d))
            except OSError:
                pass
    return out


def _left(tag):
    """pids still alive that the test started: tagged, or below the runner."""
    return set(_tagged(tag)) | {p for p, st in descendants().items() if st not in ("Z", "X")}


def _own_cgroup_dir():
    """The runner's cgroup v2 directory, or None."""
    try:
        with open("/proc/self/mountinfo") as f:
            mnt = next((ln.split(" - ")[0].split()[4] for ln in f
                        if ln.partition(" - ")[2].startswith("cgroup2 ")), None)
        with open("/proc/self/cgroup") as f:
            rel = next((ln.strip()[3:] for ln in f if ln.startswith("0::")), None)
    except OSError:
        return None
    return os.path.join(mnt, rel.lstrip("/")) if mnt and rel is not None else None


def _rmdir_tree(path):
    """rmdir a cgroup tree bottom-up (what holds a process stays)."""
    for dirpath, _, _ in sorted(os.walk(path), key=lambda t: -len(t[0])):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def _cgroup_homes(home, basetemp):
    """Names of the daemons' cgroups (evmon.<socket>, see cgroups.h) under home whose
    socket is below basetemp."""
    prefix = "evmon." + str(basetemp).lstrip("/").replace("/", "-")
    try:
        return [n for n in os.listdir(home) if n.startswith(prefix)] if home else []
    except OSError:
        return []


def _remove_daemon_cgroups(basetemp):
    """The cgroups of daemons of this run that were killed: their processes are ended
    by then; rmdir the empty trees."""
    home = _own_cgroup_dir()
    for n in _cgroup_homes(home, basetemp):
        _rmdir_tree(os.path.join(home, n))


RUN_LOCK = ".evmon-run"  # in a run's basetemp, flock'ed while the run lives


def _run_is_over(basetemp):
    """No runner uses basetemp: it is gone (pytest keeps the last 3), or its RUN_LOCK is
    free (a runner killed with SIGKILL left it; pytest keeps such a basetemp 3 days). A
    basetemp without RUN_LOCK (a run of a conftest from before it) counts as alive."""
    try:
        fd = os.open(os.path.join(basetemp, RUN_LOCK), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return not os.path.exists(basetemp)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _sweep_dead_runs_cgroups(home, root):
    """The cgroups that daemons of earlier runs left under home when their runner was
    killed (a CI job ended with SIGKILL: no cleanup ran): evmon.<root>-pytest-N-... of a
    run N that is over, holding no process. A live run's are never touched: its
    RUN_LOCK is held (also from another PID namespace: /tmp is shared)."""
    prefix = "evmon." + str(root).lstrip("/").replace("/", "-") + "-pytest-"
    try:
        names = [n for n in os.listdir(home) if n.startswith(prefix)] if home else []
    except OSError:
        return
    over = {}
    for n in names:
        num = n[len(prefix):].partition("-")[0]
        if not num.isdigit():
            continue
        if num not in over:
            over[num] = _run_is_over(os.path.join(root, "pytest-" + num))
        try:
            with open(os.path.join(home, n, "cgroup.events")) as f:
                populated = "populated 0" not in f.read()
        except OSError:
            continue
        if over[num] and not populated:
            _rmdir_tree(os.path.join(home, n))


@pytest.fixture(scope="session", autouse=True)
def _this_run(tmp_path_factory):
    """Hold this run's RUN_LOCK, then sweep what killed runs left."""
    basetemp = tmp_path_factory.getbasetemp()
    fd = os.open(basetemp / RUN_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _sweep_dead_runs_cgroups(_own_cgroup_dir(), basetemp.parent)
    yield
    os.close(fd)


@pytest.fixture(autouse=True)
def _no_leftovers(request, tmp_path_factory):
    """After each test, pass or fail: every descendant of the runner is ended
    (end_descendants), and so is whatever carries the test's EVMON_TEST_TAG
    in its environment (services inherit it from the daemon) wherever it was
    re-parented, so one failure does not leave hundreds of processes for the
    rest of the run."""
    tag = f"{os.getpid()}.{next(_test_tags)}"
    old = os.environ.get("EVMON_TEST_TAG")
    os.environ["EVMON_TEST_TAG"] = tag
    del FAILURE_LOGS[:]
    yield
    if old is None:
        os.environ.pop("EVMON_TEST_TAG", None)
    else:
        os.environ["EVMON_TEST_TAG"] = old
    left = _left(tag)
    if left:  # what was already dying (a SIGKILL just sent) is not counted
        time.sleep(0.05)
        left = _left(tag)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    end_descendants()
    _remove_daemon_cgroups(tmp_path_factory.getbasetemp())
    if left:
        _leaky.append((request.node.nodeid, len(left)))
