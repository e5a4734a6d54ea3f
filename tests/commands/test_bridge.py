"""`credbridge authfile` and `credbridge exec`: encrypted credentials for programs that can only read a file.

The source store is the installed docker-credential-cryptfile served by the
agent (once, Go's docker-credential-secretservice on the private keyring:
the bridge speaks only the helper protocol). The readers of the bridged file
are real: skopeo (REGISTRY_AUTH_FILE) and docker CLI (DOCKER_CONFIG) against
the password-protected docker-registry. SingularityCE and Apptainer, the
programs this exists for, are not packaged in Debian bookworm and are not run
here; they read the same file through SINGULARITY_AUTHFILE,
APPTAINER_AUTH_FILE and APPTAINER_AUTHFILE.

The command under `exec` is a small Python program (CHILD) that reports what
it was given, then exits with a chosen status, records the signals it gets,
or sleeps until a signal kills it.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

from tests.clients.test_real_clients import explain, program, secret_forms
from tests.conftest import GO_SECRETSERVICE, Helper, Installation, cryptfile_env, keyring_env
from tests.support.process import Result, run
from tests.support.registry import Registry

SERVER, USERNAME, SECRET = "bridge-registry.example:5000", "bridge-user", "bridge-secret-<&>"
HUB, HUB_USERNAME, HUB_SECRET = "https://index.docker.io/v1/", "hub-user", "hub-secret"
TOKEN_SERVER, IDENTITY_TOKEN = "token-registry.example", "identity-token-xyz"
AUTHFILE_VARIABLES = ("APPTAINER_AUTH_FILE", "APPTAINER_AUTHFILE", "SINGULARITY_AUTHFILE", "REGISTRY_AUTH_FILE")
WAIT_SECONDS = 30

CHILD = r"""
import json, os, select, signal, sys, time

report, action = sys.argv[1], sys.argv[2]
authfile = os.environ["REGISTRY_AUTH_FILE"]
facts = {
    "pid": os.getpid(),
    "env": {name: os.environ.get(name) for name in sys.argv[3:]},
    "file_mode": os.stat(authfile).st_mode & 0o777,
    "dir_mode": os.stat(os.environ["DOCKER_CONFIG"]).st_mode & 0o777,
    "content": open(authfile).read(),
    "docker_config_json": open(os.path.join(os.environ["DOCKER_CONFIG"], "config.json")).read(),
}
if action == "trap-apart":
    os.setpgid(0, 0)  # out of the terminal's foreground group: only what exec passes on reaches us
if action.startswith("trap"):
    reader, writer = os.pipe()
    os.set_blocking(writer, False)
    signal.set_wakeup_fd(writer)  # one byte per delivery: a signal delivered twice is counted twice
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: None)
if action == "sleep":
    # Die of SIGINT even when the test run was started with it ignored (`tests/run &` in a script):
    # exec rightly leaves an inherited SIG_IGN alone, as a shell does. Set before reporting, when signals may come.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
with open(report + ".tmp", "w") as out:
    json.dump(facts, out)
os.rename(report + ".tmp", report)
if action.startswith("trap"):
    select.select([reader], [], [])
    time.sleep(0.5)  # a second signal would arrive by now
    with open(report + ".signals", "w") as out:
        out.write(" ".join(signal.Signals(signum).name for signum in os.read(reader, 64)))
    sys.exit(7)
if action == "sleep":
    time.sleep(120)
