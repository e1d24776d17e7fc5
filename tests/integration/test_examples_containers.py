"""examples/containers (issue 19.6): the Kubernetes Pod, the Nomad job and the
docker-compose file a cluster user copies, checked for what can be checked
offline: the config they carry passes `evmon daemon --check`, every evmon
command line in them parses and does its job against a daemon running that
config (the probes and health checks answer 0 once the services run), and
the paths they name exist in examples/Dockerfile's image or in the tree."""
import os
import re
import shlex

import pytest

from conftest import EVMON, ROOT
from daemon_util import SLOW, Daemon, wait_for

yaml = pytest.importorskip("yaml", reason="python3-yaml is not installed")

DIR = os.path.join(ROOT, "examples", "containers")


def read(name):
    with open(os.path.join(DIR, name)) as f:
        return f.read()


def pod():
    docs = list(yaml.safe_load_all(read("pod.yaml")))
    return {d["kind"]: d for d in docs}


def compose():
    return yaml.safe_load(read("docker-compose.yml"))["services"]["evmon"]


def nomad_lists(key):
    """The string lists of `key = [...]` in nomad.hcl."""
    return [shlex.split(m.replace(",", " ")) for m in re.findall(rf"^\s*{key}\s*=\s*\[(.*)\]", read("nomad.hcl"), re.M)]


def commands():
    """(where, argv) of every command that runs evmon in the three files."""
    out = []
    c = pod()["Pod"]["spec"]["containers"][0]
    out.append(("pod entrypoint", c["command"] + c["args"]))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        out.append((f"pod {probe}", c[probe]["exec"]["command"]))
    s = compose()
    out.append(("compose entrypoint", s["entrypoint"] + s["command"]))
    assert s["healthcheck"]["test"][0] == "CMD"
    out.append(("compose healthcheck", s["healthcheck"]["test"][1:]))
    (entry,), (args, check_args) = nomad_lists("entrypoint"), nomad_lists("args")
    out.append(("nomad entrypoint", entry + args))
    cmd = re.search(r'^\s*command\s*=\s*"([^"]+)"', read("nomad.hcl"), re.M).group(1)
    out.append(("nomad check", [cmd] + check_args))
    return out


def image_files():
    """What examples/Dockerfile's final image holds at the paths used here."""
    with open(os.path.join(ROOT, "examples", "Dockerfile")) as f:
        final = f.read().rsplit("\nFROM ", 1)[1]
    return {line.split()[-1] for line in final.splitlines() if line.startswith("COPY ")}


def test_every_command_is_evmon_in_the_image():
    files = image_files()
    assert "/usr/bin/evmon" in files
    for where, argv in commands():
        assert argv[0] == "/usr/bin/evmon", (where, argv)
        if argv[1] == "init":
            assert argv[2] == "--" and argv[3:5] == ["/usr/bin/evmon", "daemon"], (where, argv)
    # the config: the ConfigMap mounted where the command reads it, compose's bind
    # mount, nomad's template; all the same file
    c = pod()["Pod"]["spec"]
    assert c["containers"][0]["volumeMounts"][0]["mountPath"] == "/etc/evmon"
    assert c["volumes"][0]["configMap"]["name"] == pod()["ConfigMap"]["metadata"]["name"]
    body = read("evmon.ini")
    assert pod()["ConfigMap"]["data"]["evmon.ini"] == body[body.index("[evmon]"):]  # without the header
    assert compose()["volumes"] == ["./evmon.ini:/etc/evmon/evmon.ini:ro"]
    tpl = re.search(r'file\("([^"]+)"\)', read("nomad.hcl")).group(1)
    assert os.path.exists(os.path.join(ROOT, tpl)) and "/local/evmon.ini" in nomad_lists("args")[0]
    assert os.path.exists(os.path.join(ROOT, "examples", "containers", compose()["build"]["context"],
                                       compose()["build"]["dockerfile"]))


def test_config_checks(procs, tmp_path):
    r = procs.run([EVMON, "daemon", "--check", "-c", os.path.join(DIR, "evmon.ini"), "-S",
                   str(tmp_path / "x.sock")])
    assert r.returncode == 0, r.stderr


def test_probes_answer_against_the_config(procs, tmp_path):
    """each probe and health check, run as written (evmon from this build), exits 0 once the
    services of the example config run"""
    cfg = read("evmon.ini").replace("metrics_listen = 0.0.0.0:9100", "metrics_listen = 127.0.0.1:0")
    env = dict(os.environ, EVMON_SOCKET=str(tmp_path / "d.sock"))
    d = Daemon(procs, tmp_path, cfg, env=env)
    d.wait_state("app", "running")
    d.wait_state("worker", "running")
    wait_for(lambda: "app | app: listening" in d.log(), timeout=20 * SLOW, what="app's line")
    for where, argv in commands():
        if argv[1] != "ctl":
            continue
        r = procs.run([EVMON] + argv[1:], env=env)
        assert r.returncode == 0, (where, argv, r.stdout, r.stderr)
    r = procs.run([EVMON, "ctl", "stop", "worker"], env=env)
    assert r.returncode == 0
    r = procs.run([EVMON] + dict(commands())["pod readinessProbe"][1:], env=env)
    assert r.returncode == 3, r.stdout  # not ready while worker is stopped
    d.stop()
