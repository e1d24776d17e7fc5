"""Service output capture: stdout/stderr through the daemon's loop into
rotated log files, evmon's own lines between the service's, `evmon ctl logs`
(tail and follow), reopen-logs, and the failure cases: an unwritable log
directory, planted symlinks, FIFOs and hard links, slow followers, a
service printing 100 MB."""
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import EVMON, HELPER, needs_root, wait_for
from daemon_util import SLOW, Daemon, LineReader

TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture(autouse=True)
def stop_daemons_left_running(monkeypatch):
    """A test that fails before d.stop() leaves its daemon to procs' cleanup, whose
    SIGKILL would orphan the services (each in a session of its own): stop it."""
    made = []
    init = Daemon.__init__

    def record(self, *a, **kw):
        made.append(self)
        init(self, *a, **kw)
    monkeypatch.setattr(Daemon, "__init__", record)
    yield
    for d in made:
        if d.p and d.p.poll() is None:
            d.p.send_signal(signal.SIGTERM)
            try:
                d.p.wait(timeout=30 * SLOW)
            except subprocess.TimeoutExpired:
                pass


def text_of(path):
    """The file's text, or "" while it is not there (a rotation renames it under us)."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def logdir(tmp_path, name="logs", mode=0o755):
    d = tmp_path / name
    d.mkdir()
    os.chmod(d, mode)
    return d


def lines_of(path):
    with open(path, "rb") as f:
        return f.read().split(b"\n")[:-1]


def evmon_lines(path):
    return [l.decode() for l in lines_of(path) if re.match(rb"^" + TS.encode() + rb" evmon: ", l)]


def fds_of(pid):
    return os.listdir(f"/proc/{pid}/fd")


def vm(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


# ------------------------------------------------------------------ lines


def test_merged_and_separate_streams(procs, tmp_path):
    logs = logdir(tmp_path)
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}

[service:merged]
command = sh -c 'echo out-1; echo err-1 >&2; echo out-2; exec {HELPER} pause'
stdout = log
stderr = stdout

[service:apart]
command = sh -c 'echo out-1; echo err-1 >&2; exec {HELPER} pause'
stdout = log
stderr = log

[service:erronly]
command = sh -c 'echo to-terminal; echo err-only >&2; exec {HELPER} pause'
stdout = null
stderr = log
""")
    m, a, ae, e = logs / "merged.log", logs / "apart.log", logs / "apart.err.log", logs / "erronly.err.log"
    wait_for(lambda: m.exists() and b"out-2" in m.read_bytes(), what="merged log")
    wait_for(lambda: ae.exists() and b"err-1" in ae.read_bytes(), what="stderr log")
    wait_for(lambda: e.exists() and b"err-only" in e.read_bytes(), what="stderr-only log")
    # merged: one pipe, the order in which the process wrote
    assert [l for l in lines_of(m) if not l.startswith(b"20")] == [b"out-1", b"err-1", b"out-2"]
    assert b"err-1" not in a.read_bytes() and b"out-1" not in ae.read_bytes()
    # evmon's lines go to the main file: stdout's, or stderr's when only stderr is logged
    assert re.match(TS + r" evmon: started pid \d+$", evmon_lines(m)[0])
    assert evmon_lines(a) and not evmon_lines(ae)
    assert evmon_lines(e) and not (logs / "erronly.log").exists()
    assert "to-terminal" not in d.log()
    d.stop()
    assert "; stopped" in evmon_lines(m)[-1]


def test_partial_lines_and_a_last_line_without_newline(procs, tmp_path):
    logs = logdir(tmp_path)
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}

[service:p]
command = sh -c 'printf abc; sleep 0.3; printf "def\\\\nghi"; sleep 0.3; printf "jkl\\\\n"; printf tail-without-newline; exit 3'
stdout = log
restart = never
""")
    f = logs / "p.log"
    wait_for(lambda: f.exists() and "exited with code 3" in f.read_text(), what="exit line")
    body = [l for l in lines_of(f) if b" evmon: " not in l]
    # held until the newline: never "abc" and "def" on lines of their own
    assert body == [b"abcdef", b"ghijkl", b"tail-without-newline"], body
    # the last line was written (with a newline) before evmon's line about the exit
    text = f.read_text()
    assert re.search(r"\ntail-without-newline\n" + TS + r" evmon: pid \d+ exited with code 3 after "
                     r"[\d.]+s; not restarted\n$", text), text
    d.stop()


def test_long_lines_are_cut_at_64k_and_binary_passes(procs, tmp_path):
    logs = logdir(tmp_path)
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}

[service:long]
command = sh -c 'head -c 100000 /dev/zero | tr "\\\\0" x; echo; head -c 300 /dev/urandom > {tmp_path}/bin; cat {tmp_path}/bin; echo'
stdout = log
restart = never
""")
    f = logs / "long.log"
    wait_for(lambda: f.exists() and "exited with code 0" in f.read_text(errors="replace"), what="exit")
    data = f.read_bytes()
    blob = (tmp_path / "bin").read_bytes()
    assert blob + b"\n" in data  # bytes, NULs and all, unchanged
    xs = [len(l) for l in data.split(b"\n") if l and set(l) == {ord("x")}]
    assert xs == [65536, 100000 - 65536], xs
    d.stop()


def test_timestamps(procs, tmp_path):
    logs = logdir(tmp_path)
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}
log_timestamps = true

[service:t]
command = sh -c 'echo one; printf "two\\\\n\\\\nfour\\\\n"; exec {HELPER} pause'
stdout = log
""")
    f = logs / "t.log"
    wait_for(lambda: f.exists() and b"four" in f.read_bytes(), what="lines")
    lines = [l.decode() for l in lines_of(f)]
    assert re.fullmatch(TS + r" evmon: started pid \d+", lines[0]), lines
    assert [re.sub("^" + TS + " ", "", l) for l in lines[1:]] == ["one", "two", "", "four"]
    assert all(re.match(TS + " ", l) for l in lines), lines
    d.stop()


# --------------------------------------------------------------- rotation


ROT = """
[evmon]
log_dir = {logs}
log_max_bytes = 4k
log_backups = {backups}

