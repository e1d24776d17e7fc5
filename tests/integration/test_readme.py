"""The README's library example compiles against the library and does what it says."""
import os
import re
import subprocess

from conftest import BUILD, ROOT


def test_readme_example_builds_and_runs(tmp_path, procs):
    text = open(os.path.join(ROOT, "README.md")).read()
    code = re.search(r"```c\n(.*?)```", text, re.S).group(1)
    assert len(code.splitlines()) <= 40
    src = tmp_path / "demo.c"
    src.write_text(code)
    exe = tmp_path / "demo"
    cc = os.environ.get("CC", "cc")
    san = ["-fsanitize=address,undefined"] if os.environ.get("EVMON_SAN") else []
    subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", *san, "-I", os.path.join(ROOT, "include"),
                    str(src), os.path.join(BUILD, "libevmon.a"), "-lpthread", "-o", str(exe)], check=True)
    r = procs.run([str(exe)], timeout=20)
    assert r.returncode == 0, r.stderr
    assert "no-such-cmd: exec failed: error 2" in r.stdout
    assert re.search(r"^false \(pid \d+\) exited: code 1, signal 0", r.stdout, re.M)
    assert re.search(r"^sleep \(pid \d+\) exited: code 0, signal 0", r.stdout, re.M)
