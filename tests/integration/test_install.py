"""`make install` / `make uninstall` into a temporary DESTDIR and PREFIX.

Installs the build named by EVMON_BUILD once per module, then checks the
layout, the shared library (SONAME, links, exported symbols), evmon.pc, and
builds the seed example and a version probe against the installed copy with
`pkg-config --cflags --libs evmon`, as a user of the library would.
"""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BUILD, ROOT, SAN

PREFIX = "/opt/evmon-test"
SAN_FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"] if SAN else []


def read_version():
    with open(os.path.join(ROOT, "VERSION")) as f:
        return f.read().strip()


def make(*targets, **vars):
    """Run make in the source tree on the tested build directory."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    argv = ["make", "-s", "-C", ROOT, f"BUILD={BUILD}"] + (["SAN=1"] if SAN else [])
    argv += [f"{k}={v}" for k, v in vars.items()] + list(targets)
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{argv}\n{r.stdout}\n{r.stderr}"
    return r


class Installed:
    def __init__(self, destdir):
        self.destdir = str(destdir)
        self.root = self.destdir + PREFIX
        self.bin = self.root + "/bin"
        self.lib = self.root + "/lib"
        self.include = self.root + "/include"

    def env(self):
        env = dict(os.environ)
        env["PKG_CONFIG_PATH"] = self.lib + "/pkgconfig"
        # evmon.pc names the final paths (PREFIX); the sysroot maps them into DESTDIR
        env["PKG_CONFIG_SYSROOT_DIR"] = self.destdir
        env["LD_LIBRARY_PATH"] = self.lib
        env.pop("PKG_CONFIG_LIBDIR", None)
        return env

    def pkg_config(self, *args):
        r = subprocess.run(["pkg-config", *args, "evmon"], env=self.env(), capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    def files(self):
        out = []
        for d, _, fs in os.walk(self.destdir):
            out += [os.path.relpath(os.path.join(d, f), self.destdir) for f in fs]
        return sorted(out)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("destdir")
    make("install", DESTDIR=dest, PREFIX=PREFIX)
    return Installed(dest)


def compile_against(inst, src, out, *extra):
    argv = ["cc", "-std=c11", "-Wall", "-Werror", *SAN_FLAGS, "-o", str(out), str(src), *extra]
    r = subprocess.run(argv, env=inst.env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{argv}\n{r.stderr}"


def check_seed_output(out):
    exits = re.findall(r"^child \d+ \((\w+)\) exited: code (-?\d+) signal (\d+)", out, re.M)
    assert sorted(exits) == sorted([("sh", "0", "0"), ("true", "0", "0"), ("false", "1", "0"),
                                    ("sleep", "0", "0"), ("sh", "-1", "15")]), out
    assert len(re.findall(r"^orphan \d+ reaped: code 0$", out, re.M)) == 1, out


def test_layout(installed):
    v = read_version()
    major, minor = v.split(".")[:2]
    p = PREFIX.lstrip("/")
    expected = {
        f"{p}/bin/evmon", f"{p}/bin/evmon-init",
        f"{p}/lib/libevmon.so.{major}.{minor}", f"{p}/lib/libevmon.so.{major}",
        f"{p}/lib/libevmon.so", f"{p}/lib/libevmon.a",
        f"{p}/include/evmon.h", f"{p}/lib/pkgconfig/evmon.pc",
        f"{p}/share/bash-completion/completions/evmon",
        f"{p}/share/bash-completion/completions/evmon-init",
    }
    # every page the build generates, in the directory of its section (evmon.ini.5 in man5)
    pages = os.listdir(os.path.join(BUILD, "man"))
    assert len(pages) >= 6, pages
    expected |= {f"{p}/share/man/man{page.rsplit('.', 1)[1]}/{page}" for page in pages}
    assert expected <= set(installed.files())
    # the chain a linker and the dynamic linker follow: dev link -> SONAME -> real file
    assert os.readlink(installed.lib + "/libevmon.so") == f"libevmon.so.{major}"
    assert os.readlink(installed.lib + f"/libevmon.so.{major}") == f"libevmon.so.{major}.{minor}"
    # evmon-init is the small dynamic build of evmon init (mk/init.mk), not a link to evmon
    init = installed.bin + "/evmon-init"
    assert not os.path.islink(init) and os.access(init, os.X_OK)
    r = subprocess.run(["readelf", "-d", init], capture_output=True, text=True, timeout=30)
    assert re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]", r.stdout) == ["libc.so.6"], r.stdout
    assert os.path.getsize(init) < os.path.getsize(installed.bin + "/evmon") / 4
    assert os.access(installed.bin + "/evmon", os.X_OK)
    with open(installed.include + "/evmon.h") as a, open(os.path.join(ROOT, "include/evmon.h")) as b:
        assert a.read() == b.read()


def test_soname(installed):
    major = read_version().split(".")[0]
    real = os.path.realpath(installed.lib + "/libevmon.so")
    r = subprocess.run(["readelf", "-d", real], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert re.search(r"\(SONAME\)\s+Library soname: \[libevmon\.so\.%s\]" % major, r.stdout), r.stdout


def test_only_public_api_exported(installed):
    """Every EVM_API function is exported, and nothing else (visibility hidden by default)."""
    with open(os.path.join(ROOT, "include/evmon.h")) as f:
        header = f.read()
    declared = set(re.findall(r"^EVM_API\b[^;]*?\b(evm_\w+)\s*\(", header, re.M | re.S))
    assert len(declared) > 40, declared
    real = os.path.realpath(installed.lib + "/libevmon.so")
    r = subprocess.run(["nm", "-D", "--defined-only", real], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    exported = {line.split()[-1] for line in r.stdout.splitlines() if line.strip()}
    assert exported == declared, (f"exported, not declared: {sorted(exported - declared)}; "
                                  f"declared, not exported: {sorted(declared - exported)}")


def test_pkg_config_file(installed):
    v = read_version()
    assert installed.pkg_config("--modversion") == [v]
    cflags = installed.pkg_config("--cflags")
    libs = installed.pkg_config("--libs")
    assert f"-I{installed.include}" in cflags
    assert f"-L{installed.lib}" in libs and "-levmon" in libs
    with open(installed.lib + "/pkgconfig/evmon.pc") as f:
        pc = f.read()
    # the file itself names the final location, never the staging DESTDIR
    assert installed.destdir not in pc
    assert re.search(r"^prefix=%s$" % re.escape(PREFIX), pc, re.M), pc


def test_seed_example_against_installed_shared_lib(installed, tmp_path, procs):
    exe = tmp_path / "seed"
    compile_against(installed, os.path.join(ROOT, "examples/seed.c"), exe,
                    *installed.pkg_config("--cflags", "--libs"))
    # it must use the installed shared library, not a static copy or another build
    r = subprocess.run(["ldd", str(exe)], env=installed.env(), capture_output=True, text=True, timeout=30)
    major = read_version().split(".")[0]
    m = re.search(r"libevmon\.so\.%s => (\S+)" % major, r.stdout)
    assert m, r.stdout
    assert os.path.realpath(m.group(1)) == os.path.realpath(installed.lib + f"/libevmon.so.{major}")
    r = procs.run([str(exe)], env=installed.env(), timeout=30)
    assert r.returncode == 0, r.stderr
    check_seed_output(r.stdout)


@pytest.mark.skipif(SAN, reason="the sanitizer runtimes cannot be linked statically")
def test_seed_example_static(installed, tmp_path, procs):
    exe = tmp_path / "seed-static"
    compile_against(installed, os.path.join(ROOT, "examples/seed.c"), exe, "-static",
                    *installed.pkg_config("--cflags", "--libs", "--static"))
    r = subprocess.run(["readelf", "-d", str(exe)], capture_output=True, text=True, timeout=30)
    assert "NEEDED" not in r.stdout, r.stdout
    r = procs.run([str(exe)], timeout=30)
    assert r.returncode == 0, r.stderr
    check_seed_output(r.stdout)


def test_version_everywhere(installed, tmp_path, procs):
    """One version: VERSION = evm_version() = evmon --version = evmon.pc."""
    v = read_version()
    src = tmp_path / "ver.c"
    src.write_text('#include <evmon.h>\n#include <stdio.h>\n'
                   'int main(void) { puts(evm_version()); return 0; }\n')
    exe = tmp_path / "ver"
    compile_against(installed, src, exe, *installed.pkg_config("--cflags", "--libs"))
    assert procs.run([str(exe)], env=installed.env()).stdout.strip() == v
    for args in (["--version"], ["version"], ["-V"]):
        r = procs.run([installed.bin + "/evmon", *args])
        assert r.returncode == 0 and r.stdout.strip() == f"evmon {v}", (args, r.stdout, r.stderr)
    # evmon-init is evmon init
    r = procs.run([installed.bin + "/evmon-init", "--version"])
    assert r.returncode == 0 and r.stdout.strip() == f"evmon init {v}", r.stdout


def test_uninstall_removes_everything(tmp_path):
    dest = tmp_path / "d"
    make("install", DESTDIR=dest, PREFIX=PREFIX)
    inst = Installed(dest)
    assert len(inst.files()) >= 12
    make("uninstall", DESTDIR=dest, PREFIX=PREFIX)
    assert inst.files() == []


def test_directory_variables(tmp_path):
    """BINDIR, LIBDIR, INCLUDEDIR, MANDIR override the PREFIX defaults."""
    dest = tmp_path / "d"
    dirs = dict(PREFIX="/usr", BINDIR="/usr/sbin", LIBDIR="/usr/lib/x86_64-linux-gnu",
                INCLUDEDIR="/usr/include/evmon", MANDIR="/usr/share/manual")
    make("install", DESTDIR=dest, **dirs)
    files = set(Installed(dest).files())
    for f in ("usr/sbin/evmon", "usr/lib/x86_64-linux-gnu/libevmon.a",
              "usr/lib/x86_64-linux-gnu/pkgconfig/evmon.pc", "usr/include/evmon/evmon.h",
              "usr/share/manual/man1/evmon.1"):
        assert f in files, sorted(files)
    with open(dest / "usr/lib/x86_64-linux-gnu/pkgconfig/evmon.pc") as f:
        pc = f.read()
    assert "libdir=${prefix}/lib/x86_64-linux-gnu" in pc and "includedir=${prefix}/include/evmon" in pc
    make("uninstall", DESTDIR=dest, **dirs)
    assert Installed(dest).files() == []


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_unit_verifies(tmp_path):
    """examples/evmon.service passes systemd-analyze verify against an installed evmon
    (which also checks that its Documentation= man pages exist)."""
    dest = tmp_path / "d"
    make("install", DESTDIR=dest, PREFIX="/usr/local")
    with open(os.path.join(ROOT, "examples/evmon.service")) as f:
        unit = f.read()
    assert "ExecStart=/usr/local/bin/evmon daemon" in unit
    (tmp_path / "evmon.service").write_text(unit.replace("/usr/local/bin/evmon", f"{dest}/usr/local/bin/evmon"))
    env = dict(os.environ, MANPATH=f"{dest}/usr/local/share/man")
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "evmon.service")], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stdout + r.stderr


def test_bash_completion_loads_from_install(installed):
    """bash-completion finds the installed file on demand, for both names, as it does on Debian."""
    script = ("source /usr/share/bash-completion/bash_completion; "
              "__load_completion evmon && complete -p evmon; "
              "__load_completion evmon-init && complete -p evmon-init")
    env = dict(os.environ, XDG_DATA_DIRS=installed.root + "/share")
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], env=env, capture_output=True,
                       text=True, timeout=30)
    assert r.stdout.split("\n")[:2] == ["complete -F _evmon evmon", "complete -F _evmon evmon-init"], \
        r.stdout + r.stderr


def dockerfile_stages():
    """examples/Dockerfile as [(name, base, [instruction lines])], continuation lines joined."""
    with open(os.path.join(ROOT, "examples/Dockerfile")) as f:
        text = re.sub(r"\\\n\s*", " ", f.read())
    stages = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.match(r"FROM (\S+)(?: AS (\S+))?$", line)
        if m:
            stages.append((m.group(2), m.group(1), []))
        else:
            stages[-1][2].append(line)
    return stages


def apt_packages(lines):
    out = []
    for line in lines:
        for m in re.finditer(r"apt-get install ([^&]*)", line):
            out += [w for w in m.group(1).split() if not w.startswith("-")]
    return out


def test_dockerfile():
    """examples/Dockerfile holds together without docker: the ENTRYPOINT of the issue, a
    static stage built by `make static`, COPY paths that `make install` and the build
    context provide, Debian packages that exist, and a runtime stage with every shared
    library the evmon binary needs."""
    stages = dockerfile_stages()
    names = [s[0] for s in stages]
    assert "build" in names and "static" in names, names
    final = stages[-1][2]
    assert 'ENTRYPOINT ["/usr/bin/evmon", "init", "--"]' in final, final
    build = dict((s[0], s[2]) for s in stages)["build"]
    # what the build stage installs is where the final stage copies it from
    m = re.search(r"make .*\bPREFIX=(\S+) DESTDIR=(\S+) install\b", " ".join(build))
    assert m, build
    prefix, destdir = m.groups()
    copies = [line.split()[2:] for line in final if line.startswith("COPY --from=build ")]
    assert [f"{destdir}{prefix}/bin/evmon", "/usr/bin/evmon"] in copies, copies
    static = " ".join(dict((s[0], s[2]) for s in stages)["static"])
    m = re.search(r"make BUILD=(\S+) static .*install -D -m 0755 (\S+) ", static)
    assert m and m.group(2) == m.group(1) + "/evmon-init", static
    # files copied from the context exist and are not filtered out of it
    with open(os.path.join(ROOT, "examples/Dockerfile.dockerignore")) as f:
        ignored = [line.strip().rstrip("/") for line in f if line.strip() and not line.startswith("#")]
    for _, _, lines in stages:
        for line in lines:
            if line.startswith("COPY ") and "--from=" not in line:
                src = line.split()[1]
                assert os.path.exists(os.path.join(ROOT, src)), line
                assert src == "." or not any(src.startswith(i) for i in ignored), line
    # every package named is a Debian package
    pkgs = sorted(set(apt_packages(sum((s[2] for s in stages), []))))
    assert pkgs, stages
    r = subprocess.run(["apt-cache", "show", "--no-all-versions", *pkgs], capture_output=True, text=True,
                       timeout=60)
    assert sorted(set(re.findall(r"^Package: (\S+)", r.stdout, re.M))) == pkgs, r.stderr
    if SAN:
        return  # the sanitizer runtimes are this build's, not the image's
    # the runtime stage installs the package of every library evmon links itself
    # (but libc's); apt brings what those depend on
    r = subprocess.run(["ldd", os.path.join(BUILD, "evmon")], capture_output=True, text=True, timeout=30)
    paths = dict(re.findall(r"^\s*(\S+) => (/\S+)", r.stdout, re.M))
    d = subprocess.run(["readelf", "-d", os.path.join(BUILD, "evmon")], capture_output=True, text=True,
                       timeout=30)
    direct = [n for n in re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]", d.stdout)
              if not n.startswith("ld-linux")]  # libc6's, like libc
    assert direct and all(n in paths for n in direct), (direct, r.stdout)
    libs = [paths[n] for n in direct]
    needed = set()
    for lib in libs:
        # dpkg knows the file by the name its package ships (merged /usr: /lib/...)
        real = os.path.realpath(lib)
        cands = [lib, real, os.path.join(os.path.dirname(lib), os.path.basename(real)),
                 re.sub(r"^/usr/", "/", real)]
        owners = [subprocess.run(["dpkg", "-S", c], capture_output=True, text=True, timeout=30) for c in cands]
        found = [o.stdout.split(":")[0] for o in owners if o.returncode == 0]
        assert found, (lib, owners[-1].stderr)
        needed.add(found[0])
    needed.discard("libc6")
    assert needed <= set(apt_packages(final)), (needed, apt_packages(final))


def test_make_all_relinks_a_built_evmon_bench(tmp_path):
    """`make all` relinks bench/evmon_bench once it was built (it links libevmon.a:
    bench/run.py run by hand after a change measured the old library), and builds no
    harness never built (their peers' packages are `make bench`'s). A dry run (make -n)
    into an empty build directory."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}

    def planned():
        r = subprocess.run(["make", "-n", "-C", ROOT, f"BUILD={tmp_path}", "all"], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout
    assert f"{tmp_path}/bench/" not in planned()
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "evmon_bench").touch()
    out = planned()
    assert f"-o {tmp_path}/bench/evmon_bench " in out, out
    assert f"{tmp_path}/bench/raw_bench" not in out and f"{tmp_path}/bench/tiny" not in out
