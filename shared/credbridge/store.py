"""The contract every credential store implements, and nothing more.

Mirrors the Helper interface of docker-credential-helpers: four operations,
no knowledge of stdin, argv or output encoding (that is the protocol's job).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Protocol

from credbridge import urls
from credbridge.errors import CredentialsNotFound


class Credentials(NamedTuple):
    """A NamedTuple, not a dataclass: `dataclasses` imports `inspect`, ~12 ms per direct call."""

    server_url: str
    username: str
    secret: str


class CredentialStore(Protocol):
    """A place where credentials live, keyed by server URL.

    get/erase match across URL spellings of the same registry (see
    credbridge.urls); get raises CredentialsNotFound; erase of an absent
    server is not an error; list maps each stored ServerURL to its username.
    """

    def store(self, credentials: Credentials) -> None: ...

    def get(self, server_url: str) -> Credentials: ...

    def erase(self, server_url: str) -> None: ...

    def list(self) -> dict[str, str]: ...


def answer(server_url: str, entries: Mapping[str, Mapping[str, str]]) -> Credentials:
    """The entry that answers `server_url` (credbridge.urls.best_match), for stores keeping whole entries."""
    match = urls.best_match(server_url, entries)
    if match is None:
        raise CredentialsNotFound()
    return Credentials(server_url, entries[match]["Username"], entries[match]["Secret"])
