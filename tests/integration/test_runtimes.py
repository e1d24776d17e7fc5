"""evmon under real OCI runtimes (runc, crun, podman), side by side with tini.

Until now evmon init was tested as PID 1 under `unshare` only. Here the static
evmon-init (`make static`) and Debian's tini-static sit in the same minimal
busybox rootfs, and each check runs once per init under the real runtime:
exit codes, `runc kill` signals reaching the program, orphans reaped, the main
program exiting while grandchildren run, and `evmon daemon` as a container's
PID 1. Startup overhead is a measurement, not a test: bench/runtimes.py.

Every check skips with the reason when the runtime, busybox-static,
tini-static or root is missing (.ci/run installs them). Each container has a
unique id and is deleted (`runc delete --force`) when its test ends, pass or
fail; the runtime's own processes are the procs fixture's.
"""
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import BUILD, EVMON, REAL_ROOT, SAN, SLOW, wait_for

INIT_STATIC = os.path.join(BUILD, "evmon-init")
BUSYBOX = "/bin/busybox"
TINI = "/usr/bin/tini-static"
APPLETS = ("sh", "sleep", "kill", "ps", "echo", "cat", "seq", "grep", "true", "wc", "test", "[")
INITS = {
    "evmon": ["/sbin/evmon-init", "--"],
    "tini": ["/sbin/tini", "--"],
}


def _missing():
    if not REAL_ROOT:
        return "needs root: OCI runtimes need root here"
    if not shutil.which("runc"):
        return "runc is not installed (apt-get install runc)"
    if not os.path.exists(BUSYBOX) or "statically linked" not in _file(BUSYBOX):
        return "busybox-static is not installed"
    if not os.access(TINI, os.X_OK):
        return "tini-static is not installed (Debian package tini)"
    if not os.access(INIT_STATIC, os.X_OK):
        return f"{INIT_STATIC} is not built (make static)"
    return None


def _file(path):
    with open(path, "rb") as f:
        head = f.read(4096 * 4)
    # a static ELF has no PT_INTERP, so no "ld-linux" path in its first pages
    return "dynamically linked" if b"ld-linux" in head else "statically linked"


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    """busybox-static, evmon-init and tini-static in an otherwise empty root."""
    root = tmp_path_factory.mktemp("oci") / "rootfs"
    for d in ("bin", "sbin", "proc", "sys", "dev", "tmp", "etc"):
        (root / d).mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for a in APPLETS:
        os.symlink("busybox", root / "bin" / a)
    shutil.copy(INIT_STATIC, root / "sbin" / "evmon-init")
    shutil.copy(TINI, root / "sbin" / "tini")
    return root


class Runc:
    """One container per run: a bundle whose config.json is written per test."""

    seq = 0

    def __init__(self, procs, tmp_path, rootfs, runtime="runc", cmd=None):
        """cmd: how to run the runtime (default: [runtime])."""
        self.procs, self.dir, self.rootfs, self.runtime = procs, tmp_path, rootfs, runtime
        self.cmd = list(cmd or [runtime])
        self.ids = []

    def bundle(self, args, mounts=(), root=None, env=()):
        b = self.dir / f"bundle{len(self.ids)}"
        b.mkdir()
        subprocess.run(self.cmd + ["spec", "--bundle", str(b)], check=True)
        with open(b / "config.json") as f:
            c = json.load(f)
        c["root"] = {"path": str(root or self.rootfs), "readonly": False}
        c["process"]["terminal"] = False
        c["process"]["args"] = list(args)
        c["process"]["env"] += list(env)
        c["hostname"] = "evmon-test"
        if self.cmd == CRUN_UNIFIED:
            # a v2 device filter is an eBPF program, and crun raises RLIMIT_MEMLOCK to load it,
            # which this host does not allow (no CAP_SYS_RESOURCE); the tests need no filter
            c["linux"].get("resources", {}).pop("devices", None)
        for src, dst, ro in mounts:
            c["mounts"].append({"destination": dst, "type": "bind", "source": str(src),
                                "options": ["rbind", "ro" if ro else "rw"]})
        with open(b / "config.json", "w") as f:
            json.dump(c, f)
        return b

    def start(self, args, wrap=(), run_args=(), **kw):
        """`runc run` in the foreground: its stdio are the container's. wrap: a command that
        execs the runtime (to hand it fds); run_args: options of `runc run`."""
        Runc.seq += 1
        cid = f"evmon-test-{os.getpid()}-{Runc.seq}"
        self.ids.append(cid)
        b = self.bundle(args, **kw)
        return cid, self.procs.spawn(list(wrap) + self.cmd + ["run", *run_args, "--bundle", str(b), cid],
                                     stdin=subprocess.DEVNULL)

    def run(self, args, timeout=60, **kw):
        cid, p = self.start(args, **kw)
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    def kill(self, cid, sig):
        subprocess.run(self.cmd + ["kill", cid, sig], check=True, timeout=30)

    def cleanup(self):
        for cid in self.ids:
            subprocess.run(self.cmd + ["delete", "--force", cid], capture_output=True, timeout=30)


