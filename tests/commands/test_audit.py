"""The audit log: one record per get, store, erase and list, naming the program that ran the helper.

Served by the agent (which sees its caller through SO_PEERCRED) and in
process alike; from the real clients (docker CLI, skopeo, podman, docker-py)
against a real registry; rotated when full; written by many processes at
once without losing a record; turned off by `audit: false`; and read back
by `credbridge audit` with its filters.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.clients.test_real_clients import Clients, clients, docker_login, docker_py, explain  # noqa: F401
from tests.conftest import GO_SECRETSERVICE, SERVING, Helper, Installation, router_env
from tests.stores.test_router import configured
from tests.support.process import run
from tests.support.registry import Registry


def audit_records(state_home: Path) -> list[dict]:
    log = state_home / "credbridge" / "audit.log"
    assert log.is_file(), f"no audit log at {log}"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    return [json.loads(line) for line in log.read_text().splitlines()]


def with_env(helper: Helper, **changes: str) -> Helper:
    return Helper(helper.path, {**helper.env, **changes})


def agent_answering(helper: Helper, probe_state: Path) -> None:
    """Through the agent, once it serves: a first call is served in process while it starts."""
    if helper.env.get("CREDBRIDGE_NO_AGENT"):
        return
    probe = with_env(helper, XDG_STATE_HOME=str(probe_state))
    deadline = time.monotonic() + 30
    while probe.list().returncode == 0 and audit_records(probe_state)[-1]["served_by"] != "agent":
        assert time.monotonic() < deadline, "no agent answered within 30 s"
        time.sleep(0.1)


def test_each_action_served_appends_one_record_naming_the_calling_program(
    keyring_helper: Helper, tmp_path: Path
) -> None:
    agent_answering(keyring_helper, tmp_path / "probe")
    helper = with_env(keyring_helper, XDG_STATE_HOME=str(tmp_path / "state"))
    server = "registry.example.com:5000"
    assert helper.store("https://Registry.Example.COM:5000/", "alice", "s3cret").returncode == 0
    assert helper.get(server).returncode == 0
    assert helper.get("nowhere.example").returncode == 1
    assert helper.list().returncode == 0
    assert helper.erase(server).returncode == 0
    assert helper.get("").returncode == 1
    assert helper("version").returncode == 0  # not a credential: no record
    records = audit_records(tmp_path / "state")
    assert [(r["action"], r["registry"], r["outcome"]) for r in records] == [
        ("store", server, "ok"),
        ("get", server, "found"),
        ("get", "nowhere.example", "not found"),
        ("list", "", "ok"),
        ("erase", server, "ok"),
        ("get", "", "error"),
    ]
    served_by = "in process" if helper.env.get("CREDBRIDGE_NO_AGENT") else "agent"
    for record in records:
        assert record["store"] == "keyring" and record["helper"] == "docker-credential-keyring"
        assert record["served_by"] == served_by, record
        assert record["tool_pid"] == os.getpid(), record  # this test process ran each helper
        assert record["tool_exe"] == os.path.realpath(sys.executable), record
        assert record["tool"] == os.path.basename(record["tool_argv0"]), record  # python -m pytest
        assert record["helper_pid"] not in (0, os.getpid()), record
        assert abs(record["time"] - time.time()) < 120, record
    assert len({record["helper_pid"] for record in records}) == len(records)  # a process each


def test_a_userinfo_in_the_server_url_is_a_short_hash_never_the_username_or_password(
    keyring_helper: Helper, tmp_path: Path
) -> None:
    helper = with_env(keyring_helper, XDG_STATE_HOME=str(tmp_path / "state"))
    url = "https://someone:pa55word@registry.example.com/v2/?token=t0ken"
    assert helper.get(url).returncode == 1
    [record] = audit_records(tmp_path / "state")
    assert record["registry"] == "~2a59d59e@registry.example.com/v2", record
    text = (tmp_path / "state" / "credbridge" / "audit.log").read_text()
    assert "someone" not in text and "pa55word" not in text and "t0ken" not in text


def test_a_login_a_locked_store_refuses_is_recorded_as_denied(
    installation: Installation, locked_env: dict[str, str], tmp_path: Path
) -> None:
    helper = Helper(
        installation.executable("docker-credential-cryptfile"),
        {**locked_env, "XDG_STATE_HOME": str(tmp_path / "state")},
    )
    assert helper.store("locked.example", "u", "s").returncode == 1
    [record] = audit_records(tmp_path / "state")
    assert (record["action"], record["store"], record["outcome"]) == ("store", "cryptfile", "denied"), record


def test_a_cryptfile_record_names_no_registry_and_is_still_found_by_it(
    installation: Installation, cryptfile_helper_env: dict[str, str]
) -> None:
    """The cryptfile never spells out a registry name on disk: its records keep a hash."""
    state = Path(cryptfile_helper_env["XDG_STATE_HOME"])
    helper = Helper(installation.executable("docker-credential-cryptfile"), cryptfile_helper_env)
    assert helper.store("hidden.example:5000", "u", "s").returncode == 0
    assert helper.get("https://Hidden.Example:5000/").returncode == 0
    records = audit_records(state)
    assert [(r["action"], r["outcome"]) for r in records] == [("store", "ok"), ("get", "found")]
    assert records[0]["registry"] == records[1]["registry"]
    assert records[0]["registry"].startswith("#") and len(records[0]["registry"]) == 13
    assert b"hidden" not in (state / "credbridge" / "audit.log").read_bytes()
    found = credbridge(installation, cryptfile_helper_env, "audit", "--json", "--registry", "hidden.example:5000")
    assert [entry["action"] for entry in json.loads(found.stdout)] == ["store", "get"], found


def test_audit_false_in_the_config_writes_nothing(keyring_helper: Helper, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("audit: false\n")
    helper = with_env(keyring_helper, XDG_STATE_HOME=str(tmp_path / "state"), CREDBRIDGE_CONFIG=str(config))
    assert helper.store("quiet.example", "u", "s").returncode == 0
    assert helper.get("quiet.example").returncode == 0
    assert helper.list().returncode == 0
    assert not (tmp_path / "state" / "credbridge").exists(), list((tmp_path / "state").rglob("*"))


# -- the router: the store behind it ---------------------------------------------------------


@pytest.fixture(params=SERVING)
def router_home(request: pytest.FixtureRequest) -> dict[str, str]:
    """A fresh HOME on the clean private keyring and a fresh unlocked cryptfile, agent or in process."""
    return router_env(routed=False)(request, request.param)


@pytest.mark.parametrize("primary, routed", [("cryptfile", "keyring"), ("keyring", "cryptfile")])
def test_a_router_record_names_the_store_that_answered_and_hides_what_the_cryptfile_holds(
    installation: Installation, router_home: dict[str, str], primary: str, routed: str
) -> None:
    """Which store held a leaked token is the next question; the cryptfile's registries stay unnamed
    whichever store is primary, and a keyring's are named whichever is."""
    from credbridge.audit import hidden_name

    env = configured(
        {**router_home, "NO_COLOR": "1"},
        f'primary: {primary}\nroutes:\n  "*.corp.example": {routed}\n  go.example: secretservice\n',
    )
    assert Helper(GO_SECRETSERVICE, env).store("go.example", "gopher", "g0").returncode == 0
    router = Helper(installation.executable("docker-credential-credbridge"), env)
    for server in ("registry.corp.example", "ghcr.io"):
        assert router.store(server, "alice", "s3cret").returncode == 0
        assert router.get(f"https://{server}/").returncode == 0
    assert router.get("missing.corp.example").returncode == 1
    assert router.get("missing.example").returncode == 1
    assert router.get("go.example").returncode == 0
    assert router.list().returncode == 0
    holder = {
        "registry.corp.example": routed,
        "missing.corp.example": routed,
        "ghcr.io": primary,
        "missing.example": primary,
        "go.example": "secretservice",
    }

    def recorded(action: str, server: str, outcome: str) -> tuple[str, str, str, str]:
        shown = hidden_name(server) if holder[server] == "cryptfile" else server
        return action, shown, f"credbridge>{holder[server]}", outcome

    state = Path(env["XDG_STATE_HOME"])
    records = audit_records(state)
    assert [(r["action"], r["registry"], r["store"], r["outcome"]) for r in records] == [
        recorded("store", "registry.corp.example", "ok"),
        recorded("get", "registry.corp.example", "found"),
        recorded("store", "ghcr.io", "ok"),
        recorded("get", "ghcr.io", "found"),
        recorded("get", "missing.corp.example", "not found"),
        recorded("get", "missing.example", "not found"),
        recorded("get", "go.example", "found"),
        ("list", "", "credbridge", "ok"),
    ]
    assert {record["helper"] for record in records} == {"docker-credential-credbridge"}
    log = (state / "credbridge" / "audit.log").read_bytes()
    for server, store in holder.items():
        assert (server.encode() in log) == (store != "cryptfile"), (server, log)

    table = credbridge(installation, env, "audit", "--registry", "ghcr.io")
    assert [line.split()[6] for line in table.stdout.splitlines()[1:]] == [f"credbridge>{primary}"] * 2, table
    python = os.path.basename(sys.executable)
    by_tool = credbridge(installation, env, "audit", "--tool", python, "--registry", "registry.corp.example", "--json")
    assert [(entry["action"], entry["store"]) for entry in json.loads(by_tool.stdout)] == [
        ("store", f"credbridge>{routed}"),
        ("get", f"credbridge>{routed}"),
    ], by_tool


