"""The man pages: generated, rendered by man without warnings, and in step with the code.

Sources are man/*.scd (scdoc); `make` renders them into $EVMON_BUILD/man.
The checks that tie them to the code: every option and command a program's
--help lists is documented in its page and every option a page documents is
in --help; every public function of evmon.h is in libevmon(3); every config
key the daemon accepts is in evmon.ini(5); libevmon(3)'s example compiles and
runs.
"""
import os
import pwd
import re
import subprocess

import pytest

from conftest import BUILD, EVMON, ROOT, SAN

PAGES = ["evmon.1", "evmon-init.1", "evmon-ctl.1", "evmon-daemon.8", "evmon.ini.5", "libevmon.3"]
MANDIR = os.path.join(BUILD, "man")


def scd(page):
    with open(os.path.join(ROOT, "man", page + ".scd")) as f:
        return f.read()


def section(text, title):
    """The body of '# TITLE' in an scdoc source, up to the next heading."""
    m = re.search(r"^# %s\n(.*?)(?=^# |\Z)" % re.escape(title), text, re.M | re.S)
    assert m, f"no section {title}"
    return m.group(1)


def render(page, width=80, warnings=True):
    env = dict(os.environ, MANWIDTH=str(width), LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="")
    argv = ["man"] + (["--warnings"] if warnings else []) + ["-l", os.path.join(MANDIR, page)]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def documented_options(page, *titles):
    """Options named in the item headers (unindented lines) of sections."""
    out = set()
    for title in titles or ("OPTIONS",):
        for line in section(scd(page), title).splitlines():
            if line.startswith("*-"):
                out |= set(re.findall(r"\*(--?[A-Za-z][\w-]*)\*", line))
    return out


def help_text(*args):
    r = subprocess.run([EVMON, *args, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


def help_options(text):
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", "\n".join(
        line for line in text.splitlines() if re.match(r"^\s+-", line))))


def read_version():
    with open(os.path.join(ROOT, "VERSION")) as f:
        return f.read().strip()


