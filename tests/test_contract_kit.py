"""The contract kit (credbridge.testing) holds Go's own helpers to it: the reference passes.

Each class is what a helper's author writes: a HelperContract subclass saying how to run the
program. Go's secretservice runs on the private gnome-keyring, Go's pass on a real pass store.
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from credbridge.testing.calls import HelperCommand
from credbridge.testing.contract import HelperContract
from tests.conftest import GO_SECRETSERVICE
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
