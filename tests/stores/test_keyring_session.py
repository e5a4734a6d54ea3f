"""The test bench's own keyring: a gnome-keyring-daemon that dies is started again, not mourned.

gnome-keyring-daemon 42 aborted once in a parallel run, under the
concurrency matrix's clients, and every later keyring test of that worker
failed with it. The bench starts it again in the same home, with the same
bus address and the same unlocked login keyring, so only the test during
which it died fails, and that test is run once more on the revived daemon.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import keyring_started, watched
from tests.support import keyring_session


def secret_tool(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(["secret-tool", *args], input=stdin, env=env, capture_output=True, text=True, timeout=30)


def killed(pid: int, signal_number: int) -> None:
    """Signal a child of ours and return once it has exited, leaving it to the bench to reap."""
    os.kill(pid, signal_number)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


def test_a_dead_daemon_starts_again_in_the_same_home_with_its_items(tmp_path: Path) -> None:
    with keyring_session.start_private_keyring(tmp_path / "home") as keyring:
        env_before, daemon_before = dict(keyring.env), keyring.keyring_pid
        stored = secret_tool(keyring.env, "store", "--label=kept", "bench", "revive", stdin="kept-secret")
        assert stored.returncode == 0, stored.stderr
        killed(daemon_before, signal.SIGABRT)  # what GLib's failed assertion does
        assert keyring.revive() is True
        assert keyring.keyring_pid != daemon_before
        assert keyring.env == env_before
        assert secret_tool(keyring.env, "lookup", "bench", "revive").stdout == "kept-secret"
        keyring_session.helper_round_trip(keyring.env)


def test_a_keyring_whose_bus_died_starts_again(tmp_path: Path) -> None:
    with keyring_session.start_private_keyring(tmp_path / "home") as keyring:
        killed(keyring.dbus_pid, signal.SIGKILL)
        assert keyring.revive() is True
        keyring_session.helper_round_trip(keyring.env)


def test_a_living_keyring_is_left_alone(tmp_path: Path) -> None:
    with keyring_session.start_private_keyring(tmp_path / "home") as keyring:
        pids = (keyring.dbus_pid, keyring.keyring_pid)
        assert keyring.revive() is False
        assert (keyring.dbus_pid, keyring.keyring_pid) == pids


@pytest.fixture(scope="module")
def watched_keyring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[keyring_session.PrivateKeyring]:
    """A keyring of this module's own, watched by the bench like each worker's."""
    with keyring_started(tmp_path_factory) as keyring:
        yield keyring


@pytest.fixture(scope="module")
def watched_keepassxc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[keyring_session.PrivateKeePassXC]:
    with watched(keyring_session.start_private_keepassxc(tmp_path_factory.mktemp("keepassxc-home"))) as keepassxc:
        yield keepassxc


ATTEMPTS: dict[str, list[int]] = {"watched_keyring": [], "watched_keepassxc": []}


@pytest.mark.parametrize(
    "provider, signal_number",
    [("watched_keyring", signal.SIGABRT), ("watched_keepassxc", signal.SIGKILL)],
    ids=["gnome-keyring", "keepassxc"],
)
def test_a_test_during_which_its_provider_died_is_run_again_on_a_revived_one(
    request: pytest.FixtureRequest, provider: str, signal_number: int
) -> None:
    """The first attempt dies with its provider, as a victim of gnome-keyring's abort does (SIGABRT);
    the bench must start the provider again and run the test again, and the second attempt passes.
    KeePassXC too: once it was gone, every later KeePassXC test of the worker failed."""
    served = request.getfixturevalue(provider)
    attempts = ATTEMPTS[provider]
    attempts.append(served.pids()[-1])  # the provider itself, started after its bus (and display)
    if len(attempts) == 1:
        killed(attempts[0], signal_number)
        pytest.fail("the provider died under this test")
    assert attempts[1] != attempts[0] and served.alive()
    keyring_session.helper_round_trip(served.env)