def test_a_logout_after_a_new_route_names_no_registry_the_cryptfile_held(
    installation: Installation, router_home: dict[str, str]
) -> None:
    """A login kept in the cryptfile, then a route sending its registry to the keyring, the cryptfile still
    read: the logout erases it from both, so its name stays unspelled, though the route names the keyring."""
    env = configured(router_home, "primary: cryptfile\n")
    router = Helper(installation.executable("docker-credential-credbridge"), env)
    assert router.store("registry.corp.example", "alice", "s3cret").returncode == 0
    moved = 'primary: cryptfile\nroutes:\n  "*.corp.example": keyring\nread: [primary, cryptfile]\n'
    configured(router_home, moved)
    assert router.get("registry.corp.example").returncode == 0  # from the cryptfile, still read
    assert router.erase("registry.corp.example").returncode == 0
    assert router.get("registry.corp.example").returncode == 1
    log = (Path(env["XDG_STATE_HOME"]) / "credbridge" / "audit.log").read_text()
    assert [json.loads(line)["action"] for line in log.splitlines()] == ["store", "get", "erase", "get"]
    assert "registry.corp.example" not in log, log


def test_a_call_the_router_could_not_route_keeps_the_registry_hidden(
    installation: Installation, router_home: dict[str, str]
) -> None:
    """With a config it cannot read, no store vouches that the name may be spelled out."""
    from credbridge.audit import hidden_name

    env = configured(router_home, "primary: [cryptfile\n")  # not YAML
    router = Helper(installation.executable("docker-credential-credbridge"), env)
    assert router.get("unrouted.example").returncode == 1
    [record] = audit_records(Path(env["XDG_STATE_HOME"]))
    assert (record["registry"], record["store"], record["outcome"]) == (
        hidden_name("unrouted.example"),
        "credbridge",
        "error",
    ), record


