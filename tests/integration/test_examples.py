"""The library examples of examples/*.c (beyond seed.c, see test_seed.py)
do what their header comments say."""
import re

import pytest

from conftest import binary


def test_worker_example(procs):
    """A worker thread kills its own child and posts the report to the loop."""
    r = procs.run([binary("examples/worker")], timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "worker: sleep 30 ended by signal 15\n", r.stdout


def test_timeout_example(procs):
    """Each command's deadline: an exit before it, SIGTERM at it, SIGKILL after the grace."""
    r = procs.run([binary("examples/timeout")], timeout=30)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["true: exit 0", "sleep 10: timed out (signal 15)"], r.stdout
    # the shell ignores SIGTERM once its trap has run: SIGKILL after the grace; on a
    # machine so loaded that it had not run it within 200 ms, SIGTERM ended it
    assert lines[2] in ("stubborn: timed out (signal 9)", "stubborn: timed out (signal 15)"), r.stdout
    assert len(lines) == 3, r.stdout


def test_extrafds_example(procs):
    """A pipe's write end is the child's fd 3; what it writes there reaches the loop."""
    r = procs.run([binary("examples/extrafds")], timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "fd 3 said: ready\nchild exited 0\n", r.stdout


def test_output_example(procs):
    """evm_run like Go's cmd.Output(): env, cwd, both outputs, the exit code, a deadline, an exec error."""
    r = procs.run([binary("examples/output")], timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "stdout: hello from /",
        "stderr: oops",
        "exit 3",
        "sleep 10: timed out by signal 15",
        "no-such-program: exec: No such file or directory",
    ], r.stdout


def test_sandbox_example(procs):
    """A shell in new user, PID and UTS namespaces: root inside, pid 1, its own host name."""
    r = procs.run([binary("examples/sandbox")], timeout=30)
    if r.returncode == 2 and r.stderr.startswith("sandbox: namespace:"):
        pytest.skip("the kernel refused the namespaces: " + r.stderr.strip())
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "inside: pid 1, uid 0, host sandbox", r.stdout
    assert re.fullmatch(r"outside: pid [1-9][0-9]* exited 0", lines[1]), r.stdout
    assert len(lines) == 2, r.stdout
