"""The test bench's own keyring: a gnome-keyring-daemon that dies is started again, not mourned.

gnome-keyring-daemon 42 aborted once in a parallel run, under the
concurrency matrix's clients, and every later keyring test of that worker
failed with it. The bench starts it again in the same home, with the same
bus address and the same unlocked login keyring, so only the test during
which it died fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

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
