"""The Secret Service store while another program changes the keyring under it (gnome-keyring, KeePassXC).

A `docker login` or `logout` in another terminal, or a build's parallel pulls, can delete or
replace an item between this store's search and its read. The reader must then answer what
the keyring holds now: the new login, or "not found", never "the Secret Service refused".
"""

from __future__ import annotations

import json
import subprocess
from typing import Any, Callable, Iterator

import pytest

from credbridge.errors import CredentialsNotFound
from credbridge.store import Credentials
from credbridge.stores.secretservice import SecretServiceStore
from tests.support import keyring_session

SERVER = "registry.vanishing.example"


@pytest.fixture(params=["gnome-keyring", "keepassxc"])
def keyring_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The session bus of a real provider; KeePassXC answers a read of a deleted item with an error."""
    provider = request.getfixturevalue("private_keyring" if request.param == "gnome-keyring" else "private_keepassxc")
    keyring_session.delete_all_docker_items(provider.env)
    yield provider.env
    keyring_session.delete_all_docker_items(provider.env)


def go_helper_login(env: dict[str, str], username: str) -> None:
    """A login as Go's docker-credential-secretservice writes it: one item per (server, username), so one
    server can have several."""
    login = json.dumps({"ServerURL": SERVER, "Username": username, "Secret": f"{username}-secret"})
    done = subprocess.run(
        [keyring_session.SECRETSERVICE_HELPER, "store"], input=login, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def items_of_the_server(env: dict[str, str]) -> list[str]:
    """Their paths, oldest login first."""
    return list(reversed(SecretServiceStore(env)._newest_first(SecretServiceStore(env)._search({"server": SERVER}))))


def after_first(store: SecretServiceStore, method: str, meanwhile: Callable[[], None]) -> None:
    """Run `meanwhile` right after the store's first call of its own `method`, as if another program ran then."""
    original = getattr(store, method)
    calls: list[int] = []

    def interleaved(*args: Any) -> Any:
        result = original(*args)
        if not calls:
            calls.append(1)
            meanwhile()
        return result

    setattr(store, method, interleaved)


def logout_elsewhere(env: dict[str, str]) -> Callable[[], None]:
    """Another program's logout of the server (a store of its own, answering the provider's prompts)."""
    return lambda: SecretServiceStore(env).erase(SERVER)


def test_a_server_logged_out_between_the_search_and_the_read_is_not_found(keyring_env: dict[str, str]) -> None:
    """Two items (Go's helper, two usernames): their dates are read in a batch after the search."""
    go_helper_login(keyring_env, "alice")
    go_helper_login(keyring_env, "bob")
    store = SecretServiceStore(keyring_env)
    after_first(store, "_search", logout_elsewhere(keyring_env))
    with pytest.raises(CredentialsNotFound):
        store.get(SERVER)


def test_a_login_replaced_between_the_search_and_the_read_is_answered_from_its_new_item(
    keyring_env: dict[str, str],
) -> None:
    """A `docker login` as another user writes a new item and deletes the old one: the reader finds the new."""
    SecretServiceStore(keyring_env).store(Credentials(SERVER, "alice", "alice-secret"))
    store = SecretServiceStore(keyring_env)
    relogin = SecretServiceStore(keyring_env)
    after_first(store, "_search", lambda: relogin.store(Credentials(SERVER, "bob", "bob-secret")))
    found = store.get(SERVER)
    assert (found.username, found.secret) == ("bob", "bob-secret")


def test_the_older_of_two_logins_answers_when_the_newer_is_deleted_meanwhile(keyring_env: dict[str, str]) -> None:
    go_helper_login(keyring_env, "alice")
    go_helper_login(keyring_env, "bob")
    older, newer = items_of_the_server(keyring_env)  # KeePassXC's dates are whole seconds: maybe a tie
    username = SecretServiceStore(keyring_env)._docker_items({"server": SERVER})[older]["username"]
    store = SecretServiceStore(keyring_env)
    after_first(store, "_newest_first", lambda: SecretServiceStore(keyring_env)._delete(newer))
    found = store.get(SERVER)
    assert (found.username, found.secret) == (username, f"{username}-secret")


def test_list_leaves_out_a_server_logged_out_while_it_reads(keyring_env: dict[str, str]) -> None:
    go_helper_login(keyring_env, "alice")
    go_helper_login(keyring_env, "bob")
    store = SecretServiceStore(keyring_env)
    after_first(store, "_docker_items", logout_elsewhere(keyring_env))
    assert SERVER not in store.list()


def test_erase_of_items_another_logout_deleted_meanwhile_succeeds(keyring_env: dict[str, str]) -> None:
    go_helper_login(keyring_env, "alice")
    go_helper_login(keyring_env, "bob")
    store = SecretServiceStore(keyring_env)
    after_first(store, "_docker_items", logout_elsewhere(keyring_env))
    store.erase(SERVER)
    with pytest.raises(CredentialsNotFound):
        store.get(SERVER)