# -- credbridge login, logout and list: the command asks the router itself ----------------------


def login(installation: Installation, env: dict[str, str], registry: str) -> subprocess.CompletedProcess[str]:
    """`credbridge login` as a script runs it: the token on stdin (no registry to check it against here)."""
    args = ("login", "--no-verify", "--password-stdin", "-u", "alice", registry)
    return credbridge(installation, env, *args, stdin="s3cret-t0ken\n")


def test_credbridge_login_logout_and_list_are_recorded_as_the_router_records_a_helper_call(
    installation: Installation, router_home: dict[str, str]
) -> None:
    """`credbridge logout` reads the login to tell whether there is one, then erases it: the log says both,
    and a logout that found nothing says it looked. The command asks and serves in one process: the tool is
    the command, found by `credbridge audit --tool credbridge`; the cryptfile's registries stay unnamed."""
    from credbridge.audit import hidden_name

    env = configured({**router_home, "NO_COLOR": "1"}, 'primary: keyring\nroutes:\n  "*.corp.example": cryptfile\n')
    hidden = hidden_name("registry.corp.example")
    assert login(installation, env, "ghcr.io").returncode == 0
    assert login(installation, env, "registry.corp.example").returncode == 0
    listed = credbridge(installation, env, "list")
    assert listed.returncode == 0 and "registry.corp.example" in listed.stdout, listed
    for registry in ("ghcr.io", "registry.corp.example", "ghcr.io"):
        logged_out = credbridge(installation, env, "logout", registry)
        assert logged_out.returncode == 0, logged_out
    assert logged_out.stdout == "Not logged in to ghcr.io\n", logged_out

    state = Path(env["XDG_STATE_HOME"])
    records = audit_records(state)
    assert [(r["tool"], r["action"], r["registry"], r["store"], r["outcome"]) for r in records] == [
        ("credbridge login", "store", "ghcr.io", "credbridge>keyring", "ok"),
        ("credbridge login", "store", hidden, "credbridge>cryptfile", "ok"),
        ("credbridge list", "list", "", "credbridge", "ok"),
        ("credbridge logout", "get", "ghcr.io", "credbridge>keyring", "found"),
        ("credbridge logout", "erase", "ghcr.io", "credbridge>keyring", "ok"),
        ("credbridge logout", "get", hidden, "credbridge>cryptfile", "found"),
        ("credbridge logout", "erase", hidden, "credbridge>cryptfile", "ok"),
        ("credbridge logout", "get", "ghcr.io", "credbridge>keyring", "not found"),
    ]
    for record in records:
        assert (record["helper"], record["served_by"]) == ("credbridge", "in process"), record
        assert record["tool_pid"] == record["helper_pid"] not in (0, os.getpid()), record
        assert record["tool_exe"] and record["tool_argv0"], record
        assert abs(record["time"] - time.time()) < 300, record
    assert len({record["tool_pid"] for record in records}) == 6  # one process per command
    log = (state / "credbridge" / "audit.log").read_bytes()
    for unsaid in (b"alice", b"s3cret-t0ken", b"corp"):
        assert unsaid not in log, (unsaid, log)
    by_tool = credbridge(installation, env, "audit", "--tool", "credbridge", "--json")
    assert len(json.loads(by_tool.stdout)) == len(records), by_tool


