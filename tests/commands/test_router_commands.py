"""credbridge login / logout / list / config / doctor: the router's logins as a person manages them.

Against the real registry (htpasswd on 127.0.0.1), the private keyring and
a real cryptfile; doctor reads the real tools' files and PATH.
"""

from __future__ import annotations

import base64
import json
import os
import pty
import shutil
import subprocess
from pathlib import Path

import pytest

from credbridge.commands import cli
from tests.conftest import SERVING, Helper, Installation, router_env
from tests.support.process import Result, run
from tests.support.registry import Registry


@pytest.fixture(params=SERVING)
def env(request: pytest.FixtureRequest) -> dict[str, str]:
    return router_env(routed=False)(request, request.param)


def credbridge(installation: Installation, env: dict[str, str], *args: str, stdin: str = "") -> Result:
    return run([installation.executable("credbridge"), *args], stdin, env, timeout=60)


def logged_in(installation: Installation, env: dict[str, str], registry: Registry) -> Result:
    return credbridge(
        installation,
        env,
        "login",
        "--password-stdin",
        "-u",
        registry.username,
        registry.host,
        stdin=registry.password + "\n",
    )


# -- login / logout / list --------------------------------------------------------------------------


def test_login_checks_the_password_with_the_registry_then_keeps_it_in_the_primary_store(
    installation: Installation, env: dict[str, str], registry: Registry
) -> None:
    done = logged_in(installation, env, registry)
    assert done.returncode == 0, done.stderr
    assert done.text == f"Login Succeeded ({registry.host} as {registry.username}, kept in keyring)\n"
    stored = Helper(installation.executable("docker-credential-keyring"), env).get(registry.host)
    assert json.loads(stored.stdout)["Secret"] == registry.password


def test_a_wrong_password_is_refused_and_nothing_is_stored(
    installation: Installation, env: dict[str, str], registry: Registry
) -> None:
    done = credbridge(
        installation,
        env,
        "login",
        "--password-stdin",
        "-u",
        registry.username,
        registry.host,
        stdin="not-the-password\n",
    )
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode() == f"credbridge: the registry {registry.host} refused the username or password\n"
    assert credbridge(installation, env, "list", "--json").text == "[]\n"


def test_an_unreachable_registry_is_one_line_unless_no_verify(installation: Installation, env: dict[str, str]) -> None:
    unreachable = "127.0.0.1:9"  # discard port: nothing listens
    done = credbridge(installation, env, "login", "--password-stdin", "-u", "alice", unreachable, stdin="pw\n")
    assert done.returncode == 1
    assert done.stderr.decode().startswith("credbridge: cannot reach the registry (https://127.0.0.1:9/v2/: ")
    assert done.stderr.decode().count("\n") == 1
    kept = credbridge(
        installation, env, "login", "--no-verify", "--password-stdin", "-u", "alice", unreachable, stdin="pw\n"
    )
    assert kept.returncode == 0, kept.stderr


def test_list_shows_registry_user_and_store_as_a_table_or_json(
    installation: Installation, env: dict[str, str], registry: Registry
) -> None:
    assert logged_in(installation, env, registry).returncode == 0
    apptainer = Path(env["HOME"]) / ".apptainer"
    apptainer.mkdir(mode=0o700)
    (apptainer / "docker-config.json").write_text(
        json.dumps({"auths": {"apptainer.example": {"auth": base64.b64encode(b"carol:pw").decode()}}})
    )
    table = credbridge(installation, env, "list").text.splitlines()
    assert table[0].split() == ["REGISTRY", "USER", "STORE"]
    assert sorted(line.split() for line in table[1:]) == [
        [registry.host, registry.username, "keyring"],
        ["apptainer.example", "carol", "apptainer"],
    ]
    assert json.loads(credbridge(installation, env, "list", "--json").stdout) == [
        {"registry": registry.host, "username": registry.username, "store": "keyring", "kind": "registry"},
        {"registry": "apptainer.example", "username": "carol", "store": "apptainer", "kind": "registry"},
    ]