@pytest.fixture
def runc(procs, tmp_path, rootfs):
    r = Runc(procs, tmp_path, rootfs)
    yield r
    r.cleanup()


def read_until(p, token, timeout=30):
    """Lines of p's stdout until one contains token."""
    seen = []
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        line = p.stdout.readline().decode(errors="replace")
        if not line:
            break
        seen.append(line)
        if token in line:
            return seen
    raise AssertionError(f"no {token!r} from the container: {seen!r}")


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("script,code", [("exit 0", 0), ("exit 7", 7), ("kill -TERM $$", 128 + 15),
                                         ("kill -KILL $$", 128 + 9)])
def test_exit_code(runc, init, script, code):
    rc, out, err = runc.run(INITS[init] + ["sh", "-c", script])
    assert rc == code, (out, err)


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("sig", ["TERM", "INT", "HUP", "USR1"])
def test_runc_kill_reaches_the_program(runc, init, sig):
    script = f'trap "echo got-{sig}; exit 0" {sig}; echo ready; while :; do sleep 0.05; done'
    cid, p = runc.start(INITS[init] + ["sh", "-c", script])
    read_until(p, "ready")
    runc.kill(cid, sig)
    out, err = p.communicate(timeout=30 * SLOW)
    assert f"got-{sig}" in out.decode(), err
    assert p.returncode == 0, err


@pytest.mark.parametrize("init", INITS)
def test_orphans_are_reaped(runc, init):
    """200 orphans re-parented to the init: none is left a zombie."""
    script = """
        i=0; while [ $i -lt 200 ]; do (sleep 0.2 &); i=$((i+1)); done
        t=0; while [ $t -lt 300 ]; do
            n=$(ps -o stat,comm | grep -c sleep)
            [ "$n" -eq 0 ] && break
            sleep 0.1; t=$((t+1))
        done
        echo "left=$(ps -o stat,comm | grep -c sleep) zombies=$(ps -o stat | grep -c ^Z)"
    """
    rc, out, err = runc.run(INITS[init] + ["sh", "-c", script])
    assert rc == 0, err
    assert "left=0 zombies=0" in out, out


@pytest.mark.parametrize("init", INITS)
def test_main_exits_while_grandchildren_run(runc, init):
    """The container ends with the main program's code; its leftovers die with it."""
    rc, out, err = runc.run(INITS[init] + ["sh", "-c", "sleep 1000 & sleep 1000 & echo started; exit 3"])
    assert rc == 3, err
    assert "started" in out


def with_fds(*paths, listen=False):
    """bash opening paths as fds 3, 4, ... without close-on-exec, then exec'ing the runtime
    (listen: as systemd's socket activation would hand them to it: LISTEN_PID its pid)."""
    opens = " ".join(f'{3 + i}<>"${i + 1}"' for i in range(len(paths)))
    env = f"export LISTEN_FDS={len(paths)} LISTEN_PID=$$; " if listen else ""
    return ["bash", "-c", f'exec {opens}; {env}shift {len(paths)}; exec "$@"', "bash", *map(str, paths)]


@pytest.mark.parametrize("init", INITS)
def test_preserve_fds(runc, init, tmp_path):
    """`runc run --preserve-fds 2`: the runtime's fds 3 and 4 reach the program through the init."""
    fin, fout = tmp_path / "in", tmp_path / "out"
    fin.write_text("from the host\n")
    fout.write_text("")
    script = 'read l <&3 && echo "fd 3: $l" && echo "via fd 4" >&4'
    cid, p = runc.start(INITS[init] + ["sh", "-c", script], wrap=with_fds(fin, fout),
                        run_args=["--preserve-fds", "2"])
    out, err = p.communicate(timeout=60 * SLOW)
    assert p.returncode == 0, (out, err)
    assert out.decode() == "fd 3: from the host\n"
    assert fout.read_text() == "via fd 4\n"


@pytest.mark.parametrize("init", INITS)
def test_socket_activation(runc, init, tmp_path):
    """Socket activation through runc, which passes LISTEN_FDS fds on with LISTEN_PID=1 (the init):
    evmon sets LISTEN_PID to the program's pid (as catatonit), tini leaves it at 1, which
    sd_listen_fds() in the program takes for someone else's."""
    fin = tmp_path / "in"
    fin.write_text("activated\n")
    script = 'read l <&3 && echo "fd 3: $l pid=$$ LISTEN_PID=$LISTEN_PID LISTEN_FDS=$LISTEN_FDS"'
    cid, p = runc.start(INITS[init] + ["sh", "-c", script], wrap=with_fds(fin, listen=True))
    out, err = p.communicate(timeout=60 * SLOW)
    assert p.returncode == 0, (out, err)
    m = re.fullmatch(r"fd 3: activated pid=(\d+) LISTEN_PID=(\d+) LISTEN_FDS=1\n", out.decode())
    assert m, (out, err)
    assert m.group(2) == (m.group(1) if init == "evmon" else "1")