sys.exit(int(action))
"""


@dataclass(frozen=True)
class Bridge:
    """The installed credbridge in a session whose docker config names cryptfile as credsStore."""

    installation: Installation
    env: dict[str, str]
    tmp_path: Path

    def credbridge(self, *args: str, env: Optional[dict[str, str]] = None) -> Result:
        return run([self.installation.executable("credbridge"), *args], b"", env or self.env)

    def login(self, server: str, username: str, secret: str) -> None:
        stored = Helper(self.installation.executable("docker-credential-cryptfile"), self.env).store(
            server, username, secret
        )
        assert stored.returncode == 0, stored.text

    def start_exec(self, action: str, *exec_args: str, **popen: object) -> "Running":
        """`credbridge exec [exec_args] -- CHILD action`; the child reports to a file under tmp_path."""
        report = self.tmp_path / f"report-{time.monotonic_ns()}.json"
        argv = [
            self.installation.executable("credbridge"),
            "exec",
            *exec_args,
            "--",
            sys.executable,
            "-c",
            CHILD,
            str(report),
            action,
            *AUTHFILE_VARIABLES,
            "DOCKER_CONFIG",
        ]
        popen = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
        return Running(subprocess.Popen(argv, env=self.env, **popen), report)

    def exec_dirs(self) -> set[Path]:
        return set((Path(self.env["XDG_RUNTIME_DIR"]) / "credbridge").glob("exec-*"))


@dataclass(frozen=True)
class Running:
    """A `credbridge exec` process and the report its command writes."""

    process: subprocess.Popen
    report: Path

    def facts(self) -> dict:
        """What the command reported once it started; fails if credbridge ended first."""
        wait_until(lambda: self.report.exists() or self.process.poll() is not None, "the command to start")
        assert self.report.exists(), self.explain()
        return json.loads(self.report.read_text())

    def finish(self) -> int:
        self.process.wait(timeout=WAIT_SECONDS)
        return self.process.returncode

    def signals_received(self) -> list[str]:
        path = Path(f"{self.report}.signals")
        return path.read_text().split() if path.exists() else []

    def explain(self) -> str:
        if self.process.poll() is None or self.process.stdout is None:
            return "credbridge exec still running"
        return (
            f"rc={self.process.returncode} stdout={self.process.stdout.read()!r} stderr={self.process.stderr.read()!r}"
        )


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def bridge(request: pytest.FixtureRequest, installation: Installation, tmp_path: Path) -> Bridge:
    """A fresh unlocked cryptfile, served by the agent, named by `credsStore` in DOCKER_CONFIG."""
    env = cryptfile_env(request, "agent")
    docker_config = tmp_path / "docker"
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps({"credsStore": "cryptfile"}))
    return Bridge(installation, {**env, "DOCKER_CONFIG": str(docker_config)}, tmp_path)


@pytest.fixture
def logged_in(bridge: Bridge) -> Bridge:
    """Three logins: user and password, Docker Hub as docker CLI names it, an identity token."""
    bridge.login(SERVER, USERNAME, SECRET)
    bridge.login(HUB, HUB_USERNAME, HUB_SECRET)
    bridge.login(TOKEN_SERVER, "<token>", IDENTITY_TOKEN)
    return bridge


def basic(username: str, secret: str) -> str:
    return base64.b64encode(f"{username}:{secret}".encode()).decode()


def assert_one_line_error(result: Result, *words: str) -> None:
    assert result.returncode == 1, explain_result(result)
    assert result.stdout == b"", explain_result(result)
    assert result.stderr.startswith(b"credbridge: ") and result.stderr.count(b"\n") == 1, explain_result(result)
    for word in words:
        assert word.encode() in result.stderr, explain_result(result)


def explain_result(result: Result) -> str:
    return f"rc={result.returncode} stdout={result.stdout!r} stderr={result.stderr!r}"


# -- authfile: content --------------------------------------------------------------


def test_authfile_holds_every_login_as_docker_writes_config_json(logged_in: Bridge) -> None:
    """Tab-indented, keys sorted, `auth` = base64(user:secret), `<token>` logins as `identitytoken`."""
    result = logged_in.credbridge("authfile")
    assert (result.returncode, result.stderr) == (0, b""), explain_result(result)
    assert result.stdout.decode() == (
        "{\n"
        '\t"auths": {\n'
        f'\t\t"{SERVER}": {{\n'
        f'\t\t\t"auth": "{basic(USERNAME, SECRET)}"\n'
        "\t\t},\n"
        f'\t\t"{HUB}": {{\n'
        f'\t\t\t"auth": "{basic(HUB_USERNAME, HUB_SECRET)}"\n'
        "\t\t},\n"
        f'\t\t"{TOKEN_SERVER}": {{\n'
        f'\t\t\t"identitytoken": "{IDENTITY_TOKEN}"\n'
        "\t\t}\n"
        "\t}\n"
        "}"
    )


def test_authfile_for_named_registries_holds_only_those_under_their_stored_keys(logged_in: Bridge) -> None:
    """`docker.io` finds Docker Hub's login, which keeps docker CLI's key; other spellings match as in the stores."""
    result = logged_in.credbridge("authfile", "docker.io", "BRIDGE-registry.example:5000/")
    assert result.returncode == 0, explain_result(result)
    assert json.loads(result.stdout) == {
        "auths": {
            HUB: {"auth": basic(HUB_USERNAME, HUB_SECRET)},
            SERVER: {"auth": basic(USERNAME, SECRET)},
        }
    }


def test_authfile_of_an_empty_store_has_no_auths(bridge: Bridge) -> None:
    result = bridge.credbridge("authfile")
    assert (result.returncode, result.stdout) == (0, b'{\n\t"auths": {}\n}'), explain_result(result)


def test_authfile_is_byte_for_byte_what_docker_login_writes(bridge: Bridge, registry: Registry) -> None:
    """docker CLI with no helper to find writes its plaintext config.json; ours must not differ by a byte."""
    docker_config = bridge.tmp_path / "plain-docker"
    docker_config.mkdir()
    env = {"HOME": str(bridge.tmp_path), "PATH": "/nonexistent", "DOCKER_CONFIG": str(docker_config)}
    login = subprocess.run(
        [program("docker", bridge.env), "login", registry.host, "-u", registry.username, "--password-stdin"],
        input=registry.password,
        capture_output=True,
        text=True,
        env=env,
        timeout=WAIT_SECONDS,
    )
    assert login.returncode == 0, explain(login)
    bridge.login(registry.host, registry.username, registry.password)

    result = bridge.credbridge("authfile", registry.host)
    assert result.returncode == 0, explain_result(result)
    assert result.stdout == (docker_config / "config.json").read_bytes()


def test_authfile_reads_any_helper_such_as_go_secretservice(
    request: pytest.FixtureRequest, installation: Installation
) -> None:
    env = keyring_env(request, "direct")
    stored = Helper(GO_SECRETSERVICE, env).store(SERVER, USERNAME, SECRET)
    assert stored.returncode == 0, stored.text
    result = run([installation.executable("credbridge"), "authfile", "--store", "secretservice"], b"", env)
    assert result.returncode == 0, explain_result(result)
    assert json.loads(result.stdout) == {"auths": {SERVER: {"auth": basic(USERNAME, SECRET)}}}


# -- authfile: where it goes ----------------------------------------------------------


def test_authfile_output_file_is_0600_and_alone_in_its_directory(logged_in: Bridge) -> None:
    """No `.lock` or temporary file stays beside it: the user asked for one file."""
    output = logged_in.tmp_path / "private" / "auth.json"
    output.parent.mkdir(mode=0o700)
    result = logged_in.credbridge("authfile", "-o", str(output), SERVER)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), explain_result(result)
    assert json.loads(output.read_text()) == {"auths": {SERVER: {"auth": basic(USERNAME, SECRET)}}}
    assert output.stat().st_mode & 0o777 == 0o600
    assert os.listdir(output.parent) == ["auth.json"]


def test_authfile_into_a_missing_directory_is_one_line_naming_it_and_creates_nothing(logged_in: Bridge) -> None:
    missing = logged_in.tmp_path / "nonexistent" / "dir"
    result = logged_in.credbridge("authfile", "-o", str(missing / "x.json"))
    assert_one_line_error(result, f"{missing} does not exist", f"mkdir -m 700 -p {missing}")
    assert not missing.parent.exists()


def test_authfile_refuses_to_print_secrets_on_a_terminal(logged_in: Bridge) -> None:
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [logged_in.installation.executable("credbridge"), "authfile"],
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=subprocess.PIPE,
            env=logged_in.env,
            timeout=WAIT_SECONDS,
        )
        os.set_blocking(controller, False)
        try:
            shown = os.read(controller, 65536)
        except BlockingIOError:
            shown = b""
    finally:
        os.close(controller)
        os.close(terminal)
    assert done.returncode == 1 and shown == b""
    assert done.stderr.count(b"\n") == 1 and b"refusing to print credentials on a terminal" in done.stderr
    assert b"-o FILE" in done.stderr


# -- authfile and exec: errors --------------------------------------------------------


def test_a_registry_without_credentials_is_one_line_error_and_writes_nothing(logged_in: Bridge) -> None:
    output = logged_in.tmp_path / "auth.json"
    result = logged_in.credbridge("authfile", "-o", str(output), SERVER, "unknown.example")
    assert_one_line_error(result, "docker-credential-cryptfile has no credentials for unknown.example")
    assert not output.exists()

    before = logged_in.exec_dirs()
    running = logged_in.start_exec("0", "--registry", "unknown.example")
    assert running.finish() == 1
    assert not running.report.exists(), "the command ran without its credentials"
    assert b"no credentials for unknown.example" in running.process.stderr.read()
    assert logged_in.exec_dirs() == before


def test_the_store_defaults_to_credsStore_and_without_one_to_the_router(logged_in: Bridge) -> None:
    """One login, every tool: with nothing configured, the router finds the logins wherever they are."""
    named = logged_in.credbridge("authfile", "--store", "cryptfile")
    assert logged_in.credbridge("authfile").stdout == named.stdout != b""

    Path(logged_in.env["DOCKER_CONFIG"], "config.json").write_text('{"auths": {}}')
    routed = logged_in.credbridge("authfile")
    assert (routed.returncode, routed.stdout) == (0, named.stdout), explain_result(routed)
    running = logged_in.start_exec("0")
    assert running.facts()["content"].encode() == named.stdout
    assert running.finish() == 0, running.explain()


def test_a_failing_helper_is_one_line_naming_it_and_its_message(logged_in: Bridge) -> None:
    copy = logged_in.tmp_path / "other" / "credentials.cbf"
    copy.parent.mkdir(mode=0o700)
    copy.write_bytes(Path(logged_in.env["CREDBRIDGE_CRYPTFILE"]).read_bytes())
    never_unlocked = {**logged_in.env, "CREDBRIDGE_CRYPTFILE": str(copy)}
    assert_one_line_error(
        logged_in.credbridge("authfile", env=never_unlocked),
        "docker-credential-cryptfile list failed: cryptfile is locked: run 'credbridge unlock'",
    )
    assert_one_line_error(
        logged_in.credbridge("authfile", "--store", "nonesuch"), "docker-credential-nonesuch is not on PATH"
    )


def test_exec_of_a_missing_command_exits_127_like_a_shell(logged_in: Bridge) -> None:
    before = logged_in.exec_dirs()
    result = logged_in.credbridge("exec", "--", "no-such-command-anywhere")
    assert (result.returncode, result.stdout) == (127, b"")
    assert result.stderr == b"credbridge: no-such-command-anywhere: command not found\n"
    assert logged_in.exec_dirs() == before


# -- exec: what the command gets ------------------------------------------------------


def test_exec_gives_the_command_a_private_authfile_through_every_variable(logged_in: Bridge) -> None:
    running = logged_in.start_exec("0")
    facts = running.facts()
    assert running.finish() == 0, running.explain()

    directory = Path(facts["env"]["DOCKER_CONFIG"])
    assert directory.parent == Path(logged_in.env["XDG_RUNTIME_DIR"]) / "credbridge"
    assert directory.name.startswith(f"exec-{running.process.pid}-")
    authfile = facts["env"]["REGISTRY_AUTH_FILE"]
    assert re.fullmatch(rf"/proc/{running.process.pid}/fd/\d+", authfile), authfile
    assert facts["env"] == {**dict.fromkeys(AUTHFILE_VARIABLES, authfile), "DOCKER_CONFIG": str(directory)}
    assert (facts["file_mode"], facts["dir_mode"]) == (0o600, 0o700)
    assert facts["content"].encode() == facts["docker_config_json"].encode() == logged_in.credbridge("authfile").stdout
    assert not directory.exists()


@pytest.mark.parametrize("status", [0, 3])
def test_exec_passes_the_exit_status_through_and_removes_the_file(logged_in: Bridge, status: int) -> None:
    running = logged_in.start_exec(str(status))
    directory = Path(running.facts()["env"]["DOCKER_CONFIG"])
    assert running.finish() == status, running.explain()
    assert not directory.exists()


def test_no_secret_in_the_argv_or_environment_of_the_command_or_of_exec(logged_in: Bridge) -> None:
    running = logged_in.start_exec("trap")
    child = running.facts()["pid"]
    try:
        for pid in (child, running.process.pid):
            for name in ("cmdline", "environ"):
                data = Path(f"/proc/{pid}/{name}").read_bytes()
                for username, secret in ((USERNAME, SECRET), (HUB_USERNAME, HUB_SECRET), ("<token>", IDENTITY_TOKEN)):
                    for form in secret_forms(username, secret):
                        assert form not in data, f"/proc/{pid}/{name} holds a secret ({form!r})"
    finally:
        running.process.send_signal(signal.SIGTERM)
        running.finish()


# -- exec: however the command ends ---------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_to_exec_reaches_the_command_once_and_the_file_is_removed(
    logged_in: Bridge, signum: signal.Signals
) -> None:
    running = logged_in.start_exec("trap")
    directory = Path(running.facts()["env"]["DOCKER_CONFIG"])
    running.process.send_signal(signum)
    assert running.finish() == 7, running.explain()
    assert running.signals_received() == [signum.name]
    assert not directory.exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_command_killed_by_a_signal_gives_128_plus_its_number(logged_in: Bridge, signum: signal.Signals) -> None:
    running = logged_in.start_exec("sleep")
    directory = Path(running.facts()["env"]["DOCKER_CONFIG"])
    running.process.send_signal(signum)
    assert running.finish() == 128 + signum, running.explain()
    assert not directory.exists()


@contextmanager
def controlling_terminal() -> Iterator[tuple[int, dict[str, object]]]:
    """A pty, and the Popen arguments that make it the controlling terminal of a new session."""
    controller, terminal = pty.openpty()
    try:
        yield (
            controller,
            {
                "stdin": terminal,
                "stdout": terminal,
                "stderr": terminal,
                "start_new_session": True,
                "preexec_fn": lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
            },
        )
    finally:
        os.close(controller)
        os.close(terminal)


def press_ctrl_c(controller: int) -> None:
    """Type Ctrl-C and return once the terminal has sent SIGINT (it echoes `^C` right after)."""
    os.write(controller, b"\x03")
    echoed = b""
    while b"^C" not in echoed:
        assert select.select([controller], [], [], WAIT_SECONDS)[0], f"no ^C echoed, only {echoed!r}"
        echoed += os.read(controller, 4096)


def test_ctrl_c_at_the_terminal_ends_the_command_and_removes_the_file(logged_in: Bridge) -> None:
    with controlling_terminal() as (controller, popen):
        running = logged_in.start_exec("trap", **popen)
        directory = Path(running.facts()["env"]["DOCKER_CONFIG"])
        press_ctrl_c(controller)
        assert running.finish() == 7
    assert running.signals_received() == ["SIGINT"]
    assert not directory.exists()


def test_ctrl_c_at_the_terminal_is_not_passed_on_a_second_time(logged_in: Bridge) -> None:
    """The terminal signals its whole foreground group, the command included: exec must not send SIGINT again.

    The command leaves that group, so whatever reaches it came from exec;
    a SIGTERM sent afterwards shows that exec does pass on a `kill`.
    """
    with controlling_terminal() as (controller, popen):
        running = logged_in.start_exec("trap-apart", **popen)
        running.facts()
        press_ctrl_c(controller)
        running.process.send_signal(signal.SIGTERM)
        assert running.finish() == 7
    assert running.signals_received() == ["SIGTERM"]


@pytest.mark.parametrize("next_command", [["exec", "--", "true"], ["authfile"]], ids=["exec", "authfile"])
def test_the_directory_of_a_sigkilled_exec_is_removed_by_the_next_run(
    logged_in: Bridge, next_command: list[str]
) -> None:
    """Its watcher removes it at once; when the watcher was killed too (a job's whole cgroup), the next run does."""
    running = logged_in.start_exec("trap")
    facts = running.facts()
    directory = Path(facts["env"]["DOCKER_CONFIG"])
    pid = running.process.pid
    children = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for watcher in (child for child in children if child != facts["pid"]):
        os.kill(watcher, signal.SIGKILL)
    running.process.send_signal(signal.SIGKILL)
    running.finish()
    os.kill(facts["pid"], signal.SIGKILL)  # the orphaned command, which exec could not reach
    assert directory.exists()

    assert logged_in.credbridge(*next_command).returncode == 0
    assert not directory.exists()


# -- real clients read the bridged file ------------------------------------------------


def test_skopeo_under_exec_reads_the_bridged_registry_auth_file(logged_in: Bridge, registry: Registry) -> None:
    inspect = [program("skopeo", logged_in.env), "inspect", "--tls-verify=false", f"docker://{registry.test_image}"]
    without = subprocess.run(inspect, capture_output=True, text=True, env=logged_in.env, timeout=WAIT_SECONDS)
    assert without.returncode != 0 and "unauthorized" in without.stderr.lower(), explain(without)

    logged_in.login(registry.host, registry.username, registry.password)
    result = logged_in.credbridge("exec", "--", *inspect)
    assert result.returncode == 0, explain_result(result)
    assert json.loads(result.stdout)["Name"] == f"{registry.host}/test/hello"


def test_skopeo_started_by_the_command_with_its_descriptors_closed_reads_the_authfile(
    logged_in: Bridge, registry: Registry
) -> None:
    """Python's subprocess (like sudo) closes what it inherited: the authfile must not depend on a descriptor."""
    logged_in.login(registry.host, registry.username, registry.password)
    inspect = [program("skopeo", logged_in.env), "inspect", "--tls-verify=false", f"docker://{registry.test_image}"]
    script = f"import subprocess, sys; sys.exit(subprocess.run({inspect!r}, close_fds=True).returncode)"
    result = logged_in.credbridge("exec", "--", sys.executable, "-c", script)
    assert result.returncode == 0, explain_result(result)
    assert json.loads(result.stdout)["Name"] == f"{registry.host}/test/hello"


def test_skopeo_copies_with_an_authfile_written_by_credbridge(logged_in: Bridge, registry: Registry) -> None:
    logged_in.login(registry.host, registry.username, registry.password)
    authfile = logged_in.tmp_path / "private" / "auth.json"
    authfile.parent.mkdir(mode=0o700)
    assert logged_in.credbridge("authfile", "-o", str(authfile), registry.host).returncode == 0

    copy_dir = logged_in.tmp_path / "copied"
    copied = subprocess.run(
        [
            program("skopeo", logged_in.env),
            "copy",
            "--src-tls-verify=false",
            f"docker://{registry.test_image}",
            f"dir:{copy_dir}",
        ],
        capture_output=True,
        text=True,
        env={**logged_in.env, "REGISTRY_AUTH_FILE": str(authfile)},
        timeout=WAIT_SECONDS,
    )
    assert copied.returncode == 0, explain(copied)
    assert len(json.loads((copy_dir / "manifest.json").read_text())["layers"]) == 1


def test_docker_cli_under_exec_reads_the_bridged_docker_config(logged_in: Bridge, registry: Registry) -> None:
    """`docker manifest inspect` talks to the registry itself: no daemon needed, credentials from DOCKER_CONFIG."""
    inspect = [program("docker", logged_in.env), "manifest", "inspect", "--insecure", registry.test_image]
    without = subprocess.run(inspect, capture_output=True, text=True, env=logged_in.env, timeout=WAIT_SECONDS)
    assert without.returncode != 0 and "no basic auth credentials" in without.stderr, explain(without)

    logged_in.login(registry.host, registry.username, registry.password)
    result = logged_in.credbridge("exec", "--registry", registry.host, "--", *inspect)
    assert result.returncode == 0, explain_result(result)
    assert len(json.loads(result.stdout)["layers"]) == 1


def test_docker_py_under_exec_reads_the_bridged_docker_config(logged_in: Bridge) -> None:
    """docker-py reads DOCKER_CONFIG/config.json itself (it has no REGISTRY_AUTH_FILE)."""
    script = (
        "import docker.auth, json; config = docker.auth.load_config(); "
        f"print(json.dumps(docker.auth.resolve_authconfig(config, {SERVER!r})))"
    )
    result = logged_in.credbridge("exec", "--registry", SERVER, "--", sys.executable, "-c", script)
    assert result.returncode == 0, explain_result(result)
    found = json.loads(result.stdout)
    assert (found["username"], found["password"]) == (USERNAME, SECRET)
