"""The bash completion (completion/evmon), driven as bash-completion drives it.

Each case sources Debian's bash_completion and our file in a fresh bash, sets
COMP_LINE/COMP_WORDS/COMP_CWORD for a command line and calls _evmon. The
expected words come from the program itself (evmon help, --help), so the
completion cannot drift from the commands it completes.
"""
import os
import re
import subprocess

import pytest

from conftest import EVMON, ROOT, SLOW, wait_for

BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"

DRIVER = r"""
source "$BASH_COMPLETION"
source "$ROOT/completion/evmon"
compopt() { :; }   # only valid inside a real completion
# the completion gives `evmon ctl` 2 s (a prompt must not hang): 10 s times SLOW here, a
# deadline like every other of the tests (an ASan ctl on a loaded machine took longer)
timeout() { local t=$1; shift; command timeout "$((t * 5 * SLOW))" "$@"; }
line=$1
COMP_LINE=$line
COMP_POINT=${#line}
read -ra COMP_WORDS <<<"$line"
[[ $line == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMPREPLY=()
_evmon
printf '%s\n' "${COMPREPLY[@]}"
"""


def complete(line, env=None, cwd=None):
    """The words bash would offer for line (its last word is being completed)."""
    e = dict(os.environ, BASH_COMPLETION=BASH_COMPLETION, ROOT=ROOT, SLOW=str(SLOW))
    e.update(env or {})
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", DRIVER, "driver", line], env=e, cwd=cwd,
                       capture_output=True, text=True, timeout=30 * SLOW)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return [w for w in r.stdout.splitlines() if w]


def help_out(*args):
    r = subprocess.run([EVMON, *args], capture_output=True, text=True, timeout=30)
    return r.stdout + r.stderr


def need(cmd):
    if "not available in this build" in help_out(cmd, "--help"):
        pytest.skip(f"evmon {cmd} is not in this build yet")


def options_of(text):
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", "\n".join(
        line for line in text.splitlines() if re.match(r"^\s+-", line))))


@pytest.fixture(scope="module", autouse=True)
def need_bash_completion():
    assert os.path.exists(BASH_COMPLETION), "bash-completion is not installed (scripts/deps.sh)"


def test_commands():
    cmds = set(re.findall(r"^  (\w+)\s", help_out("help").split("commands:", 1)[1], re.M))
    got = set(complete(f"{EVMON} "))
    assert got == cmds | {"--help", "--version"}
    assert complete(f"{EVMON} da") == ["daemon"]
    assert set(complete(f"{EVMON} help ")) == cmds - {"help", "version"}


@pytest.mark.parametrize("cmd", ["init", "daemon"])
def test_options_are_the_programs(cmd):
    need(cmd)
    want = options_of(help_out(cmd, "--help"))
    got = set(complete(f"{EVMON} {cmd} -"))
    assert got - {"--"} == want


def test_init_completes_the_command_to_run():
    assert "echo" in complete(f"{EVMON} init -- ech")
    assert "echo" in complete(f"{EVMON} init -g -t 2 ech")
    # past the command, its own arguments: files, not init's options
    assert "-g" not in complete(f"{EVMON} init sleep -")
    assert "--group" in complete("evmon-init --gr")


def test_signal_names_are_accepted_by_evmon(procs):
    sigs = complete(f"{EVMON} init -p ")
    assert {"TERM", "HUP", "USR1", "KILL", "RTMIN", "RTMIN+3"} <= set(sigs), sigs
    assert not any(s.startswith("SIG") or s in ("EXIT",) or "JUNK" in s for s in sigs), sigs
    assert complete(f"{EVMON} init -p SIGUS") == ["SIGUSR1", "SIGUSR2"]
    for s in sigs:
        r = procs.run([EVMON, "init", "-p", s, "--", "true"], timeout=30)
        assert r.returncode == 0, (s, r.stderr)


def test_rewrite_pairs():
    assert "TERM:" in complete(f"{EVMON} init -r ")
    # colons break words in bash; the completion hands back only what follows
    got = complete(f"{EVMON} init -r INT:")
    assert "TERM" in got and "0" in got, got
    assert set(complete(f"{EVMON} init -r INT:US")) == {"USR1", "USR2"}


