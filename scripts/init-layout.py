#!/usr/bin/env python3
"""Regenerate src/init/layout.ld: the functions `evmon init` runs, placed first in
the evmon binary's text (docs/INIT.md, "Memory of a running init").

A running process's RSS counts every page of its binary that is mapped, and a
read fault maps up to 16 neighbouring pages of the page cache (fault-around): the
~30 KiB of code an init runs, spread over the 260 KiB of the daemon's and ctl's
code, cost 136 KiB of RSS; side by side after the PLT, 60-76 KiB.

Method: `valgrind --tool=lackey --trace-mem=yes` traces every instruction of
`evmon init` (and of its child before the exec, which shares its memory) in a
few runs (a paused child stopped by SIGTERM, orphans reaped with -s -w, -c -r,
-a -t, an exec failure); the functions of the evmon binary these instructions
belong to are listed, per object, except src/init's (taken whole) and main.

    make -j2 all && python3 scripts/init-layout.py build/cc > src/init/layout.ld

The fault-around maps 16 pages from the start of a mapping however few of them
were touched, so the init's code also gets a mapping of its own: a page of
address space left out after it ends the first text segment, and the daemon's
code is the next mapping, which an init never touches. The constants of the
objects these functions come from (their strings, switch tables) are placed
with the headers, in the first read-only mapping, which the dynamic loader reads
whole at every start anyway: the rest of .rodata is not mapped either. And the
variables of libevmon and src/init come first in .bss, in the page .data ends in.

A function renamed or added later only stays in the daemon's part of the text
(more RSS, never a wrong build); tests/integration/test_init.py
test_init_path_first checks that the main ones are in place.
"""
import bisect
import glob
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def functions(path):
    """[(address, size, name)] of the code symbols of an ELF file."""
    out = subprocess.run(["nm", "-S", "--defined-only", path], capture_output=True, text=True,
                         check=True).stdout
    syms = []
    for line in out.splitlines():
        f = line.split()
        if len(f) == 4 and f[2] in "tTwW":
            syms.append((int(f[0], 16), int(f[1], 16), f[3]))
    return sorted(syms)


def traced(build, tmp):
    evmon = os.path.join(build, "evmon")
    tiny = os.path.join(build, "bench", "tiny")
    if not os.path.exists(tiny):
        subprocess.run(["make", "--no-print-directory", f"BUILD={build}", tiny], cwd=HERE, check=True,
                       stdout=subprocess.DEVNULL)
    runs = [  # (argv after evmon, signal, seconds)
        (["init", "--", tiny, "p"], signal.SIGTERM, 4),
        (["init", "-s", "-w", "-t", "1", "--", "sh", "-c", "(sleep 0.5 &) ; sleep 0.2"], signal.SIGTERM, 8),
        (["init", "-s", "-c", "-r", "TERM:INT", "--", tiny, "p"], signal.SIGTERM, 4),
        (["init", "-a", "-t", "0.5", "--", "sh", "-c", "trap '' HUP; sleep 10"], signal.SIGHUP, 4),
        (["init", "--", "/nonexistent"], signal.SIGTERM, 4),
    ]
    for i, (args, sig, secs) in enumerate(runs):
        log = os.path.join(tmp, f"lackey.{i}.%p")
        subprocess.run(["timeout", "-s", str(int(sig)), str(secs), "valgrind", "--tool=lackey",
                        "--trace-mem=yes", f"--log-file={log}", evmon] + args,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return glob.glob(os.path.join(tmp, "lackey.*"))


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build/cc"
    evmon = os.path.join(build, "evmon")
    syms = functions(evmon)
    starts = [s[0] for s in syms]
    base = 0x108000  # where valgrind loads a PIE
    seen = set()  # (start address, name) of the functions run
    with tempfile.TemporaryDirectory() as tmp:
        for log in traced(build, tmp):
            with open(log) as f:
                for line in f:
                    if not line.startswith("I  "):
                        continue
                    a = int(line[3:line.index(",")], 16) - base
                    i = bisect.bisect_right(starts, a) - 1
                    if i >= 0 and a < syms[i][0] + syms[i][1]:
                        seen.add(syms[i][:1] + syms[i][2:])
    if len(seen) < 50:
        sys.exit(f"init-layout: only {len(seen)} functions traced: is valgrind installed?")
    # the source file of each (the same static name may be in several): from the debug info
    seen = sorted(seen)
    out = subprocess.run(["addr2line", "-e", evmon] + [hex(a) for a, _ in seen],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    groups = {}
    for (_, name), line in zip(seen, out):
        m = re.search(r"/src/((?:lib|common|daemon|ctl)/[a-z0-9_]+)\.c:", line)
        if not m:
            continue  # src/init (taken whole), main.c, crt files, libc's inline parts
        plain = re.sub(r"\..*", "", name)  # clone_plain.constprop.0 -> clone_plain
        groups.setdefault(m.group(1) + ".o", set()).add(plain)
    order = sorted(groups, key=lambda r: (not r.startswith("common/"), r))
    pats = {rel: "*/" + rel if not rel.startswith("lib/") else "*libevmon.a:" + os.path.basename(rel)
            for rel in order}
    print("/*")
    print(" * layout.ld - the code `evmon init` runs first in the evmon binary's text, in a")
    print(" * mapping of its own, and the constants of its objects with the headers, so that a")
    print(" * running init maps a few pages of the daemon's binary, not all of them (RSS).")
    print(" * Generated by scripts/init-layout.py (which says how); only the layout depends on")
    print(" * it: a function missing here stays in .text. The Makefile links evmon with it.")
    print(" */")
    print("SECTIONS")
    print("{")
    print("\t.rodata.evmon_init :")
    print("\t{")
    print("\t\t*/src/main.o(.rodata .rodata.*)")
    print("\t\t*/init/*.o(.rodata .rodata.*)")
    for rel in order:
        print(f"\t\t{pats[rel]}(.rodata .rodata.*)")
    print("\t}")
    print("}")
    print("INSERT AFTER .rela.plt;")
    print("SECTIONS")
    print("{")
    print("\t.text.evmon_init :")
    print("\t{")
    print("\t\t*crt1.o(.text .text.*)")
    print("\t\t*crtbeginS.o(.text .text.*)")
    # libc's static part: pthread_atfork (the loop's fork guard), atexit
    print("\t\t*libc_nonshared.a:*(.text .text.*)")
    print("\t\t*(.text.startup.main .text.main)")
    print("\t\t*/init/*.o(.text .text.*)")
    for rel in order:
        names = textwrap.wrap(" ".join(f".text.{n} .text.{n}.*" for n in sorted(groups[rel])), 84)
        print(f"\t\t{pats[rel]}(" + "\n\t\t\t".join(names) + ")")
    print("\t}")
    print("\t/* a page left out: the daemon's code is another mapping, which an init never faults in */")
    print("\t. = ALIGN(CONSTANT (MAXPAGESIZE)) + CONSTANT (MAXPAGESIZE);")
    print("}")
    print("INSERT BEFORE .text;")
    print("SECTIONS")
    print("{")
    print("\t/* the variables of libevmon and src/init right after .data, in the page it ends in,")
    print("\t   not after the daemon's 256 KiB of buffers */")
    print("\t.bss.evmon_init (NOLOAD) :")
    print("\t{")
    print("\t\t*/init/*.o(.bss .bss.*)")
    print("\t\t*libevmon.a:*(.bss .bss.*)")
    print("\t}")
    print("}")
    print("INSERT BEFORE .bss;")


if __name__ == "__main__":
    main()
