"""`evmon init`: a container init compatible with tini and dumb-init.

Every test drives the real binary twice: as PID 1 of a new PID namespace
(`unshare --pid --fork --mount-proc`, mode "pid1") and as an ordinary process
that reaps as a child subreaper (mode "sub").

The same tests run against Debian's tini and dumb-init (`make compat`, which
sets EVMON_INIT_IMPL): a test states evmon's behaviour; where tini or
dumb-init behave otherwise on purpose, @differs says why, and the test is
expected to fail for them (strict: if they start to pass, the note is wrong).
An option an implementation lacks skips the test for it. `python3
tests/integration/test_init.py --report XML...` turns the JUnit results of
the three runs into the compatibility table of docs/INIT.md.

Cleanup: every process a test starts carries EVM_TEST_TAG=<unique> in its
environment, and everything still carrying it is SIGKILLed at the end of the
test, wherever it was re-parented.
"""
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import (BUILD, EVMON, HELPER, PID_NS, ROOT, SAN, SLOW, children_of, proc_state,  # noqa: E402
                      wait_for, zombies_of)

IMPL = os.environ.get("EVMON_INIT_IMPL", "evmon")  # evmon | tini | dumb-init
# generous bound for things that must happen (a passing test never waits it out;
# on a 2-core machine at load 100 a few process starts can take seconds)
T = 30.0 * SLOW
UNSHARE = PID_NS
MODES = ["pid1", "sub"]


# ------------------------------------------------------------ compat marks

def differs(modes=None, **why):
    """Mark a test as a deliberate difference for tini= / dumb_init=."""
    def deco(fn):
        fn.differs = {k.replace("_", "-"): v for k, v in why.items()}
        fn.differs_modes = modes
        return fn
    return deco


@pytest.fixture(autouse=True)
def _expected_difference(request):
    fn = request.node.function
    why = getattr(fn, "differs", {}).get(IMPL)
    mode = request.node.callspec.params.get("mode") if hasattr(request.node, "callspec") else None
    modes = getattr(fn, "differs_modes", None)
    if why and (modes is None or mode in modes):
        request.node.add_marker(pytest.mark.xfail(reason=f"{IMPL}: {why}", strict=True))
    yield


# ------------------------------------------------------------ command lines

def init_cmd(child, mode, fwd=None, subreaper=None, warn=False, remap=(), rewrite=(),
             pdeath=None, evmon_opts=(), lic=False):
    """argv running child under the implementation being tested.

    fwd: None (its default), "group" or "child"; subreaper: None (default),
    True (ask for it), False (do not want it); rewrite: (from, to) numbers;
    evmon_opts: evmon-only tuning, left out for the others.
    """
    if subreaper is not None and mode == "pid1":
        subreaper = None  # meaningless as PID 1
    if IMPL == "evmon":
        a = [EVMON, "init"]
        a += {"group": ["-g"], "child": ["-c"], None: []}[fwd]
        a += {True: ["-s"], False: ["--no-subreaper"], None: []}[subreaper]
        a += ["-w"] if warn else []
        for c in remap:
            a += ["-e", str(c)]
        for f, t in rewrite:
            a += ["-r", f"{f}:{t}"]
        a += ["-p", pdeath] if pdeath else []
        a += list(evmon_opts)
    elif IMPL == "tini":
        a = ["tini"]
        a += {"group": ["-g"], "child": [], None: []}[fwd]
        a += ["-s"] if subreaper else []
        a += ["-w"] if warn else []
        for c in remap:
            a += ["-e", str(c)]
        if rewrite:
            pytest.skip("tini has no signal rewriting (-r)")
        a += ["-p", pdeath] if pdeath else []
    elif IMPL == "dumb-init":
        a = ["dumb-init"]
        a += {"group": [], "child": ["-c"], None: []}[fwd]
        if subreaper:
            pytest.skip("dumb-init cannot become a child subreaper")
        if warn:
            pytest.skip("dumb-init has no -w")
        if remap:
            pytest.skip("dumb-init has no exit code remapping (-e)")
        for f, t in rewrite:
            a += ["-r", f"{f}:{t}"]
        if pdeath:
            pytest.skip("dumb-init has no parent-death signal (-p)")
    else:
        raise AssertionError(f"unknown EVMON_INIT_IMPL {IMPL}")
    return a + ["--"] + list(child)


def reap_warnings(err):
    """Lines saying a zombie was reaped (-w), for evmon and tini."""
    return len(re.findall(r"(?i)reaped zombie process", err))


# ------------------------------------------------------------ running

class Collector:
    """Reads a pipe in a thread, so tests can wait for output while the process runs."""

    def __init__(self, f):
        self.buf = bytearray()
        self.lock = threading.Lock()
        self.fd = f.fileno() if f else -1
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        if self.fd < 0:
            return
        while True:
            try:
                b = os.read(self.fd, 65536)
            except OSError:
                return
            if not b:
                return
            with self.lock:
                self.buf += b

    @property
    def text(self):
        with self.lock:
            return self.buf.decode(errors="replace")


class Run:
    def __init__(self, procs, argv, mode, tag, env=None, stdin=None, **kw):
        self.mode = mode
        e = dict(os.environ)
        e.update(env or {})
        e["EVM_TEST_TAG"] = tag
        self.tag = tag
        full = (UNSHARE + argv) if mode == "pid1" else argv
        self.p = procs.spawn(full, env=e, stdin=subprocess.DEVNULL if stdin is None else stdin, **kw)
        self.out = Collector(self.p.stdout)
        self.err = Collector(self.p.stderr)
        self._pid = None

    @property
    def pid(self):
        """The init's pid as seen from here (under unshare: the forked child)."""
        if self._pid is None:
            if self.mode == "pid1":
                kids = wait_for(lambda: children_of(self.p.pid) or self.p.poll() is not None, T,
                                what="unshare's child")
                assert kids is not True, f"unshare exited ({self.p.returncode}): {self.err.text[-500:]}"
                self._pid = kids[0]
            else:
                self._pid = self.p.pid
        return self._pid

    def expect(self, text, n=1, timeout=T):
        wait_for(lambda: self.out.text.count(text) >= n, timeout,
                 what=f"{n} x {text!r} on stdout; got {self.out.text[-500:]!r} / "
                      f"stderr {self.err.text[-500:]!r}")

    def kill(self, sig):
        os.kill(self.pid, sig)

    def wait(self, timeout=T):
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"init still running after {timeout}s; stdout {self.out.text[-500:]!r} "
                                 f"stderr {self.err.text[-500:]!r}")
        # what the init wrote is complete; descendants may still hold the pipes
        self.out.t.join(0.5)
        self.err.t.join(0.5)
        return rc


def tagged(tag):
    """pids of live processes whose environment has EVM_TEST_TAG=tag."""
    needle = f"EVM_TEST_TAG={tag}".encode()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    out.append(int(d))
        except OSError:
            pass
    return out


@pytest.fixture
def run(procs):
    assert os.access(HELPER, os.X_OK), f"{HELPER} not built (run make)"
    if IMPL == "evmon":
        assert os.access(EVMON, os.X_OK), f"{EVMON} not built (run make)"
    tag = uuid.uuid4().hex
    runs = []

    def start(argv, mode, **kw):
        r = Run(procs, argv, mode, tag, **kw)
        runs.append(r)
        return r

    yield start
    for _ in range(50):
        pids = tagged(tag)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    for r in runs:
        if r.p.poll() is None:
            procs.kill(r.p)
        r.p.wait(10)
        r.out.t.join(2)
        r.err.t.join(2)


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


def H(*args):
    return [HELPER] + [str(a) for a in args]


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def alive(pid):
    return proc_state(pid) not in (None, "Z", "X")


# ------------------------------------------------------------ exit codes

@pytest.mark.parametrize("code", [0, 1, 42, 255])
def test_exit_code(run, mode, code):
    """The child's exit code is ours (0, 1, 42, 255)"""
    r = run(init_cmd(H("exit", code), mode), mode)
    assert r.wait() == code, r.err.text


@pytest.mark.parametrize("sig,code", [(signal.SIGKILL, 137), (signal.SIGTERM, 143)])
def test_signal_death(run, mode, sig, code):
    """A child killed by signal N gives 128+N (SIGKILL 137, SIGTERM 143)"""
    r = run(init_cmd(H("kill", int(sig)), mode), mode)
    assert r.wait() == code, r.err.text


def test_remap_exit_code(run, mode):
    """-e CODE turns that exit code into 0, and only that one"""
    r = run(init_cmd(H("exit", 42), mode, remap=[42]), mode)
    assert r.wait() == 0, r.err.text
    r = run(init_cmd(H("exit", 42), mode, remap=[3, 41]), mode)
    assert r.wait() == 42, r.err.text


def test_remap_signal_code(run, mode):
    """-e applies to 128+N as well (-e 143 and a SIGTERM death exit 0)"""
    r = run(init_cmd(H("kill", 15), mode, remap=[143]), mode)
    assert r.wait() == 0, r.err.text


# ------------------------------------------------------------ forwarding

FORWARDED = ["TERM", "INT", "HUP", "QUIT", "USR1", "USR2", "WINCH"]


