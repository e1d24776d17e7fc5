"""docs/GUIDE.md does what it says.

Every ```console block is a shell session: each "$ " line runs in bash (with
the build directory first in PATH, so `evmon` is the one under test, and
stderr merged into stdout) and must print the lines that follow it; "PID"
in an expected line stands for a number. A block that uses `evmon ctl` runs
against a daemon started on the guide's ```ini config, through EVMON_SOCKET. Every ```c block is compiled
against the library and run; the ```text block right after it, if any, is
its exact output.
"""
import os
import re
import shlex
import subprocess

import pytest

from conftest import BUILD, ROOT, SAN, SLOW, wait_for

GUIDE = os.path.join(ROOT, "docs", "GUIDE.md")


def blocks(lang):
    with open(GUIDE) as f:
        text = f.read()
    return [(m.group(1), text[m.end():]) for m in re.finditer(r"^```%s\n(.*?)^```$" % lang, text, re.M | re.S)]


def console_blocks():
    """[(steps, needs_daemon)] with steps = [(command, expected lines)]."""
    out = []
    for body, _ in blocks("console"):
        steps = []
        for chunk in re.split(r"^\$ ", body, flags=re.M)[1:]:
            cmd, *lines = chunk.rstrip("\n").split("\n")
            steps.append((cmd, lines))
        out.append((steps, "evmon ctl" in body))
    return out


def expected_re(line):
    return re.escape(line).replace("PID", r"\d+")


@pytest.fixture
def guide_daemon(tmp_path, procs):
    """evmon daemon on the guide's config (its ```ini block); yields the socket."""
    r = subprocess.run([os.path.join(BUILD, "evmon"), "daemon", "--help"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("evmon daemon is not in this build yet")
    (ini, _), = blocks("ini")
    cfg = tmp_path / "evmon.ini"
    cfg.write_text(ini)
    sock = str(tmp_path / "evmon.sock")
    evmon = os.path.join(BUILD, "evmon")
    p = procs.spawn([evmon, "daemon", "-c", str(cfg), "-S", sock], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)

    def all_running():
        assert p.poll() is None, "the daemon exited"
        r = subprocess.run([evmon, "ctl", "-S", sock, "--json", "status"], capture_output=True,
                           text=True, timeout=10 * SLOW)
        return r.returncode == 0 and r.stdout.count('"state":"running"') == 3
    wait_for(all_running, timeout=20 * SLOW, what="the guide's services to run")
    yield sock
    subprocess.run([evmon, "ctl", "-S", sock, "shutdown"], capture_output=True, timeout=30 * SLOW)
    p.wait(timeout=30 * SLOW)


@pytest.mark.parametrize("i", range(len(console_blocks())))
def test_console(i, tmp_path, procs, request):
    steps, needs_daemon = console_blocks()[i]
    env = dict(os.environ, PATH=f"{BUILD}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    if needs_daemon:
        env["EVMON_SOCKET"] = request.getfixturevalue("guide_daemon")
    for cmd, out in steps:
        r = procs.run(["bash", "-c", "exec 2>&1\n" + cmd], env=env, cwd=tmp_path, timeout=60)
        got = r.stdout.rstrip("\n").split("\n") if r.stdout.strip() else []
        assert len(got) == len(out), (cmd, got)
        for g, e in zip(got, out):
            assert re.fullmatch(expected_re(e), g), (cmd, g, e)


def c_programs():
    progs = []
    for code, rest in blocks("c"):
        m = re.match(r"\s*```text\n(.*?)^```$", rest, re.M | re.S)
        progs.append((code, m.group(1) if m else None))
    return progs


def test_there_is_something_to_test():
    assert sum(len(steps) for steps, _ in console_blocks()) >= 8 and len(c_programs()) >= 2


@pytest.mark.parametrize("i", range(len(c_programs())))
def test_c_example(i, tmp_path, procs):
    code, expected = c_programs()[i]
    src = tmp_path / "example.c"
    src.write_text(code)
    exe = tmp_path / "example"
    san = ["-fsanitize=address,undefined"] if SAN else []
    r = subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", *san,
                        "-I", os.path.join(ROOT, "include"), str(src), os.path.join(BUILD, "libevmon.a"),
                        "-lpthread", "-o", str(exe)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = procs.run([str(exe)], timeout=30)
    assert r.returncode == 0, r.stderr
    if expected is not None:
        assert r.stdout == expected


def sh_commands():
    """The command lines of the ```sh blocks, comments removed."""
    out = []
    for body, _ in blocks("sh"):
        for line in body.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                out.append(words)
    return out


def test_sh_blocks(tmp_path):
    """The ```sh lines name things that exist: make targets (make -n), evmon commands
    that run to completion (run, in a directory holding the guide's evmon.ini), and
    man pages the build generates. (The cc lines with pkg-config are what
    test_install.py does against an installed copy.)"""
    (ini, _), = blocks("ini")
    (tmp_path / "evmon.ini").write_text(ini)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    checked = []
    for words in sh_commands():
        if words[0] == "make":
            r = subprocess.run(["make", "-n", "-C", ROOT, f"BUILD={BUILD}", *words[1:]], env=env,
                               capture_output=True, text=True, timeout=120)
        elif words[0] == "evmon" and words[-1] != "&":
            r = subprocess.run([os.path.join(BUILD, "evmon"), *words[1:]], cwd=tmp_path,
                               capture_output=True, text=True, timeout=60)
        elif words[0] == "man":
            pages = [f for f in os.listdir(os.path.join(BUILD, "man")) if f.rsplit(".", 1)[0] == words[1]]
            assert pages, words
            continue
        else:
            continue
        assert r.returncode == 0, (words, r.stdout[-2000:], r.stderr[-2000:])
        checked.append(words[:2])
    assert ["make", "install"] in checked and ["evmon", "--version"] in checked, checked
    assert ["evmon", "daemon"] in checked, checked


def test_systemd_unit_as_described():
    """What the guide says of examples/evmon.service (its Key=Value spans) is in the unit."""
    with open(GUIDE) as f:
        text = f.read()
    with open(os.path.join(ROOT, "examples", "evmon.service")) as f:
        unit = {line.strip() for line in f if re.match(r"^[A-Z]\w*=", line)}
    paras = [p for p in re.split(r"\n(?=- |\n)", text) if "examples/evmon.service" in p]
    said = set()
    for p in paras:
        said |= set(re.findall(r"`([A-Z]\w*=[^`\s]+)`", p))
    assert said, paras
    assert said <= unit, said - unit