def test_every_page_is_generated():
    assert sorted(os.listdir(MANDIR)) == sorted(PAGES)
    assert sorted(f[:-4] for f in os.listdir(os.path.join(ROOT, "man")) if f.endswith(".scd")) == sorted(PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_without_warnings(page):
    r = render(page)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr
    name, sect = page.rsplit(".", 1)
    head = r.stdout.splitlines()[0]
    assert head.startswith(f"{name}({sect})"), head
    # the version comes from VERSION, as evmon --version's does
    assert f"evmon {read_version()}" in r.stdout.splitlines()[-1]
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"):
        assert re.search(r"^%s$" % heading, r.stdout, re.M), (page, heading)


def test_evmon_commands_match_help():
    """evmon help's commands are evmon(1)'s, and each has its page."""
    out = subprocess.run([EVMON, "help"], capture_output=True, text=True, timeout=30).stdout
    cmds = set(re.findall(r"^  (\w+)\s", out.split("commands:", 1)[1], re.M))
    assert {"init", "daemon", "ctl", "help", "version"} <= cmds, out
    items = set(re.findall(r"^\*(\w+)\*", section(scd("evmon.1"), "COMMANDS"), re.M))
    assert items == cmds
    man_text = render("evmon.1", width=300).stdout
    for c, page in (("init", "evmon-init(1)"), ("daemon", "evmon-daemon(8)"), ("ctl", "evmon-ctl(1)")):
        assert page in man_text
    assert documented_options("evmon.1") == {"-h", "--help", "-V", "--version"}


@pytest.mark.parametrize("args", [[], ["bogus"], ["help", "bogus"]], ids=["none", "unknown", "help-unknown"])
def test_evmon_usage_errors_exit_2(args):
    """evmon(1) EXIT STATUS: no command or an unknown one exits 2, with a message on stderr only."""
    assert re.search(r"exits with 2 when no command or an unknown command",
                     re.sub(r"\s+", " ", section(scd("evmon.1"), "EXIT STATUS")))
    r = subprocess.run([EVMON, *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stdout == "", (r.stdout, r.stderr)
    if args:
        assert f"unknown command '{args[-1]}'" in r.stderr, r.stderr
    else:
        assert r.stderr.startswith("usage: evmon COMMAND"), r.stderr


@pytest.mark.parametrize("cmd,page,sections", [
    ("init", "evmon-init.1", ["OPTIONS"]),
    ("daemon", "evmon-daemon.8", ["OPTIONS"]),
    ("ctl", "evmon-ctl.1", ["OPTIONS", "ADD OPTIONS", "LOGS OPTIONS"])])
def test_command_options_match_help(cmd, page, sections):
    from_help = help_options(help_text(cmd))
    documented = documented_options(page, *sections)
    assert len(from_help) >= 4, from_help
    assert from_help - documented == set(), f"in `evmon {cmd} --help`, not in {page}"
    # -h/--help need not list themselves
    assert documented - from_help <= {"-h", "--help"}, f"in {page}, not in `evmon {cmd} --help`"


def usage_lines(text):
    """The usage lines at the top of --help ("usage: X" and the indented forms after it)."""
    lines = text.split("\n\n", 1)[0].splitlines()
    assert lines and lines[0].startswith("usage: "), text
    return [re.sub(r"^usage: ", "", line).strip() for line in lines]


def synopsis_lines(page):
    """SYNOPSIS of a page with scdoc's markup removed: one line per form."""
    body = section(scd(page), "SYNOPSIS")
    return [re.sub(r"[*_]", "", line).strip() for line in body.splitlines() if line.strip()]


@pytest.mark.parametrize("cmd,page", [((), "evmon.1"), (("init",), "evmon-init.1"),
                                      (("daemon",), "evmon-daemon.8"), (("ctl",), "evmon-ctl.1")],
                         ids=["evmon", "init", "daemon", "ctl"])
def test_usage_is_the_synopsis(cmd, page):
    """Every form the usage of --help shows is a line of the page's SYNOPSIS."""
    usage = usage_lines(help_text(*cmd))
    assert set(usage) <= set(synopsis_lines(page)), (usage, synopsis_lines(page))


def test_init_environment_matches_code_help_and_docs():
    """The variables evmon init reads (getenv in src/init/*.c) are exactly those of
    evmon-init(1)'s ENVIRONMENT, of `evmon init --help`, and of docs/INIT.md's table."""
    used = set()
    for name in os.listdir(os.path.join(ROOT, "src", "init")):
        if name.endswith(".c"):
            with open(os.path.join(ROOT, "src", "init", name)) as f:
                used |= set(re.findall(r'getenv\("([A-Z_]+)"\)', f.read()))
    used.discard("PATH")  # searched like execvp: DESCRIPTION says so
    assert {"TINI_SUBREAPER", "TINI_VERBOSITY", "TINI_KILL_PROCESS_GROUP"} <= used, used
    documented = set(re.findall(r"^\*([A-Z][A-Z_]+)\*", section(scd("evmon-init.1"), "ENVIRONMENT"), re.M))
    helped = set(re.findall(r"\b([A-Z]+_[A-Z_]+)\b", help_text("init").split("Environment:", 1)[1]))
    with open(os.path.join(ROOT, "docs", "INIT.md")) as f:
        in_md = set(re.findall(r"^\| `([A-Z][A-Z_]+)", f.read(), re.M))
    assert documented == used, "evmon-init(1) ENVIRONMENT"
    assert helped == used, "evmon init --help"
    assert in_md == used, "docs/INIT.md"


@pytest.mark.parametrize("args", [(), ("init",)], ids=["evmon", "init"])
def test_help_refers_to_installed_pages(args):
    """--help points to man pages that are installed, never to a file of the source tree."""
    text = help_text(*args)
    refs = re.findall(r"\b([a-z][\w.-]*)\((\d)\)", text)
    assert {f"{n}.{s}" for n, s in refs} <= set(PAGES), refs
    assert not re.search(r"\b(docs|examples)/", text), text
    if args == ("init",):
        assert ("evmon-init", "1") in refs, text


def test_ctl_commands_match_help():
    text = help_text("ctl")
    cmds = set(re.findall(r"^  ([a-z][a-z-]*)", text.split("commands:", 1)[1].split("\n\n", 1)[0], re.M))
    assert {"status", "start", "stop", "signal", "reload"} <= cmds, text
    items = set(re.findall(r"^\*([a-z][a-z-]*)\*", section(scd("evmon-ctl.1"), "COMMANDS"), re.M))
    assert items == cmds


def test_libevmon3_names_every_public_function():
    with open(os.path.join(ROOT, "include/evmon.h")) as f:
        declared = set(re.findall(r"^EVM_API\b[^;]*?\b(evm_\w+)\s*\(", f.read(), re.M | re.S))
    text = scd("libevmon.3")
    missing = sorted(fn for fn in declared if not re.search(r"\b%s\b" % fn, text))
    assert missing == []


def test_libevmon3_example_builds_and_runs(tmp_path):
    code = re.search(r"```\n(#include <evmon.h>.*?)```", section(scd("libevmon.3"), "EXAMPLE"), re.S)
    assert code
    src = tmp_path / "ex.c"
    src.write_text(code.group(1))
    exe = tmp_path / "ex"
    san = ["-fsanitize=address,undefined"] if SAN else []
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", *san, "-I", os.path.join(ROOT, "include"),
                    str(src), os.path.join(BUILD, "libevmon.a"), "-lpthread", "-o", str(exe)],
                   check=True, timeout=120)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"\d+ exited: shell code 0\n", r.stdout), r.stdout