@pytest.mark.parametrize("name", FORWARDED)
def test_forward(run, mode, name):
    """A signal we get reaches the child (TERM INT HUP QUIT USR1 USR2 WINCH)"""
    sig = int(getattr(signal, "SIG" + name))
    r = run(init_cmd(H("trap-exit", sig, "print", "ready", "pause"), mode), mode)
    r.expect("ready")
    r.kill(sig)
    assert r.wait() == 0, r.err.text
    assert f"signal {sig}\n" in r.out.text


def test_forward_realtime(run, mode):
    """Real-time signals are forwarded too (SIGRTMIN+3)"""
    sig = signal.SIGRTMIN + 3
    r = run(init_cmd(H("trap-exit", sig, "print", "ready", "pause"), mode), mode)
    r.expect("ready")
    r.kill(sig)
    assert r.wait() == 0, r.err.text
    assert f"signal {sig}\n" in r.out.text


FAULTS = [signal.SIGILL, signal.SIGTRAP, signal.SIGABRT, signal.SIGBUS, signal.SIGFPE, signal.SIGSEGV,
          signal.SIGSYS]


@differs(tini="tini does not block the fault signals (ILL TRAP ABRT BUS FPE SEGV SYS): one sent with "
         "kill kills it when not PID 1 and is dropped as PID 1")
def test_forward_every_catchable_signal(run, mode):
    """Every catchable signal reaches the child: 1-31, real-time ones, faults sent with kill
    (not KILL, STOP, CHLD; not TSTP/TTIN/TTOU, which stop the group)"""
    skip = {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU,
            signal.SIGUSR1}
    sigs = [s for s in range(1, 32) if s not in skip] + list(range(signal.SIGRTMIN, signal.SIGRTMAX + 1))
    assert {int(f) for f in FAULTS} <= set(sigs)
    r = run(init_cmd(H("trap-exit", 10, "print", "ready", "pause"), mode), mode)
    r.expect("ready")
    for sig in sigs:
        r.kill(sig)
        # one at a time: standard signals pending twice would merge
        r.expect(f"signal {sig}\n")
    r.kill(signal.SIGUSR1)
    assert r.wait() == 0, r.err.text
    got = [int(n) for n in re.findall(r"^signal (\d+)$", r.out.text, re.M)]
    assert got == sigs + [10], got


def test_sigchld_not_forwarded(run, mode):
    """SIGCHLD sent to init is not forwarded"""
    r = run(init_cmd(H("trap-exit", 10, "print", "ready", "pause"), mode), mode)
    r.expect("ready")
    r.kill(signal.SIGCHLD)
    r.kill(signal.SIGUSR1)
    assert r.wait() == 0, r.err.text
    assert "signal 10\n" in r.out.text
    assert f"signal {int(signal.SIGCHLD)}\n" not in r.out.text


def family(gc_action="trap-exit"):
    """sh (ignoring USR1) with two helpers in its process group, each printing when ready."""
    return ["sh", "-c",
            'trap "" USR1; "$0" %s 10 print gc-ready pause & "$0" trap-exit 10 print ready pause; wait'
            % gc_action, HELPER]


def test_group_reaches_grandchild(run, mode):
    """-g: a forwarded signal reaches every process of the child's group"""
    r = run(init_cmd(family(), mode, fwd="group"), mode)
    r.expect("gc-ready")
    r.expect("ready", 2)
    r.kill(signal.SIGUSR1)
    assert r.wait() == 0, r.err.text
    assert r.out.text.count("signal 10\n") == 2


@differs(tini="tini forwards to the child only unless -g or TINI_KILL_PROCESS_GROUP is given")
def test_group_is_the_default(run, mode):
    """By default forwarded signals reach the child's whole group (dumb-init's default)"""
    r = run(init_cmd(family(), mode), mode)
    r.expect("gc-ready")
    r.expect("ready", 2)
    r.kill(signal.SIGUSR1)
    r.expect("signal 10\n", 2)
    assert r.wait() == 0, r.err.text


def test_tini_kill_process_group_env(run, mode):
    """TINI_KILL_PROCESS_GROUP=1 means -g"""
    r = run(init_cmd(family(), mode), mode, env={"TINI_KILL_PROCESS_GROUP": "1"})
    r.expect("gc-ready")
    r.expect("ready", 2)
    r.kill(signal.SIGUSR1)
    r.expect("signal 10\n", 2)
    assert r.wait() == 0, r.err.text


def test_single_child(run, mode):
    """-c (dumb-init) / tini's default: only the direct child gets forwarded signals"""
    r = run(init_cmd(["sh", "-c", 'trap "" USR1; "$0" trap-exit 15 print gc-ready pause & '
                      'exec "$0" trap-exit 10 print ready pause', HELPER], mode, fwd="child"), mode)
    r.expect("gc-ready")
    r.expect("ready", 2)
    r.kill(signal.SIGUSR1)
    assert r.wait() == 0, r.err.text
    assert r.out.text.count("signal 10\n") == 1


@pytest.mark.skipif(IMPL != "evmon", reason="only evmon has both -g and -c")
def test_group_wins_over_single_child(run, mode):
    """-g and -c together: -g wins, whatever their order"""
    for opts in (["-g", "-c"], ["-c", "-g"]):
        r = run(with_opts(init_cmd(family(), mode), *opts), mode)
        r.expect("gc-ready")
        r.expect("ready", 2)
        r.kill(signal.SIGUSR1)
        assert r.wait() == 0, r.err.text
        assert r.out.text.count("signal 10\n") == 2, (opts, r.out.text)


def test_dumb_init_setsid_env(run, mode):
    """DUMB_INIT_SETSID=0 means -c: only the direct child gets forwarded signals"""
    r = run(init_cmd(["sh", "-c", 'trap "" USR1; "$0" trap-exit 15 print gc-ready pause & '
                      'exec "$0" trap-exit 10 print ready pause', HELPER], mode), mode,
            env={"DUMB_INIT_SETSID": "0"})
    r.expect("gc-ready")
    r.expect("ready", 2)
    r.kill(signal.SIGUSR1)
    assert r.wait() == 0, r.err.text
    assert r.out.text.count("signal 10\n") == 1


def test_rewrite(run, mode):
    """-r 15:10 forwards SIGTERM as SIGUSR1"""
    r = run(init_cmd(H("trap-exit", 10, "print", "ready", "pause"), mode, rewrite=[(15, 10)]), mode)
    r.expect("ready")
    r.kill(signal.SIGTERM)
    assert r.wait() == 0, r.err.text
    assert "signal 10\n" in r.out.text and "signal 15\n" not in r.out.text


def test_rewrite_drop(run, mode):
    """-r 15:0 drops SIGTERM; other signals still pass"""
    r = run(init_cmd(H("trap-exit", 10, "print", "ready", "pause"), mode, rewrite=[(15, 0)]), mode)
    r.expect("ready")
    r.kill(signal.SIGTERM)
    r.kill(signal.SIGHUP)
    r.expect("signal 1\n")
    r.kill(signal.SIGUSR1)
    assert r.wait() == 0, r.err.text
    assert "signal 15\n" not in r.out.text


def test_rewrite_repeated(run, mode):
    """-r is repeatable: -r 1:0 -r 12:15 -r 15:10 drops SIGHUP, turns SIGUSR2 into SIGTERM and SIGTERM into SIGUSR1"""
    r = run(init_cmd(H("trap-exit", 10, "print", "ready", "pause"), mode,
                     rewrite=[(1, 0), (12, 15), (15, 10)]), mode)
    r.expect("ready")
    r.kill(signal.SIGHUP)
    r.kill(signal.SIGUSR2)
    r.expect("signal 15\n")
    r.kill(signal.SIGTERM)
    assert r.wait() == 0, r.err.text
    assert re.findall(r"^signal (\d+)$", r.out.text, re.M) == ["15", "10"], r.out.text


@differs(modes=["sub"], tini="tini forwards SIGTSTP to the child as it is and does not stop itself")
def test_job_control_stop(run, mode):
    """SIGTSTP stops the child's group (as SIGSTOP) and, unless PID 1, init itself; SIGCONT resumes"""
    r = run(init_cmd(H("print", "ready", "pause"), mode), mode)
    r.expect("ready")
    child = wait_for(lambda: children_of(r.pid), T, what="the child")[0]
    r.kill(signal.SIGTSTP)
    wait_for(lambda: proc_state(child) == "T", T, what="the child stopped")
    if mode == "sub":
        wait_for(lambda: proc_state(r.pid) == "T", T, what="init stopped")
    else:
        assert proc_state(r.pid) != "T"
    r.kill(signal.SIGCONT)
    wait_for(lambda: proc_state(child) in ("S", "R"), T, what="the child resumed")
    r.kill(signal.SIGTERM)
    assert r.wait() == 143, r.err.text


@differs(tini="tini ignores SIGTTIN and SIGTTOU: nothing is stopped")
@pytest.mark.parametrize("name", ["TTIN", "TTOU"])
def test_job_control_ttin_ttou(run, mode, name):
    """SIGTTIN and SIGTTOU stop the child's group as well (and init unless PID 1)"""
    r = run(init_cmd(H("print", "ready", "pause"), mode), mode)
    r.expect("ready")
    child = wait_for(lambda: children_of(r.pid), T, what="the child")[0]
    r.kill(getattr(signal, "SIG" + name))
    wait_for(lambda: proc_state(child) == "T", T, what="the child stopped")
    if mode == "sub":
        wait_for(lambda: proc_state(r.pid) == "T", T, what="init stopped")
    r.kill(signal.SIGCONT)
    wait_for(lambda: proc_state(child) in ("S", "R"), T, what="the child resumed")
    r.kill(signal.SIGTERM)
    assert r.wait() == 143, r.err.text


