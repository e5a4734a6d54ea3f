"""The contract kit (credbridge.testing) holds Go's own helpers to it: the reference passes.

Each class is what a helper's author writes: a HelperContract subclass saying how to run the
program. Go's secretservice runs on the private gnome-keyring, Go's pass on a real pass store.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from credbridge.testing.calls import HelperCommand
from credbridge.testing.checks import READ_ONLY, WRITING
from credbridge.testing.contract import HelperContract
from tests.conftest import GO_SECRETSERVICE, REPO
from tests.support import keyring_session, passstore


class TestGoSecretService(HelperContract):
    @pytest.fixture(autouse=True)
    def _on_the_private_keyring(self, private_keyring: keyring_session.PrivateKeyring) -> None:
        assert os.access(GO_SECRETSERVICE, os.X_OK), "install golang-docker-credential-helpers"
        keyring_session.delete_all_docker_items(private_keyring.env)
        self.command = HelperCommand([GO_SECRETSERVICE], private_keyring.env)

    def helper_command(self) -> HelperCommand:
        return self.command


class TestGoPass(HelperContract):
    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _on_a_pass_store(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
        home = tmp_path_factory.mktemp("go-pass")
        with passstore.pass_store({"HOME": str(home), "PATH": os.environ["PATH"]}, home) as env:
            cls.command = HelperCommand([passstore.GO_PASS], env)
            yield

    def helper_command(self) -> HelperCommand:
        return self.command


# -- the kit outside this project: plain pytest, none of our fixtures --------------------------

OUTSIDER = """import os

from credbridge.testing.calls import HelperCommand
from credbridge.testing.contract import HelperContract


class TestTheirHelper(HelperContract):
    def helper_command(self) -> HelperCommand:
        return HelperCommand([os.environ["HELPER_UNDER_TEST"]], dict(os.environ))
"""


def outsider_pytest(tmp_path: Path, env: dict[str, str], helper: str) -> subprocess.CompletedProcess[str]:
    """A helper author's own test module in a directory of its own, run by plain pytest."""
    (tmp_path / "test_their_helper.py").write_text(OUTSIDER)
    plain_pytest = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "test_their_helper.py"]
    return subprocess.run(
        [sys.executable, *plain_pytest],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "PYTHONPATH": str(REPO / "shared"), "HELPER_UNDER_TEST": helper},
    )


def test_plain_pytest_runs_the_kit_on_a_helper_outside_the_project(
    private_keyring: keyring_session.PrivateKeyring, tmp_path: Path
) -> None:
    keyring_session.delete_all_docker_items(private_keyring.env)
    done = outsider_pytest(tmp_path, private_keyring.env, GO_SECRETSERVICE)
    checks = len(READ_ONLY) + len(WRITING)
    assert done.returncode == 0 and f"{checks} passed" in done.stdout, done.stdout + done.stderr


def test_plain_pytest_fails_a_helper_that_breaks_the_contract(tmp_path: Path) -> None:
    """A helper that answers every call with exit 0 and nothing: each check fails on its own, but
    the one it keeps (it does not read stdin)."""
    helper = tmp_path / "docker-credential-silent"
    helper.write_text("#!/bin/sh\nexit 0\n")
    helper.chmod(0o755)
    done = outsider_pytest(tmp_path, {"PATH": os.environ["PATH"]}, str(helper))
    failed = {line.split("::")[-1].split(" ")[0] for line in done.stdout.splitlines() if line.startswith("FAILED")}
    assert done.returncode == 1, done.stdout + done.stderr
    assert failed == {
        f"test_{check.__name__}" for check in (*READ_ONLY, *WRITING) if check.__name__ != "list_does_not_read_stdin"
    }
