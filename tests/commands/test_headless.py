"""docker-credential-keyring where the Secret Service is out of reach.

HPC login nodes, CI runners and ssh sessions: each broken environment must
give one line naming the cause and the fix, exit 1, nothing on stderr,
within the call's time limit; never a hang, never a traceback.
"""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import Installation, agent_serving, with_helpers_on_path
from tests.support import keyring_session
from tests.support.process import Result, run

LOGIN_COLLECTION = "/org/freedesktop/secrets/collection/login"


@pytest.fixture(params=["agent", "direct"])
def serving(request: pytest.FixtureRequest, installation: Installation):
    """Runs the helper in a given environment, through an agent started in it, or in process."""

    @contextmanager
    def serve(env: dict[str, str]) -> Iterator[dict[str, str]]:
        env = with_helpers_on_path(installation, env)
        if request.param == "direct":
            yield {**env, "CREDBRIDGE_NO_AGENT": "1"}
        else:
            with agent_serving(installation, env):
                yield env

    return serve


def keyring(installation: Installation, env: dict[str, str], *args: str, stdin: str = "") -> Result:
    return run([installation.executable("docker-credential-keyring"), *args], stdin, env)


def assert_one_line_error(result: Result, *words: str) -> None:
    assert result.returncode == 1
    assert result.stderr == b""
    assert result.stdout.endswith(b"\n") and result.stdout.count(b"\n") == 1, result.stdout
    assert b"Traceback" not in result.stdout
    for word in words:
        assert word in result.text, result.text


def test_no_session_bus_names_the_variable_and_the_fix(installation: Installation, serving, tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(runtime)}
    with serving(base) as env:
        for action, stdin in (
            ("get", "registry.example"),
            ("list", ""),
            ("store", '{"ServerURL":"r","Username":"u","Secret":"s"}'),
        ):
            assert_one_line_error(
                keyring(installation, env, action, stdin=stdin), "DBUS_SESSION_BUS_ADDRESS", "dbus-run-session"
            )


def test_stale_bus_address_says_the_session_has_ended(installation: Installation, serving, tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_RUNTIME_DIR": str(runtime),
        "DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/gone/bus",
    }
    with serving(base) as env:
        assert_one_line_error(keyring(installation, env, "get", stdin="registry.example"), "gone/bus", "ended")


def test_bus_without_a_secret_service_provider_says_to_start_one(
    installation: Installation, serving, tmp_path: Path
) -> None:
    with keyring_session.bus_without_secret_service(tmp_path) as base, serving(base) as env:
        assert_one_line_error(
            keyring(installation, env, "get", stdin="registry.example"), "no Secret Service provider", "gnome-keyring"
        )
        assert_one_line_error(keyring(installation, env, "list"), "no Secret Service provider")


def test_locked_keyring_without_a_prompter_fails_fast_then_works_once_unlocked(
    installation: Installation, helper_env: dict[str, str]
) -> None:
    """Go's helper segfaults here (libsecret assertion); ours answers one line."""
    keyring(installation, helper_env, "store", stdin='{"ServerURL":"locked.example","Username":"u","Secret":"s"}')
    keyring_session.lock_default_collection(helper_env)
    try:
        assert_one_line_error(keyring(installation, helper_env, "get", stdin="locked.example"), "locked", "unlock")
        assert_one_line_error(
            keyring(installation, helper_env, "store", stdin='{"ServerURL":"x","Username":"u","Secret":"s"}'), "locked"
        )
    finally:
        keyring_session.unlock_default_collection(helper_env)
    assert keyring(installation, helper_env, "get", stdin="locked.example").returncode == 0
    stored_again = keyring(
        installation, helper_env, "store", stdin='{"ServerURL":"after.example","Username":"u","Secret":"s"}'
    )
    assert (stored_again.returncode, stored_again.stdout) == (0, b"")


def test_keyring_without_a_default_collection_names_it_when_storing(
    installation: Installation, serving, tmp_path: Path
) -> None:
    """KeePassXC may expose no `default` alias: writes need it, reads search every collection.

    (Go's helper answers with libsecret's raw "Object does not exist at path ...".)
    """
    with keyring_session.start_private_keyring(tmp_path / "home") as private:
        delete_collection(private.env, LOGIN_COLLECTION)
        with serving(private.env) as env:
            assert_one_line_error(
                keyring(installation, env, "store", stdin='{"ServerURL":"x","Username":"u","Secret":"s"}'),
                "no 'default' collection",
            )
            assert keyring(installation, env, "get", stdin="x").stdout == b"credentials not found in native keychain\n"
            assert keyring(installation, env, "list").stdout == b"{}\n"


def delete_collection(env: dict[str, str], collection: str) -> None:
    subprocess.run(
        [
            "dbus-send",
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.secrets",
            collection,
            "org.freedesktop.Secret.Collection.Delete",
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=10,
    )
