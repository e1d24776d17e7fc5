"""The fuzz targets' seed corpora and the reproducers of past findings
(fuzz/corpus/TARGET, fuzz/regress/TARGET), replayed through the harnesses
built with the normal compiler ($EVMON_BUILD/fuzz/replay_TARGET, see
mk/fuzz.mk). Under `make SAN=1 test` they run with ASan+UBSan, so a finding
that comes back fails here even without clang and libFuzzer."""
import os

import pytest

from conftest import BUILD, ROOT, SAN

TARGETS = ["argv", "signal", "config", "proto", "event", "init_args"]


@pytest.mark.parametrize("target", TARGETS)
def test_replay(procs, target):
    exe = os.path.join(BUILD, "fuzz", f"replay_{target}")
    assert os.access(exe, os.X_OK), f"{exe} not built (run make)"
    dirs = [os.path.join(ROOT, "fuzz", sub, target) for sub in ("corpus", "regress")]
    dirs = [d for d in dirs if os.path.isdir(d)]
    inputs = sum(len(os.listdir(d)) for d in dirs)
    assert inputs > 0, f"no seeds for {target}"
    r = procs.run([exe] + dirs, timeout=300 if SAN else 120, cwd=ROOT)
    assert r.returncode == 0, f"{target}: exit {r.returncode}\n{r.stderr[-3000:]}"
    assert f"replay: {inputs} inputs" in r.stderr, r.stderr[-3000:]