[service:r]
command = sh -c 'i=0; while [ $i -lt {n} ]; do printf "%0{w}d\\\\n" $i; i=$((i+1)); done'
stdout = log
restart = never
"""


def numbered(files):
    out = []
    for p in files:
        # zero-padded: a 5000-digit line is past int()'s 4300 digits
        out += [int(l.lstrip(b"0") or b"0") for l in lines_of(p) if b"evmon" not in l]
    return out


@pytest.mark.parametrize("backups", [3, 1])
def test_rotation_boundaries_and_backup_count(procs, tmp_path, backups):
    logs = logdir(tmp_path)
    # 1200 lines of 100 bytes: 120 KB through a 4096-byte file; a daemon with
    # umask 000 still creates files no other user can write or read
    d = Daemon(procs, tmp_path, ROT.format(logs=logs, backups=backups, n=1200, w=99), start=False)
    old_umask = os.umask(0)
    try:
        d.start()
    finally:
        os.umask(old_umask)
    cur = logs / "r.log"
    wait_for(lambda: "exited with code 0" in text_of(cur), what="exit line")
    d.stop()
    names = sorted(os.listdir(logs))
    assert names == ["r.log"] + [f"r.log.{i}" for i in range(1, backups + 1)], names
    files = [logs / f"r.log.{i}" for i in range(backups, 0, -1)] + [cur]
    for p in files:
        size = p.stat().st_size
        assert size <= 4096, (p, size)
        data = p.read_bytes()
        assert data.endswith(b"\n")  # rotation happens between lines only
        assert p.stat().st_mode & 0o7777 == 0o640, (p, oct(p.stat().st_mode))
    # a file was rotated only when the next line did not fit
    for older, newer in zip(files, files[1:]):
        first = lines_of(newer)[0]
        assert older.stat().st_size + len(first) + 1 > 4096, (older, first)
    # what is kept is the end of the output, in order, without a gap
    got = numbered(files)
    assert got == list(range(1200 - len(got), 1200)), got[:5]
    assert len(got) >= 39 * backups


def test_a_rotation_that_fails_does_not_fill_the_disk(procs, tmp_path):
    """Something in the way of the rotation (a directory at r.log.2): lines went on into
    r.log for good, past log_max_bytes without limit. They go on up to twice the limit,
    then are discarded, counted, until the rotation works again."""
    logs = logdir(tmp_path)
    (logs / "r.log.2").mkdir()
    d = Daemon(procs, tmp_path, """
[evmon]
log_dir = LOGS
log_max_bytes = 4k
log_backups = 2

[service:r]
command = sh -c 'i=0; while :; do printf "%099d\\n" $i; i=$((i+1)); sleep 0.005; done'
stdout = log
""".replace("LOGS", str(logs)))
    wait_for(lambda: "cannot rotate it, and it is twice log_max_bytes: output is discarded" in d.log(),
             timeout=30 * SLOW, what="the discarding")
    assert (logs / "r.log").stat().st_size <= 8192
    time.sleep(0.5)  # more lines, discarded
    assert (logs / "r.log").stat().st_size <= 8192
    (logs / "r.log.2").rmdir()
    wait_for(lambda: re.search(r"r.log: writing again; \d+ bytes of output were discarded", d.log()),
             timeout=30 * SLOW, what="the rotation working again")
    d.stop()
    for name in ("r.log", "r.log.1", "r.log.2"):
        assert (logs / name).is_file() and (logs / name).stat().st_size <= 8192, name


def test_no_backups_truncates(procs, tmp_path):
    logs = logdir(tmp_path)
    d = Daemon(procs, tmp_path, ROT.format(logs=logs, backups=0, n=1200, w=99))
    cur = logs / "r.log"
    wait_for(lambda: "exited with code 0" in text_of(cur), what="exit line")
    d.stop()
    assert os.listdir(logs) == ["r.log"]
    assert cur.stat().st_size <= 4096
    got = numbered([cur])
    # what is left is the end of the output, since the last truncation
    assert got == list(range(1200 - len(got), 1200)), got


def test_a_line_longer_than_the_limit_gets_a_file_of_its_own(procs, tmp_path):
    logs = logdir(tmp_path)
    d = Daemon(procs, tmp_path, ROT.format(logs=logs, backups=5, n=3, w=4999))
    cur = logs / "r.log"
    wait_for(lambda: "exited with code 0" in text_of(cur), what="exit line")
    d.stop()
    sizes = {p: (logs / p).stat().st_size for p in os.listdir(logs)}
    big = [p for p, s in sizes.items() if s == 5000]
    assert len(big) == 3, sizes  # each 5000-byte line alone in its file
    assert numbered([logs / f"r.log.{i}" for i in range(4, 0, -1)] + [cur]) == [0, 1, 2]


def test_a_flood_into_small_logs_with_many_backups_leaves_the_daemon_answering(procs, tmp_path):
    """`yes` into log_max_bytes = 1 with log_backups = 1000 froze the daemon: each line
    rotated the file, renaming all 1000 names whether there or not, and a wake-up took
    256 KiB of lines; ctl, and SIGTERM, went unanswered for minutes. Such a size is a
    mistake now (4k at least); a rotation renames only the backups there are, and a
    wake-up takes about one file's worth of lines, the rest waiting in the pipe."""
    logs = logdir(tmp_path)
    line = "a" * 31
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}

[service:flood]
command = yes {line}
stdout = log
log_max_bytes = 4k
log_backups = 1000
instances = 3

[service:idle]
command = {HELPER} pause
""")
    d.wait_state("idle", "running")
    r = d.ctl("add", "-s", "stdout=log", "-s", "log_max_bytes=1", "-s", "log_backups=1000",
              "rs", "--", "yes", line, timeout=10)
    assert r.returncode != 0 and "log_max_bytes: '1' is too small: at least 4k" in r.stderr, r
    # ctl answers all along, until many rotations went by with the chains full
    full = [logs / f"flood:{i}.log.1000" for i in range(3)]
    t0 = time.monotonic()
    while not all(p.exists() for p in full):
        assert d.request({"cmd": "status"}, timeout=10)["ok"]
        assert time.monotonic() - t0 < 300 * SLOW, "the backups not made in time"
        time.sleep(0.2)
    for _ in range(20):
        assert d.request({"cmd": "status"}, timeout=10)["ok"]
        time.sleep(0.2)
    d.stop()
    names = os.listdir(logs)
    for i in range(3):
        mine = [n for n in names if n.startswith(f"flood:{i}.log")]
        assert len(mine) == 1001, len(mine)
    size = max((logs / n).stat().st_size for n in names)
    assert size <= 4096, size
    assert not any(n.startswith("rs") for n in names), names


def test_a_backup_removed_by_hand_leaves_a_gap_the_rotation_fills(procs, tmp_path):
    """The rotation renames the backups there are, from .1 up to the first name free:
    r.log.2 removed by hand is filled by the next rotation, r.log.3 keeps its name (and
    is not overwritten), nothing is made past log_backups."""
    logs = logdir(tmp_path)
    for name, text in [("r.log", "cur\n" + "c" * 3799 + "\n"), ("r.log.1", "one\n"),
                       ("r.log.3", "three\n"), ("r.log.4", "four\n")]:
        (logs / name).write_text(text)
        os.chmod(logs / name, 0o640)
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}
log_max_bytes = 4k
log_backups = 4

[service:r]
command = sh -c 'printf "%0299d\\n" 7'
stdout = log
restart = never
""")
    wait_for(lambda: "exited with code 0" in text_of(logs / "r.log"), what="exit line")
    d.stop()
    assert sorted(os.listdir(logs)) == ["r.log", "r.log.1", "r.log.2", "r.log.3", "r.log.4"]
    assert (logs / "r.log.1").read_text().startswith("cur\n")
    assert (logs / "r.log.2").read_text() == "one\n"
    assert (logs / "r.log.3").read_text() == "three\n"
    assert (logs / "r.log.4").read_text() == "four\n"
    assert numbered([logs / "r.log"]) == [7]


