"""The library examples of examples/*.c (beyond seed.c, see test_seed.py)
do what their header comments say."""
import re

from conftest import binary


def test_worker_example(procs):
    """A worker thread kills its own child and posts the report to the loop."""
    r = procs.run([binary("examples/worker")], timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "worker: sleep 30 ended by signal 15\n", r.stdout
