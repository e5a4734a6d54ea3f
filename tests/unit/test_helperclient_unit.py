"""HelperProgram against tiny real helper programs on PATH: how their answers read to our callers.

"Not found" is an error, as Go's client.Get returns it: every caller tests for CredentialsNotFound,
whether the helper says so (exit 1) or answers an empty login (exit 0, Go's pass without a store).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from credbridge.errors import CredentialsNotFound, HelperError
from credbridge.helperclient import HelperProgram, stop_by_signal
from credbridge.store import Credentials

SERVER = "registry.example.invalid"


def helper_answering(directory: Path, name: str, stdout: str, exit_code: int) -> HelperProgram:
    """docker-credential-<name> in `directory`, alone on PATH, giving every action this answer."""
    program = directory / f"docker-credential-{name}"
    program.write_text(f"#!/bin/sh\nread -r asked\nprintf '%s\\n' '{stdout}'\nexit {exit_code}\n")
    program.chmod(0o700)
    return HelperProgram(name, {"PATH": str(directory)})


def test_get_raises_not_found_when_the_helper_says_not_found(tmp_path: Path) -> None:
    helper = helper_answering(tmp_path, "none", "credentials not found in native keychain", 1)
    with pytest.raises(CredentialsNotFound):
        helper.get(SERVER)


def test_get_raises_not_found_for_an_empty_login(tmp_path: Path) -> None:
    helper = helper_answering(tmp_path, "emptypass", '{"ServerURL":"","Username":"","Secret":""}', 0)
    with pytest.raises(CredentialsNotFound):
        helper.get(SERVER)


def test_get_answers_the_login_the_helper_holds(tmp_path: Path) -> None:
    helper = helper_answering(tmp_path, "holds", '{"ServerURL":"x","Username":"alice","Secret":"s3"}', 0)
    assert helper.get(SERVER) == Credentials(SERVER, "alice", "s3")


def test_get_reports_any_other_failure_as_the_helpers_own_line(tmp_path: Path) -> None:
    helper = helper_answering(tmp_path, "broken", "the keyring is on fire", 1)
    with pytest.raises(HelperError) as raised:
        helper.get(SERVER)
    assert not isinstance(raised.value, CredentialsNotFound)
    assert str(raised.value) == "docker-credential-broken get failed: the keyring is on fire"


def test_erase_of_a_login_the_helper_does_not_hold_is_no_error(tmp_path: Path) -> None:
    helper_answering(tmp_path, "none", "credentials not found in native keychain", 1).erase(SERVER)


def test_a_stop_signal_that_comes_while_the_helper_starts_stops_the_helper_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`credbridge list` killed by SIGTERM as it starts ecr-login: the signal lands inside Popen, after the
    fork. Raised there, the helper ran on unseen and wrote the token it minted (seen once in a full run)."""
    program = tmp_path / "docker-credential-slow"
    marker = tmp_path / "still-ran"
    program.write_text(f"#!/bin/sh\n/bin/sleep 1\n/usr/bin/touch {marker}\n")
    program.chmod(0o700)
    real_popen = subprocess.Popen

    def signalled_while_starting(*args: Any, **kwargs: Any) -> subprocess.Popen:
        started = real_popen(*args, **kwargs)
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # as the handler runs on a SIGTERM just then
        return started

    monkeypatch.setattr(subprocess, "Popen", signalled_while_starting)
    previous = signal.signal(signal.SIGTERM, stop_by_signal)
    try:
        with pytest.raises(SystemExit) as stopped:
            HelperProgram("slow", {"PATH": str(tmp_path)}).get(SERVER)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 128 + signal.SIGTERM
    time.sleep(1.5)
    assert not marker.exists(), "the helper ran on after the command was stopped"