def test_log_max_bytes_below_4k_is_a_mistake(procs, tmp_path):
    """A file smaller than a line rotates at every line: below 4k (s6-log's least too) the
    value is refused, naming the key, in [evmon] and in a service; 0 still means never."""
    cfg = tmp_path / "e.ini"
    for where, value, err in [("[evmon]", "1", "'1' is too small: at least 4k (0: never rotate)"),
                              ("[service:s]", "4095", "'4095' is too small: at least 4k"),
                              ("[service:s]", "3k", "'3k' is too small: at least 4k"),
                              ("[service:s]", "4k", None), ("[evmon]", "0", None)]:
        text = f"[evmon]\nlog_dir = {tmp_path}\n\n[service:s]\ncommand = {HELPER} pause\nstdout = log\n"
        text = text.replace(where + "\n", f"{where}\nlog_max_bytes = {value}\n")
        cfg.write_text(text)
        r = procs.run([EVMON, "daemon", "--check", "-c", str(cfg)], timeout=30 * SLOW)
        if err:
            assert r.returncode != 0 and f"log_max_bytes: {err}" in r.stderr, (where, value, r)
        else:
            assert r.returncode == 0, (where, value, r)


# --------------------------------------------------------- exits and restarts


def test_output_of_a_crashed_process_is_all_there(procs, tmp_path):
    logs = logdir(tmp_path)
    # 50,000 lines (~290 KB, several pipefuls) then death by SIGSEGV, then a restart
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}
log_max_bytes = 0

[service:crash]
command = sh -c 'seq 1 50000; kill -SEGV $$'
stdout = log
restart = on-failure
start_secs = 0
backoff_initial = 200ms
""")
    f = logs / "crash.log"
    wait_for(lambda: f.exists() and f.read_text().count("killed by signal SEGV") >= 2,
             timeout=30 * SLOW, what="a second run")
    d.ctl("stop", "crash")
    lines = f.read_text().split("\n")
    i = next(k for k, l in enumerate(lines) if " evmon: pid " in l)
    assert re.fullmatch(TS + r" evmon: started pid \d+", lines[0])
    assert lines[1:i] == [str(k) for k in range(1, 50001)]
    assert re.fullmatch(TS + r" evmon: pid \d+ killed by signal SEGV( \(core dumped\))? after "
                        r"[\d.]+s; restarting in 0\.2s \(restart 1\)", lines[i]), lines[i]
    assert re.fullmatch(TS + r" evmon: started pid \d+", lines[i + 1])
    assert lines[i + 2] == "1"  # the next run's output follows
    d.stop()


def test_restarts_reuse_the_pipe(procs, tmp_path):
    logs = logdir(tmp_path)
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}

[service:c]
command = sh -c 'echo run; exit 1'
stdout = log
stderr = stdout
restart = always
start_secs = 0
backoff_initial = 10ms
backoff_max = 20ms
""")
    f = logs / "c.log"
    wait_for(lambda: f.exists() and f.read_text().count("run\n") >= 3, what="three runs")
    def quiet_fds():
        """The fewest the daemon holds over 30 looks: a spawn under way holds a pidfd and
        a cgroup's fd for a moment, a record's write its temporary file."""
        n = []
        for _ in range(30):
            n.append(len(fds_of(d.p.pid)))
            time.sleep(0.005)
        return min(n)
    n1 = quiet_fds()
    wait_for(lambda: f.read_text().count("run\n") >= 30, what="thirty runs")
    n2 = quiet_fds()
    assert n2 <= n1 + 1, (n1, n2)  # no descriptor per restart
    d.ctl("stop", "c")
    text = f.read_text()
    runs, starts = text.count("run\n"), text.count(" evmon: started pid ")
    assert runs <= starts <= runs + 1  # the stop may come before the last one's echo
    assert len(re.findall(r" evmon: pid \d+ exited with code 1 ", text)) >= runs - 1
    d.stop()


def test_start_failure_is_in_the_log(procs, tmp_path):
    logs = logdir(tmp_path)
    (tmp_path / "prog").write_text("#!/bin/sh\necho hi\n")
    os.chmod(tmp_path / "prog", 0o755)
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}

[service:gone]
command = {tmp_path}/prog
stdout = log
start_secs = 0
restart = never
""")
    f = logs / "gone.log"
    wait_for(lambda: f.exists() and "exited with code 0" in f.read_text(), what="first run")
    os.unlink(tmp_path / "prog")
    assert d.ctl("-t", "0", "start", "gone").returncode == 0
    wait_for(lambda: "cannot start it: exec" in f.read_text(), what="the failure")
    assert re.search(r"evmon: cannot start it: exec \S+prog: No such file or directory; "
                     r"restarting in", f.read_text()), f.read_text()
    d.stop()


def test_gave_up_is_said_once(procs, tmp_path):
    """A service that gave up says so once, in its log and in the daemon's: the
    library's message has "gave up after ..." and the exec error already (it said
    "...; gave up after 2 failed starts in a row; gave up: ...; gave up after 2 failed
    starts in a row", and the daemon's line "...: exec: No such file or directory")."""
    logs = logdir(tmp_path)
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}

[service:gone]
command = {tmp_path}/nope
stdout = log
start_retries = 1
backoff_initial = 10ms

