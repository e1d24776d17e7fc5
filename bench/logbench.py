#!/usr/bin/python3
"""logbench.py - S8, log throughput: one service writes as fast as it can into
its log, under evmon daemon (stdout = log), supervisord (stdout_logfile),
s6-log (under s6-svscan) and svlogd (under runsvdir), one after the other
within each round (A B C D A B C D ...), on the same machine, in the same run.

The service is the same everywhere: `sh -c 'read x < GO; exec cat DATA'`, DATA
a file of 100-byte lines (in the page cache) whose last line is a marker. The
clock starts when the runner writes to the FIFO GO (the supervisor is up, the
service is waiting) and stops when the marker is in the log file (polled every
2 ms). The logger's CPU time (user + system, from schedstat: every thread of
the daemon for evmon and supervisord, the s6-log / svlogd process for s6 and
runit) is taken over the same interval. Files are not rotated during the run
(evmon log_max_bytes = 0, supervisord maxbytes 0, svlogd s0), except by s6-log,
whose largest file is 256 MiB (s268435455): it rotates about every 256 MiB,
keeping every archive (n100), and the archives count with the file. Every
logger runs with its defaults otherwise (svlogd reads 1 KiB at a time by
default).

Each supervisor is ended with SIGTERM after its rep (SIGKILL after 30 s): an
evmon daemon killed outright would leave its cgroup home behind
(evmon.<socket>/{evmon.daemon,w.service} under the cgroup root), which the
rep then removes itself.

Variants: "plain" lines, and "timestamps" (evmon log_timestamps, s6-log T,
svlogd -tt; supervisord cannot prefix its program's lines).

    bench/logbench.py --build build/bench [--full] [--reps N] [--mb N]

Writes bench/results/s8.csv in the runner's format (bench/run.py --only S8
calls it too); report.py renders it into docs/BENCHMARKS.md.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the runner's helpers: Results, Failed, kill_tree, ...)

MARK = b"END-OF-LOG-BENCH"
PEERS = ["evmon daemon", "supervisord", "s6-log", "svlogd"]


def make_data(path, mb):
    line = b"%08d " + b"x" * 90 + b"\n"  # 100 bytes
    block = b"".join(line % i for i in range(10000))  # 1,000,000 bytes
    n = mb * 1000000 // len(block)
    with open(path, "wb") as f:
        for _ in range(n):
            f.write(block)
        f.write(MARK + b"\n")
    with open(path, "rb") as f:  # into the page cache: the writer must not wait for the disk
        while f.read(1 << 20):
            pass
    return n * len(block) + len(MARK) + 1


def cpu_ns(pids):
    t = 0
    for pid in pids:
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    t += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return t


def setup(kind, d, data, ts):
    """Write the configuration; return (argv, log file, how to find the logger's pids)."""
    go = os.path.join(d, "go")
    os.mkfifo(go)
    cmd = f"read x < {go}; exec cat {data}"
    logs = os.path.join(d, "logs")
    os.makedirs(logs)
    if kind == "evmon daemon":
        conf = os.path.join(d, "evmon.ini")
        with open(conf, "w") as f:
            f.write(f"[evmon]\nlog_dir = {logs}\nlog_max_bytes = 0\n"
                    f"log_timestamps = {'true' if ts else 'false'}\n\n"
                    f"[service:w]\ncommand = sh -c '{cmd}'\nstdout = log\nstderr = stdout\n"
                    "restart = never\nstart_secs = 0\n")
        return ([run.EVMON, "daemon", "-c", conf, "-S", os.path.join(d, "sock")],
                os.path.join(logs, "w.log"), lambda p: [p.pid])
    if kind == "supervisord":
        conf = os.path.join(d, "supervisord.conf")
        with open(conf, "w") as f:
            f.write(f"[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\n"
                    f"pidfile={d}/supervisord.pid\nloglevel=error\n\n"
                    f"[program:w]\ncommand=sh -c '{cmd}'\nstdout_logfile={logs}/w.log\n"
                    "stdout_logfile_maxbytes=0\nstdout_logfile_backups=0\nredirect_stderr=true\n"
                    "autorestart=false\nstartsecs=0\n")
        return (["/usr/bin/supervisord", "-n", "-c", conf], os.path.join(logs, "w.log"),
                lambda p: [p.pid])
    scan = os.path.join(d, "scan")
    svc = os.path.join(scan, "w")
    os.makedirs(os.path.join(svc, "log"))
    with open(os.path.join(svc, "run"), "w") as f:
        f.write(f"#!/bin/sh\nexec 2>&1\n{cmd}\n")
    if kind == "s6-log":
        # its largest file is 256 MiB: it rotates during the run; keep every archive
        logger = f"exec s6-log n100 s268435455 {'T ' if ts else ''}{logs}"
        argv, exe = ["/usr/bin/s6-svscan", scan], "/usr/bin/s6-log"
    else:
        with open(os.path.join(logs, "config"), "w") as f:
            f.write("s0\n")
        logger = f"exec svlogd {'-tt ' if ts else ''}{logs}"
        argv, exe = ["/usr/bin/runsvdir", scan], "/usr/bin/svlogd"
    with open(os.path.join(svc, "log", "run"), "w") as f:
        f.write(f"#!/bin/sh\n{logger}\n")
    for p in (os.path.join(svc, "run"), os.path.join(svc, "log", "run")):
        os.chmod(p, 0o755)
    return argv, os.path.join(logs, "current"), \
        lambda p: [q for q in run.descendants(p.pid) if run.exe(q) == exe]


def logged_bytes(path):
    """The log file, plus the archives s6-log rotated out of it (@TAI64N.s, .u)."""
    d = os.path.dirname(path)
    return os.path.getsize(path) + sum(os.path.getsize(os.path.join(d, f))
                                       for f in os.listdir(d) if f.startswith("@"))


def tail_has_mark(path):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            n = f.tell()
            f.seek(max(0, n - 200))
            return MARK in f.read()
    except OSError:
        return False


def cgroup_home(pid):
    """The cgroup home of an `evmon daemon` (the parent of the evmon.daemon
    leaf it moved itself into), or None (no cgroup v2, cgroup = no, not a
    daemon)."""
    try:
        with open("/proc/self/mountinfo") as f:
            mnt = next((ln.split(" - ")[0].split()[4] for ln in f
                        if ln.partition(" - ")[2].startswith("cgroup2 ")), None)
        with open(f"/proc/{pid}/cgroup") as f:
            rel = next((ln.strip()[3:] for ln in f if ln.startswith("0::")), None)
    except OSError:
        return None
    if not mnt or not rel or os.path.basename(rel) != "evmon.daemon":
        return None
    return os.path.join(mnt, os.path.dirname(rel).lstrip("/"))


def stop(p, home):
    """End a monitor as a user would, SIGTERM (an evmon daemon then stops its
    service and removes its cgroup home), and SIGKILL what is left after 30 s;
    then, if a kill left the home, end what is in it and remove it. Whatever of its
    tree outlived it is killed: runsvdir exits on SIGTERM and leaves its runsv and their
    svlogd running (re-parented to us, the subreaper)."""
    tree = set(run.descendants(p.pid))
    run.end(p, timeout=30)
    for q in tree & set(run.descendants(os.getpid())):
        try:
            os.kill(q, signal.SIGKILL)
        except OSError:
            pass
    run.reap_orphans()
    if not home or not os.path.isdir(home):
        return
    try:  # what is left in it (a service re-parented when its daemon was killed)
        with open(os.path.join(home, "cgroup.kill"), "w") as f:
            f.write("1")
    except OSError:
        pass
    deadline = time.monotonic() + 10  # until the killed are reaped
    while os.path.isdir(home) and time.monotonic() < deadline:
        for dirpath, _, _ in sorted(os.walk(home), key=lambda t: -len(t[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
        if os.path.isdir(home):
            time.sleep(0.05)
    if os.path.isdir(home):
        print(f"logbench: cannot remove {home}", file=sys.stderr)


def one(kind, tmp, data, size, ts, rep):
    d = os.path.join(tmp, f"{kind.split()[0]}-{'ts' if ts else 'plain'}-{rep}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    argv, logfile, loggers = setup(kind, d, data, ts)
    err = open(os.path.join(d, "stderr"), "wb")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                         start_new_session=True)
    home = None
    try:
        # up: the service waits on the FIFO (a writer can open it) and the logger runs
        t0 = time.monotonic()
        while True:
            if p.poll() is not None:
                raise run.Failed(f"exited with {p.returncode}")
            if time.monotonic() - t0 > 60:
                raise run.Failed("the service did not start within 60 s")
            try:
                fd = os.open(os.path.join(d, "go"), os.O_WRONLY | os.O_NONBLOCK)
                if loggers(p):
                    break
                os.close(fd)
            except OSError:
                pass
            time.sleep(0.01)
        pids = loggers(p)
        home = cgroup_home(p.pid) if kind == "evmon daemon" else None
        c0, start = cpu_ns(pids), time.monotonic()
        os.write(fd, b"go\n")
        os.close(fd)
        while not tail_has_mark(logfile):
            if time.monotonic() - start > 300:
                raise run.Failed("the last line did not reach the log within 300 s")
            if p.poll() is not None:
                raise run.Failed(f"exited with {p.returncode}")
            time.sleep(0.002)
        secs = time.monotonic() - start
        cpu = (cpu_ns(pids) - c0) / 1e9
        got = logged_bytes(logfile)
        if got < size:
            raise run.Failed(f"only {got:,} of {size:,} bytes in the log")
        return dict(mb_per_s=size / 1e6 / secs, cpu_pct=100 * cpu / secs,
                    cpu_s_per_gb=cpu / (size / 1e9), secs=secs)
    finally:
        stop(p, home)
        err.close()
        shutil.rmtree(d, ignore_errors=True)


def available(kind):
    if kind == "evmon daemon":
        return None if run.EVMON and os.path.exists(run.EVMON) else "no evmon binary in the build"
    path = {"supervisord": "/usr/bin/supervisord", "s6-log": "/usr/bin/s6-log",
            "svlogd": "/usr/bin/svlogd"}[kind]
    return None if os.path.exists(path) else f"{path} is not installed"


def s8(cfg, reps):
    res = run.Results("S8")
    mb = cfg.get("s8_mb", 200)
    tmp = tempfile.mkdtemp(prefix="evmon-logbench-")
    try:
        data = os.path.join(tmp, "data")
        size = make_data(data, mb)
        for variant, ts in (("plain", False), ("timestamps", True)):
            kinds = [k for k in PEERS if not (ts and k == "supervisord")]
            for rep in range(reps):
                for kind in kinds:
                    why = available(kind)
                    if why:
                        if rep == 0:
                            res.fail(variant, mb, kind, rep, why)
                        continue
                    try:
                        m = one(kind, tmp, data, size, ts, rep)
                        for k in ("mb_per_s", "cpu_pct", "cpu_s_per_gb"):
                            res.add(variant, mb, kind, rep, k, m[k])
                        run.log(f"S8 {variant} {kind} rep {rep + 1}/{reps}: {m['mb_per_s']:.0f} MB/s, "
                                f"logger CPU {m['cpu_pct']:.0f}% of a core")
                    except run.Failed as e:
                        res.fail(variant, mb, kind, rep, str(e))
                        run.log(f"S8 {variant} {kind} rep {rep + 1}: failed: {e}")
                    res.save()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build/bench")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--reps", type=int, default=0)
    ap.add_argument("--mb", type=int, default=0, help="MB written per run (default 200, full 1000)")
    a = ap.parse_args()
    run.BUILD = os.path.abspath(os.path.join(run.ROOT, a.build))
    run.EVMON = os.path.join(run.BUILD, "evmon")
    cfg = dict(run.FULL if a.full else run.QUICK)
    cfg["s8_mb"] = a.mb or cfg.get("s8_mb", 1000 if a.full else 200)
    os.makedirs(run.RESULTS, exist_ok=True)
    run.become_subreaper()
    s8(cfg, a.reps or cfg["reps"]).save()


if __name__ == "__main__":
    main()