def test_ctl_commands_and_options():
    need("ctl")
    text = help_out("ctl", "--help")
    cmds = set(re.findall(r"^  ([a-z][a-z-]*)", text.split("commands:", 1)[1].split("\n\n", 1)[0], re.M))
    assert set(complete(f"{EVMON} ctl ")) == cmds
    assert set(complete(f"{EVMON} ctl -S /tmp/x ")) == cmds
    # ctl's own options: the paragraph of --help that has --socket (the others are add's)
    own = options_of(next(p for p in text.split("\n\n") if "--socket" in p))
    assert {"-S", "--socket", "--json", "-t", "--timeout"} <= own
    assert set(complete(f"{EVMON} ctl -")) == own
    assert set(complete(f"{EVMON} ctl add -r ")) == {"on-failure", "always", "never", "unless-stopped"}


def test_ctl_add_and_logs_options_are_the_programs():
    """The options offered after `ctl add` and `ctl logs` are those --help lists under them."""
    need("ctl")
    text = help_out("ctl", "--help")

    def under(cmd_line):
        """Options listed under the line of --help that starts with cmd_line."""
        lines = text.split("commands:", 1)[1].splitlines()
        i = next(k for k, line in enumerate(lines) if line.startswith("  " + cmd_line))
        block = []
        for line in lines[i + 1:]:  # up to the next command
            if not re.match(r"^\s{4,}\S", line):
                break
            block.append(line)
        return options_of("\n".join(block))

    add, logs = under("add [OPTIONS]"), under("logs [OPTIONS]")
    assert {"-r", "--restart", "--no-start"} <= add and {"-n", "--lines", "-f"} <= logs, (add, logs)
    # add --json SERVICE-JSON is the other form of add
    assert set(complete(f"{EVMON} ctl add -")) == add | {"--json"}
    assert set(complete(f"{EVMON} ctl logs -")) == logs


def test_files_for_config(tmp_path):
    (tmp_path / "a.ini").write_text("")
    (tmp_path / "b.txt").write_text("")
    (tmp_path / "sub").mkdir()
    got = set(complete(f"{EVMON} daemon -c ", cwd=tmp_path))
    assert "a.ini" in got and "sub" in got and "b.txt" not in got, got


def test_no_daemon_no_names(tmp_path):
    assert complete(f"{EVMON} ctl -S {tmp_path}/none.sock stop ") == []


DEMO = """
[service:web]
command = sleep 1000
instances = 2
restart = always

[service:db]
command = sleep 1000
"""


@pytest.fixture
def daemon(tmp_path, procs):
    need("daemon")
    cfg = tmp_path / "evmon.ini"
    cfg.write_text(DEMO)
    sock = str(tmp_path / "evmon.sock")
    p = procs.spawn([EVMON, "daemon", "-c", str(cfg), "-S", sock])

    def up():
        assert p.poll() is None, p.stderr.read().decode()
        r = subprocess.run([EVMON, "ctl", "-S", sock, "status"], capture_output=True, timeout=10 * SLOW)
        return r.returncode == 0
    wait_for(up, timeout=20 * SLOW, what="the daemon's socket")
    yield sock
    subprocess.run([EVMON, "ctl", "-S", sock, "shutdown"], capture_output=True, timeout=30 * SLOW)
    p.wait(timeout=30 * SLOW)


def test_service_names_from_the_daemon(daemon):
    names = {"web:0", "web:1", "web", "db"}
    assert set(complete(f"{EVMON} ctl -S {daemon} stop ")) == names
    assert set(complete(f"{EVMON} ctl --socket={daemon} status w")) == {"web:0", "web:1", "web"}
    # the socket from the environment, as evmon ctl takes it
    assert set(complete(f"{EVMON} ctl restart ", env={"EVMON_SOCKET": daemon})) == names
    # colons break words in bash: after "web:" only the rest is offered
    assert set(complete(f"{EVMON} ctl -S {daemon} stop web:")) == {"0", "1"}
    # signal NAME... SIGNAL: names, and signals once a name is there
    assert set(complete(f"{EVMON} ctl -S {daemon} signal ")) == names
    got = set(complete(f"{EVMON} ctl -S {daemon} signal db "))
    assert names <= got and {"TERM", "HUP"} <= got