[service:crash]
command = sh -c 'exit 3'
stdout = log
start_secs = 0
max_retries = 1
backoff_initial = 10ms
""")
    d.wait_state("gone", "fatal")
    d.wait_state("crash", "fatal")
    gone = (logs / "gone.log").read_text().splitlines()
    assert re.fullmatch(TS + rf" evmon: cannot start it: exec {tmp_path}/nope: No such file or "
                        r"directory; gave up after 2 failed starts in a row", gone[-1]), gone
    crash = (logs / "crash.log").read_text().splitlines()
    assert re.fullmatch(TS + r" evmon: pid \d+ exited with code 3 after \S+; gave up after 2 "
                        r"failures in a row", crash[-1]), crash
    log = d.log()
    assert f"-> fatal (restarts: 1): exec {tmp_path}/nope: No such file or directory; gave up " \
        "after 2 failed starts in a row\n" in log, log
    assert "exec: No such file" not in log, log
    d.stop()


# -------------------------------------------------------------- ctl logs


def test_ctl_logs_tail_follow_and_errors(procs, tmp_path):
    logs = logdir(tmp_path)
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}
log_max_bytes = 4k
log_backups = 3

[service:web]
command = sh -c 'trap "echo hup" HUP; seq 1 3000; echo err-line >&2; while :; do sleep 0.05; done'
stdout = log
stderr = log
kill_group = true

[service:pool]
command = {HELPER} pause
instances = 2

[service:plain]
command = {HELPER} pause
""")
    f = logs / "web.log"
    wait_for(lambda: f.exists() and b"\n3000\n" in f.read_bytes(), what="output")
    r = d.ctl("logs", "-n", "3", "web")
    assert r.returncode == 0 and r.stdout == "2998\n2999\n3000\n", r
    # more lines than the file holds: the backups come first
    assert (logs / "web.log.1").exists()
    r = d.ctl("logs", "-n", "5000", "web")
    nums = [l for l in r.stdout.splitlines() if "evmon" not in l]
    assert nums[-1] == "3000" and len(nums) > len(numbered([f])), len(nums)
    assert nums == [str(k) for k in range(3001 - len(nums), 3001)]
    assert d.ctl("logs", "-n", "0", "web").stdout == ""
    # stderr is a pipe of its own, read apart from stdout's
    wait_for(lambda: d.ctl("logs", "--stderr", "web").stdout == "err-line\n", what="stderr's line")
    # follow: new lines as they are written
    p = procs.spawn([EVMON, "ctl", "-S", d.sock, "logs", "-n", "1", "-f", "web"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got = []
    t = threading.Thread(target=lambda: got.extend(iter(p.stdout.readline, b"")), daemon=True)
    t.start()
    wait_for(lambda: got == [b"3000\n"], what="the tail line")
    assert d.ctl("signal", "web", "HUP").returncode == 0
    wait_for(lambda: b"hup\n" in got, what="the followed line")
    assert d.ctl("restart", "web").returncode == 0
    wait_for(lambda: any(b"evmon: started pid" in l for l in got[2:]), what="evmon lines followed")
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=10 * SLOW)
    # the daemon let go of the follower
    wait_for(lambda: d.request({"cmd": "ping"})["clients"] == 1, what="follower gone")
    # errors
    for args, msg in [(["pool"], "pool has 2 instances: name one (pool:0 to pool:1)"),
                      (["nope"], "no such service: nope"),
                      (["plain"], "service plain does not log its output (stdout = inherit, "
                                  "stderr = inherit): set stdout = log"),
                      (["-n", "x", "web"], "bad number of lines")]:
        r = d.ctl("logs", *args)
        assert r.returncode in (1, 2) and msg in r.stderr, (args, r)
    d.stop()


def under_a_terminal(argv, timeout=30):
    """argv's stdout on a pseudo-terminal (stdin and stderr: /dev/null and a pipe): what
    it wrote there, its newlines without the terminal's CR."""
    import pty
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE,
                             start_new_session=True)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed it
                break
            if not chunk:
                break
            out += chunk
        p.wait(timeout=timeout)
        p.stderr.close()
    finally:
        os.close(master)
    return out.replace(b"\r\n", b"\n")


def test_ctl_logs_to_a_terminal_escapes_what_it_would_act_on(procs, tmp_path):
    """A service's output reached whoever ran `ctl logs` as it was: an OSC sequence could
    retitle the terminal or write its clipboard, a CSI clear it. To a terminal, control
    characters (but newline and tab), C1 and bytes of no UTF-8 character are escaped now;
    text and UTF-8 pass; to a pipe, and with --raw, the bytes are as they are."""
    logs = logdir(tmp_path)
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}
[service:web]
command = printf 'a\\033]52;c;cHduZWQ=\\007b\\tc\\n\\302\\233x caf\\303\\251 \\377\\n'
stdout = log
restart = never
start_secs = 0
""")
    wait_for(lambda: (logs / "web.log").exists() and b"caf" in (logs / "web.log").read_bytes(),
             what="the output")
    raw = b"a\x1b]52;c;cHduZWQ=\x07b\tc\n\xc2\x9bx caf\xc3\xa9 \xff\n"
    shown = under_a_terminal([EVMON, "ctl", "-S", d.sock, "logs", "web"])
    assert b"\na\\x1b]52;c;cHduZWQ=\\x07b\tc\n\\u009bx caf\xc3\xa9 \\xff\n" in shown, shown
    assert b"\x1b" not in shown and b"\x07" not in shown, shown
    assert b"\n" + raw in under_a_terminal([EVMON, "ctl", "-S", d.sock, "logs", "--raw", "web"])
    r = subprocess.run([EVMON, "ctl", "-S", d.sock, "logs", "web"], capture_output=True, timeout=30)
    assert b"\n" + raw in r.stdout, r
    d.stop()


def test_ctl_logs_stderr_merged_says_where(procs, tmp_path):
    logs = logdir(tmp_path)
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}

[service:m]
command = {HELPER} pause
stdout = log
stderr = stdout
""")
    r = d.ctl("logs", "-e", "m")
    assert r.returncode == 1 and "stderr = stdout: it is in the stdout log" in r.stderr, r
    d.stop()


def flooded_followers(procs, tmp_path, setting, lines, followers):
    """A daemon ([evmon] setting) whose service floods seq 1 LINES into its log once the
    FOLLOWERS `logs -f` readers (a 4k socket buffer each, never read) are connected; the
    flood has ended when this returns. (daemon, logs dir, the readers' sockets)"""
    logs = logdir(tmp_path)
    os.mkfifo(tmp_path / "go")
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}
{setting}
log_max_bytes = 0

