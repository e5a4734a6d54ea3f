"""The Secret Service store while another program changes the keyring under it (real gnome-keyring).

A `docker login` or `logout` in another terminal, or a build's parallel pulls, can delete or
replace an item between this store's search and its read. The reader must then answer what
the keyring holds now: the new login, or "not found", never "the Secret Service refused".
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
import secretstorage
from jeepney.io.blocking import DBusConnection, open_dbus_connection

from credbridge.errors import CredentialsNotFound
from credbridge.store import Credentials
from credbridge.stores.secretservice import SecretServiceStore
from tests.support import keyring_session

SERVER = "registry.vanishing.example"


@pytest.fixture
def keyring_env(private_keyring: keyring_session.PrivateKeyring) -> Iterator[dict[str, str]]:
    keyring_session.delete_all_docker_items(private_keyring.env)
    yield private_keyring.env
    keyring_session.delete_all_docker_items(private_keyring.env)


@pytest.fixture
def other_program(keyring_env: dict[str, str]) -> Iterator[DBusConnection]:
    """Another program's own connection to the same keyring."""
    with open_dbus_connection(keyring_env["DBUS_SESSION_BUS_ADDRESS"]) as connection:
        yield connection


def go_helper_item(connection: DBusConnection, server: str, username: str) -> str:
    """An item as Go's helper writes it: one per (server, username), so one server can have several."""
    attributes = {
        "label": "Docker Credentials",
        "server": server,
        "username": username,
        "docker_cli": "1",
        "xdg:schema": keyring_session.DOCKER_SCHEMA,
    }
    collection = secretstorage.get_default_collection(connection)
    return collection.create_item(server, attributes, f"{username}-secret".encode()).item_path


def delete_items(connection: DBusConnection, server: str) -> None:
    for item in secretstorage.get_default_collection(connection).search_items({"server": server}):
        item.delete()


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


def test_a_server_logged_out_between_the_search_and_the_read_is_not_found(
    keyring_env: dict[str, str], other_program: DBusConnection
) -> None:
    """Two items (Go's helper, two usernames): their dates are read in a batch after the search."""
    go_helper_item(other_program, SERVER, "alice")
    go_helper_item(other_program, SERVER, "bob")
    store = SecretServiceStore(keyring_env)
    after_first(store, "_search", lambda: delete_items(other_program, SERVER))
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


def test_the_older_of_two_logins_answers_when_the_newer_is_deleted_meanwhile(
    keyring_env: dict[str, str], other_program: DBusConnection
) -> None:
    go_helper_item(other_program, SERVER, "alice")
    newer = go_helper_item(other_program, SERVER, "bob")
    store = SecretServiceStore(keyring_env)
    after_first(store, "_newest_first", lambda: secretstorage.Item(other_program, newer).delete())
    found = store.get(SERVER)
    assert (found.username, found.secret) == ("alice", "alice-secret")


def test_list_leaves_out_a_server_logged_out_while_it_reads(
    keyring_env: dict[str, str], other_program: DBusConnection
) -> None:
    go_helper_item(other_program, SERVER, "alice")
    go_helper_item(other_program, SERVER, "bob")
    store = SecretServiceStore(keyring_env)
    after_first(store, "_docker_items", lambda: delete_items(other_program, SERVER))
    assert SERVER not in store.list()


def test_erase_of_items_another_logout_deleted_meanwhile_succeeds(
    keyring_env: dict[str, str], other_program: DBusConnection
) -> None:
    go_helper_item(other_program, SERVER, "alice")
    go_helper_item(other_program, SERVER, "bob")
    store = SecretServiceStore(keyring_env)
    after_first(store, "_docker_items", lambda: delete_items(other_program, SERVER))
    store.erase(SERVER)
    with pytest.raises(CredentialsNotFound):
        store.get(SERVER)
