#!/usr/bin/python3
"""run.py - the benchmark runner: runs every scenario on evmon and on its
peers, alternately (A B A B ...), and writes one row per measured value to
bench/results/<scenario>.csv, then calls report.py, which turns the CSVs into
docs/BENCHMARKS.md and its charts and prints the PASS/SHORT lines.

    bench/run.py --build build/bench [--full] [--only S1,S3] [--reps N]

Normally run through `make bench` / `make bench FULL=1`, which builds the
harnesses first. Standard library only.

A row: scenario, child, n, monitor, rep, metric, value, status, note.
`status` is "ok", or "failed" with the reason in `note` (a peer that cannot
manage a size is a result too, not an error of the runner).
"""
import argparse
import csv
import ctypes
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
FIELDS = ["scenario", "child", "n", "monitor", "rep", "metric", "value", "status", "note"]

# Runs per S1 measurement, by child; asyncio is held to s1_slow_runs (it is ~10x slower,
# and its rate does not depend on the count).
QUICK = dict(reps=3, s1_runs={"tiny": 1000, "true": 1000}, s1_slow_runs=1000,
             s1_inflight=[1, 16, 64, 256], s1_variants=False,
             s2_sizes=[1000, 10000], s2_reps=1, s2_idle=3, s2_peer_sizes=[1000],
             s3_sizes=[1000, 10000], s4_idle_n=300, s4_storm_n=[1000],
             s5_runs=200, s6_services=[1000], s7_services=1000, s7_secs=5, s7_caps=[1000],
             s8_mb=200, s10_sizes=[1000])
FULL = dict(reps=3, s1_runs={"tiny": 20000, "true": 5000}, s1_slow_runs=5000,
            s1_inflight=[1, 16, 64, 256], s1_variants=True,
            s2_sizes=[1000, 5000, 10000, 15000], s2_reps=1, s2_idle=10,
            s2_peer_sizes=[1000, 10000], s3_sizes=[1000, 5000, 10000, 15000],
            s4_idle_n=1000, s4_storm_n=[1000, 10000], s5_runs=1000, s6_services=[1000, 10000],
            s7_services=1000, s7_secs=10, s7_caps=[1000, 30000], s8_mb=1000,
            s10_sizes=[1000, 10000])


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Results:
    """Collects rows and rewrites bench/results/<scenario>.csv as it goes."""

    def __init__(self, scenario):
        self.scenario = scenario
        self.rows = []
        self.path = os.path.join(RESULTS, scenario.lower() + ".csv")

    def add(self, child, n, monitor, rep, metric, value, status="ok", note=""):
        self.rows.append(dict(scenario=self.scenario, child=child, n=n, monitor=monitor, rep=rep,
                              metric=metric, value=value, status=status, note=note))

    def fail(self, child, n, monitor, rep, note):
        self.add(child, n, monitor, rep, "failed", "", "failed", note)

    def save(self):
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, FIELDS)
            w.writeheader()
            w.writerows(self.rows)


class Failed(Exception):
    pass


def parse_kv(line):
    out = {}
    for tok in line.split()[1:]:
        k, _, v = tok.partition("=")
        try:
            out[k] = float(v)
        except ValueError:
            out[k] = v
    return out


