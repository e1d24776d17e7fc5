"""Summary of `make valgrind-test`: one valgrind log per evmon process run by the
tests. Fails (exit 1) if any has an error, a definite or indirect leak, or a
file descriptor other than stdio open at exit, or if a test failed (pytest's
output, the second argument); prints the totals."""
import os
import re
import sys


def main(logdir, pytest_log=None):
    logs = sorted(os.listdir(logdir))
    bad, kinds, fds_ok, procs = [], {}, 0, 0
    for name in logs:
        text = open(os.path.join(logdir, name), errors="replace").read()
        m = re.search(r"ERROR SUMMARY: (\d+) errors", text)
        if not m:
            continue  # a process that exec'd something else (init's child) or was killed
        procs += 1
        cmd = re.search(r"Command: (.*)", text)
        cmd = cmd.group(1) if cmd else "?"
        argv = cmd.split()
        kind = "init" if argv and argv[0].endswith("evmon-init") else " ".join(argv[1:2]) or "?"
        kinds[kind] = kinds.get(kind, 0) + 1
        fd = re.search(r"FILE DESCRIPTORS: (\d+) open \((\d+) std\) at exit", text)
        # valgrind's own log file shows up as an fd inherited from the wrapper
        extra = [f for f in re.findall(r"Open (?:file descriptor \d+|AF_\w+ socket \d+): ?(.*)", text)
                 if not f.startswith(os.path.abspath(logdir))]
        leaks = {k: int(v.replace(",", "")) for k, v in
                 re.findall(r"(definitely|indirectly) lost: ([\d,]+) bytes", text)}
        problems = []
        if int(m.group(1)):
            problems.append(f"{m.group(1)} errors")
        if any(leaks.values()):
            problems.append(f"leaks {leaks}")
        if extra:
            problems.append(f"fds open at exit: {extra}")
        elif fd:
            fds_ok += 1
        if problems:
            bad.append(f"{name}: {cmd}: {', '.join(problems)}")
    print(f"valgrind: {procs} evmon processes checked ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}); "
          f"{procs - len(bad)} clean, {fds_ok} with only stdio open at exit")
    for b in bad:
        print("  " + b)
    tests_ok = True
    if pytest_log:
        text = open(pytest_log, errors="replace").read()
        summary = re.findall(r"^=* ?(\d+ (?:passed|failed).*?) in [\d.]+s", text, re.M)
        failed = re.findall(r"^FAILED (\S+)", text, re.M)
        print(f"tests: {summary[-1] if summary else 'no summary'}")
        for f in failed:
            print("  failed: " + f)
        tests_ok = bool(summary) and not failed
    return 1 if bad or not procs or not tests_ok else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