[service:flood]
command = sh -c 'read x < {tmp_path}/go; seq 1 {lines}; touch {tmp_path}/done; exec {HELPER} pause'
stdout = log
""")
    socks = []
    for _ in range(followers):
        s = d.connect()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b'{"cmd":"logs","name":"flood","lines":0,"follow":true}\n')
        assert LineReader(s).next()["ok"]
        socks.append(s)
    with open(tmp_path / "go", "w") as g:
        g.write("go\n")
    # they never read: the service is not held back by them
    wait_for(lambda: (tmp_path / "done").exists(), timeout=60 * SLOW, what="the service finished")
    return d, logs, socks


def test_slow_follower_is_dropped_and_the_service_goes_on(procs, tmp_path):
    d, logs, socks = flooded_followers(procs, tmp_path, "client_buffer = 64k", 2000000, 1)
    wait_for(lambda: "bytes of log output not read" in d.log(), what="follower dropped")
    socks[0].close()
    assert d.request({"cmd": "ping"})["ok"]
    assert (logs / "flood.log").read_bytes().count(b"\n") >= 2000000
    d.stop()


def test_followers_that_never_read_count_in_events_buffer_total(procs, tmp_path):
    """`ctl logs -f` followers that never read: each kept up to client_buffer (4M) of lines
    aside, outside what events_buffer_total bounds, so 1,000 of them could hold 4 GB. That
    memory counts in the total now: past it the slowest reader is dropped, as for events.
    Three: their output buffers (a raw stream keeps about 128k) fit the total."""
    d, _, socks = flooded_followers(procs, tmp_path, "events_buffer_total = 2M", 1000000, 3)
    wait_for(lambda: "all clients hold" in d.log(), what="followers dropped for the total")
    assert "(limit 2097152)" in d.log(), d.log()
    for s in socks:
        s.close()
    assert d.request({"cmd": "ping"})["ok"]
    d.stop()


def test_reopen_logs(procs, tmp_path):
    logs = logdir(tmp_path)
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}

[service:w]
command = sh -c 'trap "echo hup" HUP; echo first; while :; do sleep 0.05; done'
stdout = log
kill_group = true
""")
    f = logs / "w.log"
    wait_for(lambda: f.exists() and b"first" in f.read_bytes(), what="first line")
    os.rename(f, logs / "w.log.old")  # what logrotate does
    d.ctl("signal", "w", "HUP")
    wait_for(lambda: b"hup" in (logs / "w.log.old").read_bytes(), what="line in the moved file")
    r = d.ctl("reopen-logs")
    assert r.returncode == 0 and f"they are created again in {logs}" in r.stdout, r
    assert not f.exists()
    d.ctl("signal", "w", "HUP")
    wait_for(lambda: f.exists() and f.read_bytes() == b"hup\n", what="line in a new file")
    # SIGUSR1 does the same
    os.rename(f, logs / "w.log.old2")
    d.p.send_signal(signal.SIGUSR1)
    wait_for(lambda: d.log().count("log files: they are created again") >= 2, what="USR1")
    d.ctl("signal", "w", "HUP")
    wait_for(lambda: f.exists() and f.read_bytes() == b"hup\n", what="line in a new file")
    d.stop()


# ----------------------------------------------------------- reload


def test_reload_applies_log_settings_without_restarting(procs, tmp_path):
    logs, logs2 = logdir(tmp_path), logdir(tmp_path, "logs2")
    conf = """
[evmon]
log_dir = {d}
log_timestamps = {ts}

[service:w]
command = sh -c 'trap "echo hup" HUP; echo trapped; while :; do sleep 0.05; done'
stdout = log
kill_group = true
"""
    d = Daemon(procs, tmp_path, conf.format(d=logs, ts="false"))
    pid = d.wait_state("w", "running")["pid"]
    # running (start_secs) says nothing of the trap: its line does
    wait_for(lambda: (logs / "w.log").exists() and b"trapped\n" in (logs / "w.log").read_bytes(),
             what="the HUP trap set")
    d.ctl("signal", "w", "HUP")
    wait_for(lambda: b"\nhup\n" in (logs / "w.log").read_bytes(), what="plain line")
    d.write(conf.format(d=logs2, ts="true"))
    r = d.ctl("reload")
    assert r.returncode == 0 and "unchanged: 1" in r.stdout, r
    assert d.status("w")["w"]["pid"] == pid
    d.ctl("signal", "w", "HUP")
    # the file is made as its first line comes (open, then write): wait for the line
    wait_for(lambda: (logs2 / "w.log").exists() and b"hup" in (logs2 / "w.log").read_bytes(),
             what="the line in the new directory")
    assert re.fullmatch(TS + " hup\n", (logs2 / "w.log").read_text())
    d.stop()


# ------------------------------------------------------------- failures


def test_missing_log_dir_then_fixed(procs, tmp_path):
    logs = tmp_path / "later"
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}