def run_harness(argv, env=None, timeout=300):
    """Run a harness to completion; return its "ok" line as a dict, or raise Failed.
    "_cpu_s" is the CPU time (user + system) of the harness and the children it reaped."""
    e = dict(os.environ, **(env or {}))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(argv, env=e, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        deadline = time.monotonic() + timeout
        try:
            while True:
                pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    p.returncode = os.waitstatus_to_exitcode(status)
                    break
                if time.monotonic() > deadline:
                    kill_tree(p.pid, TINY)
                    p.wait()
                    raise Failed(f"timed out after {timeout} s")
                time.sleep(0.01)
        finally:
            cleanup_strays()
        out.seek(0)
        err.seek(0)
        text = out.read().decode(errors="replace")
        for line in text.splitlines():
            if line.startswith("ok "):
                r = parse_kv(line)
                r["_cpu_s"] = ru.ru_utime + ru.ru_stime
                return r
        raise Failed(first_error(err.read(1 << 20).decode(errors="replace"))
                     or f"exit status {p.returncode}")


def last_line(text):
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    return lines[-1][:200] if lines else ""


# ------------------------------------------------------------ process trees

def read_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    return rest  # rest[1] = ppid, rest[11] = utime, rest[12] = stime


def ppid_map():
    m = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                m[int(d)] = int(read_stat(d)[1])
            except (OSError, ValueError, IndexError):
                pass
    return m


def descendants(root):
    kids = {}
    for pid, pp in ppid_map().items():
        kids.setdefault(pp, []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def exe(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def split_tree(root, workload):
    """(monitor processes, workload processes) of the tree rooted at root."""
    mons, work = [root], []
    for p in descendants(root):
        (work if exe(p) == workload else mons).append(p)
    return mons, work


_libc = ctypes.CDLL(None, use_errno=True)
SYS_kcmp, KCMP_VM = 312, 1  # x86_64


def same_vm(a, b):
    """True when processes a and b share one address space (CLONE_VM): their
    PSS is the same memory, to be counted once."""
    return _libc.syscall(SYS_kcmp, a, b, KCMP_VM, 0, 0) == 0


def sample(pids):
    """Sum over processes: threads, context switches (all threads), CPU ticks, PSS/RSS kB."""
    tot = dict(threads=0, ctx=0, ticks=0, pss_kb=0, rss_kb=0)
    counted = []  # processes whose address space is already in the memory sum
    for pid in pids:
        try:
            st = read_stat(pid)
            tot["ticks"] += int(st[11]) + int(st[12])
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("Threads:"):
                        tot["threads"] += int(line.split()[1])
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    for line in f:
                        if "ctxt_switches:" in line:
                            tot["ctx"] += int(line.split()[1])
            if any(same_vm(pid, c) for c in counted):
                continue  # e.g. evmon's spawn helper shares the loop's memory
            counted.append(pid)
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        tot["pss_kb"] += int(line.split()[1])
                    elif line.startswith("Rss:"):
                        tot["rss_kb"] += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return tot


def kill_tree(root, workload=None):
    """SIGKILL a tree: the monitors first (so nothing restarts), then the rest."""
    for _ in range(50):
        pids = [root] + descendants(root) if root else []
        pids = [p for p in pids if os.path.exists(f"/proc/{p}")]
        if not pids:
            break
        mons = [p for p in pids if exe(p) != workload]
        for p in mons + [p for p in pids if p not in mons]:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        reap_orphans()
        time.sleep(0.05)
    reap_orphans()


def end(p, timeout=60):
    """End a monitor as a user would: SIGTERM (an evmon daemon stops its services), and
    after timeout seconds SIGKILL what is left of its tree (kill_tree); reaped."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    kill_tree(p.pid, TINY)
    if p.poll() is None:
        p.wait()


def reap_orphans():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def cleanup_strays():
    """Children a crashed harness left behind are re-parented to us (we are a subreaper)."""
    me = os.getpid()
    strays = [p for p in descendants(me) if exe(p) == TINY]
    for p in strays:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    if strays:
        time.sleep(0.05)
    reap_orphans()


def become_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_CHILD_SUBREAPER = 36
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def raise_nofile():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---------------------------------------------------------------- monitors

BUILD = BENCH = TINY = EVMON = None
TRUE = "/bin/true"


def lib_monitors(variants):
    """Library-level harnesses: name -> (argv prefix, env)."""
    m = {"evmon": ([f"{BENCH}/evmon_bench"], {"EVM_SPAWN_MODE": "auto"})}
    if variants:
        m["evmon-direct"] = ([f"{BENCH}/evmon_bench"], {"EVM_SPAWN_MODE": "direct"})
        m["evmon-helper"] = ([f"{BENCH}/evmon_bench"], {"EVM_SPAWN_MODE": "helper"})
    return m


PEERS = {"libuv": [None, "uv_bench"], "go": [None, "go_bench"]}


def peer_argv(name):
    return [f"{BENCH}/{PEERS[name][1]}"]


def s1(cfg, reps):
    res = Results("S1")
    mons = dict(lib_monitors(cfg["s1_variants"]))
    # reaper mode (as `evmon init` and a reaping daemon run): few children watched through SIGCHLD
    mons["evmon-reaper"] = ([f"{BENCH}/evmon_bench"], {"EVM_SPAWN_MODE": "auto", "EVMON_BENCH_REAPER": "1"})
    # EVM_SPAWN_NOWAIT: the loop does not wait for each child's exec (issue 17's item 2)
    mons["evmon-nowait"] = ([f"{BENCH}/evmon_bench"], {"EVM_SPAWN_MODE": "auto", "EVMON_BENCH_NOWAIT": "1"})
    for m in ("posix_spawn", "vfork", "clone3", "clone3-epoll"):
        mons["raw-" + m] = ([f"{BENCH}/raw_bench", m], {})
    # EVM_LOOP_SPAWN_LOCAL_CPU (opt-in), and the bare loop with the same CPU narrowing
    mons["evmon-localcpu"] = ([f"{BENCH}/evmon_bench"], {"EVM_SPAWN_MODE": "auto", "EVMON_BENCH_LOCAL_CPU": "1"})
    mons["raw-clone3-epoll-pin"] = ([f"{BENCH}/raw_bench", "clone3-epoll"], {"RAW_PIN": "1"})
    mons["libuv"] = (peer_argv("libuv"), {})
    mons["go"] = (peer_argv("go"), {})
    mons["asyncio"] = (["/usr/bin/python3", os.path.join(ROOT, "bench/peers/asyncio_bench.py")], {})
    for child, path in (("tiny", TINY), ("true", TRUE)):
        for k in cfg["s1_inflight"]:
            for rep in range(reps):
                for name, (argv, env) in mons.items():
                    runs = cfg["s1_runs"][child]
                    if name == "asyncio":
                        runs = min(runs, cfg["s1_slow_runs"])
                    try:
                        r = run_harness(argv + ["spawn", path, str(runs), str(k)], env)
                        res.add(child, k, name, rep, "per_sec", r["per_sec"])
                        res.add(child, k, name, rep, "cpu_us_per_child", r["_cpu_s"] * 1e6 / runs)
                    except Failed as e:
                        res.fail(child, k, name, rep, str(e))
                log(f"S1 {child} inflight={k} rep {rep + 1}/{reps}: " + ", ".join(
                    f"{r['monitor']}={r['value']:.0f}/s" for r in res.rows
                    if r["child"] == child and r["n"] == k and r["rep"] == rep and r["metric"] == "per_sec"))
                res.save()
    return res


# ------------------------------------------------------------------- S2

def wait_line(p, timeout):
    """The harness's "ready" line, or raise Failed (it died, or took too long)."""
    deadline = time.monotonic() + timeout
    buf = ""
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 0.5)
        if r:
            chunk = os.read(p.stdout.fileno(), 4096).decode()
            if not chunk:
                break
            buf += chunk
            for line in buf.splitlines():
                if line.startswith("ready"):
                    return parse_kv(line)
        elif p.poll() is not None:
            break
    err = ""
    if p.poll() is not None:
        p.errfile.seek(0)
        err = first_error(p.errfile.read(1 << 20).decode(errors="replace"))
    raise Failed(err or ("exited" if p.poll() is not None else f"not ready in {timeout} s"))


def first_error(text):
    """The line that says why (a Go crash prints it first, then every goroutine)."""
    for line in text.splitlines():
        if "fatal" in line or "error" in line.lower() or "bench:" in line:
            return line.strip()[:200]
    return last_line(text)


def measure_idle(root, idle):
    """Sample the monitor processes across an idle window; return the metrics."""
    mons, work = split_tree(root, TINY)
    a = sample(mons)
    time.sleep(idle)
    mons, work = split_tree(root, TINY)
    b = sample(mons)
    hz = os.sysconf("SC_CLK_TCK")
    return dict(alive=len(work), procs=len(mons), threads=b["threads"], cpu_ms_up=a["ticks"] * 1000.0 / hz,
                wakeups=b["ctx"] - a["ctx"], cpu_ms=(b["ticks"] - a["ticks"]) * 1000.0 / hz,
                pss_kib=b["pss_kb"], rss_kib=b["rss_kb"])


def scale_lib(argv, env, n, idle):
    # stderr to a file: a crashing Go runtime dumps every goroutine, far more than a pipe holds
    err = tempfile.TemporaryFile()
    p = subprocess.Popen(argv + ["scale", TINY, str(n)], env=dict(os.environ, **env),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
    p.errfile = err
    try:
        ready = wait_line(p, 300)
        m = measure_idle(p.pid, idle)
        if p.poll() is not None or m["alive"] < n:
            p.errfile.seek(0)
            why = first_error(p.errfile.read(1 << 20).decode(errors="replace"))
            raise Failed(f"{m['alive']} of {n} children up after the idle window"
                         + (f": {why}" if why else ""))
        m["launch_us_per_child"] = ready["launch_us_per_child"]
        p.stdin.close()
        p.wait(timeout=120)
        return m
    finally:
        if p.poll() is None:
            kill_tree(p.pid, TINY)
            p.wait()
        p.stdout.close()
        err.close()
        cleanup_strays()


def count_workload(root):
    return len(split_tree(root, TINY)[1])


def scale_external(kind, n, idle, tmp):
    """supervisord, s6-svscan or runsvdir with n services, each running `tiny p`."""
    d = os.path.join(tmp, f"{kind}-{n}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    if kind == "supervisord":
        conf = os.path.join(d, "supervisord.conf")
        with open(conf, "w") as f:
            f.write(f"[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\n"
                    f"pidfile={d}/supervisord.pid\nloglevel=error\nminfds=1024\n")
            if n:
                f.write(f"[program:p]\ncommand={TINY} p\nnumprocs={n}\n"
                        "process_name=%(process_num)d\nstartsecs=0\nautorestart=false\n"
                        "stdout_logfile=NONE\nstderr_logfile=NONE\n")
        argv = ["/usr/bin/supervisord", "-n", "-c", conf]
    else:
        for i in range(n):
            s = os.path.join(d, f"s{i}")
            os.makedirs(s)
            with open(os.path.join(s, "run"), "w") as f:
                f.write(f"#!/bin/sh\nexec {TINY} p\n")
            os.chmod(os.path.join(s, "run"), 0o755)
        argv = (["/usr/bin/s6-svscan", "-c", str(max(n + 16, 64)), d] if kind == "s6"
                else ["/usr/bin/runsvdir", d])
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        # up = every service's process is running; a supervisor that stalls fails here
        limit, last, last_change = 600, -1, time.monotonic()
        while True:
            time.sleep(0.2)
            up = count_workload(p.pid)
            if up >= n:
                break
            if p.poll() is not None:
                raise Failed(f"exited with {p.returncode} after starting {up} of {n}: "
                             + last_line(p.stderr.read().decode()))
            if up != last:
                last, last_change = up, time.monotonic()
            if time.monotonic() - last_change > 60 or time.monotonic() - t0 > limit:
                raise Failed(f"started only {up} of {n} services")
        launch = time.monotonic() - t0
        if n == 0:
            time.sleep(1)  # let it settle before the idle window
        m = measure_idle(p.pid, idle)
        if m["alive"] < n:
            raise Failed(f"{m['alive']} of {n} services up after the idle window")
        m["launch_us_per_child"] = launch * 1e6 / n if n else 0
        return m
    finally:
        kill_tree(p.pid, TINY)
        p.wait()
        p.stderr.close()
        cleanup_strays()
        shutil.rmtree(d, ignore_errors=True)


def s2(cfg, reps):
    res = Results("S2")
    idle = cfg["s2_idle"]
    mons = dict(lib_monitors(cfg["s1_variants"]))
    mons["libuv"] = (peer_argv("libuv"), {})
    mons["go"] = (peer_argv("go"), {})
    external = ["supervisord", "s6", "runit"]
    tmp = tempfile.mkdtemp(prefix="evmon-bench-")
    try:
        for rep in range(cfg["s2_reps"]):
            for n in [0] + cfg["s2_sizes"]:
                for name in list(mons) + external:
                    if name in external and n and n not in cfg["s2_peer_sizes"]:
                        continue
                    if name in external and 2 * n + 1000 > pid_budget():
                        res.fail("pause", n, name, rep, f"needs {2 * n} processes, beyond pid_max")
                        continue
                    try:
                        if name in external:
                            m = scale_external(name, n, idle, tmp)
                        else:
                            m = scale_lib(mons[name][0], mons[name][1], n, idle)
                    except Failed as e:
                        res.fail("pause", n, name, rep, str(e))
                        log(f"S2 n={n} {name}: failed: {e}")
                        continue
                    for k, v in m.items():
                        res.add("pause", n, name, rep, k, v)
                    log(f"S2 n={n} {name} rep {rep + 1}: " + " ".join(f"{k}={v:g}" for k, v in m.items()))
                    res.save()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def pid_budget():
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    return pid_max - len(ppid_map())


# ------------------------------------------------------------------- S3

def s3(cfg, reps):
    res = Results("S3")
    mons = {"evmon": ([f"{BENCH}/evmon_bench"], {}),
            "raw-pidfd-epoll": ([f"{BENCH}/raw_bench", "pidfd"], {}),
            "libuv": (peer_argv("libuv"), {}), "go": (peer_argv("go"), {})}
    if cfg["s1_variants"]:
        mons["evmon-nopidfd"] = ([f"{BENCH}/evmon_bench"], {"EVM_NO_PIDFD": "1"})
    for n in cfg["s3_sizes"]:
        for rep in range(reps):
            for name, (argv, env) in mons.items():
                try:
                    r = run_harness(argv + ["storm", TINY, str(n)], env, timeout=240)
                    for k in ("secs", "us_per_exit", "lost", "spawn_secs"):
                        res.add("storm", n, name, rep, k, r[k])
                except Failed as e:
                    res.fail("storm", n, name, rep, str(e))
            log(f"S3 n={n} rep {rep + 1}/{reps}: " + ", ".join(
                f"{r['monitor']}={r['value'] * 1e3:.1f}ms" for r in res.rows
                if r["n"] == n and r["rep"] == rep and r["metric"] == "secs"))
            res.save()
    return res


# ------------------------------------------------------------------- S4

def latencies(path):
    """Per-exit latency in microseconds: monitor callback time - child's stamp."""
    def load(p):
        with open(p, "rb") as f:
            b = f.read()
        out = {}
        for i in range(0, len(b) - 15, 16):
            pid = int.from_bytes(b[i:i + 8], "little", signed=True)
            out[pid] = int.from_bytes(b[i + 8:i + 16], "little", signed=True)
        return out
    child, mon = load(path), load(path + ".mon")
    return sorted((mon[p] - child[p]) / 1e3 for p in mon if p in child)


def pct(xs, q):
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def s4(cfg, reps):
    res = Results("S4")
    mons = {"evmon": ([f"{BENCH}/evmon_bench"], {}),
            "raw-pidfd-epoll": ([f"{BENCH}/raw_bench", "pidfd"], {}),
            "libuv": (peer_argv("libuv"), {}), "go": (peer_argv("go"), {})}
    cases = [("idle", cfg["s4_idle_n"])] + [("storm", n) for n in cfg["s4_storm_n"]]
    with tempfile.TemporaryDirectory(prefix="evmon-bench-", dir="/dev/shm") as tmp:
        for how, n in cases:
            for rep in range(reps):
                for name, (argv, env) in mons.items():
                    path = os.path.join(tmp, "stamps")
                    try:
                        run_harness(argv + ["latency", TINY, str(n), how, path], env)
                        lat = latencies(path)
                        if len(lat) != n:
                            raise Failed(f"{len(lat)} of {n} exits matched")
                        for q, k in ((0.5, "p50_us"), (0.99, "p99_us"), (1.0, "max_us")):
                            res.add(how, n, name, rep, k, pct(lat, q))
                    except Failed as e:
                        res.fail(how, n, name, rep, str(e))
                log(f"S4 {how} n={n} rep {rep + 1}/{reps}: " + ", ".join(
                    f"{r['monitor']} p50={r['value']:.0f}us" for r in res.rows
                    if r["child"] == how and r["n"] == n and r["rep"] == rep and r["metric"] == "p50_us"))
                res.save()
    return res


# ------------------------------------------------------------------- S5

def inits():
    """name -> argv prefix (the command follows), for the inits present."""
    out = {}
    if EVMON and os.path.exists(EVMON) and probe([EVMON, "init", "--", TRUE]):
        out["evmon init"] = [EVMON, "init", "--"]
    dynamic = os.path.join(BUILD, "dynamic", "evmon-init")  # make init-dynamic: what make install installs
    if os.path.exists(dynamic) and probe([dynamic, "--", TRUE]):
        out["evmon-init (dynamic)"] = [dynamic, "--"]
    static = os.path.join(BUILD, "evmon-init")
    if os.path.exists(static) and probe([static, "--", TRUE]):
        out["evmon-init (static)"] = [static, "--"]
    out["tini"] = ["/usr/bin/tini", "-s", "--"]
    out["dumb-init"] = ["/usr/bin/dumb-init"]
    out["catatonit"] = ["/usr/bin/catatonit", "--"]
    return {k: v for k, v in out.items() if os.path.exists(v[0])}


def probe(argv):
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def is_static(path):
    try:
        out = subprocess.run(["file", "-bL", path], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "unknown"
    return "yes" if ("statically linked" in out or "static-pie" in out) else "no"


def init_rss(argv):
    p = subprocess.Popen(argv + [TINY, "p"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if count_workload(p.pid):
                break
            time.sleep(0.05)
        else:
            raise Failed("its child never started")
        time.sleep(0.2)
        s = sample([p.pid])
        return s["rss_kb"], s["pss_kb"]
    finally:
        kill_tree(p.pid, TINY)
        p.wait()


def s5(cfg, reps):
    res = Results("S5")
    ins = inits()
    runs = str(cfg["s5_runs"])
    cmds = {"/bin/true (no init)": [TRUE]}
    cmds.update({k: v + [TRUE] for k, v in ins.items()})
    names = list(cmds)
    together = []  # every command in one harness, a run of each in turn (drift reaches all alike)
    for name in names:
        together += (["::"] if together else []) + cmds[name]
    for rep in range(reps):
        try:
            r = run_harness([f"{BENCH}/raw_bench", "exectime", runs] + together)
        except Failed as e:
            for name in names:
                res.fail("true", 0, name, rep, str(e))
            r = None
        for k, name in enumerate(names if r else []):
            if r[f"failed_{k}"]:
                res.fail("true", 0, name, rep, f"{int(r[f'failed_{k}'])} of {runs} runs failed")
                continue
            res.add("true", 0, name, rep, "median_us", r[f"median_us_{k}"])
            res.add("true", 0, name, rep, "mean_us", r[f"mean_us_{k}"])
        log(f"S5 rep {rep + 1}/{reps}: " + ", ".join(
            f"{r['monitor']}={r['value']:.0f}us" for r in res.rows
            if r["rep"] == rep and r["metric"] == "median_us"))
    for name, argv in ins.items():
        path = os.path.realpath(shutil.which(argv[0]) or argv[0])
        res.add("", 0, name, 0, "binary_bytes", os.path.getsize(path), note=path)
        res.add("", 0, name, 0, "static", is_static(path))
    # RSS of one process varies by 100-150 KiB from one start to the next: the shared
    # libraries land at random addresses, and which of their pages a fault maps with its
    # neighbours (fault-around, 64 KiB aligned) moves with them. So several samples,
    # the inits alternated, and the median.
    failed = set()
    for rep in range(max(3 * reps, 9)):
        for name, argv in ins.items():
            if name in failed:
                continue
            try:
                rss, pss = init_rss(argv)
                res.add("", 0, name, rep, "rss_kib", rss)
                res.add("", 0, name, rep, "pss_kib", pss)
            except Failed as e:
                res.fail("", 0, name, rep, str(e))
                failed.add(name)
    missing = [k for k in ("evmon init", "evmon-init (dynamic)", "evmon-init (static)") if k not in ins]
    for k in missing:
        res.add("", 0, k, 0, "pending", "", "pending", "not available yet")
    res.save()
    return res


# ------------------------------------------------------------------- S6

def daemon_available():
    if not (EVMON and os.path.exists(EVMON)):
        return "no evmon binary in the build"
    for sub in ("daemon", "ctl"):
        r = subprocess.run([EVMON, sub, "--help"], capture_output=True, text=True, timeout=10)
        if "not available" in r.stdout + r.stderr or r.returncode not in (0, 2):
            return f"evmon {sub} is not available yet"
    return None


class Daemon:
    """`evmon daemon` on a generated config, in a directory of its own."""

    def __init__(self, tmp, name, services):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(self.dir, "sock")
        conf = os.path.join(self.dir, "evmon.ini")
        with open(conf, "w") as f:
            f.write(f"[evmon]\nsocket = {self.sock}\n\n{services}")
        self.err = open(os.path.join(self.dir, "daemon.log"), "wb")
        self.p = subprocess.Popen([EVMON, "daemon", "-c", conf, "-S", self.sock],
                                  stdin=subprocess.DEVNULL, stdout=self.err, stderr=self.err)

    def ctl(self, *args):
        return subprocess.run([EVMON, "ctl", "-S", self.sock] + list(args), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60)

    def why(self):
        self.err.flush()
        with open(self.err.name, "rb") as f:
            return first_error(f.read()[-65536:].decode(errors="replace"))

    def wait_up(self, n, limit=300):
        t0 = time.monotonic()
        while count_workload(self.p.pid) < n:
            if self.p.poll() is not None:
                raise Failed(f"daemon exited with {self.p.returncode}: {self.why()}")
            if time.monotonic() - t0 > limit:
                raise Failed(f"only {count_workload(self.p.pid)} of {n} services up after {limit} s")
            time.sleep(0.2)
        return time.monotonic() - t0

    def close(self):
        end(self.p)
        self.err.close()
        cleanup_strays()


def s6(cfg, reps):
    res = Results("S6")
    why = daemon_available()
    if why:
        for case in ("ctl status", "crashloop"):
            res.add(case, 0, "evmon daemon", 0, "pending", "", "pending", why)
        log(f"S6: skipped: {why}")
        return res
    tmp = tempfile.mkdtemp(prefix="evmon-bench-")
    try:
        for n in cfg["s6_services"]:
            for rep in range(min(reps, 3)):
                d = Daemon(tmp, f"status-{n}-{rep}", f"[service:p]\ncommand = {TINY} p\ninstances = {n}\n")
                try:
                    up = d.wait_up(n)
                    time.sleep(2)  # past the start grace (start_secs, 1 s by default): idle now
                    lat = []
                    for _ in range(10):
                        t0 = time.monotonic()
                        r = d.ctl("status")
                        lat.append((time.monotonic() - t0) * 1e3)
                        if r.returncode != 0:
                            raise Failed("ctl status: " + last_line(r.stderr))
                    lat.sort()
                    m = measure_idle(d.p.pid, 2)
                    res.add("ctl status", n, "evmon daemon", rep, "status_ms_median", lat[len(lat) // 2])
                    res.add("ctl status", n, "evmon daemon", rep, "status_ms_min", lat[0])
                    res.add("ctl status", n, "evmon daemon", rep, "launch_us_per_service", up * 1e6 / n)
                    res.add("ctl status", n, "evmon daemon", rep, "pss_kib", m["pss_kib"])
                    res.add("ctl status", n, "evmon daemon", rep, "idle_wakeups_2s", m["wakeups"])
                except Failed as e:
                    res.fail("ctl status", n, "evmon daemon", rep, str(e))
                finally:
                    d.close()
                log(f"S6 ctl status n={n} rep {rep + 1}: " + ", ".join(
                    f"{r['metric']}={r['value']}" for r in res.rows if r["n"] == n and r["rep"] == rep))
                res.save()
        n, secs = cfg["s7_services"], cfg["s7_secs"]
        for rep in range(min(reps, 3)):
            d = Daemon(tmp, f"crash-{rep}", f"[service:c]\ncommand = {TINY}\ninstances = {n}\n"
                       "restart = always\nstart_secs = 0\nbackoff_initial = 1s\nbackoff_max = 1s\n"
                       "backoff_jitter = 100\n")
            try:
                time.sleep(3)  # past the first restarts: every service at the cap, spread by jitter
                if d.p.poll() is not None:
                    raise Failed(f"daemon exited with {d.p.returncode}: {d.why()}")
                a = sample([d.p.pid])
                time.sleep(secs)
                b = sample([d.p.pid])
                hz = os.sysconf("SC_CLK_TCK")
                res.add("crashloop cap 1 s + jitter", n, "evmon daemon", rep, "cpu_pct",
                        (b["ticks"] - a["ticks"]) * 100.0 / hz / secs)
            except Failed as e:
                res.fail("crashloop cap 1 s + jitter", n, "evmon daemon", rep, str(e))
            finally:
                d.close()
            res.save()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


# ------------------------------------------------------------------- S7

def s7(cfg, reps):
    """Supervision through libevmon's services API."""
    res = Results("S7")
    ev = [f"{BENCH}/evmon_bench"]
    n, secs = cfg["s7_services"], cfg["s7_secs"]
    for rep in range(reps):
        try:
            r = run_harness(ev + ["restart", TINY, "600"])
            for k in ("restart_p50_us", "restart_p99_us", "vfork_exec_p50_us", "restart_over_spawn"):
                res.add("restart", 1, "evmon", rep, k, r[k])
        except Failed as e:
            res.fail("restart", 1, "evmon", rep, str(e))
        for cap in cfg["s7_caps"]:
            if cap > 5000 and rep > 0:
                continue  # the long cap is measured once: it takes two caps plus the window
            window = max(secs, cap // 1000)
            try:
                r = run_harness(ev + ["crashloop", TINY, str(n), str(cap), str(window)],
                                timeout=3 * cap // 1000 + window + 120)
                for k in ("cpu_pct", "restarts_per_sec", "cpu_us_per_restart"):
                    res.add(f"crashloop cap {cap // 1000} s", n, "evmon", rep, k, r[k])
            except Failed as e:
                res.fail(f"crashloop cap {cap // 1000} s", n, "evmon", rep, str(e))
        log(f"S7 rep {rep + 1}/{reps}: " + ", ".join(
            f"{r['child']} {r['metric']}={r['value']:.2f}" for r in res.rows
            if r["rep"] == rep and r["metric"] in ("restart_p50_us", "cpu_pct")))
        res.save()
    return res


# ------------------------------------------------------------------- S10

def notify_socket(path):
    """A datagram socket for NOTIFY_SOCKET: the daemon says READY=1 on it once every
    autostart service has been spawned (exec'd: a spawn returns after the exec)."""
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    s.bind(path)
    return s


def daemon_scale(n, idle, tmp, status_runs):
    """`evmon daemon` with n services, one [service:sI] section each (the config a user
    writes for n different programs), every one running `tiny p`, cgroup = no like the
    peers. Start = from the exec of the daemon to its READY=1."""
    d = os.path.join(tmp, f"daemon-{n}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    sock, conf = os.path.join(d, "sock"), os.path.join(d, "evmon.ini")
    with open(conf, "w") as f:
        f.write(f"[evmon]\nsocket = {sock}\ncgroup = no\n\n")
        f.writelines(f"[service:s{i}]\ncommand = {TINY} p\n\n" for i in range(n))
    ns = notify_socket(os.path.join(d, "notify"))
    err = open(os.path.join(d, "daemon.log"), "wb")
    env = dict(os.environ, NOTIFY_SOCKET=os.path.join(d, "notify"))
    t0 = time.monotonic()
    p = subprocess.Popen([EVMON, "daemon", "-c", conf, "-S", sock], env=env,
                         stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    try:
        deadline = t0 + 600
        while True:
            r, _, _ = select.select([ns], [], [], 0.5)
            if r and b"READY=1" in ns.recv(4096):
                break
            if p.poll() is not None or time.monotonic() > deadline:
                err.flush()
                why = first_error(open(err.name, "rb").read()[-65536:].decode(errors="replace"))
                raise Failed(f"no READY=1 (exit {p.returncode}): {why}")
        launch = time.monotonic() - t0
        cpu_ready = sample([p.pid])["ticks"] * 1000.0 / os.sysconf("SC_CLK_TCK")
        m = measure_idle(p.pid, idle)
        if m["alive"] < n:
            raise Failed(f"{m['alive']} of {n} services up after READY=1 and the idle window")
        m["launch_us_per_child"] = launch * 1e6 / n if n else 0
        m["launch_s"] = launch
        m["cpu_ms_up"] = cpu_ready
        lat = []
        for _ in range(status_runs if n else 0):
            t = time.monotonic()
            r = subprocess.run([EVMON, "ctl", "-S", sock, "status"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
            lat.append((time.monotonic() - t) * 1e3)
            if r.returncode != 0:
                raise Failed("ctl status: " + last_line(r.stderr.decode(errors="replace")))
        if lat:
            m["status_ms"] = sorted(lat)[len(lat) // 2]
        return m
    finally:
        end(p)
        ns.close()
        err.close()
        cleanup_strays()
        shutil.rmtree(d, ignore_errors=True)


def s10(cfg, reps):
    """Daemon scale: `evmon daemon` against s6-svscan, runsvdir and supervisord starting
    the same n services, and the library (evmon_bench scale) launching n children, in
    one round each (A B C ...), with no services too (the base of PSS per service)."""
    res = Results("S10")
    why = daemon_available()
    # "evmon setsid": the library's children each in a session of their own, as the
    # daemon's services are (the per-service work the daemon cannot skip)
    mons = ["evmon", "evmon setsid", "evmon daemon", "s6", "runit", "supervisord"]
    if why:
        mons.remove("evmon daemon")
        res.add("start", 0, "evmon daemon", 0, "pending", "", "pending", why)
    lib = lib_monitors(False)["evmon"]
    idle = 2
    tmp = tempfile.mkdtemp(prefix="evmon-bench-")
    try:
        for rep in range(reps):
            for n in [0] + cfg["s10_sizes"]:
                order = mons[rep % len(mons):] + mons[:rep % len(mons)]  # who goes first rotates
                for name in order:
                    if name in ("s6", "runit", "supervisord") and 2 * n + 1000 > pid_budget():
                        res.fail("start", n, name, rep, f"needs {2 * n} processes, beyond pid_max")
                        continue
                    try:
                        if name == "evmon":
                            m = scale_lib(lib[0], lib[1], n, idle)
                        elif name == "evmon setsid":
                            m = scale_lib(lib[0], dict(lib[1], EVMON_BENCH_SETSID="1"), n, idle)
                        elif name == "evmon daemon":
                            m = daemon_scale(n, idle, tmp, 10)
                        else:
                            m = scale_external(name, n, idle, tmp)
                    except Failed as e:
                        res.fail("start", n, name, rep, str(e))
                        log(f"S10 n={n} {name}: failed: {e}")
                        continue
                    for k in ("launch_us_per_child", "cpu_ms_up", "pss_kib", "procs", "alive", "status_ms"):
                        if k in m:
                            res.add("start", n, name, rep, k, m[k])
                    log(f"S10 n={n} {name} rep {rep + 1}/{reps}: " + " ".join(
                        f"{k}={m[k]:g}" for k in ("launch_us_per_child", "cpu_ms_up", "pss_kib", "status_ms")
                        if k in m))
                    res.save()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


# --------------------------------------------------------------- machine

def sh(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip()
    except OSError:
        return ""


def machine():
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    debian = open("/etc/debian_version").read().strip() if os.path.exists("/etc/debian_version") else ""
    pkgs = {}
    for p in ("libuv1-dev", "golang-go", "python3", "tini", "dumb-init", "catatonit", "supervisor",
              "s6", "runit", "gcc", "gnuplot-nox"):
        pkgs[p] = sh(["dpkg-query", "-W", "-f=${Version}", p])
    return dict(cpu=cpu, cores=os.cpu_count(), mem_mib=mem, kernel=platform.release(),
                debian=debian, packages=pkgs, pid_max=int(open("/proc/sys/kernel/pid_max").read()),
                nofile_hard=__import__("resource").getrlimit(7)[1],
                evmon_commit=sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
                evmon_dirty=bool(sh(["git", "-C", ROOT, "status", "--porcelain", "--", "src", "include"])))


# ------------------------------------------------------------------- S11

def own_cgroup():
    """Our cgroup v2 directory if we may make children in it, else (None, why)."""
    mnt = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                mnt = left.split()[4]
                break
    if not mnt:
        return None, "no cgroup2 mount"
    with open("/proc/self/cgroup") as f:
        rel = next((line.strip()[3:] for line in f if line.startswith("0::")), "")
    path = os.path.join(mnt, rel.lstrip("/"))
    if not os.access(path, os.W_OK) or not os.access(os.path.join(path, "cgroup.procs"), os.W_OK):
        return None, f"our cgroup {path} is not writable"
    return path, None


def s11(cfg, reps):
    """spawn+reap into a cgroup at birth (clone3 CLONE_INTO_CGROUP) against the same
    without (issue 14's target: within 1.2x): evmon_bench spawn as in S1, the two
    alternated within each round so the machine's load falls on both alike."""
    res = Results("S11")
    home, why = own_cgroup()
    if not home:
        log(f"S11 skipped: {why}")
        return res
    cg = os.path.join(home, f"evmon-bench.{os.getpid()}")
    os.mkdir(cg)
    mons = {"evmon": {"EVM_SPAWN_MODE": "auto"},
            "evmon-cgroup": {"EVM_SPAWN_MODE": "auto", "EVMON_BENCH_CGROUP": cg}}
    try:
        for child, path in (("tiny", TINY), ("true", TRUE)):
            runs = cfg["s1_runs"][child]
            for k in cfg["s1_inflight"]:
                for rep in range(reps):
                    got = {}
                    for name in (mons if rep % 2 == 0 else reversed(list(mons))):
                        try:
                            r = run_harness([f"{BENCH}/evmon_bench", "spawn", path, str(runs), str(k)],
                                            mons[name])
                            got[name] = (r["per_sec"], r["_cpu_s"] * 1e6 / runs)
                            res.add(child, k, name, rep, "per_sec", r["per_sec"])
                            res.add(child, k, name, rep, "cpu_us_per_child", got[name][1])
                        except Failed as e:
                            res.fail(child, k, name, rep, str(e))
                    if len(got) == 2:
                        ratio = got["evmon"][0] / got["evmon-cgroup"][0]
                        res.add(child, k, "evmon-cgroup", rep, "slowdown", ratio)
                        log(f"S11 {child} inflight={k} rep {rep + 1}/{reps}: "
                            f"{got['evmon'][0]:.0f}/s ({got['evmon'][1]:.0f} us CPU) without, "
                            f"{got['evmon-cgroup'][0]:.0f}/s ({got['evmon-cgroup'][1]:.0f} us CPU) "
                            f"into a cgroup: {ratio:.3f}x")
                    res.save()
    finally:
        for _ in range(100):  # the last children may still be leaving it
            try:
                os.rmdir(cg)
                break
            except OSError:
                time.sleep(0.05)
    return res


def s8(cfg, reps):
    """Log throughput against supervisord, s6-log and svlogd: bench/logbench.py."""
    import logbench
    logbench.run = sys.modules[__name__]  # our globals (EVMON, ...), not a second copy of run.py
    return logbench.s8(cfg, reps)


SCENARIOS = {"S1": s1, "S2": s2, "S3": s3, "S4": s4, "S5": s5, "S6": s6, "S7": s7, "S8": s8,
             "S10": s10, "S11": s11}


def main():
    global BUILD, BENCH, TINY, EVMON
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build/bench")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated scenarios, e.g. S1,S3")
    ap.add_argument("--reps", type=int, default=0)
    a = ap.parse_args()
    BUILD = os.path.abspath(os.path.join(ROOT, a.build))
    BENCH = os.path.join(BUILD, "bench")
    TINY = os.path.join(BENCH, "tiny")
    EVMON = os.path.join(BUILD, "evmon")
    cfg = dict(FULL if a.full else QUICK)
    reps = a.reps or cfg["reps"]
    os.makedirs(RESULTS, exist_ok=True)
    become_subreaper()
    raise_nofile()
    only = [s.strip().upper() for s in a.only.split(",") if s.strip()] or list(SCENARIOS)
    meta = dict(mode="full" if a.full else "quick", config=cfg, reps=reps, machine=machine(),
                started=time.strftime("%Y-%m-%d %H:%M:%S %Z"), scenarios=only,
                command="make bench" + (" FULL=1" if a.full else ""))
    t0 = time.monotonic()
    for s in only:
        log(f"== {s}")
        t = time.monotonic()
        SCENARIOS[s](cfg, reps).save()
        meta.setdefault("durations", {})[s] = round(time.monotonic() - t, 1)
    meta["duration_s"] = round(time.monotonic() - t0, 1)
    mp = os.path.join(RESULTS, "meta.json")
    old = json.load(open(mp)) if os.path.exists(mp) and a.only else {}
    if old:
        # a partial run: the main run's description stays, this one is listed as a re-run
        rerun = {k: meta[k] for k in ("mode", "started", "scenarios", "duration_s")}
        rerun["commit"] = meta["machine"].get("evmon_commit", "?")
        old["durations"] = dict(old.get("durations", {}), **meta["durations"])
        old["reruns"] = old.get("reruns", []) + [rerun]
        meta = old
    with open(mp, "w") as f:
        json.dump(meta, f, indent=1)
    sys.exit(subprocess.call([sys.executable, os.path.join(ROOT, "bench", "report.py")]))


if __name__ == "__main__":
    main()
