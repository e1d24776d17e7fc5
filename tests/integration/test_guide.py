"""docs/GUIDE.md does what it says.

Every ```console block is a shell session: each "$ " line runs in bash (with
the build directory first in PATH, so `evmon` is the one under test, and
stderr merged into stdout) and must print the lines that follow it; "PID"
in an expected line stands for a number. Every ```c block is compiled
against the library and run; the ```text block right after it, if any, is
its exact output.
"""
import os
import re
import subprocess

import pytest

from conftest import BUILD, ROOT, SAN

GUIDE = os.path.join(ROOT, "docs", "GUIDE.md")


def blocks(lang):
    with open(GUIDE) as f:
        text = f.read()
    return [(m.group(1), text[m.end():]) for m in re.finditer(r"^```%s\n(.*?)^```$" % lang, text, re.M | re.S)]


def console_steps():
    steps = []
    for body, _ in blocks("console"):
        for chunk in re.split(r"^\$ ", body, flags=re.M)[1:]:
            cmd, *out = chunk.rstrip("\n").split("\n")
            steps.append((cmd, out))
    return steps


def expected_re(line):
    return re.escape(line).replace("PID", r"\d+")


@pytest.mark.parametrize("cmd,out", console_steps(), ids=lambda v: v if isinstance(v, str) else "")
def test_console(cmd, out, tmp_path, procs):
    env = dict(os.environ, PATH=f"{BUILD}:{os.environ.get('PATH', '/usr/bin:/bin')}")
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
    assert len(console_steps()) >= 4 and len(c_programs()) >= 2


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
