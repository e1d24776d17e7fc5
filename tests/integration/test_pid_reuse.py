"""A pid the daemon remembers after its process is gone (a reaped main process's group,
the session a main process led) is another process's once the kernel reuses the number:
nothing may be signalled through it then. Each case runs in a pid namespace of its own
with pid_max 700 (Linux 6.14: per namespace), where a process that forks in a loop gets a
given pid within a second: a victim takes the number and makes it its group or session,
as an unrelated program could, and must outlive the daemon's stop."""
import json
import os
import subprocess
import textwrap

import pytest

from conftest import EVMON, PID_NS, SLOW
from test_cgroup import HOME, WHY

needs_cgroup = pytest.mark.skipif(HOME is None, reason=f"needs a writable cgroup v2: {WHY}")

RUN = r'''
import json, os, subprocess, sys, time
d, mode, evmon, slow = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
if release < (6, 14):  # before, pid_max is the machine's: never written here
    print(json.dumps({"skip": f"pid_max is per pid namespace from Linux 6.14 (this is {release})"}))
    sys.exit(0)
try:
    with open("/proc/sys/kernel/pid_max", "w") as f:
        f.write("700")
except OSError as e:
    print(json.dumps({"skip": f"pid_max of a pid namespace cannot be set: {e}"}))
    sys.exit(0)
for _ in range(320):  # the daemon's processes above 300, where the numbers wrap to
    subprocess.run(["/bin/true"])
daemon = subprocess.Popen([evmon, "daemon", "-c", f"{d}/d.ini", "-S", f"{d}/d.sock"],
                          stdout=open(f"{d}/daemon.out", "w"), stderr=subprocess.STDOUT)

def wait(pred, what, timeout=20):
    end = time.monotonic() + timeout * slow
    while not pred():
        if time.monotonic() > end:
            print(json.dumps({"error": f"timed out waiting for {what}"}))
            daemon.kill()
            sys.exit(1)
        time.sleep(0.01)

def read(name):
    try:
        with open(f"{d}/{name}") as f:
            return f.read().strip()
    except OSError:
        return ""

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False

wait(lambda: read("main.pid"), "the main process's pid")
main = int(read("main.pid"))
if mode == "session":  # the child leaves the session once it is the service's main
    wait(lambda: read("child.pid") and f"main process is now pid {read('child.pid')}" in
         read("daemon.out"), "the child taken from the pidfile")
    with open(f"{d}/go", "w") as f:
        f.write("1")
wait(lambda: read("ready"), "the service's own state")  # its main exited, its group/session empty
# the victim: forks until it has main's old pid, then leads a group (or session) of that number
victim = None
for _ in range(2000):
    pid = os.fork()
    if pid == 0:
        if os.getpid() == main:
            if mode == "group":
                os.setpgid(0, 0)
            else:
                os.setsid()
            time.sleep(60)
        os._exit(0)
    if pid == main:
        victim = pid
        break
    os.waitpid(pid, 0)
if victim is None:
    print(json.dumps({"error": f"pid {main} never came back"}))
    daemon.kill()
    sys.exit(1)
wait(lambda: (os.getpgid(victim) if mode == "group" else os.getsid(victim)) == victim,
     "the victim's own group or session")
out = {"main": main}
if mode == "session":
    r = subprocess.run([evmon, "ctl", "-S", f"{d}/d.sock", "stop", "svc"], capture_output=True, text=True)
    out["stop"] = r.returncode
    out["child_alive"] = alive(int(read("child.pid")))
else:  # the pidfile wait gives up (5 s): the exit is decided, the group's stragglers killed
    wait(lambda: "pidfile" in read("daemon.out") and "-> exited" in read("daemon.out"), "the exit", 30)
    time.sleep(0.5)
out["victim_alive"] = alive(victim)
daemon.terminate()
daemon.wait(30)
out["log"] = read("daemon.out")
print(json.dumps(out))
'''

# The main process forks a child that writes its pid and leaves the main's session
# (setsid) once the daemon took it as the main process from the pidfile: the session the
# daemon knows by the main's number has emptied, and the victim makes one of that number.
SESSION = """
[evmon]
cgroup = no
[service:svc]
command = /usr/bin/python3 {d}/svc.py {d}
pidfile = {d}/svc.pid
restart = never
stop_timeout = 2
"""
SVC = r"""
import os, sys, time
d = sys.argv[1]
with open(f"{d}/main.pid", "w") as f:
    f.write(str(os.getpid()))
c = os.fork()
if c == 0:
    end = time.monotonic() + 60
    while not os.path.exists(f"{d}/go") and time.monotonic() < end:
        time.sleep(0.01)  # until the daemon took it from the pidfile, still in the session
    os.setsid()
    with open(f"{d}/ready", "w") as f:
        f.write("1")
    time.sleep(60)
    os._exit(0)
for name in ("child.pid", "svc.tmp"):
    with open(f"{d}/{name}", "w") as f:
        f.write(str(c))
os.rename(f"{d}/svc.tmp", f"{d}/svc.pid")
os._exit(0)
"""

# A main process that leads its group, writes no pidfile and exits, its child in a session
# of its own: the daemon waits up to 5 s for the pidfile while the cgroup holds processes,
# then decides the exit, with a SIGKILL to the group's stragglers.
GROUP = """
[evmon]
cgroup = yes
[service:svc]
command = /bin/sh -c "echo $$ > {d}/main.pid; setsid /bin/sleep 60 & echo 1 > {d}/ready; exit 0"
pidfile = {d}/never.pid
kill_mode = group
restart = never
"""


def run(procs, tmp_path, mode, config):
    d = tmp_path
    (d / "d.ini").write_text(textwrap.dedent(config.format(d=d)))
    (d / "run.py").write_text(RUN)
    (d / "svc.py").write_text(SVC)
    r = procs.run(PID_NS + ["/usr/bin/python3", str(d / "run.py"), str(d), mode, EVMON, str(SLOW)],
                  timeout=90 * SLOW)
    assert r.returncode == 0, r
    out = json.loads(r.stdout.strip().splitlines()[-1])
    if "skip" in out:
        pytest.skip(out["skip"])
    assert "error" not in out, out
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="pid_max of a pid namespace: root")
def test_a_stop_never_signals_a_session_that_took_the_number(procs, tmp_path):
    """cgroup = no: the daemon knows the service's processes by the session its first main
    process led, and took its child as the main process from the pidfile; the child left
    that session, which emptied, and another process made a session of the same number.
    `ctl stop` sent its SIGTERM to that stranger's session (and the real main process got
    only the SIGKILL at stop_timeout): now the number is seen to be another's (a process
    with that pid started after the session's leader), and the main process is stopped."""
    out = run(procs, tmp_path, "session", SESSION)
    assert out["stop"] == 0, out
    assert out["victim_alive"], out
    assert not out["child_alive"], out


@needs_cgroup
@pytest.mark.skipif(os.geteuid() != 0, reason="pid_max of a pid namespace: root")
def test_a_decided_exit_never_kills_a_group_that_took_the_number(procs, tmp_path):
    """kill_mode = group with a pidfile that never comes: the exit is decided 5 s after the
    main process was reaped, with a SIGKILL to its group's stragglers by the main's number,
    which by then may be another process's group. Now a process with that pid means the
    group emptied: nothing is sent."""
    out = run(procs, tmp_path, "group", GROUP)
    assert out["victim_alive"], out
