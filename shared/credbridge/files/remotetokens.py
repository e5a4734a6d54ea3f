"""Endpoint tokens and keyserver logins of Apptainer's and SingularityCE's remote.yaml, as keys.

Kept under `apptainer-endpoint:<URI>` and `apptainer-keyserver:<URI>`, keys no registry spelling
reaches, so a registry of the same host is never offered them (docs/trust.md).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, NamedTuple, Optional

from credbridge.files import dockerconfig
from credbridge.store import Credentials

ENDPOINT_PREFIX = "apptainer-endpoint:"
KEYSERVER_PREFIX = "apptainer-keyserver:"
REGISTRY_KIND = "registry"
_KINDS = ((ENDPOINT_PREFIX, "endpoint token"), (KEYSERVER_PREFIX, "keyserver login"))

Document = dict[str, Any]


class Held(NamedTuple):
    """A secret in a remote.yaml document: its store key and value, and the mapping and field holding it."""

    credentials: Credentials
    holder: dict[str, Any]
    field: str  # "Token" (Remotes.<name>) or "Auth" (Credentials[])


def kind_of(server_url: str) -> str:
    """`registry`, `endpoint token` or `keyserver login`: what a stored key is for."""
    return next((kind for prefix, kind in _KINDS if server_url.startswith(prefix)), REGISTRY_KIND)


def is_remote_key(server_url: str) -> bool:
    return kind_of(server_url) != REGISTRY_KIND


def held_in(document: Document) -> list[Held]:
    """Every endpoint token and keyserver login in plaintext in the document, keyed for a store."""
    found = []
    remotes = document.get("Remotes")
    for remote in remotes.values() if isinstance(remotes, dict) else ():
        if (
            isinstance(remote, dict)
            and isinstance(remote.get("URI"), str)
            and isinstance(remote.get("Token"), str)
            and remote["Token"]
        ):
            credentials = Credentials(ENDPOINT_PREFIX + remote["URI"], dockerconfig.TOKEN_USERNAME, remote["Token"])
            found.append(Held(credentials, remote, "Token"))
    entries = document.get("Credentials")
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, dict) and isinstance(entry.get("URI"), str) and isinstance(entry.get("Auth"), str):
            credentials = from_authorization(KEYSERVER_PREFIX + entry["URI"], entry["Auth"])
            if credentials is not None:
                found.append(Held(credentials, entry, "Auth"))
    return found


def forget(held: Held) -> None:
    """Remove the secret, keep the endpoint or keyserver (both fields are omitempty in their schema)."""
    held.holder.pop(held.field, None)


def from_authorization(server_url: str, header: str) -> Optional[Credentials]:
    """`Basic base64(user:pass)` or `Bearer <token>`, the whole Authorization header value."""
    kind, _, value = header.strip().partition(" ")
    if kind.lower() == "bearer" and value.strip():
        return Credentials(server_url, dockerconfig.TOKEN_USERNAME, value.strip())
    if kind.lower() == "basic":
        try:
            username, colon, secret = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if colon:
            return Credentials(server_url, username, secret)
    return None


def authorization(credentials: Credentials) -> str:
    """The header `keyserver login` writes for these credentials (the inverse of from_authorization)."""
    if credentials.username == dockerconfig.TOKEN_USERNAME:
        return f"Bearer {credentials.secret}"
    return "Basic " + base64.b64encode(f"{credentials.username}:{credentials.secret}".encode()).decode()
