#!/usr/bin/python3
"""stormtrace.py - S4's storm case traced: where an exit's latency goes.

    bench/stormtrace.py --build build/cc [--n 10000] [--reps 5]
        [--monitors evmon,raw-pidfd-epoll] [--perf] [--keep DIR]

Runs the latency storm of S4 (N children blocked on one pipe, released at
once by its close, each writing {pid, CLOCK_MONOTONIC} just before _exit)
with the harnesses' trace on (EVMON_BENCH_TRACE=1, see bench/harness/common.h),
the monitors alternated round by round, and prints for every run:

    p50/p99/max     exit -> callback latency, us (as S4)
    release         ms the monitor spent in the close that woke every child
    storm           ms from the release to the last child's stamp
    wakes           how many times the monitor woke to report exits, the
                    largest batch, and the ms of the longest stretch with no
                    report between two batches (or from the release to the first)
    cpu             the monitor's CPU time in the storm (ms), its voluntary /
                    involuntary context switches and migrations (/proc/self/sched)
    on-cpu          % of the children that stamped on the CPU the monitor was on
                    when it released them
    late            % of the exits reported more than 1 ms after their stamp

With --perf, each run is also recorded with `perf record -a -k mono` on the
scheduler's tracepoints (sched_switch, sched_wakeup, sched_migrate_task), and
the monitor's time from the release to its last report is split into running,
runnable but waiting for a CPU (and how it got there: woken, or preempted),
and asleep; the longest wait, and how many other tasks ran on its CPU while it
waited. --release child has a forked process close the pipe instead of the
monitor (EVMON_BENCH_RELEASE=child): the wake-up of N children is then not the
monitor's CPU time. Prints, asserts nothing; numbers to publish need a quiet machine.
"""
import argparse
import collections
import os
import statistics
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (the runner's helpers: subreaper, harness runs, strays)


def load_pairs(path):
    with open(path, "rb") as f:
        b = f.read()
    return [struct.unpack_from("<qq", b, i) for i in range(0, len(b) - 15, 16)]


def load_trace(path):
    with open(path, "rb") as f:
        b = f.read()
    return [struct.unpack_from("<qqii", b, i) for i in range(0, len(b) - 23, 24)]


def load_info(path):
    with open(path) as f:
        out = {}
        for tok in f.read().split():
            k, _, v = tok.partition("=")
            out[k] = float(v)
        return out


def analyze(path):
    child = {}
    for pidc, ns in load_pairs(path):
        child[pidc & 0xffffffff] = (ns, pidc >> 32 & 0xffff)
    tr = load_trace(path + ".trace")
    info = load_info(path + ".tinfo")
    rel0, rel1 = info["release0"], info["release1"]
    lat = sorted((seen - child[pid][0]) / 1e3 for pid, seen, _, _ in tr if pid in child)
    stamps = sorted(ns for ns, _ in child.values())
    batches = collections.OrderedDict()
    for pid, seen, batch, cpu in tr:
        b = batches.setdefault(batch, [seen, seen, 0, cpu])
        b[0], b[1], b[2] = min(b[0], seen), max(b[1], seen), b[2] + 1
    bl = sorted(batches.values())
    gaps, prev_end = [], rel1
    for first, last, _, _ in bl:
        gaps.append((first - prev_end) / 1e6)
        prev_end = last
    cpu0 = int(info["cpu0"])
    on_cpu = sum(1 for _, c in child.values() if c == cpu0)
    d = lambda k: info.get(k + "_1", 0) - info.get(k + "_0", 0)
    return dict(
        n=len(lat), p50=run.pct(lat, 0.5), p99=run.pct(lat, 0.99), max=lat[-1] if lat else float("nan"),
        release_ms=(rel1 - rel0) / 1e6, storm_ms=(stamps[-1] - rel0) / 1e6 if stamps else 0,
        first_stamp_ms=(stamps[0] - rel0) / 1e6 if stamps else 0,
        wakes=len(bl), max_batch=max((b[2] for b in bl), default=0),
        max_gap_ms=max(gaps, default=0), first_gap_ms=gaps[0] if gaps else 0,
        cpu_ms=d("se.sum_exec_runtime"), vol=d("nr_voluntary_switches"),
        invol=d("nr_involuntary_switches"), migr=d("se.nr_migrations"),
        on_cpu_pct=100.0 * on_cpu / max(1, len(child)),
        late_pct=100.0 * sum(1 for x in lat if x > 1000) / max(1, len(lat)),
        pid=int(info["pid"]), release0=rel0, last_seen=max((s for _, s, _, _ in tr), default=rel1),
        mon_cpus=sorted({b[3] for b in bl}))


def perf_split(data, pid, t0, t1):
    """The monitor's time in [t0, t1] (ns, CLOCK_MONOTONIC) from sched tracepoints."""
    out = subprocess.run(["perf", "script", "-i", data, "-F", "time,cpu,event,trace", "--ns"],
                         capture_output=True, text=True).stdout
    state, since, cpu = "asleep", t0, None  # before the release it sleeps or runs: see below
    acc = collections.Counter()
    waits, others_ran, preempted, woken = [], 0, 0, 0
    wait_from = None
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        try:
            c = int(parts[0].strip("[]"))
            t = int(round(float(parts[1].rstrip(":")) * 1e9))
        except ValueError:
            continue
        ev = parts[2].rstrip(":")
        kv = dict(p.split("=", 1) for p in parts[3:] if "=" in p)
        if t > t1:
            break

        def move(new, c_new=None):
            nonlocal state, since, wait_from
            if t >= t0:
                acc[state] += t - max(since, t0)
            if new == "waiting":
                wait_from = t
            elif state == "waiting" and wait_from is not None and t >= t0:
                waits.append((t - max(wait_from, t0)) / 1e6)
            state, since = new, t

        if ev == "sched:sched_switch":
            if kv.get("prev_pid") == str(pid):
                st = kv.get("prev_state", "S")
                if st.startswith("R"):
                    if t >= t0:
                        preempted += 1
                    move("waiting")
                else:
                    move("asleep")
                cpu = c
            elif kv.get("next_pid") == str(pid):
                move("running")
                cpu = c
            elif state == "waiting" and c == cpu and t >= t0:
                others_ran += 1
        elif ev in ("sched:sched_wakeup", "sched:sched_waking") and kv.get("pid") == str(pid):
            if ev == "sched:sched_wakeup" and state == "asleep":
                if t >= t0:
                    woken += 1
                move("waiting")
        elif ev == "sched:sched_migrate_task" and kv.get("pid") == str(pid):
            cpu = int(kv.get("dest_cpu", cpu or 0))
    t = t1
    if state:
        acc[state] += t - max(since, t0)
    tot = max(1, t1 - t0)
    return dict(run_pct=100.0 * acc["running"] / tot, wait_pct=100.0 * acc["waiting"] / tot,
                sleep_pct=100.0 * acc["asleep"] / tot, max_wait_ms=max(waits, default=0),
                waits=len(waits), preempted=preempted, woken=woken, others_ran=others_ran)


def fmt(name, rep, a, p=None):
    s = (f"{name:16} {rep:2} p50={a['p50']:9.0f} p99={a['p99']:9.0f} max={a['max']:9.0f}  "
         f"release={a['release_ms']:6.1f} storm={a['storm_ms']:6.1f}  "
         f"wakes={a['wakes']:5} maxbatch={a['max_batch']:5} gap0={a['first_gap_ms']:6.1f} "
         f"maxgap={a['max_gap_ms']:6.1f}  cpu={a['cpu_ms']:6.1f} vol={a['vol']:5.0f} "
         f"invol={a['invol']:4.0f} migr={a['migr']:3.0f} moncpus={a['mon_cpus']}  "
         f"on-cpu={a['on_cpu_pct']:3.0f}% late={a['late_pct']:3.0f}%")
    if p:
        s += (f"\n{'':19}perf: running {p['run_pct']:.0f}%, waiting for a CPU {p['wait_pct']:.0f}% "
              f"({p['waits']} waits, longest {p['max_wait_ms']:.1f} ms; woken {p['woken']}, "
              f"preempted {p['preempted']}; {p['others_ran']} other switch-ins on its CPU "
              f"meanwhile), asleep {p['sleep_pct']:.0f}%")
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build/cc")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--monitors", default="evmon,raw-pidfd-epoll")
    ap.add_argument("--perf", action="store_true")
    ap.add_argument("--release", choices=("monitor", "child"), default="monitor",
                    help="who closes the pipe that wakes every child: the monitor (as S4), "
                    "or a forked process (EVMON_BENCH_RELEASE=child)")
    ap.add_argument("--keep", default="", help="keep every run's files in this directory")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    run.BENCH = os.path.join(build, "bench")
    run.TINY = os.path.join(run.BENCH, "tiny")
    mons = {"evmon": ([f"{run.BENCH}/evmon_bench"], {}),
            "evmon-direct": ([f"{run.BENCH}/evmon_bench"], {"EVM_SPAWN_MODE": "direct"}),
            "evmon-helper": ([f"{run.BENCH}/evmon_bench"], {"EVM_SPAWN_MODE": "helper"}),
            "raw-pidfd-epoll": ([f"{run.BENCH}/raw_bench", "pidfd"], {})}
    names = [m.strip() for m in a.monitors.split(",") if m.strip()]
    for m in names:
        if m not in mons:
            sys.exit(f"stormtrace: unknown monitor {m} (known: {', '.join(mons)})")
    run.become_subreaper()
    run.raise_nofile()
    print(f"# n={a.n} reps={a.reps} release={a.release} load={os.getloadavg()[0]:.1f} kernel={os.uname().release}")
    res = collections.defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="evmon-stormtrace-", dir="/dev/shm") as tmp:
        out_dir = a.keep or tmp
        os.makedirs(out_dir, exist_ok=True)
        for rep in range(a.reps):
            for name in names:
                argv, env = mons[name]
                path = os.path.join(out_dir, f"{name}-{rep}")
                cmd = argv + ["latency", run.TINY, str(a.n), "storm", path]
                pdata = path + ".perf"
                if a.perf:
                    cmd = ["perf", "record", "-q", "-a", "-k", "mono", "-o", pdata, "-e",
                           "sched:sched_switch", "-e", "sched:sched_wakeup", "-e",
                           "sched:sched_migrate_task", "--"] + cmd
                try:
                    env = dict(env, EVMON_BENCH_TRACE="1")
                    if a.release == "child":
                        env["EVMON_BENCH_RELEASE"] = "child"
                    run.run_harness(cmd, env)
                    an = analyze(path)
                except (run.Failed, OSError, KeyError, ValueError) as e:
                    print(f"{name:16} {rep:2} failed: {e}", flush=True)
                    continue
                p = perf_split(pdata, an["pid"], int(an["release0"]), int(an["last_seen"])) if a.perf else None
                res[name].append(an)
                print(fmt(name, rep, an, p), flush=True)
    print(f"# medians (load now {os.getloadavg()[0]:.1f})")
    for name in names:
        rs = res[name]
        if not rs:
            continue
        med = lambda k: statistics.median(r[k] for r in rs)
        slow = sum(1 for r in rs if r["p50"] > 1000)
        print(f"{name:16} p50={med('p50'):.0f} p99={med('p99'):.0f} max={med('max'):.0f} "
              f"wakes={med('wakes'):.0f} maxgap={med('max_gap_ms'):.1f}ms cpu={med('cpu_ms'):.1f}ms "
              f"invol={med('invol'):.0f} late={med('late_pct'):.0f}%  runs with p50 > 1 ms: "
              f"{slow} of {len(rs)}")


if __name__ == "__main__":
    main()