@differs(modes=["sub"], tini="tini forwards SIGTSTP and does not stop itself")
def test_job_control_single_child(run, mode):
    """-c: SIGTSTP reaches the child as it is (it may catch it); init stops itself unless PID 1"""
    r = run(init_cmd(H("trap-exit", 15, "print", "ready", "pause"), mode, fwd="child"), mode)
    r.expect("ready")
    r.kill(signal.SIGTSTP)
    r.expect(f"signal {int(signal.SIGTSTP)}\n")
    if mode == "sub":
        wait_for(lambda: proc_state(r.pid) == "T", T, what="init stopped")
        r.kill(signal.SIGCONT)
        wait_for(lambda: proc_state(r.pid) in ("S", "R"), T, what="init resumed")
    else:
        assert proc_state(r.pid) != "T"
    r.kill(signal.SIGTERM)
    assert r.wait() == 0, r.err.text


# ------------------------------------------------------------ reaping

def storm_cmd(make, n):
    return ["sh", "-c", '"$0" %s %d; echo spawned; exec "$0" pause' % (make, n), HELPER]


def settle(r, mode):
    """Wait until init has no child but the main one and no zombie."""
    def quiet():
        kids = children_of(r.pid)
        return len(kids) == 1 and not zombies_of(r.pid)
    wait_for(quiet, T * 3, what="every orphan reaped")


@pytest.mark.parametrize("make,n", [
    ("orphans", 200), ("burst", 100),
    pytest.param("orphans", 2000, marks=pytest.mark.scale), pytest.param("burst", 500, marks=pytest.mark.scale),
], ids=["storm-200", "burst-100", "storm-2000", "burst-500"])
def test_orphans_reaped(run, mode, make, n):
    """Orphan storms: 200 orphans, and 100 dying at the same instant (2,000 and 500 in
    make test-scale); zero zombies left"""
    r = run(init_cmd(storm_cmd(make, n), mode, subreaper=True, warn=IMPL != "dumb-init"), mode)
    r.expect("spawned", timeout=T * 3)
    settle(r, mode)
    assert zombies_of(r.pid) == []
    if IMPL != "dumb-init":
        # helper's own children are reaped by sh; the n orphans by init
        wait_for(lambda: reap_warnings(r.err.text) >= n, T, what=f"{n} reap warnings")
        assert reap_warnings(r.err.text) == n
    r.kill(signal.SIGTERM)
    assert r.wait() == 143, r.err.text


def daemon_cmd():
    return ["sh", "-c", '"$0" daemonize sleep 300 pgid; exec "$0" print started pause', HELPER]


@differs(modes=["sub"], tini="tini becomes a subreaper only with -s or TINI_SUBREAPER",
         dumb_init="dumb-init never becomes a subreaper")
def test_subreaper_by_default(run, mode):
    """Not PID 1: orphans are re-parented to init by default (it is a subreaper), no warning"""
    r = run(init_cmd(daemon_cmd(), mode), mode)
    r.expect("ppid")
    m = re.search(r"pid (\d+) ppid (\d+)", r.out.text)
    assert int(m.group(2)) == (1 if mode == "pid1" else r.pid)
    r.kill(signal.SIGTERM)
    assert r.wait() == 143
    assert "subreaper" not in r.err.text


@pytest.mark.parametrize("how", ["-s", "TINI_SUBREAPER"])
def test_subreaper_requested(run, how):
    """-s or TINI_SUBREAPER: orphans are re-parented to init"""
    env = {"TINI_SUBREAPER": "1"} if how != "-s" else {}
    if how == "TINI_SUBREAPER" and IMPL == "dumb-init":
        pytest.skip("dumb-init cannot become a child subreaper")
    r = run(init_cmd(daemon_cmd(), "sub", subreaper=(how == "-s") or None), "sub", env=env)
    r.expect("ppid")
    m = re.search(r"pid (\d+) ppid (\d+)", r.out.text)
    assert int(m.group(2)) == r.pid
    r.kill(signal.SIGTERM)
    assert r.wait() == 143


@differs(dumb_init="dumb-init does not warn that it cannot reap orphans")
def test_warns_when_not_reaping(run):
    """Neither PID 1 nor subreaper: one warning says orphans will not be reaped"""
    r = run(init_cmd(H("exit", 0), "sub", subreaper=False), "sub")
    assert r.wait() == 0
    assert len(re.findall(r"not (running as )?PID 1", r.err.text)) == 1, r.err.text


def test_verbosity_zero_is_quiet(run):
    """TINI_VERBOSITY=0 silences warnings"""
    r = run(init_cmd(H("exit", 0), "sub", subreaper=False), "sub", env={"TINI_VERBOSITY": "0"})
    assert r.wait() == 0
    assert r.err.text == ""


def with_opts(argv, *opts):
    """argv of init_cmd with opts right after the init program's own name."""
    at = 2 if IMPL == "evmon" else 1
    return argv[:at] + list(opts) + argv[at:]


def spawn_reported(r):
    """Did init's messages (stderr; tini writes info to stdout) name the child's pid?"""
    m = re.search(r"^pid (\d+) ppid .*\n", r.out.text, re.M)
    assert m, r.out.text
    msgs = r.err.text + r.out.text.replace(m.group(0), "")
    return re.search(r"\b%s\b" % m.group(1), msgs) is not None


def test_verbose_option(run):
    """-v raises the verbosity: the spawned child's pid is reported (not without -v)"""
    r = run(init_cmd(H("pgid"), "sub"), "sub")
    assert r.wait() == 0, r.err.text
    assert not spawn_reported(r), r.err.text
    r = run(with_opts(init_cmd(H("pgid"), "sub"), "-v"), "sub")
    assert r.wait() == 0, r.err.text
    assert spawn_reported(r), r.out.text + r.err.text


def test_tini_verbosity_env(run):
    """TINI_VERBOSITY=N sets the verbosity, and wins over -v (read after the command line)"""
    if IMPL == "dumb-init":
        pytest.skip("dumb-init does not read TINI_VERBOSITY")
    r = run(init_cmd(H("pgid"), "sub"), "sub", env={"TINI_VERBOSITY": "2"})
    assert r.wait() == 0, r.err.text
    assert spawn_reported(r), r.out.text + r.err.text
    r = run(with_opts(init_cmd(H("pgid"), "sub"), "-v", "-v", "-v"), "sub", env={"TINI_VERBOSITY": "1"})
    assert r.wait() == 0, r.err.text
    assert not spawn_reported(r), r.out.text + r.err.text


def test_dumb_init_debug_env(run):
    """DUMB_INIT_DEBUG=1 turns on debug messages (the spawned child's pid is reported)"""
    if IMPL == "tini":
        pytest.skip("tini does not read DUMB_INIT_DEBUG")
    r = run(init_cmd(H("pgid"), "sub"), "sub", env={"DUMB_INIT_DEBUG": "1"})
    assert r.wait() == 0, r.err.text
    assert spawn_reported(r), r.out.text + r.err.text


@pytest.mark.scale
@pytest.mark.skipif(IMPL != "evmon", reason="evmon's memory only")
def test_memory_flat(run):
    """Init's memory does not grow with orphans reaped (RSS before/after 20,000)"""
    # the ASan helper forks slowly: fewer there
    n = int(os.environ.get("EVMON_INIT_SOAK_ORPHANS", "5000" if SAN else "20000"))
    sh = ('"$0" orphan-storm %d; echo warm; read x; "$0" orphan-storm %d; echo done; '
          'read y; exit 0' % (1000 if SAN else 3000, n))
    r = run(init_cmd(["sh", "-c", sh, HELPER], "pid1"), "pid1", stdin=subprocess.PIPE)
    r.expect("warm", timeout=T * 3)
    settle(r, "pid1")
    before, cpu0 = vmrss(r.pid), cpu_s(r.pid)
    r.p.stdin.write(b"\n")
    r.p.stdin.flush()
    r.expect("done", timeout=max(T * 6, n / 500))
    settle(r, "pid1")
    after, cpu = vmrss(r.pid), cpu_s(r.pid) - cpu0
    print(f"init VmRSS before {before} kB, after {n} more orphans {after} kB; "
          f"init CPU time for them {cpu:.2f} s ({cpu / n * 1e6:.1f} us per orphan)")
    r.p.stdin.write(b"\n")
    r.p.stdin.close()
    assert r.wait() == 0, r.err.text
    assert after - before <= 64, f"VmRSS grew from {before} to {after} kB over {n} orphans"


test_memory_flat.runs_as = "pid1"  # for the compat table