def test_evmon_init_forwards_every_signal_it_documents(runc):
    """The documented forwarded set under runc, not just TERM: WINCH and USR2 too."""
    script = ('trap "echo got-WINCH" WINCH; trap "echo got-USR2; exit 0" USR2; echo ready;'
              ' while :; do sleep 0.05; done')
    cid, p = runc.start(INITS["evmon"] + ["sh", "-c", script])
    read_until(p, "ready")
    runc.kill(cid, "WINCH")
    read_until(p, "got-WINCH")
    runc.kill(cid, "USR2")
    out, err = p.communicate(timeout=30 * SLOW)
    assert "got-USR2" in out.decode() and p.returncode == 0, err


@pytest.fixture
def host_root(tmp_path):
    """A root whose /usr is the host's (read-only): the dynamic evmon runs there."""
    root = tmp_path / "hostroot"
    for d in ("proc", "sys", "dev", "tmp", "etc", "usr", "run", "work"):
        (root / d).mkdir(parents=True)
    for link in ("bin", "sbin", "lib", "lib64"):
        if os.path.islink("/" + link):
            os.symlink(os.readlink("/" + link), root / link)
    return root


@pytest.mark.skipif(SAN, reason="the sanitizer runtime wants the host's /proc layout; covered without SAN")
def test_evmon_daemon_as_container_pid1(runc, host_root, tmp_path):
    """`evmon daemon` as PID 1 of a runc container: three services, ctl from the host
    through a bind-mounted socket, `runc kill TERM` stops them all and exits 0."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "d.ini").write_text("""
[service:web]
command = sh -c 'echo $$ > /work/web.pid; exec sleep 100000'
start_secs = 0

[service:worker]
command = sh -c 'trap "echo bye > /work/worker.bye; exit 0" TERM; echo up > /work/worker.up; while :; do sleep 0.05; done'
start_secs = 0