def test_docker_hub_logins_are_keyed_as_docker_login_keys_them(installation: Installation, env: dict[str, str]) -> None:
    done = credbridge(installation, env, "login", "--no-verify", "--password-stdin", "-u", "alice", stdin="pw\n")
    assert done.text == "Login Succeeded (https://index.docker.io/v1/ as alice, kept in keyring)\n"
    assert (
        json.loads(credbridge(installation, env, "list", "--json").stdout)[0]["registry"]
        == "https://index.docker.io/v1/"
    )
    assert (
        credbridge(installation, env, "logout", "docker.io").text
        == "Removed the login for https://index.docker.io/v1/\n"
    )


def test_logout_removes_the_login_and_a_second_logout_is_not_an_error(
    installation: Installation, env: dict[str, str], registry: Registry
) -> None:
    assert logged_in(installation, env, registry).returncode == 0
    first = credbridge(installation, env, "logout", registry.host)
    assert (first.returncode, first.text) == (0, f"Removed the login for {registry.host}\n")
    second = credbridge(installation, env, "logout", registry.host)
    assert (second.returncode, second.text) == (0, f"Not logged in to {registry.host}\n")


def test_password_stdin_needs_a_username_and_no_terminal_means_no_prompt(
    installation: Installation, env: dict[str, str]
) -> None:
    no_user = credbridge(installation, env, "login", "--password-stdin", "r.example", stdin="pw\n")
    assert no_user.stderr == b"credbridge: --password-stdin needs --username: stdin carries only the password\n"
    no_tty = credbridge(installation, env, "login", "-u", "alice", "r.example")
    assert no_tty.stderr == b"credbridge: no terminal to ask for the password: use --password-stdin\n"


def test_every_command_has_help_with_examples(installation: Installation) -> None:
    commands = credbridge(installation, {"PATH": os.environ["PATH"]}, "--help").text
    listed = commands.split("{", 1)[1].split("}", 1)[0].split(",")
    assert sorted(listed) == sorted(cli.EXAMPLES)
    for command in listed:
        done = credbridge(installation, {"PATH": os.environ["PATH"]}, command, "--help")
        assert done.returncode == 0 and done.text.startswith(f"usage: credbridge {command}"), command
        assert f"examples:\n  credbridge {command}" in done.text or f"| credbridge {command}" in done.text, command


# -- config ---------------------------------------------------------------------------------------


def test_config_shows_the_default_primary_and_why(installation: Installation, env: dict[str, str]) -> None:
    shown = credbridge(installation, env, "config").text
    assert "(absent: defaults apply)" in shown
    assert "primary:     keyring (default: a Secret Service runs on the session bus)" in shown
    assert "read order:  environment -> primary -> apptainer -> singularity" in shown
    headless = {name: value for name, value in env.items() if name != "DBUS_SESSION_BUS_ADDRESS"}
    assert json.loads(credbridge(installation, headless, "config", "--json").stdout)["primary"] == "cryptfile"


def test_config_shows_routes_and_credential_variable_names_never_values(
    installation: Installation, env: dict[str, str]
) -> None:
    config = Path(env["HOME"]) / ".config" / "credbridge" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text('primary: cryptfile\nroutes:\n  "*.corp.example": keyring\n')
    shown = credbridge(installation, {**env, "DOCKER_USERNAME": "ci", "DOCKER_PASSWORD": "hunter2-secret"}, "config")
    assert "routes:      *.corp.example -> keyring" in shown.text
    assert "primary:     cryptfile (set in the config file)" in shown.text
    assert "DOCKER_PASSWORD, DOCKER_USERNAME" in shown.text and "hunter2" not in shown.text


# -- doctor ---------------------------------------------------------------------------------------


def doctor(installation: Installation, env: dict[str, str], *args: str) -> Result:
    return credbridge(installation, env, "doctor", *args)