def test_a_login_the_locked_cryptfile_refuses_is_recorded_as_denied(
    installation: Installation, locked_env: dict[str, str], tmp_path: Path
) -> None:
    """The router's answer when the store holding the login refuses: denied, and the error reaches the person."""
    env = configured(
        {**locked_env, "HOME": str(tmp_path / "home"), "XDG_STATE_HOME": str(tmp_path / "state")},
        "primary: cryptfile\n",
    )
    refused = login(installation, env, "locked.example")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused
    [record] = audit_records(tmp_path / "state")
    assert (record["tool"], record["action"], record["store"], record["outcome"]) == (
        "credbridge login",
        "store",
        "credbridge>cryptfile",
        "denied",
    ), record


def test_audit_false_leaves_credbridge_login_logout_and_list_unrecorded_too(
    installation: Installation, router_home: dict[str, str]
) -> None:
    env = configured(router_home, "audit: false\n")
    assert login(installation, env, "quiet.example").returncode == 0
    assert credbridge(installation, env, "list").returncode == 0
    assert credbridge(installation, env, "logout", "quiet.example").returncode == 0
    assert credbridge(installation, env, "logout", "quiet.example").returncode == 0
    state = Path(env["XDG_STATE_HOME"])  # the router's other state (places-vm) may be there: no log
    assert not list(state.rglob("audit.log*")), list(state.rglob("*"))


