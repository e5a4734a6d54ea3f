"""KeePassXC as the Secret Service: prompts, a locked database, and doctor naming the provider.

KeePassXC answers CreateItem and Delete with a prompt and emits the
prompt's Completed signal without a destination; with its database locked
it holds a search until a person unlocks it. The store contract
(tests/contract/test_store_contract.py) and the interop with Go's helper
(tests/contract/test_conformance.py) run on it too; this module holds what differs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import SECRET_SERVICES, SERVING, Helper, Installation, keepassxc_env, with_helpers_on_path
from tests.support import keyring_session
from tests.support.process import run

NOT_FOUND = b"credentials not found in native keychain\n"
LOGIN = json.dumps({"ServerURL": "locked.example", "Username": "alice", "Secret": "s3cret"})


@pytest.fixture(params=SERVING)
def on_keepassxc(request: pytest.FixtureRequest, installation: Installation) -> Helper:
    return Helper(installation.executable("docker-credential-keyring"), keepassxc_env(request, request.param))


def test_store_and_erase_return_at_once_like_get_and_list(on_keepassxc: Helper) -> None:
    """They used to wait forever for a Completed signal that never reached credbridge's own connection."""
    stored = on_keepassxc.store("registry.example.com", "alice", "s3cret")
    assert (stored.returncode, stored.stdout, stored.stderr) == (0, b"", b"")
    assert json.loads(on_keepassxc.get("registry.example.com").stdout)["Secret"] == "s3cret"
    erased = on_keepassxc.erase("registry.example.com")
    assert (erased.returncode, erased.stdout, erased.stderr) == (0, b"", b"")
    assert on_keepassxc.get("registry.example.com").stdout == NOT_FOUND
    assert on_keepassxc.list().stdout == b"{}\n"


# -- a locked database: on a KeePassXC of their own, whose dialogs these tests leave open ---------------


@pytest.fixture(scope="module")
def lockable_keepassxc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[keyring_session.PrivateKeePassXC]:
    keepassxc = keyring_session.start_private_keepassxc(tmp_path_factory.mktemp("lockable-keepassxc"))
    try:
        yield keepassxc
    finally:
        keepassxc.stop()


@pytest.fixture
def locked(lockable_keepassxc: keyring_session.PrivateKeePassXC, installation: Installation) -> Iterator[Helper]:
    """docker-credential-keyring in process, holding one login, its KeePassXC database then locked."""
    helper = Helper(
        installation.executable("docker-credential-keyring"),
        {**with_helpers_on_path(installation, lockable_keepassxc.env), "CREDBRIDGE_NO_AGENT": "1"},
    )
    keyring_session.delete_all_docker_items(helper.env)
    assert helper("store", stdin=LOGIN).returncode == 0
    lockable_keepassxc.lock()
    try:
        yield helper
    finally:
        lockable_keepassxc.unlock()


def assert_one_line(result: "object", *parts: str) -> str:
    line = result.stdout.decode()
    assert (result.returncode, result.stderr, line.count("\n")) == (1, b"", 1), result
    for part in parts:
        assert part in line, line
    assert "gnome-keyring" not in line, line
    return line


def test_a_search_held_by_a_locked_database_ends_in_keepassxc_advice(locked: Helper) -> None:
    """KeePassXC answers SearchItems only once a person unlocks: the wait ends, naming KeePassXC."""
    assert_one_line(
        locked.get("locked.example"), "KeePassXC did not answer within 10 s", "unlock the database in KeePassXC"
    )


def test_an_unlock_prompt_nobody_answers_ends_in_one_line_naming_keepassxc(locked: Helper) -> None:
    assert_one_line(
        locked("store", stdin=LOGIN),
        "KeePassXC is locked",
        "was not answered within 5 s",
        "unlock the database in KeePassXC",
    )


def test_an_unlock_prompt_the_person_answers_is_noticed(
    locked: Helper, lockable_keepassxc: keyring_session.PrivateKeePassXC
) -> None:
    """The Completed signal of the unlock prompt comes without a destination, once the person has typed."""
    with subprocess.Popen(
        [locked.path, "store"], env=locked.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as store:
        store.stdin.write(json.dumps({"ServerURL": "after-unlock.example", "Username": "bob", "Secret": "pw"}).encode())
        store.stdin.close()
        lockable_keepassxc.answer_unlock_dialog()
        assert store.wait(timeout=30) == 0, store.stdout.read()
        assert (store.stdout.read(), store.stderr.read()) == (b"", b"")
    assert json.loads(locked.get("after-unlock.example").stdout)["Username"] == "bob"


# -- credbridge doctor names the provider and proves a round trip ------------------------------------------

PROVIDER_SHOWN = {"gnome-keyring": "gnome-keyring", "keepassxc": "KeePassXC"}


@pytest.mark.parametrize("provider", list(SECRET_SERVICES))
def test_doctor_write_test_names_the_provider_and_leaves_nothing_behind(
    request: pytest.FixtureRequest, installation: Installation, tmp_path: Path, provider: str
) -> None:
    env = {**SECRET_SERVICES[provider](request, "direct"), "HOME": str(tmp_path)}
    result = run([installation.executable("credbridge"), "doctor", "--write-test"], b"", env)
    keyring_lines = [line for line in result.stdout.decode().splitlines() if line.startswith("✔ keyring:")]
    assert len(keyring_lines) == 1, result.stdout.decode()
    assert PROVIDER_SHOWN[provider] in keyring_lines[0]
    assert "stored, read back and erased" in keyring_lines[0]
    assert Helper(installation.executable("docker-credential-keyring"), env).list().stdout == b"{}\n"