[service:w]
command = sh -c 'trap "echo hup" HUP; head -c 100000 /dev/zero; echo; touch {tmp_path}/wrote; while :; do sleep 0.05; done'
stdout = log
kill_group = true
autostart = false
""")
    # the socket listens before the logs are opened (it serves while the daemon
    # starts): the line may come just after the first connection is accepted
    wait_for(lambda: re.search(r"log: log_dir \S+later: No such file or directory: the output of "
                               r"services with stdout or stderr = log is discarded until it can "
                               r"be written", d.log()), what="the log_dir line")
    ev = d.connect()
    ev.sendall(b'{"cmd":"events","names":["w"]}\n')
    rd = LineReader(ev)
    assert rd.next()["ok"]
    assert d.ctl("start", "w").returncode == 0
    # the service runs, its output goes nowhere, and an event says so
    wait_for(lambda: (tmp_path / "wrote").exists(), what="the service not blocked")
    e = rd.next()
    while e.get("event") != "log":
        e = rd.next()
    assert e["service"] == "w" and e["file"] == "w.log" and e["error"] == "No such file or directory"
    assert "output is discarded until it can be written" in e["message"], e
    assert d.status("w")["w"]["state"] == "running"
    # fixed: reopen-logs, and the next line says what was lost
    logs.mkdir()
    assert d.ctl("reopen-logs").returncode == 0
    d.ctl("signal", "w", "HUP")
    f = logs / "w.log"
    wait_for(lambda: f.exists() and b"hup\n" in f.read_bytes(), what="writing again")
    first = f.read_text().split("\n")[0]
    assert re.fullmatch(TS + r" evmon: \d+ bytes of output were discarded: log_dir \S+: "
                        r"No such file or directory", first), first
    assert int(first.split()[2]) >= 100001
    e = rd.next()
    while e.get("event") != "log":
        e = rd.next()
    assert "writing again" in e["message"] and "error" not in e, e
    ev.close()
    d.stop()


def test_log_dir_renamed_or_removed_while_running(procs, tmp_path):
    """log_dir names a place: the directory renamed away, then removed, while a
    service writes. The daemon notices at its next line (a second at most), says so
    in a log event, makes the directory again with the mode it had, and the lines go
    on in a new file there (before, they went on into the moved or deleted file).
    When it cannot be made (its parent is gone too), the output is discarded and
    counted until the directory is back."""
    import shutil
    top = tmp_path / "top"
    logs = top / "logs"
    logs.mkdir(parents=True)
    os.chmod(logs, 0o750)
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}

[service:w]
command = sh -c 'i=0; while :; do echo $i; i=$((i+1)); sleep 0.02; done'
stdout = log
kill_group = true
start_secs = 0
""")
    ev = d.connect()
    ev.sendall(b'{"cmd":"events"}\n')
    rd = LineReader(ev)
    assert rd.next()["ok"]

    def dir_event():
        e = rd.next(timeout=20 * SLOW)
        while e.get("event") != "log" or "service" in e:
            e = rd.next(timeout=20 * SLOW)
        return e

    def numbers(p):
        """The service's lines in file p (evmon's own are left out)."""
        try:
            text = p.read_text()
        except FileNotFoundError:
            return []
        return [int(x) for x in text.split("\n")[:-1] if "evmon:" not in x]
    f = logs / "w.log"
    wait_for(lambda: len(numbers(f)) > 10, what="lines in the log")

    # renamed: made again; every line is in the old file or the new one, in order
    os.rename(logs, top / "old")
    e = dir_event()
    assert "was renamed or moved away while the daemon ran: made it again" in e["message"], e
    assert "error" not in e, e
    wait_for(lambda: len(numbers(f)) > 10, what="lines in the new log")
    assert os.stat(logs).st_mode & 0o7777 == 0o750
    old, new = numbers(top / "old" / "w.log"), numbers(f)
    assert old == list(range(len(old))) and new[0] == old[-1] + 1, (old[-3:], new[:3])
    assert new == list(range(new[0], new[0] + len(new)))

    # removed: made again, the lines go on
    shutil.rmtree(logs)
    e = dir_event()
    assert "was removed while the daemon ran: made it again" in e["message"], e
    wait_for(lambda: len(numbers(f)) > 10, what="lines in the log made again")
    assert numbers(f)[0] > new[-1]

    # removed with its parent: cannot be made; discarded and counted until it is back
    shutil.rmtree(top)
    e = dir_event()
    assert e["error"] == "No such file or directory", e
    assert "output of services with stdout or stderr = log is discarded" in e["message"], e
    assert d.status("w")["w"]["state"] == "running"
    logs.mkdir(parents=True)
    pat = TS + r" evmon: (\d+) bytes of output were discarded: log_dir \S+: No such file or directory\n"
    wait_for(lambda: f.exists() and re.match(pat, f.read_text()), timeout=20 * SLOW,
             what="writing again, the loss counted")
    assert int(re.match(pat, f.read_text()).group(1)) > 0
    ev.close()
    d.stop()


def test_read_only_log_dir(procs, tmp_path):
    """Root writes anywhere, but not on a read-only mount."""
    logs = logdir(tmp_path)
    if os.geteuid() != 0:
        pytest.skip("needs root for a mount namespace")

    class RoDaemon(Daemon):
        def start(self):
            self.logf = open(self.logpath, "ab")
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    f'mount -t tmpfs -o ro tmpfs {logs} && exec "$@"', "sh",
                    EVMON, "daemon", "-c", self.cfg, "-S", self.sock]
            self.p = self.procs.spawn(argv, stdout=self.logf, stderr=subprocess.STDOUT)
            wait_for(lambda: self.answers() or self.p.poll() is not None, timeout=20 * SLOW,
                     what="the control socket")
            assert self.p.poll() is None, self.log()
            return self

    d = RoDaemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}

[service:w]
command = sh -c 'seq 1 100000; touch {tmp_path}/wrote; exec {HELPER} pause'
stdout = log
""")
    wait_for(lambda: (tmp_path / "wrote").exists(), what="the service not blocked")
    assert "Read-only file system: the output of services with stdout or stderr = log is " \
           "discarded" in d.log()
    wait_for(lambda: re.search(r"service w: log: log_dir \S+: Read-only file system: output is "
                               r"discarded", d.log()), what="the service's log event")
    d.wait_state("w", "running")
    d.stop()


def test_planted_files_are_refused(procs, tmp_path):
    needs_root("a file owned by another uid (chown)")
    logs = logdir(tmp_path)
    target = tmp_path / "target"
    target.write_text("precious\n")
    os.symlink(target, logs / "sym.log")
    os.link(target, logs / "hard.log")
    os.mkfifo(logs / "fifo.log")
    os.mkdir(logs / "dir.log")
    other = logs / "other.log"
    other.write_text("")
    os.chown(other, 65534, 65534)
    conf = "[evmon]\nlog_dir = %s\n" % logs
    for name in ("sym", "hard", "fifo", "dir", "other", "fine"):
        conf += f"""
[service:{name}]
command = sh -c 'echo hello-from-{name}; exec {HELPER} pause'
stdout = log
"""
    d = Daemon(procs, tmp_path, conf)
    wait_for(lambda: (logs / "fine.log").exists() and b"hello-from-fine" in (logs / "fine.log").read_bytes(),
             what="the good one")
    want = {"sym": r"sym\.log is a symbolic link: refusing to follow it",
            "hard": r"hard\.log has 2 hard links: refusing to write through them",
            "fifo": r"fifo\.log is a FIFO or a socket, not a regular file",
            "dir": r"dir\.log: Is a directory",
            "other": r"other\.log is owned by uid 65534, not by the daemon's uid 0"}
    for name, msg in want.items():
        wait_for(lambda: re.search(r"service %s: log: \S+%s: output is discarded" % (name, msg), d.log()),
                 what=f"{name} refused")
    assert target.read_text() == "precious\n"
    assert other.read_text() == ""
    for name in want:
        d.wait_state(name, "running")
    r = d.ctl("logs", "sym")
    assert r.returncode == 1 and "is a symbolic link" in r.stderr, r
    # a reader is refused too, and told so (it said "write")
    r = d.ctl("logs", "hard")
    assert r.returncode == 1 and "has 2 hard links: refusing to read through them" in r.stderr, r
    d.stop()


def test_a_log_dir_that_is_a_symlink_is_called_one(procs, tmp_path):
    """log_dir a symlink to a directory: "is a symbolic link", as for a log file (it said
    "Not a directory": O_DIRECTORY fails before O_NOFOLLOW)."""
    real = logdir(tmp_path)
    link = tmp_path / "link"
    os.symlink(real, link)
    cfg = tmp_path / "c.ini"
    cfg.write_text(f"[evmon]\nlog_dir = {link}\n[service:a]\ncommand = true\nstdout = log\n")
    r = procs.run([EVMON, "daemon", "--check", "-c", str(cfg), "-S", str(tmp_path / "s.sock")],
                  timeout=20)
    assert r.returncode == 0, r
    assert f"log_dir {link} is a symbolic link (give the directory it points to)" in r.stderr, r


@pytest.mark.parametrize("mode,ok", [(0o777, False), (0o1777, True), (0o775, True)])
def test_world_writable_log_dir(procs, tmp_path, mode, ok):
    logs = logdir(tmp_path, mode=mode)
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}

[service:w]
command = sh -c 'echo hi; exec {HELPER} pause'
stdout = log
""")
    d.wait_state("w", "running")
    if ok:
        wait_for(lambda: (logs / "w.log").exists(), what="log")
    else:
        assert "is writable by every user and not sticky: anyone could plant files in it" in d.log()
        wait_for(lambda: "service w: log:" in d.log(), what="event")
        assert not (logs / "w.log").exists()
    d.stop()