# -- the real clients ------------------------------------------------------------------------


def test_the_real_clients_are_named_in_the_records_of_what_they_took(clients: Clients, registry: Registry) -> None:  # noqa: F811
    state = Path(clients.env["HOME"]) / ".local" / "state"
    done = docker_login(clients, registry)
    assert done.returncode == 0, explain(done)
    inspected = clients.skopeo("inspect", "--tls-verify=false", f"docker://{registry.test_image}")
    assert inspected.returncode == 0, explain(inspected)
    who = clients.podman("login", "--get-login", registry.host)
    assert who.returncode == 0, explain(who)
    [got] = docker_py(clients.env, ("get", registry.host))
    assert got["value"]["Secret"] == registry.password
    records = [record for record in audit_records(state) if record["registry"] == registry.host]
    python = os.path.basename(sys.executable)
    tools = {
        "docker": shutil.which("docker", path=clients.env["PATH"]),
        "skopeo": shutil.which("skopeo", path=clients.env["PATH"]),
        "podman": shutil.which("podman", path=clients.env["PATH"]),
        python: sys.executable,
    }
    seen = {(record["tool"], record["action"], record["outcome"]) for record in records}
    assert {
        ("docker", "store", "ok"),
        ("skopeo", "get", "found"),
        ("podman", "get", "found"),
        (python, "get", "found"),
    } <= seen, records
    for record in records:
        assert record["tool_exe"] == os.path.realpath(str(tools[record["tool"]])), record
    text = (state / "credbridge" / "audit.log").read_text()
    assert registry.password not in text and registry.username not in text


# -- rotation and concurrent writers ---------------------------------------------------------


def written_records(log: Path) -> list[dict]:
    """Every record of the log and its rotated files, oldest first."""

    def age(path: Path) -> int:
        return int(path.suffix[1:]) if path.suffix[1:].isdigit() else 0

    files = sorted(log.parent.glob("audit.log*"), key=age, reverse=True)
    return [json.loads(line) for path in files for line in path.read_text().splitlines()]


def test_a_full_log_is_rotated_keeping_the_newest_records_in_order(tmp_path: Path) -> None:
    from credbridge import audit

    log = tmp_path / "state" / "credbridge" / "audit.log"
    for number in range(40):
        audit.append(str(log), {"time": time.time(), "number": number, "padding": "x" * 100}, max_bytes=1000, keep=2)
    names = sorted(path.name for path in log.parent.iterdir())
    assert names == ["audit.log", "audit.log.1", "audit.log.2"]
    for path in log.parent.iterdir():
        assert path.stat().st_size <= 1000 and stat.S_IMODE(path.stat().st_mode) == 0o600
    numbers = [entry["number"] for entry in written_records(log)]
    assert numbers == list(range(40 - len(numbers), 40)) and len(numbers) >= 12


WRITER = """
import sys, time
from credbridge import audit
log, writer, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for number in range(count):
    audit.append(log, {"time": time.time(), "writer": writer, "number": number, "pad": "x" * 100},
                 max_bytes=8192, keep=100)
"""