def config_keys():
    """The keys the daemon accepts: the names in the key table of confkeys.c."""
    with open(os.path.join(ROOT, "src/daemon/confkeys.c")) as f:
        src = f.read()
    return set(re.findall(r'\[CK_[A-Z_]+\] = \{"([a-z_]+)"', src))


def test_evmon_ini5_documents_every_key():
    keys = config_keys()
    assert len(keys) >= 10, keys
    text = scd("evmon.ini.5")
    missing = sorted(k for k in keys if not re.search(r"^\*%s\*" % k, text, re.M))
    assert missing == []


def test_evmon_ini5_example_is_valid(tmp_path):
    """The example file of evmon.ini(5) passes evmon daemon --check."""
    code = re.search(r"```\n(.*?)```", section(scd("evmon.ini.5"), "EXAMPLE"), re.S).group(1)
    assert "[service:" in code
    if "user = nobody" in code and os.geteuid() not in (0, pwd.getpwnam("nobody").pw_uid):
        pytest.skip("needs root: the example runs a service as user nobody")
    cfg = tmp_path / "evmon.ini"
    cfg.write_text(code)
    r = subprocess.run([EVMON, "daemon", "--check", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.match(r".*: OK: \d+ services", r.stdout), r.stdout


def test_evmon_ini5_inline_examples_are_valid(tmp_path):
    """Every `*KEY = VALUE*` given as an example in evmon.ini(5)'s text passes --check, in
    a service or in [evmon]: `stop_timeout = 1d` was one, refused (no unit d)."""
    text = scd("evmon.ini.5")
    examples = sorted(set(re.findall(r"\*([a-z_]+) = ([^*\n]+)\*", text)))
    skip = {"key", "include"}  # the grammar's own placeholder; include names files
    examples = [(k, v) for k, v in examples if k not in skip and not v.endswith(":")]
    assert len(examples) >= 10, examples
    bad = []
    for k, v in examples:
        ok = False
        for where in ("service", "evmon"):
            cfg = tmp_path / "e.ini"
            line = f"{k} = {v}\n"
            cfg.write_text(f"[evmon]\nlog_dir = {tmp_path}\n" + (line if where == "evmon" else "")
                           + "[service:x]\ncommand = /bin/true\n"
                           + (line if where == "service" else ""))
            r = subprocess.run([EVMON, "daemon", "--check", "-c", str(cfg)], capture_output=True,
                               text=True, timeout=30)
            ok = ok or r.returncode == 0
        if not ok:
            bad.append(f"{k} = {v}: {r.stdout}{r.stderr}")
    assert bad == []