def test_log_dir_owned_by_another_user_refused_for_root(procs, tmp_path):
    needs_root("a root daemon, a directory owned by another uid (chown)")
    logs = logdir(tmp_path)
    os.chown(logs, 65534, 65534)
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}

[service:w]
command = sh -c 'echo hi; exec {HELPER} pause'
stdout = log
""")
    msg = "is owned by uid 65534: as root, the daemon writes logs only into a directory owned by root"
    wait_for(lambda: msg in d.log(), what="the refusal in the daemon's log")
    d.stop()
    assert os.listdir(logs) == []


# ----------------------------------------------------------------- load


def test_100mb_while_ctl_stays_responsive(procs, tmp_path):
    """A service printing 100 MB as fast as it can: all of it lands, ctl answers all
    along, and the daemon's memory does not follow the output."""
    logs = logdir(tmp_path)
    line = "x" * 99
    os.mkfifo(tmp_path / "go")
    # ASan keeps freed memory in quarantine (256 MB): the status requests' would count
    env = dict(os.environ, ASAN_OPTIONS="quarantine_size_mb=1:" + os.environ.get("ASAN_OPTIONS", ""))
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}
log_max_bytes = 0

[service:flood]
command = sh -c 'read x < {tmp_path}/go; yes {line} | head -c 104857600; exec {HELPER} pause'
stdout = log

[service:idle]
command = {HELPER} pause
""", env=env)
    d.wait_state("flood", "running")
    d.wait_state("idle", "running")
    base = vm(d.p.pid, "VmRSS")
    f = logs / "flood.log"
    t0 = time.monotonic()
    with open(tmp_path / "go", "w") as g:
        g.write("go\n")
    lat, n = [], 0
    while True:
        a = time.monotonic()
        st = d.status()
        lat.append(time.monotonic() - a)
        assert st["idle"]["state"] == "running"
        n += 1
        if f.stat().st_size >= 104857600 + 40:
            break
        assert time.monotonic() - t0 < 120 * SLOW, "100 MB not written in time"
    secs = time.monotonic() - t0
    hwm, rss = vm(d.p.pid, "VmHWM"), vm(d.p.pid, "VmRSS")
    data = f.read_bytes()
    assert data.count(b"\n") == 1048576 + 1 and data.endswith((line + "\n").encode())
    lat.sort()
    with open(os.environ.get("EVMON_LOG_MEASURE", os.devnull), "a") as m:
        m.write(f"100MB: {secs:.2f} s ({100 / secs:.0f} MB/s), {n} status requests during it, "
                f"latency median {lat[len(lat) // 2] * 1e3:.1f} ms max {lat[-1] * 1e3:.1f} ms, "
                f"daemon RSS {base} KiB before, {rss} KiB after, peak {hwm} KiB\n")
    assert n >= 2
    assert hwm - base < 16 * 1024, (base, hwm)  # not the 100 MB it moved
    d.stop()


def test_many_logged_services_hold_few_files(procs, tmp_path):
    logs = logdir(tmp_path)
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}

[service:s]
command = sh -c 'echo hi; exec {HELPER} pause'
instances = 300
stdout = log
stderr = stdout
start_secs = 0
""")
    wait_for(lambda: len(os.listdir(logs)) == 300 and all(
        b"hi\n" in (logs / f"s:{i}.log").read_bytes() for i in range(300)), timeout=60 * SLOW,
        what="300 logs")

    def open_under(prefix):
        n = 0
        for fd in fds_of(d.p.pid):
            try:
                n += os.readlink(f"/proc/{d.p.pid}/fd/{fd}").startswith(prefix)
            except FileNotFoundError:
                pass  # closed meanwhile
        return n

    def files():
        return open_under(str(logs) + "/")
    # at most 256 open at once, all closed once the output stops
    assert files() <= 256
    wait_for(lambda: files() == 0, timeout=15 * SLOW, what="idle files closed")
    # 2 per service (the pipe), 1 pidfd per process, and the daemon's own; with
    # cgroups (cgroup = auto, as root) no fd of a service's cgroup is kept
    assert open_under("/sys/fs/cgroup") <= 8
    assert len(fds_of(d.p.pid)) <= 300 * 3 + 64 + 32  # + the reserve (fdreserve.h)
    d.stop()


def test_completion_of_logs(procs, tmp_path):
    from test_completion import complete
    logs = logdir(tmp_path)
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}

[service:web]
command = {HELPER} pause
stdout = log
""")
    assert {"logs", "reopen-logs"} <= set(complete(f"{EVMON} ctl -S {d.sock} "))
    assert set(complete(f"{EVMON} ctl -S {d.sock} logs -")) == {"-n", "--lines", "-f", "--follow",
                                                                 "-e", "--stderr", "--raw"}
    assert complete(f"{EVMON} ctl -S {d.sock} logs -n ") == []
    assert complete(f"{EVMON} ctl -S {d.sock} logs -n 5 w") == ["web"]
    d.stop()


def limited(nofile):
    """A Daemon class whose daemon runs with RLIMIT_NOFILE nofile (soft and hard)."""
    class Limited(Daemon):
        def start(self):
            self.logf = open(self.logpath, "ab")
            self.p = self.procs.spawn(["prlimit", f"--nofile={nofile}:{nofile}", "--", EVMON, "daemon",
                                       "-c", self.cfg, "-S", self.sock],
                                      stdout=self.logf, stderr=subprocess.STDOUT)
            wait_for(lambda: self.answers() or self.p.poll() is not None, timeout=20 * SLOW,
                     what="the control socket")
            assert self.p.poll() is None, self.log()
            return self
    return Limited


def test_out_of_descriptors_ctl_and_logs_keep_working(procs, tmp_path):
    """540 captured services on an 1100-descriptor limit: pipes and pidfds take every
    descriptor there is, yet evmon ctl is answered and the log files are written
    (the daemon keeps a reserve); the services without a pipe run with their output
    on /dev/null, and say so. (Above 1024 descriptors the library spawns through
    its helper, which needs none of ours: see the report about the direct path.)"""
    logs = logdir(tmp_path)

    d = limited(1100)(procs, tmp_path, f"""