[service:oneshot]
command = sh -c 'echo done > /work/oneshot.out'
restart = never
start_secs = 0
""")
    mounts = [("/usr", "/usr", True), (BUILD, "/evmon", True), (work, "/work", False)]
    evmon = "/evmon/" + os.path.relpath(EVMON, BUILD)
    cid, p = runc.start([evmon, "daemon", "-c", "/work/d.ini", "-S", "/work/d.sock"],
                        root=host_root, mounts=mounts)
    sock = str(work / "d.sock")

    def status():
        r = subprocess.run([EVMON, "ctl", "-S", sock, "--json", "status"], capture_output=True,
                           text=True, timeout=30)
        if r.returncode != 0:
            return None
        return {x["name"]: x for x in json.loads(r.stdout)["services"]}

    def settled():  # running from the spawn: the shells' pid file and trap too
        s = status()
        return s and s["web"]["state"] == "running" and s["worker"]["state"] == "running" \
            and s["oneshot"]["state"] in ("exited", "stopped") and \
            (work / "web.pid").exists() and (work / "web.pid").read_text().endswith("\n") and \
            (work / "worker.up").exists() and s
    s = wait_for(settled, timeout=30 * SLOW, what="three services settled in the container")
    assert (work / "oneshot.out").read_text() == "done\n"
    assert int((work / "web.pid").read_text()) == s["web"]["pid"]  # pids of the container's namespace
    runc.kill(cid, "TERM")
    out, err = p.communicate(timeout=60 * SLOW)
    assert p.returncode == 0, (out, err)
    log = out.decode() + err.decode()
    assert "all services stopped" in log, log
    assert (work / "worker.bye").exists(), log


# ------------------------------------------------------------------ crun, podman

# crun 1.8 (Debian 12) refuses a hybrid cgroup hierarchy (v1 controllers, a v2 one beside
# them) with "cgroups in hybrid mode not supported". There it runs in a mount namespace of
# its own with the v2 hierarchy mounted on /sys/fs/cgroup (unified mode, as on a host booted
# so); the host's mounts are untouched (unshare's mounts are private). Every crun command of
# a test (run, kill, delete) goes through the same wrapper, so they see the same cgroups.
CRUN_UNIFIED = ["unshare", "--mount", "sh", "-c",
                'mount -t cgroup2 none /sys/fs/cgroup && exec crun "$@"', "crun"]


def _crun_try(tmp_path_factory, rootfs, cmd):
    tmp = tmp_path_factory.mktemp("crun")
    r = Runc(None, tmp, rootfs, runtime="crun", cmd=cmd)
    b = r.bundle(["/bin/true"])
    cid = f"evmon-crun-probe-{os.getpid()}"
    p = subprocess.run(cmd + ["run", "--bundle", str(b), cid], capture_output=True, text=True,
                       timeout=60)
    subprocess.run(cmd + ["delete", "--force", cid], capture_output=True, timeout=30)
    return p.returncode, p.stderr.strip()[:200]


def _crun_cmd(tmp_path_factory, rootfs):
    """How to run crun here, or the reason it cannot run (a str)."""
    if not shutil.which("crun"):
        return "crun is not installed"
    rc, err = _crun_try(tmp_path_factory, rootfs, ["crun"])
    if rc == 0:
        return ["crun"]
    if "hybrid" in err:
        rc, err2 = _crun_try(tmp_path_factory, rootfs, CRUN_UNIFIED)
        if rc == 0:
            return CRUN_UNIFIED
        err = f"{err}; and with cgroup2 on /sys/fs/cgroup in a mount namespace: {err2}"
    return f"crun cannot run a container on this host: {err}"


@pytest.fixture(scope="module")
def crun_cmd(tmp_path_factory, rootfs):
    how = _crun_cmd(tmp_path_factory, rootfs)
    if isinstance(how, str):
        pytest.skip(how)
    return how


@pytest.mark.parametrize("init", INITS)
def test_crun_exit_code_and_signal(crun_cmd, procs, tmp_path, rootfs, init):
    r = Runc(procs, tmp_path, rootfs, runtime="crun", cmd=crun_cmd)
    try:
        rc, out, err = r.run(INITS[init] + ["sh", "-c", "exit 9"])
        assert rc == 9, err
        cid, p = r.start(INITS[init] + ["sh", "-c", 'trap "exit 0" TERM; echo ready; while :; do sleep 0.05; done'])
        read_until(p, "ready")
        r.kill(cid, "TERM")
        p.communicate(timeout=30 * SLOW)
        assert p.returncode == 0
    finally:
        r.cleanup()


def _podman_args():
    # No CAP_SYS_RESOURCE here: podman's default rlimits (nofile/nproc 1048576) cannot be set,
    # so ask for small ones any host allows.
    return ["podman", "run", "--rm", "--runtime", "runc", "--cgroup-manager", "cgroupfs",
            "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"]


@pytest.fixture(scope="module")
def podman_image(rootfs, tmp_path_factory):
    if not shutil.which("podman"):
        pytest.skip("podman is not installed")
    tar = tmp_path_factory.mktemp("img") / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    tag = f"localhost/evmon-test:{os.getpid()}"
    r = subprocess.run(["podman", "import", str(tar), tag], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        pytest.skip(f"podman import fails here: {r.stderr.strip()[:200]}")
    probe = subprocess.run(_podman_args() + [tag, "true"], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        subprocess.run(["podman", "rmi", "-f", tag], capture_output=True, timeout=60)
        pytest.skip(f"podman cannot run a container on this host: {probe.stderr.strip()[:200]}")
    yield tag
    subprocess.run(["podman", "rmi", "-f", tag], capture_output=True, timeout=60)


@pytest.mark.parametrize("how", ["init-path", "entrypoint"])
def test_podman(procs, podman_image, how):
    """podman --init --init-path evmon-init, and evmon-init as the image's ENTRYPOINT."""
    if how == "init-path":
        args = _podman_args() + ["--init", "--init-path", INIT_STATIC, podman_image]
    else:
        args = _podman_args() + ["--entrypoint", '["/sbin/evmon-init", "--"]', podman_image]
    script = "test $$ -ne 1 && cat /proc/1/cmdline | grep -q init && exit 5"
    r = procs.run(args + ["sh", "-c", script], timeout=120)
    assert r.returncode == 5, (r.stdout, r.stderr)
    # a signal to the container reaches the program through the init
    name = f"evmon-test-{os.getpid()}-{how}"
    p = procs.spawn(args[:3] + ["--name", name] + args[3:] +
                    ["sh", "-c", 'trap "echo got-TERM; exit 0" TERM; echo ready; while :; do sleep 0.05; done'],
                    stdin=subprocess.DEVNULL)
    try:
        read_until(p, "ready", timeout=120)
        subprocess.run(["podman", "kill", "--signal", "TERM", name], check=True, capture_output=True,
                       timeout=60)
        out, err = p.communicate(timeout=60 * SLOW)
        assert b"got-TERM" in out and p.returncode == 0, err
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True, timeout=60)
        if p.poll() is None:
            procs.kill(p)