def checks(result: Result) -> dict[str, list[dict[str, str]]]:
    by_topic: dict[str, list[dict[str, str]]] = {}
    for check in json.loads(result.stdout)["checks"]:
        by_topic.setdefault(check["topic"], []).append(check)
    return by_topic


def test_doctor_finds_plaintext_logins_and_loose_modes_and_names_the_fix(
    installation: Installation, env: dict[str, str]
) -> None:
    config = Path(env["HOME"]) / ".docker" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"auths": {"r.example": {"auth": base64.b64encode(b"alice:pw").decode()}}}))
    config.chmod(0o644)
    result = doctor(installation, env, "--json")
    assert result.returncode == 1
    found = checks(result)
    assert found["plaintext"] == [
        {
            "topic": "plaintext",
            "status": "fail",
            "fix": "credbridge migrate",
            "summary": f"1 login(s) in plaintext in {config} (read by docker)",
        }
    ]
    assert found["permissions"][0]["fix"] == f"chmod 600 {config}"
    assert found["docker"][0]["status"] == "warn" and found["docker"][0]["fix"] == "credbridge setup --tool docker"
    assert "pw" not in result.text.replace("passwd", "")


def test_after_setup_and_migrate_the_doctor_is_satisfied(installation: Installation, env: dict[str, str]) -> None:
    config = Path(env["HOME"]) / ".docker" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"auths": {"r.example": {"auth": base64.b64encode(b"alice:pw").decode()}}}))
    config.chmod(0o600)
    assert credbridge(installation, env, "setup").returncode == 0
    assert credbridge(installation, env, "migrate").returncode == 0
    result = doctor(installation, env, "--json")
    assert result.returncode == 0, result.text
    found = checks(result)
    assert found["docker"][0]["summary"] == f"docker calls docker-credential-credbridge (credsStore in {config})"
    assert found["podman"][0]["status"] == "ok" and "docker-credential-credbridge" in found["podman"][0]["summary"]
    assert found["keyring"][0]["status"] == "ok"
    assert "plaintext" not in found


def test_doctor_warns_when_a_second_copy_of_a_helper_shadows_another(
    installation: Installation, env: dict[str, str], tmp_path: Path
) -> None:
    shadow = tmp_path / "shadow-bin"
    shadow.mkdir()
    shutil.copy(installation.executable("docker-credential-keyring"), shadow / "docker-credential-keyring")
    found = checks(doctor(installation, {**env, "PATH": f"{shadow}:{env['PATH']}"}, "--json"))
    assert any(
        "docker-credential-keyring is in 2 places; tools run " + str(shadow) in check["summary"]
        for check in found["PATH"]
    )


def test_doctor_colours_only_a_terminal_and_honours_no_color(installation: Installation, env: dict[str, str]) -> None:
    def on_a_terminal(extra: dict[str, str]) -> bytes:
        controller, terminal = pty.openpty()
        done = subprocess.run(
            [installation.executable("credbridge"), "doctor"],
            env={**env, **extra},
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        os.close(terminal)
        output = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        os.close(controller)
        assert done.returncode in (0, 1)
        return output

    assert b"\x1b[32m" in on_a_terminal({})
    assert b"\x1b[" not in on_a_terminal({"NO_COLOR": "1"})
    assert b"\x1b[" not in doctor(installation, env).stdout


def test_doctor_on_a_headless_machine_says_to_create_the_cryptfile_first(
    installation: Installation, env: dict[str, str], tmp_path: Path
) -> None:
    headless = {name: value for name, value in env.items() if name != "DBUS_SESSION_BUS_ADDRESS"}
    headless["CREDBRIDGE_CRYPTFILE"] = str(tmp_path / "not-yet" / "credentials.cbf")
    result = doctor(installation, headless)
    assert result.returncode == 0, result.text
    assert "✔ router: writes to cryptfile (default: no Secret Service on the session bus" in result.text
    assert "does not exist yet: logins through the router will fail until it is created" in result.text
    assert "    fix: credbridge unlock" in result.text
    assert result.text.rstrip().endswith("warning(s) marked !")
