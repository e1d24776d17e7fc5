"""The seed scenario: five children reported, and an orphan reaped."""
import re

from conftest import binary


def test_seed_example(procs):
    r = procs.run([binary("examples/seed")], timeout=20)
    assert r.returncode == 0, r.stderr
    exits = re.findall(r"^child (\d+) \((\w+)\) exited: code (-?\d+) signal (\d+)", r.stdout, re.M)
    assert len(exits) == 5, r.stdout
    by_name = {}
    for pid, name, code, sig in exits:
        by_name.setdefault(name, []).append((int(code), int(sig)))
    assert by_name["true"] == [(0, 0)]
    assert by_name["false"] == [(1, 0)]
    assert by_name["sleep"] == [(0, 0)]
    assert sorted(by_name["sh"]) == [(-1, 15), (0, 0)]
    assert len(re.findall(r"^orphan \d+ reaped: code 0$", r.stdout, re.M)) == 1, r.stdout
    assert len(set(pid for pid, *_ in exits)) == 5
