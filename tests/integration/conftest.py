"""Shared fixtures for evmon's integration tests.

The tests drive the real binaries from the build directory named by
EVMON_BUILD (set by `make test`; defaults to build/cc). Every process a test
starts is started in its own session through `spawn()`, and killed with its
whole process group when the test ends, pass or fail.
"""
import os
import signal
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("EVMON_BUILD") or os.path.join(ROOT, "build", "cc")
EVMON = os.path.join(BUILD, "evmon")
HELPER = os.path.join(BUILD, "tests", "evm-helper")
SAN = bool(os.environ.get("EVMON_SAN"))


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

    def run(self, argv, timeout=30, **kw):
        """Run to completion; returns CompletedProcess-like (rc, out, err as str)."""
        p = self.spawn(argv, **kw)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(p)
            out, err = p.communicate()
            raise AssertionError(f"timed out after {timeout}s: {argv}\nstdout: {out!r}\nstderr: {err!r}")
        return subprocess.CompletedProcess(argv, p.returncode,
                                           out.decode(errors="replace") if out is not None else None,
                                           err.decode(errors="replace") if err is not None else None)

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


def wait_for(pred, timeout=10.0, interval=0.02, what="condition"):
    """Poll pred() until it is truthy; fail the test after timeout seconds."""
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


def zombies_of(pid):
    """pids of zombie children of pid (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rfind(")") + 2:].split()
        if rest[0] == "Z" and int(rest[1]) == pid:
            out.append(int(d))
    return out


def children_of(pid):
    """pids whose parent is pid (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rfind(")") + 2:].split()
        if int(rest[1]) == pid:
            out.append(int(d))
    return out


@pytest.fixture(scope="session")
def evmon():
    assert os.access(EVMON, os.X_OK), f"{EVMON} not built (run make)"
    return EVMON


@pytest.fixture(scope="session")
def helper():
    assert os.access(HELPER, os.X_OK), f"{HELPER} not built (run make)"
    return HELPER


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


@pytest.fixture(autouse=True)
def _no_leftovers():
    """Each test's processes carry EVMON_TEST_TAG in their environment, and services
    inherit it from the daemon. A daemon killed by Procs.cleanup (a test that failed
    half-way) leaves its services running in their own sessions: whatever still has
    the test's tag when the test ends is killed, so one failure does not leave
    hundreds of processes for the rest of the run."""
    tag = f"{os.getpid()}.{next(_test_tags)}"
    old = os.environ.get("EVMON_TEST_TAG")
    os.environ["EVMON_TEST_TAG"] = tag
    yield
    if old is None:
        os.environ.pop("EVMON_TEST_TAG", None)
    else:
        os.environ["EVMON_TEST_TAG"] = old
    for pid in _tagged(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