def cpu_s(pid):
    """user + system CPU seconds of pid"""
    with open(f"/proc/{pid}/stat") as f:
        st = f.read()
    rest = st[st.rfind(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def vmrss(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


# ------------------------------------------------------------ the end

def lingering(f, code, ms=300):
    """sh whose background helper takes ms to exit on SIGTERM, then exits with code."""
    return ["sh", "-c", f'"$0" linger {ms} print ready pause > "$1" & '
            'until grep -q ready "$1"; do sleep 0.01; done; exit %d' % code, HELPER, str(f)]


@differs(tini="tini exits at once, leaving the rest of the group running (or to the kernel's SIGKILL as PID 1)",
         dumb_init="dumb-init sends SIGTERM to the group and exits at once, without waiting for it")
def test_end_terms_group_and_waits(run, mode, tmp_path):
    """Main child exits: the rest of its group gets SIGTERM, and init waits for it to finish"""
    f = tmp_path / "gc.out"
    r = run(init_cmd(lingering(f, 7), mode), mode)
    assert r.p.wait(T) == 7, r.err.text
    assert f.read_text() == "ready\nterm\nbye\n"  # as init exits, not later


@differs(modes=["sub"], tini="tini leaves the rest of the group running when not PID 1",
         dumb_init="dumb-init leaves processes that ignore SIGTERM running when not PID 1")
def test_end_kills_stubborn_group(run, mode):
    """Members ignoring SIGTERM get SIGKILL after the grace (-t); none is left when init exits"""
    # SIGTERM ignored before the fork: a grandchild cannot die of it before its own signal() call
    r = run(init_cmd(H("ignore", 15, "group", 3, "exit", 5), mode, evmon_opts=["-t", "0.2"]), mode)
    assert r.wait() == 5, r.err.text
    gcs = [int(p) for p in re.findall(r"grandchild (\d+)", r.out.text)]
    assert len(gcs) == 3
    # as PID 1 they are numbered inside the namespace; the tag finds them anywhere
    if mode == "sub":
        assert [p for p in gcs if alive(p)] == []


@differs(tini="tini exits at once, leaving the rest of the group running (or to the kernel's SIGKILL as PID 1)",
         dumb_init="dumb-init sends SIGTERM to the group and exits at once, without waiting for it")
def test_end_continues_a_stopped_member(run, mode, tmp_path):
    """A member stopped (SIGSTOP, a ^Z passed on) when the main child exits gets SIGCONT
    after its SIGTERM, as systemd does: it sat on the signal until the SIGKILL."""
    f = tmp_path / "gc.out"
    cmd = ["sh", "-c", '"$0" linger 300 print ready pause > "$1" & p=$!; '
           'until grep -q ready "$1"; do sleep 0.01; done; kill -STOP $p; exit 7', HELPER, str(f)]
    r = run(init_cmd(cmd, mode, evmon_opts=["-t", "60"]), mode)
    assert r.p.wait(T) == 7, r.err.text
    assert f.read_text() == "ready\nterm\nbye\n", r.err.text


@pytest.mark.skipif(IMPL != "evmon", reason="evmon's message")
@pytest.mark.parametrize("proc", ["empty", "foreign"])
def test_end_without_our_proc_keeps_the_grace(procs, tmp_path, proc):
    """/proc empty (a runtime's spec without the mount) or another PID namespace's
    (unshare -p without --mount-proc) read as "the group is empty": init exited at
    once, and the kernel's SIGKILL ended the rest without their grace. Now the group
    is polled with kill(-pgid, 0), and the log says so."""
    if os.geteuid() != 0:
        pytest.skip("needs root: a mount namespace to hide /proc in")
    if SAN and proc == "empty":
        pytest.skip("the sanitizers read their options from /proc/self/environ and need /proc at exit")
    f = tmp_path / "gc.out"
    hide = "mount -t tmpfs none /proc" if proc == "empty" else "true"
    inner = " ".join(shlex.quote(a) for a in [EVMON, "init", "-v", "--"] + lingering(f, 7))
    r = procs.run(["unshare", "-pfm", "--propagation", "private", "sh", "-c",
                   f"{hide}; exec {inner}"], timeout=T)
    assert r.returncode == 7, r
    assert f.read_text() == "ready\nterm\nbye\n", r.stderr
    assert "/proc is not this PID namespace's" in r.stderr, r.stderr


def test_end_no_wait_with_grace_zero(run, mode, tmp_path):
    """-t 0: SIGTERM to the group and exit at once (dumb-init's behaviour)"""
    if IMPL != "evmon":
        pytest.skip("evmon's -t only")
    f = tmp_path / "gc.out"
    # a linger far longer than init's exit can take on a loaded machine (the runner
    # ends the grandchild after the test)
    r = run(init_cmd(lingering(f, 7, ms=60000), mode, evmon_opts=["-t", "0"]), mode)
    assert r.p.wait(T) == 7, r.err.text
    assert "bye" not in f.read_text()  # the grandchild is still in its linger


def detached(f, code, *helper):
    """sh whose background helper leaves its group and session (setsid -f) and runs helper
    (printing "ready" into f), then exits with code."""
    return ["sh", "-c", 'setsid -f "$0" "$@" print ready pause > "%s"; '
            'until grep -q ready "%s"; do sleep 0.01; done; exit %d' % (f, f, code), HELPER,
            *map(str, helper)]


@pytest.mark.skipif(IMPL != "evmon", reason="evmon's -a only")
def test_end_all_waits_for_those_that_left_the_group(run, mode, tmp_path):
    """-a: init also waits for processes that left the group (setsid), after SIGTERM
    (as PID 1 every other process of the namespace, otherwise our descendants); without -a
    they are left alone"""
    f = tmp_path / "gc.out"
    r = run(init_cmd(detached(f, 7, "linger", 300), mode, evmon_opts=["-a"]), mode)
    assert r.p.wait(T) == 7, r.err.text
    assert f.read_text() == "ready\nterm\nbye\n"  # as init exits, not later
    # a double fork: re-parented to init (PID 1 or subreaper), still waited for
    f = tmp_path / "gc2.out"
    r = run(init_cmd(detached(f, 6, "daemonize", "linger", 300), mode, evmon_opts=["-a"]), mode)
    assert r.p.wait(T) == 6, r.err.text
    assert f.read_text() == "ready\nterm\nbye\n"
    f = tmp_path / "gc3.out"
    r = run(init_cmd(detached(f, 5, "linger", 300), mode), mode)
    assert r.p.wait(T) == 5, r.err.text
    assert f.read_text() == "ready\n"  # no SIGTERM (as PID 1: the kernel's SIGKILL as init exits)


@pytest.mark.skipif(IMPL != "evmon", reason="evmon's -a only")
def test_end_all_kills_stubborn(run, mode, tmp_path):
    """-a: processes outside the group ignoring SIGTERM get SIGKILL after the grace; none is left"""
    f, pids = tmp_path / "gc.out", tmp_path / "pids"
    helper = ["ignore", 15, "pidlog", pids]
    r = run(init_cmd(detached(f, 4, *helper), mode, evmon_opts=["-a", "-t", "0.2"]), mode)
    assert r.p.wait(T) == 4, r.err.text
    assert f.read_text() == "ready\n"
    if mode == "sub":  # as PID 1 the pid is the namespace's; the namespace is gone anyway
        pid = int(pids.read_text())
        assert not alive(pid)


def test_single_child_exits_at_once(run, mode, tmp_path):
    """-c (tini's default): init exits when the child does, and signals nothing to the rest"""
    f = tmp_path / "gc.out"
    r = run(init_cmd(lingering(f, 7), mode, fwd="child"), mode)
    assert r.p.wait(T) == 7, r.err.text
    assert f.read_text() == "ready\n"  # no SIGTERM (as PID 1: the kernel's SIGKILL as init exits)


@pytest.mark.skipif(IMPL != "evmon", reason="evmon's -t only")
def test_single_child_grace_when_asked(run, mode, tmp_path):
    """-c with -t or -a: the rest gets SIGTERM and the grace, as without -c"""
    for i, opts in enumerate((["-t", "2"], ["-a"])):
        f = tmp_path / f"gc{i}.out"
        r = run(init_cmd(lingering(f, 7), mode, fwd="child", evmon_opts=opts), mode)
        assert r.p.wait(T) == 7, r.err.text
        assert f.read_text() == "ready\nterm\nbye\n", opts


@pytest.mark.skipif(IMPL != "evmon", reason="evmon's -t only")
def test_single_child_grace_forwards_to_the_group(run, mode, tmp_path):
    """-c -t: a signal init receives during the grace goes to what is left of the child's
    group, as without -c (INIT.md): it was dropped ("the child is gone")."""
    f = tmp_path / "gc.out"
    argv = ["sh", "-c", '"$0" trap print ready pause > "$1" & '
            'until grep -q ready "$1"; do sleep 0.01; done; exit 7', HELPER, str(f)]
    r = run(init_cmd(argv, mode, fwd="child", evmon_opts=["-t", "5"]), mode)
    text = lambda: f.read_text() if f.exists() else ""
    wait_for(lambda: "signal 15" in text(), T, what="the grace's SIGTERM")
    os.kill(r.pid, signal.SIGUSR1)
    wait_for(lambda: "signal 10" in text(), T, what="SIGUSR1 forwarded in the grace")
    assert r.p.wait(T) == 7, r.err.text


# ------------------------------------------------------------ exec, argv, stdio

ODD_ARGS = ["a b", "", "*", "$HOME", "'\"`", "back\\slash", "line1\nline2", "tab\there", "-v", "--",
            "--help", "é ü 中", "x" * 3000]


def test_argv_exact(run, mode):
    """Arguments with spaces, empty strings and special characters arrive exactly"""
    r = run(init_cmd(H("argv", *ODD_ARGS), mode), mode)
    assert r.wait() == 0, r.err.text
    want = "".join(f"[{len(a.encode())}] {a}\n" for a in ODD_ARGS)
    assert r.out.text == want


@differs(tini="tini's getopt permutes arguments: options after CMD are taken as tini's")
def test_options_after_cmd_belong_to_cmd(run):
    """Without --, options after CMD are CMD's, not ours"""
    argv = init_cmd(H("argv", "-v", "-w", "x"), "sub")
    argv.remove("--")
    r = run(argv, "sub")
    assert r.wait() == 0, r.err.text
    assert r.out.text == "[2] -v\n[2] -w\n[1] x\n"


def test_stdio_passthrough(run, mode):
    """stdin, stdout and stderr are the child's"""
    r = run(init_cmd(H("cat", "eprint", "to-stderr"), mode), mode, stdin=subprocess.PIPE)
    r.p.stdin.write(b"hello\nworld\n")
    r.p.stdin.close()
    assert r.wait() == 0, r.err.text
    assert r.out.text == "hello\nworld\n"
    assert "to-stderr\n" in r.err.text


def test_env_passthrough(run, mode):
    """The environment is passed through"""
    r = run(init_cmd(H("env", "EVM_FOO", "env", "PATH"), mode), mode, env={"EVM_FOO": "bar baz=1"})
    assert r.wait() == 0, r.err.text
    assert "EVM_FOO=bar baz=1\n" in r.out.text
    assert f"PATH={os.environ['PATH']}\n" in r.out.text


@differs(tini="tini passes on the signals its parent ignored (nohup's SIGHUP, a background job's SIGINT)")
def test_signal_mask_clean(run, mode):
    """The child starts with no blocked signal, and default dispositions even for those init's parent ignored"""
    def ignore():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    r = run(init_cmd(H("status"), mode), mode, preexec_fn=ignore)
    assert r.wait() == 0, r.err.text
    assert "SigBlk:\t0000000000000000" in r.out.text
    ign = int(re.search(r"SigIgn:\t([0-9a-f]+)", r.out.text).group(1), 16)
    # 1-31 only: some environments (make, here) ignore glibc's internal 32 and 33,
    # which only evmon resets
    assert ign & 0x7fffffff == 0, r.out.text


def test_no_fd_leak(run, mode):
    """The child gets stdin, stdout and stderr, and no other file descriptor of init's"""
    r = run(init_cmd(H("fds"), mode), mode)
    assert r.wait() == 0, r.err.text
    assert sorted(r.out.text.split("\n")) == ["", "fd 0", "fd 1", "fd 2"], r.out.text


def test_closed_stdin_stays_closed(run, mode):
    """Started with stdin closed, the child finds it closed too: none of init's own
    descriptors (its signalfd, the loop's) takes fd 0 to become the child's stdin"""
    r = run(["bash", "-c", 'exec "$@" <&-', "bash"] + init_cmd(H("fds"), mode), mode)
    assert r.wait() == 0, r.err.text
    assert sorted(r.out.text.split("\n")) == ["", "fd 1", "fd 2"], r.out.text


def with_fds(path, argv, listen_pid=None):
    """bash opening fds 3-5 without close-on-exec (as runc --preserve-fds or socket
    activation leave them), then exec'ing argv, so the init has bash's pid.
    listen_pid: None (no LISTEN_*), "self" (the init's pid) or a number."""
    env = ""
    if listen_pid is not None:
        env = "export LISTEN_FDS=3 LISTEN_FDNAMES=a:b:c LISTEN_PID=%s; " % (
            "$$" if listen_pid == "self" else listen_pid)
    return ["bash", "-c", 'exec 3<"$0" 4>>"$0" 5<&0; ' + env + 'exec "$@"', str(path)] + argv


@pytest.mark.parametrize("listen", [False, True], ids=["plain", "LISTEN_FDS"])
def test_inherited_fds_reach_cmd(run, mode, tmp_path, listen):
    """Fds inherited above 2 without close-on-exec reach the child at the same numbers
    (runc --preserve-fds, socket activation's LISTEN_FDS)"""
    f = tmp_path / "fds"
    f.write_text("first line\n")
    lp = "self" if listen else None
    r = run(with_fds(f, init_cmd(H("fds"), mode), lp), mode)
    assert r.wait() == 0, r.err.text
    assert r.out.text == "fd 0\nfd 1\nfd 2\nfd 3\nfd 4\nfd 5\n", r.err.text
    sh = ['read l <&3; echo "fd 3: $l"; echo "via fd 4" >&4']
    r = run(with_fds(f, init_cmd(["sh", "-c"] + sh, mode), lp), mode)
    assert r.wait() == 0, r.err.text
    assert r.out.text == "fd 3: first line\n"
    assert f.read_text() == "first line\nvia fd 4\n"


@differs(tini="tini keeps its copies of the fds it passed on until it exits",
         dumb_init="dumb-init keeps its copies of the fds it passed on until it exits")
def test_inherited_fds_not_held_by_init(run, mode, tmp_path):
    """Init closes its copies of the fds the child inherited once it runs, as catatonit does
    (a pipe's reader sees EOF when the child closes its end, not when init exits)"""
    f = tmp_path / "fds"
    f.write_text("")
    r = run(with_fds(f, init_cmd(H("fds", "print", "ready", "pause"), mode)), mode)
    r.expect("ready")
    assert r.out.text.startswith("fd 0\nfd 1\nfd 2\nfd 3\nfd 4\nfd 5\n"), r.out.text

    def held():
        out = []
        for fd in os.listdir(f"/proc/{r.pid}/fd"):
            try:
                out.append(os.readlink(f"/proc/{r.pid}/fd/{fd}"))
            except OSError:
                pass
        return [t for t in out if t == str(f)]
    # the drop follows the spawn: wait for it rather than race it
    wait_for(lambda: held() == [], T, what=f"init to close its copies of {f}")
    r.kill(signal.SIGTERM)
    assert r.wait() == 143, r.err.text


@differs(tini="tini leaves LISTEN_PID as it is (its own pid), so the program's sd_listen_fds() "
         "ignores the sockets", dumb_init="dumb-init leaves LISTEN_PID as it is (its own pid), so the "
         "program's sd_listen_fds() ignores the sockets")
def test_listen_pid_rewritten(run, mode, tmp_path):
    """Socket activation: LISTEN_PID, when it is init's pid, becomes the child's pid (catatonit)
    when LISTEN_FDS is set; another LISTEN_PID is left alone"""
    f = tmp_path / "fds"
    f.write_text("")
    probe = H("pgid", "env", "LISTEN_PID", "env", "LISTEN_FDS", "env", "LISTEN_FDNAMES")
    r = run(with_fds(f, init_cmd(probe, mode), "self"), mode)
    assert r.wait() == 0, r.err.text
    pid = re.search(r"^pid (\d+)", r.out.text, re.M).group(1)
    assert f"LISTEN_PID={pid}\nLISTEN_FDS=3\nLISTEN_FDNAMES=a:b:c\n" in r.out.text, r.out.text
    r = run(with_fds(f, init_cmd(probe, mode), 4194304), mode)
    assert r.wait() == 0, r.err.text
    assert "LISTEN_PID=4194304\nLISTEN_FDS=3\n" in r.out.text, r.out.text
    # init's pid with more after it is not init's pid (as sd_listen_fds reads it)
    r = run(with_fds(f, init_cmd(probe, mode), "${$}x"), mode)
    assert r.wait() == 0, r.err.text
    assert re.search(r"^LISTEN_PID=\d+x\nLISTEN_FDS=3\n", r.out.text, re.M), r.out.text


def test_sigpipe_on_stderr_not_forwarded(run, mode):
    """Init writing to a closed stderr does not forward its own SIGPIPE to the child"""
    if IMPL != "evmon":
        pytest.skip("evmon's messages")
    r = run([EVMON, "init", "-vvv", "--"] + H("trap-exit", 10, "print", "ready", "pause"), mode,
            stderr=subprocess.PIPE)
    r.expect("ready")
    r.p.stderr.close()  # init's next message gets EPIPE and a SIGPIPE of its own
    r.kill(signal.SIGHUP)
    r.expect("signal 1\n")
    r.kill(signal.SIGUSR1)
    assert r.wait() == 0
    assert "signal 13\n" not in r.out.text


def exec_error_lines(r, cmd):
    """What init said about a failed exec of cmd: for evmon all of stderr; for the
    others the lines naming cmd (tini warns first, in three lines, that it is no
    subreaper, which evmon is by default)."""
    lines = r.err.text.splitlines()
    return lines if IMPL == "evmon" else [line for line in lines if cmd in line]


@differs(dumb_init="dumb-init exits 2 on every exec failure")
def test_exec_not_found(run, mode):
    """CMD not found: exit 127 and one line naming CMD and the reason"""
    r = run(init_cmd(["/nonexistent/evm-cmd", "x"], mode), mode)
    assert r.wait() == 127
    assert "/nonexistent/evm-cmd" in r.err.text and "No such file or directory" in r.err.text
    assert len(exec_error_lines(r, "/nonexistent/evm-cmd")) == 1, r.err.text


@differs(dumb_init="dumb-init exits 2 on every exec failure")
def test_exec_not_found_in_path(run, mode):
    """CMD not in PATH: exit 127 and one line naming CMD"""
    r = run(init_cmd(["evm-no-such-command-xyz"], mode), mode)
    assert r.wait() == 127
    assert "evm-no-such-command-xyz" in r.err.text
    assert len(exec_error_lines(r, "evm-no-such-command-xyz")) == 1, r.err.text


@differs(dumb_init="dumb-init exits 2 on every exec failure")
@pytest.mark.parametrize("what", ["noexec-file", "directory"])
def test_exec_not_executable(run, mode, tmp_path, what):
    """CMD not executable (a plain file, a directory): exit 126 and one line with the reason"""
    p = tmp_path / "cmd"
    if what == "directory":
        p.mkdir()
    else:
        p.write_text("#!/bin/sh\necho hi\n")
        p.chmod(0o644)
    r = run(init_cmd([str(p)], mode), mode)
    assert r.wait() == 126
    assert str(p) in r.err.text and "Permission denied" in r.err.text
    assert len(exec_error_lines(r, str(p))) == 1, r.err.text


def test_script_without_shebang(run, mode, tmp_path):
    """An executable file without #! runs with /bin/sh, as execvp does"""
    p = tmp_path / "script"
    p.write_text('echo "script says $1"\nexit 9\n')
    p.chmod(0o755)
    r = run(init_cmd([str(p), "hi"], mode), mode)
    assert r.wait() == 9, r.err.text
    assert r.out.text == "script says hi\n"


# ------------------------------------------------------------ parent death, tty, cli

def test_pdeath_signal(run):
    """-p SIGUSR1: when init's parent dies, init gets SIGUSR1 and forwards it"""
    inner = init_cmd(H("trap-exit", 10, "print", "ready", "pause"), "sub", pdeath="SIGUSR1")
    # sh starts init, then exits when told to (a line on its stdin)
    r = run(["sh", "-c", '"$@" & read x; exit 0', "sh"] + inner, "sub", stdin=subprocess.PIPE)
    r.expect("ready")
    r.p.stdin.write(b"go\n")
    r.p.stdin.close()
    r.expect("signal 10\n")


def pty_run(run, argv, mode, stderr=subprocess.PIPE):
    """Start with a new pty as controlling terminal and stdin/stdout (and stderr if asked)."""
    import fcntl
    import pty
    import termios
    master, slave = pty.openpty()

    def ctty():  # procs.spawn has made us a session leader already
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    r = run(argv, mode, stdin=slave, stdout=slave, stderr=slave if stderr is None else stderr,
            preexec_fn=ctty)
    os.close(slave)
    return r, master


class PtyReader:
    def __init__(self, fd):
        self.fd, self.buf = fd, b""

    def until(self, pred, timeout=T):
        import select
        deadline = time.monotonic() + timeout
        while not pred(self.buf.decode(errors="replace")):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"pty: timed out; got {self.buf[-800:]!r}")
            if select.select([self.fd], [], [], left)[0]:
                try:
                    b = os.read(self.fd, 4096)
                except OSError:
                    b = b""
                if not b:
                    raise AssertionError(f"pty closed; got {self.buf[-800:]!r}")
                self.buf += b
        return self.buf.decode(errors="replace")


def test_tty_foreground(run, mode):
    """With a terminal, the child's group is its foreground group: Ctrl-C reaches the child"""
    r, master = pty_run(run, init_cmd(H("trap-exit", 2, "pgid", "print", "ready", "pause"), mode), mode)
    try:
        rd = PtyReader(master)
        rd.until(lambda s: "ready" in s)
        os.write(master, b"\x03")
        rd.until(lambda s: "signal 2" in s)
        assert r.wait() == 0, r.err.text
    finally:
        os.close(master)


@differs(modes=["pid1"], dumb_init="dumb-init hands the terminal to its child only when it is the session "
         "leader itself (it is under docker, not under unshare --fork)")
def test_tty_bash_job_control(run, mode):
    """docker run -it: an interactive bash under init has job control (Ctrl-Z works)"""
    r, master = pty_run(run, init_cmd(["bash", "--norc", "--noprofile", "-i"], mode), mode, stderr=None)
    try:
        rd = PtyReader(master)
        os.write(master, b"PS1='$ '; echo job-$((6*7))\n")
        rd.until(lambda s: "job-42" in s)
        os.write(master, b"sleep 100\n")
        # once sleep has exec'd, bash has made its group the terminal's foreground
        wait_for(lambda: [p for p in tagged(r.tag) if cmdline(p) == b"sleep\0" b"100\0"], T,
                 what="sleep 100 running")
        os.write(master, b"\x1a")
        os.write(master, b"jobs; echo jobs-$((5*5))\n")
        out = rd.until(lambda s: "jobs-25" in s)
        assert "no job control" not in out and "cannot set terminal" not in out, out
        assert re.search(r"\[1\]\+\s+Stopped\s+sleep 100", out), out
        # a second exit overrides bash's "There are stopped jobs" if the kill is not seen yet
        os.write(master, b"kill -9 %1; exit 3\nexit 3\n")
        assert r.wait() == 3
    finally:
        os.close(master)


def test_usage_errors(run):
    """No CMD, or an unknown option: exit 1 with usage on stderr; -h: exit 0"""
    base = init_cmd(["x"], "sub")[:-2]  # the init and its options, without -- CMD
    r = run(base, "sub")
    assert r.wait() == 1
    assert re.search(r"(?i)usage", r.err.text)
    r = run(base + ["-Q", "--", "true"], "sub")
    assert r.wait() == 1
    r = run(base + ["-h"], "sub")
    assert r.wait() == 0
    assert re.search(r"(?i)usage", r.out.text + r.err.text)


def test_version(run):
    """--version prints a version and exits 0"""
    r = run(init_cmd(["x"], "sub")[:-2] + ["--version"], "sub")
    assert r.wait() == 0
    assert re.search(r"\d+\.\d+\.\d+", r.out.text + r.err.text)


def test_license(run):
    """-l prints version/license information and exits 0"""
    if IMPL == "dumb-init":
        pytest.skip("dumb-init has no -l")
    r = run(init_cmd(["x"], "sub")[:-2] + ["-l"], "sub")
    assert r.wait() == 0
    assert r.out.text.strip()
    if IMPL == "evmon":
        assert "MIT License" in r.out.text


@pytest.mark.skipif(IMPL != "evmon", reason="evmon's messages")
def test_signal_names_and_numbers(run, mode):
    """Signals are accepted by name or number: TERM, SIGTERM, 15, and RTMIN+N"""
    for spec in ["SIGTERM:USR1", "TERM:10", "15:SIGUSR1", "sigterm:usr1"]:
        r = run([EVMON, "init", "-r", spec, "--"] + H("trap-exit", 10, "print", "ready", "pause"), mode)
        r.expect("ready")
        r.kill(signal.SIGTERM)
        assert r.wait() == 0, (spec, r.err.text)
    r = run([EVMON, "init", "-r", "BOGUS:1", "--", "true"], mode)
    assert r.wait() == 1 and "BOGUS" in r.err.text
    # never forwarded (KILL and STOP never reach the init; CHLD is its own): refused,
    # not accepted to do nothing
    for spec in ["CHLD:TERM", "SIGKILL:0", "19:1"]:
        r = run([EVMON, "init", "-r", spec, "--", "true"], mode)
        assert r.wait() == 1 and "never forwarded" in r.err.text, (spec, r.err.text)


@pytest.mark.skipif(IMPL != "evmon", reason="evmon's -t")
def test_grace_durations(run):
    """-t takes the config's duration grammar: ms, s (the default), m and h"""
    for spec in ["0", "2", "2.5", ".5s", "250ms", "0.5m", "1h"]:
        r = run([EVMON, "init", "-t", spec, "--"] + H("exit", 4), "sub")
        assert r.wait() == 4, (spec, r.err.text)
    for spec in ["", ".", "-1", "1e3", "2 s", "5d", "1x"]:
        r = run([EVMON, "init", "-t", spec, "--", "true"], "sub")
        assert r.wait() == 1 and "expected a duration" in r.err.text, (spec, r.err.text)
    for spec in ["10000000001", "100000000000000ms", "99999999999999999999h"]:
        r = run([EVMON, "init", "-t", spec, "--", "true"], "sub")
        assert r.wait() == 1 and "too long a duration (at most 10000000000 s)" in r.err.text, \
            (spec, r.err.text)


@pytest.mark.skipif(IMPL != "evmon", reason="evmon's binary name")
def test_invoked_as_evmon_init(run, tmp_path):
    """Called through a link named evmon-init, the binary is `evmon init`"""
    link = tmp_path / "evmon-init"
    link.symlink_to(EVMON)
    r = run([str(link), "--"] + H("exit", 3), "sub")
    assert r.wait() == 3


@pytest.mark.skipif(IMPL != "evmon", reason="evmon's binary name")
def test_invoked_as_runtime_init(run, mode, tmp_path):
    """Called by another name (podman's /run/podman-init) or as `evmon -- CMD`, the binary is `evmon init`
    (podman --init-path); messages begin with the name it was called by"""
    link = tmp_path / "podman-init"
    link.symlink_to(EVMON)
    r = run([str(link), "--"] + H("trap-exit", 10, "print", "ready", "pause"), mode)
    r.expect("ready")
    r.kill(signal.SIGUSR1)
    assert r.wait() == 0 and "signal 10\n" in r.out.text, r.err.text
    r = run([str(link), "--", "/nonexistent/evm-cmd"], mode)
    assert r.wait() == 127
    assert r.err.text == "podman-init: exec /nonexistent/evm-cmd: No such file or directory\n"
    # argv[0] alone decides, whatever the file is called (bash's exec -a)
    r = run(["bash", "-c", 'exec -a /run/podman-init "$0" -v -- "$@"', EVMON, "/nonexistent/evm-cmd"], mode)
    assert r.wait() == 127
    assert r.err.text == "podman-init: exec /nonexistent/evm-cmd: No such file or directory\n"
    r = run([EVMON, "--"] + H("exit", 4), mode)
    assert r.wait() == 4, r.err.text
    r = run([EVMON, "--", "/nonexistent/evm-cmd"], mode)
    assert r.wait() == 127
    assert r.err.text == "evmon init: exec /nonexistent/evm-cmd: No such file or directory\n"
    # a subcommand's name is CMD under any other name (an empty PATH: no daemon(1) found)
    r = run([str(link), "daemon"], "sub", env={"PATH": str(tmp_path / "empty")})
    assert r.wait() == 127 and r.err.text == "podman-init: exec daemon: No such file or directory\n"


@pytest.fixture(scope="module")
def static_init():
    """$EVMON_BUILD/evmon-init, built by `make static` (-Os, no sanitizers, whatever the build)."""
    return _make_init("static", os.path.join(BUILD, "evmon-init"), r"evmon-init: static, stripped, \d+ bytes")


def _make_init(target, path, pattern):
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    r = subprocess.run(["make", "-s", "-C", ROOT, f"BUILD={BUILD}", target], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(pattern, r.stdout), r.stdout
    return path


@pytest.fixture(scope="module")
def dynamic_init():
    """$EVMON_BUILD/dynamic/evmon-init, built by `make init-dynamic` (make install's evmon-init)."""
    return _make_init("init-dynamic", os.path.join(BUILD, "dynamic", "evmon-init"),
                      r"evmon-init: dynamic \(libc only\), stripped, \d+ bytes")


def _check_standalone(run, init_bin):
    """The standalone evmon-init is evmon init: version, exit codes, forwarding, reaping as PID 1."""
    with open(os.path.join(ROOT, "VERSION")) as f:
        version = f.read().strip()
    r = subprocess.run([init_bin, "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout == f"evmon init {version}\n", r.stdout + r.stderr
    init = [init_bin, "-w", "--"]
    assert run(init + H("exit", 42), "pid1").wait() == 42
    assert run(init + H("kill", 9), "pid1").wait() == 137
    r = run(init + ["/nonexistent/evm-cmd"], "pid1")
    assert r.wait() == 127 and r.err.text == "evmon-init: exec /nonexistent/evm-cmd: No such file or directory\n"
    r = run(init + H("trap-exit", 10, "print", "ready", "pause"), "pid1")
    r.expect("ready")
    r.kill(signal.SIGUSR1)
    assert r.wait() == 0 and "signal 10\n" in r.out.text, r.err.text
    r = run(init + storm_cmd("burst", 100), "pid1")
    r.expect("spawned", timeout=T * 3)
    settle(r, "pid1")
    wait_for(lambda: reap_warnings(r.err.text) >= 100, T, what="100 reap warnings")
    r.kill(signal.SIGTERM)
    assert r.wait() == 143, r.err.text
    assert reap_warnings(r.err.text) == 100


@pytest.mark.skipif(IMPL != "evmon", reason="evmon's static build")
def test_static_build(run, static_init):
    """make static: a static evmon-init that is evmon init (exit codes, forwarding, reaping as PID 1)"""
    assert _is_static(static_init)
    r = subprocess.run(["readelf", "-d", static_init], capture_output=True, text=True, timeout=30)
    assert "NEEDED" not in r.stdout, r.stdout
    _check_standalone(run, static_init)


@pytest.mark.skipif(IMPL != "evmon", reason="evmon's dynamic init build")
def test_dynamic_build(run, dynamic_init):
    """make init-dynamic: an evmon-init that needs libc alone and is evmon init (as PID 1)"""
    assert not _is_static(dynamic_init)
    r = subprocess.run(["readelf", "-d", dynamic_init], capture_output=True, text=True, timeout=30)
    assert re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]", r.stdout) == ["libc.so.6"], r.stdout
    _check_standalone(run, dynamic_init)


test_static_build.runs_as = "pid1"  # for the compat table
test_dynamic_build.runs_as = "pid1"


@pytest.mark.skipif(IMPL != "evmon", reason="evmon's own binary")
def test_init_path_first():
    """evmon init's code comes first in the evmon binary (src/init/layout.ld): a running init maps little of the daemon's"""
    r = subprocess.run(["readelf", "-SW", EVMON], capture_output=True, text=True, timeout=60)
    m = re.search(r"\.text\.evmon_init\s+PROGBITS\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", r.stdout)
    assert m, "no .text.evmon_init section: evmon was not linked with src/init/layout.ld\n" + r.stdout
    start, size = int(m.group(1), 16), int(m.group(2), 16)
    text = re.search(r"\s\.text\s+PROGBITS\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)", r.stdout)
    assert text and size < int(text.group(1), 16) / 2, r.stdout  # the init's part, not the daemon's
    r = subprocess.run(["nm", "--defined-only", EVMON], capture_output=True, text=True, timeout=60)
    addr = {}
    for line in r.stdout.splitlines():
        f = line.split()
        if len(f) == 3 and f[1] in "tT":
            addr.setdefault(f[2], int(f[0], 16))
    # its start, its loop, the spawn (parent and child side), the reaping of an orphan
    for fn in ("main", "cmd_init", "evm_loop_new", "evm_loop_run_once", "evm__epoll_wait", "evm_spawn",
               "evm__spawn_clone", "evm__spawn_child", "evm__reap_sigchld", "evm__proc_exited"):
        assert fn in addr, fn
        assert start <= addr[fn] < start + size, f"{fn} is outside .text.evmon_init"


def _sections(path):
    """{name: (address, file offset, size)} of an ELF file's sections (readelf)."""
    r = subprocess.run(["readelf", "-SW", path], capture_output=True, text=True, timeout=60)
    return {m.group(1): tuple(int(m.group(i), 16) for i in (2, 3, 4)) for m in
            re.finditer(r"\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", r.stdout)}


@pytest.mark.skipif(IMPL != "evmon", reason="evmon's own binary")
@pytest.mark.skipif(bool(SAN), reason="the sanitizers' constructors run in every object")
def test_init_maps_none_of_the_daemon():
    """a running evmon init maps no page of the daemon's code or constants, and loads no library but libc"""
    r = subprocess.run(["readelf", "-d", EVMON], capture_output=True, text=True, timeout=30)
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]", r.stdout)
    assert not [n for n in needed if "cjson" in n], needed  # opened by the daemon and ctl (cjson.h)
    inih_a = subprocess.run(["pkg-config", "--variable=libdir", "inih"], capture_output=True, text=True,
                            timeout=30).stdout.strip() + "/libinih.a"
    if os.path.exists(inih_a):  # the Makefile links it statically then
        assert not [n for n in needed if "inih" in n], needed
    sec = _sections(EVMON)
    # the daemon's: .text and .rodata, each in a mapping with none of the init's
    daemon = {name: sec[name][1] for name in (".text", ".rodata")}
    p = subprocess.Popen([EVMON, "init", "--", "sleep", "1000"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def started():  # the child past its exec: init's start is over
            for c in children_of(p.pid):
                try:
                    if os.path.basename(os.readlink(f"/proc/{c}/exe")) == "sleep":
                        return True
                except OSError:
                    pass
            return False
        wait_for(started, T, what="init's child to exec sleep")
        exe = os.path.realpath(EVMON)
        with open(f"/proc/{p.pid}/smaps") as f:
            maps, cur = [], None
            for line in f:
                m = re.match(r"([0-9a-f]+)-([0-9a-f]+) \S+ ([0-9a-f]+) \S+ \d+\s+(.*)$", line)
                if m:
                    lo, hi, off = (int(m.group(i), 16) for i in (1, 2, 3))
                    cur = [off, off + hi - lo, m.group(4).strip(), None]
                    maps.append(cur)
                elif line.startswith("Rss:"):
                    cur[3] = int(line.split()[1])
        for name, off in daemon.items():
            mine = [m for m in maps if m[2] == exe and m[0] <= off < m[1]]
            assert len(mine) == 1, (name, maps)
            assert mine[0][3] == 0, f"{name}: {mine[0][3]} KiB of the daemon's mapping resident in a running init"
        init = [m for m in maps if m[2] == exe and m[0] <= sec[".text.evmon_init"][1] < m[1]]
        assert init and init[0][3] > 0, maps  # the init's own code is, in another mapping
    finally:
        p.terminate()  # forwarded to sleep, which dies of it; then init exits
        try:
            p.wait(timeout=T)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.mark.skipif(IMPL != "evmon", reason="evmon's static build")
def test_static_assert_handler(static_init, tmp_path):
    """make static: evmon-init's own assert handler (not glibc's) prints glibc's line, then aborts"""
    obj = os.path.join(BUILD, "static", "init", "assert.o")
    src = tmp_path / "a.c"
    src.write_text("#include <assert.h>\nint main(int argc, char **argv)\n{\n"
                   "\t(void)argv;\n\tassert(argc == 42);\n\treturn 0;\n}\n")
    exe = tmp_path / "a"
    # the flags of `make static`'s link, and its compiler (the environment's CC, as for the
    # make above): the object is an LTO object, which only that compiler links (clang's is
    # LLVM bitcode: gcc's linker plugin says "file format not recognized")
    cc = shlex.split(os.environ.get("CC") or "cc")
    r = subprocess.run(cc + ["-static", "-flto", "-Os", "-Wl,--gc-sections", "-o", str(exe), str(src), obj,
                             "-Wl,-y,__assert_fail"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    # the linker's trace: defined by our object, not by libc.a's assert.o
    assert re.search(r"assert\.o(\s|\(|:).*definition of __assert_fail", r.stdout + r.stderr), r.stderr
    assert "libc.a(assert.o)" not in r.stdout + r.stderr
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    assert r.returncode == -signal.SIGABRT
    # glibc's line from glibc's handler (the same program without our object), but for the
    # program name: the function is the compiler's (gcc "main", clang "int main(int, char **)")
    glibc = tmp_path / "glibc"
    g = subprocess.run(cc + ["-static", "-Os", "-o", str(glibc), str(src)], capture_output=True, text=True,
                       timeout=300)
    assert g.returncode == 0, g.stderr
    g = subprocess.run([str(glibc)], capture_output=True, text=True, timeout=30)
    assert g.returncode == -signal.SIGABRT and g.stderr.startswith("glibc: "), g.stderr
    assert f"{src}:5: " in g.stderr and ": Assertion `argc == 42' failed.\n" in g.stderr, g.stderr
    assert r.stderr == "evmon-init: " + g.stderr[len("glibc: "):]


# ------------------------------------------------------------ compat report

def _report(xmls):
    """Markdown table from the JUnit files of the evmon, tini and dumb-init runs."""
    import xml.etree.ElementTree as ET
    mod = sys.modules[__name__]
    impls = []
    rows = {}   # (func, mode) -> {impl: [outcomes]}
    notes = {}
    for path in xmls:
        impl = re.search(r"compat-(.+)\.xml$", path).group(1)
        impls.append(impl)
        for tc in ET.parse(path).getroot().iter("testcase"):
            name = tc.get("name")
            func, _, params = name.partition("[")
            m = re.search(r"(?:^|-)(pid1|sub)(?:-|\]|$)", params)
            md = m.group(1) if m else getattr(getattr(mod, func, None), "runs_as", "sub")
            out = "same"
            for child in tc:
                if child.tag in ("failure", "error"):
                    out = "DIFFERS (undocumented)"
                elif child.tag == "skipped":
                    msg = child.get("message", "")
                    if child.get("type") == "pytest.xfail" or "xfail" in child.get("type", ""):
                        out = "differs"
                        notes[(func, impl)] = msg.split(": ", 1)[-1] if ": " in msg else msg
                    else:
                        out = "n/a"
                        notes.setdefault((func, impl, "skip"), msg.replace("Skipped: ", ""))
            rows.setdefault((func, md), {}).setdefault(impl, []).append(out)
    others = [i for i in impls if i != "evmon"]
    lines = ["| behaviour | as | " + " | ".join(["evmon"] + others) + " |",
             "|---|---|" + "---|" * (1 + len(others))]
    order = [n for n in dir(mod) if n.startswith("test_")]
    order.sort(key=lambda n: getattr(mod, n).__code__.co_firstlineno)
    for func in order:
        doc = (getattr(mod, func).__doc__ or func).strip().splitlines()[0]
        for md in ("pid1", "sub"):
            cell = rows.get((func, md))
            if not cell:
                continue
            def word(impl):
                outs = cell.get(impl, ["n/a"])
                if any(o.startswith("DIFFERS") for o in outs):
                    return "**FAIL**" if impl == "evmon" else "**DIFFERS (undocumented)**"
                if "differs" in outs:
                    return "differs¹"
                if all(o == "n/a" for o in outs):
                    return "n/a²"
                return "pass" if impl == "evmon" else "same"
            lines.append(f"| {doc} | {'PID 1' if md == 'pid1' else 'subreaper'} | "
                         + " | ".join(word(i) for i in ["evmon"] + others) + " |")
    lines.append("")
    lines.append("¹ deliberate differences, measured (the test fails for that implementation, as expected):")
    lines.append("")
    for func in order:
        for impl in others:
            if (func, impl) in notes:
                doc = (getattr(mod, func).__doc__ or func).strip().splitlines()[0]
                lines.append(f"- {impl}, \"{doc}\": {notes[(func, impl)]}")
    lines.append("")
    lines.append("² not applicable: the implementation lacks the option the test needs, "
                 "or the test is about evmon alone:")
    lines.append("")
    seen = set()
    for (func, impl, *rest) in sorted(k for k in notes if len(k) == 3):
        msg = notes[(func, impl, "skip")]
        if msg in seen:
            continue
        seen.add(msg)
        lines.append(f"- {msg}")
    return "\n".join(lines) + "\n"


def _is_static(path):
    """True if the ELF file has no program interpreter (PT_INTERP)."""
    import struct
    with open(path, "rb") as f:
        h = f.read(64)
        phoff, = struct.unpack_from("<Q", h, 32)
        phentsize, phnum = struct.unpack_from("<HH", h, 54)
        f.seek(phoff)
        ph = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", ph, k * phentsize)[0] != 3 for k in range(phnum))


def _rss(argv, runs=5):
    """Median VmRSS and Pss (kB) of argv running `sleep 1000` as PID 1."""
    import statistics
    rss, pss = [], []
    for _ in range(runs):
        p = subprocess.Popen(UNSHARE + argv + ["sleep", "1000"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            init = wait_for(lambda: children_of(p.pid), 10, what="init")[0]
            wait_for(lambda: children_of(init), 10, what="its child")
            time.sleep(0.3)
            with open(f"/proc/{init}/status") as f:
                rss.append(int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)))
            with open(f"/proc/{init}/smaps_rollup") as f:
                pss.append(int(re.search(r"Pss:\s+(\d+)", f.read()).group(1)))
        finally:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return statistics.median(rss), statistics.median(pss)


def _footprint(static_bin):
    import shutil
    rows = [("evmon-init (make static)", [os.path.abspath(static_bin), "--"]),
            ("evmon-init (make init-dynamic)", [os.path.join(BUILD, "dynamic", "evmon-init"), "--"]),
            ("evmon init", [EVMON, "init", "--"]),
            ("tini", ["tini", "--"]), ("tini-static", ["tini-static", "--"]),
            ("dumb-init", ["dumb-init", "--"]), ("catatonit", ["catatonit", "--"])]
    lines = ["| init | binary | size (bytes) | VmRSS (kB) | Pss (kB) |", "|---|---|---:|---:|---:|"]
    for name, argv in rows:
        path = shutil.which(argv[0])
        if not path:
            continue
        rss, pss = _rss(argv)
        lines.append(f"| {name} | {'static' if _is_static(path) else 'dynamic'} | "
                     f"{os.stat(path).st_size:,} | {rss:,.0f} | {pss:,.0f} |")
    return "\n".join(lines) + "\n"


def _size_check(static_bin):
    """1 if the static evmon-init is bigger than Debian's tini-static (docs/INIT.md's promise)."""
    import shutil
    size = os.stat(static_bin).st_size
    tini = shutil.which("tini-static")
    if not tini:
        print(f"{static_bin}: {size:,} bytes; no tini-static to compare with (apt-get install tini)")
        return 0
    ref = os.stat(tini).st_size
    print(f"{static_bin}: {size:,} bytes, tini-static {ref:,} bytes: "
          f"{'margin' if size <= ref else 'OVER by'} {abs(ref - size):,} bytes")
    return 0 if size <= ref else 1


def _replace(doc, name, body):
    text = open(doc).read()
    begin, end = f"<!-- {name}: generated by make", f"<!-- end of {name} -->"
    i = text.index(begin)
    i = text.index("-->", i) + 3
    j = text.index(end)
    open(doc, "w").write(text[:i] + "\n" + body + "\n" + text[j:])


def _main(argv):
    """--report DOC XML...: the compat table; --footprint DOC STATIC_BIN: sizes and RSS."""
    if len(argv) >= 3 and argv[0] == "--report":
        doc, xmls = argv[1], argv[2:]
        table = _report(xmls)
        stamp = f"Measured {time.strftime('%Y-%m-%d')} with " + ", ".join(_versions()) + ".\n\n"
        _replace(doc, "compat table", stamp + table)
        bad = table.count("DIFFERS (undocumented)") + table.count("**FAIL**")
        if bad:
            print(f"{bad} undocumented differences or evmon failures: see {doc}", file=sys.stderr)
            return 1
        return 0
    if len(argv) == 2 and argv[0] == "--size":
        return _size_check(argv[1])
    if len(argv) == 3 and argv[0] == "--footprint":
        body = (f"Measured {time.strftime('%Y-%m-%d')} on {os.uname().release}, each init running "
                "`sleep 1000` as PID 1 (median of 5; Pss shares library pages among their users).\n\n"
                + _footprint(argv[2]))
        _replace(argv[1], "footprint", body)
        print(body)
        return _size_check(argv[2])
    print("usage: test_init.py --report DOC XML... | --footprint DOC STATIC_BIN | --size STATIC_BIN",
          file=sys.stderr)
    return 2


def _versions():
    out = []
    for cmd in (["tini", "--version"], ["dumb-init", "--version"]):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            out.append((r.stdout + r.stderr).strip())  # dumb-init prints it on stderr
        except OSError:
            pass
    return out


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