def test_concurrent_writers_lose_no_record_across_rotations(tmp_path: Path) -> None:
    log = tmp_path / "state" / "credbridge" / "audit.log"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(log), str(writer), "50"]) for writer in range(8)]
    assert [writer.wait(timeout=120) for writer in writers] == [0] * 8
    entries = written_records(log)
    assert len(entries) == 400
    for writer in range(8):
        numbers = [entry["number"] for entry in entries if entry["writer"] == writer]
        assert numbers == list(range(50)), writer
    assert len(list(log.parent.glob("audit.log.*"))) >= 5  # rotated many times meanwhile
    assert all(path.stat().st_size <= 8192 for path in log.parent.glob("audit.log*"))


# -- credbridge audit and doctor ------------------------------------------------------------


def credbridge(
    installation: Installation, env: dict[str, str], *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [installation.executable("credbridge"), *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def registries_in_table(output: str) -> list[str]:
    """The REGISTRY column (the 6th word: TIME is a date and a time)."""
    return [line.split()[5] for line in output.splitlines()[1:]]


def test_credbridge_audit_shows_a_table_newest_last_and_filters_by_time_registry_and_tool(
    installation: Installation, keyring_helper: Helper, tmp_path: Path
) -> None:
    from credbridge import audit

    state = tmp_path / "state"
    helper = with_env(keyring_helper, XDG_STATE_HOME=str(state), NO_COLOR="1")
    two_hours_ago = {
        "time": time.time() - 7200,
        "action": "get",
        "registry": "old.example",
        "store": "keyring",
        "outcome": "found",
        "tool": "docker",
        "tool_exe": "/usr/bin/docker",
        "tool_argv0": "docker",
        "tool_pid": 1,
        "helper": "docker-credential-keyring",
        "helper_pid": 2,
        "served_by": "agent",
    }
    audit.append(str(state / "credbridge" / "audit.log"), two_hours_ago)
    assert helper.store("ghcr.io", "alice", "s3cret").returncode == 0
    assert helper.get("https://GHCR.io/").returncode == 0
    piped = run(["sh", "-c", f"printf other.example | {helper.path} get"], b"", helper.env)
    assert piped.returncode == 1, piped

    table = credbridge(installation, helper.env, "audit")
    assert table.returncode == 0, table
    header = table.stdout.splitlines()[0].split()
    assert header == ["TIME", "TOOL", "PID", "ACTION", "REGISTRY", "STORE", "OUTCOME", "VIA"]
    shown = registries_in_table(table.stdout)
    assert shown == ["old.example", "ghcr.io", "ghcr.io", "other.example"], table.stdout
    assert "alice" not in table.stdout and "s3cret" not in table.stdout

    recent = credbridge(installation, helper.env, "audit", "--since", "1h")
    assert registries_in_table(recent.stdout) == ["ghcr.io", "ghcr.io", "other.example"]
    ghcr = credbridge(installation, helper.env, "audit", "--registry", "https://GHCR.IO/", "--json")
    shown = [(entry["action"], entry["outcome"]) for entry in json.loads(ghcr.stdout)]
    assert shown == [("store", "ok"), ("get", "found")]
    by_shell = credbridge(installation, helper.env, "audit", "--tool", "sh", "--json")
    shown = [(entry["registry"], entry["outcome"], entry["tool_argv0"]) for entry in json.loads(by_shell.stdout)]
    assert shown == [("other.example", "not found", "sh")]
    by_docker = credbridge(installation, helper.env, "audit", "--tool", "docker", "--json")
    assert [entry["registry"] for entry in json.loads(by_docker.stdout)] == ["old.example"]
    wrong = credbridge(installation, helper.env, "audit", "--since", "yesterday")
    assert wrong.returncode == 2 and "30m, 1h" in wrong.stderr, wrong
    assert "Traceback" not in wrong.stderr


def test_doctor_says_when_the_audit_log_is_off(
    installation: Installation, keyring_helper: Helper, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("audit: false\n")
    env = {**keyring_helper.env, "CREDBRIDGE_CONFIG": str(config), "NO_COLOR": "1"}
    doctor = credbridge(installation, env, "doctor").stdout
    assert "audit: the audit log is off" in doctor, doctor
    assert f"remove `audit: false` from {config}" in doctor, doctor
    shown = credbridge(installation, {**env, "XDG_STATE_HOME": str(tmp_path / "state")}, "audit")
    assert shown.returncode == 0 and "the audit log is off" in shown.stdout, shown


def test_doctor_checks_the_log_without_making_it(
    installation: Installation, keyring_helper: Helper, tmp_path: Path
) -> None:
    """doctor only looks: run with another HOME (root helping a user, say), files it made would be root's
    and refuse the user's own records."""
    state = tmp_path / "state"
    env = {**keyring_helper.env, "XDG_STATE_HOME": str(state), "NO_COLOR": "1"}
    doctor = credbridge(installation, env, "doctor").stdout
    assert f"✔ audit: every credential served is recorded in {state / 'credbridge' / 'audit.log'}" in doctor
    assert not (state / "credbridge" / "audit.log").exists()


@pytest.mark.parametrize("plant", ["directory", "fifo", "symlink"])
def test_a_log_that_cannot_be_written_never_fails_a_call_and_doctor_names_it_with_the_fix(
    installation: Installation, keyring_helper: Helper, tmp_path: Path, plant: str
) -> None:
    """The hole in the audit trail is not silent: a debug line at the call, and `credbridge doctor`
    names it and a command that mends it (root, which these tests run as, ignores modes: these
    plants refuse even root)."""
    state = tmp_path / "state"
    log = state / "credbridge" / "audit.log"
    log.parent.mkdir(parents=True, mode=0o700)
    if plant == "directory":
        log.mkdir()
    elif plant == "fifo":
        os.mkfifo(log, 0o600)
    else:
        log.symlink_to(tmp_path / "elsewhere")
    helper = with_env(keyring_helper, XDG_STATE_HOME=str(state), NO_COLOR="1")
    assert helper.store("hole.example", "u", "s").returncode == 0
    debugged = with_env(helper, CREDBRIDGE_DEBUG="1").get("hole.example")
    assert debugged.returncode == 0, debugged
    assert f"audit record not written path={str(log)!r}" in debugged.stderr.decode(), debugged.stderr

    doctor = credbridge(installation, helper.env, "doctor")
    lines = doctor.stdout.splitlines()
    [problem] = [number for number, line in enumerate(lines) if line.startswith("! audit: ")]
    assert f"no record of who takes which credential can be written to {log}" in lines[problem], doctor.stdout
    assert lines[problem + 1].startswith("    fix: "), doctor.stdout
    fix = lines[problem + 1].removeprefix("    fix: ")
    assert fix in (f"rmdir {log}", f"rm {log}"), fix
    mended = run(["sh", "-c", fix], b"", helper.env)
    assert mended.returncode == 0, mended

    assert helper.get("hole.example").returncode == 0
    assert [record["action"] for record in audit_records(state)] == ["get"]
    doctor = credbridge(installation, helper.env, "doctor").stdout
    assert f"✔ audit: every credential served is recorded in {log}" in doctor, doctor


def test_a_planted_log_neither_receives_records_nor_blocks_a_call(keyring_helper: Helper, tmp_path: Path) -> None:
    """Attacker's side: audit.log made a symlink to a victim file, or a FIFO nobody reads."""
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    for plant in ("symlink", "fifo"):
        state = tmp_path / plant
        (state / "credbridge").mkdir(parents=True, mode=0o700)
        log = state / "credbridge" / "audit.log"
        if plant == "symlink":
            log.symlink_to(victim)
        else:
            os.mkfifo(log, 0o600)
        helper = with_env(keyring_helper, XDG_STATE_HOME=str(state))
        started = time.monotonic()
        assert helper.store("planted.example", "u", "s").returncode == 0
        assert helper.get("planted.example").returncode == 0
        assert time.monotonic() - started < 60, plant
    assert victim.read_text() == "untouched\n"
