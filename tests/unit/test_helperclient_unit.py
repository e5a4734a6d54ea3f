"""HelperProgram against tiny real helper programs on PATH: how their answers read to our callers.

"Not found" is an error, as Go's client.Get returns it: every caller tests for CredentialsNotFound,
whether the helper says so (exit 1) or answers an empty login (exit 0, Go's pass without a store).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from credbridge.errors import CredentialsNotFound, HelperError
from credbridge.helperclient import HelperProgram
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