[evmon]
log_dir = {logs}
cgroup = no

[service:s]
command = sh -c 'echo hi; exec {HELPER} trap-exit 15 pause'
instances = 540
stdout = log
stderr = stdout
start_secs = 0
""")
    wait_for(lambda: all(s["state"] == "running" for s in d.status().values()), timeout=60 * SLOW,
             what="540 running")
    assert "RLIMIT_NOFILE is 1100; raise it" in d.log()
    lost = re.findall(r"service (s:\d+): log: cannot capture its output: pipe: Too many open "
                      r"files: it goes to /dev/null", d.log())
    assert 0 < len(lost) < 100, len(lost)
    kept = [f"s:{i}" for i in range(540) if f"s:{i}" not in lost]
    wait_for(lambda: all((logs / f"{n}.log").exists() and b"hi\n" in (logs / f"{n}.log").read_bytes()
                         for n in kept), timeout=30 * SLOW, what="their logs")
    assert not any((logs / f"{n}.log").exists() for n in lost)
    assert len(fds_of(d.p.pid)) >= 1090  # the table is full...
    for _ in range(3):  # ...and yet
        assert d.ctl("status", "s:0").returncode == 0
        r = d.ctl("logs", "-n", "1", kept[-1])
        assert r.returncode == 0 and r.stdout == "hi\n", r
    d.ctl("signal", kept[0], "HUP")
    wait_for(lambda: b"signal 1\n" in (logs / f"{kept[0]}.log").read_bytes(), what="a line written")
    d.stop()


def test_log_dir_moved_aside_and_made_again_by_an_admin(procs, tmp_path):
    """`mv logs logs.old && mkdir -m 700 logs` while a service writes: the daemon
    uses the admin's new directory as it is (its mode kept, no second mkdir over
    it), and once the event says so, nothing more is written into logs.old."""
    logs = tmp_path / "logs"
    logs.mkdir()
    os.chmod(logs, 0o750)
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}

[service:w]
command = sh -c 'i=0; while :; do echo $i; i=$((i+1)); sleep 0.02; done'
stdout = log
start_secs = 0
""")
    wait_for(lambda: (logs / "w.log").exists() and (logs / "w.log").stat().st_size > 0,
             what="the first lines")
    old = tmp_path / "logs.old"
    os.rename(logs, old)
    os.mkdir(logs, 0o700)
    wait_for(lambda: "using the directory now there" in d.log(), timeout=20 * SLOW,
             what="the daemon on the new directory")
    wait_for(lambda: (logs / "w.log").exists() and (logs / "w.log").stat().st_size > 0,
             what="lines in the new directory")
    size = (old / "w.log").stat().st_size
    n = (logs / "w.log").stat().st_size
    wait_for(lambda: (logs / "w.log").stat().st_size > n + 100, what="more lines")
    assert (old / "w.log").stat().st_size == size
    assert os.stat(logs).st_mode & 0o7777 == 0o700
    d.stop()


def test_a_huge_tail_is_bounded_and_all_means_all(procs, tmp_path):
    """The search for where the last N lines start read backwards through the whole
    file on the loop (a 1 GB log asked for a billion lines held every client for a
    second): it reads at most 16 MiB per request now. A log of 40 MiB with no newline
    but its last, asked for 2 lines, gets the last 16 MiB (it got all 40); asked for
    more lines than it has bytes, it gets all of it, searched for nothing."""
    logs = logdir(tmp_path)
    big = logs / "big.log"
    with open(big, "wb") as f:
        f.write(b"x" * (40 << 20) + b"\nlast\n")
    os.chmod(big, 0o640)
    d = Daemon(procs, tmp_path, f"""
[evmon]
log_dir = {logs}
log_max_bytes = 0

[service:big]
command = {HELPER} pause
stdout = log
""")
    wait_for(lambda: b"evmon: started pid" in big.read_bytes()[-200:], what="the daemon's line")
    size = big.stat().st_size
    r = procs.run([EVMON, "ctl", "-S", d.sock, "logs", "-n", "3", "big"], timeout=60 * SLOW)
    assert r.returncode == 0 and "x\nlast\n" in r.stdout[-200:], r.stdout[-200:]
    assert len(r.stdout) <= (16 << 20) + 4096, len(r.stdout)
    p = procs.spawn([EVMON, "ctl", "-S", d.sock, "logs", "-n", "1000000000", "big"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=60 * SLOW)
    assert p.returncode == 0 and len(out) == size, (len(out), size, err)
    d.stop()


def test_stuck_log_readers_leave_ctl_and_the_services_their_descriptors(procs, tmp_path):
    """Readers of long tails that never read held up to 16 files each (a log and its
    backups) and, once the table was full, took the descriptors kept for ctl: 30 of
    them on a 400-descriptor daemon left it unable to answer. Tails hold a quarter
    of RLIMIT_NOFILE at most (the next reader is told so) and none of the reserve."""
    logs = logdir(tmp_path)
    line = b"y" * 99 + b"\n"
    for k in range(16):
        name = logs / ("w.log" + (f".{k}" if k else ""))
        name.write_bytes(line * 10000)  # 1 MB each: more than a socket buffer holds
        os.chmod(name, 0o640)

    d = limited(400)(procs, tmp_path, f"""
[evmon]
log_dir = {logs}
log_backups = 15

[service:w]
command = {HELPER} pause
stdout = log
""")
    readers, answers = [], []
    for _ in range(30):
        s = socket.socket(socket.AF_UNIX)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        s.connect(d.sock)
        s.sendall(b'{"cmd":"logs","name":"w","lines":1000000000}\n')
        readers.append(s)
    for s in readers:
        s.settimeout(10 * SLOW)
        answers.append(s.recv(200))
    refused = [a for a in answers if b"too many log readers" in a]
    assert refused and len(refused) < 30, answers
    assert len(fds_of(d.p.pid)) < 390
    for _ in range(3):
        assert d.ctl("ping").returncode == 0
        assert d.status("w")["w"]["pid"], d.log()[-2000:]
    for s in readers:
        s.close()
    d.stop()
