"""docker-credential-vault: credentials in an OpenBao / HashiCorp Vault KV version 2 mount.

For teams, clusters and CI fleets: access policies, audit and HA come from Vault. The secrets'
layout, the capabilities each action needs and the one-request `list`: docs/design.md, "vault".
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from credbridge import debuglog, urls
from credbridge.errors import HelperError
from credbridge.store import Credentials, answer
from credbridge.stores.vault.connection import Connection, Denied

Entries = dict[str, dict[str, str]]
SAFE_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-")
#: custom_metadata key of the list index; Vault caps a value at 512 bytes.
INDEX_KEY = "credbridge-usernames"
INDEX_MAX_BYTES = 512
WRITE_ATTEMPTS = 10
PARALLEL_READS = 8


def path_segment(server_url: str) -> str:
    """The one path segment naming a registry: its canonical name, escaped (see the module docstring)."""
    name = urls.canonical(server_url)
    return "".join(
        character
        if character in SAFE_CHARACTERS and not (position == 0 and character == ".")
        else "".join(f"_{byte:02x}" for byte in character.encode("utf-8"))
        for position, character in enumerate(name)
    )


class VaultStore:
    """The four operations over one KV v2 prefix."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._vault = Connection(env)

    @property
    def _mount(self) -> str:
        return self._vault.settings.mount

    @property
    def _prefix(self) -> str:
        return self._vault.settings.prefix

    def store(self, credentials: Credentials) -> None:
        from hvac.exceptions import InvalidRequest

        self._vault.reload()
        key = self._prefix + path_segment(credentials.server_url)
        for _ in range(WRITE_ATTEMPTS):
            entries, version = self._read(key)
            entries[credentials.server_url] = {"Username": credentials.username, "Secret": credentials.secret}
            try:
                written = self._vault.call(
                    lambda client, entries=entries, version=version: client.secrets.kv.v2.create_or_update_secret(
                        key, entries, cas=version, mount_point=self._mount
                    ),
                    self._data_path(key),
                    ("create", "update"),
                )
            except InvalidRequest as error:
                if "check-and-set" in " ".join(error.errors or []):
                    continue  # another writer of this registry came first: merge with what it wrote
                raise HelperError(
                    f"Vault refused the write to {self._data_path(key)}: {', '.join(error.errors or [])}"
                ) from None
            self._index(key, written["data"]["version"], entries)
            return
        raise HelperError(f"{self._data_path(key)} kept changing under concurrent writers: try again")

    def get(self, server_url: str) -> Credentials:
        self._vault.reload()
        entries, _version = self._read(self._prefix + path_segment(server_url))
        return answer(server_url, entries)

    def erase(self, server_url: str) -> None:
        """Every spelling of the registry shares the one secret: delete it with all its versions."""
        self._vault.reload()
        key = self._prefix + path_segment(server_url)
        self._vault.call(
            lambda client: client.secrets.kv.v2.delete_metadata_and_all_versions(key, mount_point=self._mount),
            f"{self._mount}/metadata/{key}",
            ("delete",),
        )

    def list(self) -> dict[str, str]:
        from concurrent.futures import ThreadPoolExecutor

        self._vault.reload()
        listing = self._listing()
        usernames: dict[str, str] = {}
        unindexed = []
        for name, metadata in listing.items():
            indexed = _indexed_usernames(metadata)
            if indexed is None:
                unindexed.append(self._prefix + name)
            else:
                usernames.update(indexed)
        with ThreadPoolExecutor(PARALLEL_READS) as pool:
            for entries, _version in pool.map(self._read, unindexed):
                usernames.update({server: entry["Username"] for server, entry in entries.items()})
        return usernames

    # -- reading and indexing ------------------------------------------------

    def _data_path(self, key: str) -> str:
        return f"{self._mount}/data/{key}"

    def _read(self, key: str) -> tuple[Entries, int]:
        """The secret's entries and version; ({}, 0) when absent or deleted (0 is `cas` for "must not exist")."""
        from hvac.exceptions import InvalidPath

        # Not the path itself: it spells the query out, userinfo (a password, in user:pw@host) included.
        debuglog.log("vault read", mount=self._mount, prefix=self._prefix)
        try:
            answer = self._vault.call(
                lambda client: client.secrets.kv.v2.read_secret_version(
                    key, mount_point=self._mount, raise_on_deleted_version=False
                ),
                self._data_path(key),
                ("read",),
            )
        except InvalidPath as error:
            if error.errors:  # "no handler for route": the mount is missing, not the secret
                raise HelperError(
                    f"no KV version 2 secrets engine at {self._mount}/ (Vault says: "
                    f"{', '.join(error.errors)}): set `mount` in `vault:`"
                ) from None
            return {}, 0
        version = int(answer["data"]["metadata"]["version"])
        if answer["data"]["data"] is None:  # the latest version was deleted (`bao kv delete`)
            return {}, version
        return _entries(answer["data"]["data"], self._data_path(key)), version

    def _listing(self) -> dict[str, Optional[dict[str, Any]]]:
        """Secret name -> its metadata (None when the server only lists names); folders left out."""
        from hvac.exceptions import InvalidPath, VaultError

        prefix = self._prefix.rstrip("/")
        where = f"{self._mount}/metadata/{self._prefix}"
        try:
            answer = self._vault.call(
                lambda client: client.adapter.list(f"/v1/{self._mount}/detailed-metadata/{prefix}"),
                f"{self._mount}/detailed-metadata/{self._prefix}",
                ("list",),
            )
            key_info = answer["data"]["key_info"]
            return {name: key_info.get(name) for name in answer["data"]["keys"] if not name.endswith("/")}
        except InvalidPath as error:
            if not error.errors:
                return {}  # nothing stored yet
        except (VaultError, Denied):
            pass  # HashiCorp Vault has no detailed-metadata; a policy may not grant it: list names, read each
        try:
            answer = self._vault.call(
                lambda client: client.secrets.kv.v2.list_secrets(prefix, mount_point=self._mount), where, ("list",)
            )
        except InvalidPath:
            return {}
        return {name: None for name in answer["data"]["keys"] if not name.endswith("/")}

    def _index(self, key: str, version: int, entries: Entries) -> None:
        """Usernames into custom_metadata, for list; skipped (list reads the data) when too big or not allowed."""
        index = json.dumps(
            {"version": version, "usernames": {server: entry["Username"] for server, entry in entries.items()}},
            separators=(",", ":"),
        )
        if len(index.encode()) > INDEX_MAX_BYTES:
            index = ""  # a stale index must not survive: an empty one is read as "not indexed"
        try:
            self._vault.call(
                lambda client: client.adapter.post(
                    f"/v1/{self._mount}/metadata/{key}", json={"custom_metadata": {INDEX_KEY: index}}
                ),
                f"{self._mount}/metadata/{key}",
                ("update",),
            )
        except Denied:
            pass


def _indexed_usernames(metadata: Optional[dict[str, Any]]) -> Optional[dict[str, str]]:
    """The usernames from the index if it describes the current version, else None (read the data)."""
    try:
        index = json.loads(((metadata or {}).get("custom_metadata") or {})[INDEX_KEY])
        if index["version"] == metadata["current_version"] and all(
            isinstance(value, str) for value in index["usernames"].values()
        ):
            return index["usernames"]
    except (KeyError, ValueError, TypeError, AttributeError):
        pass
    return None


def _entries(data: Any, path: str) -> Entries:
    """The secret's data, checked: written by hand or another tool, it may not be ours."""
    if isinstance(data, dict) and all(
        isinstance(entry, dict) and isinstance(entry.get("Username"), str) and isinstance(entry.get("Secret"), str)
        for entry in data.values()
    ):
        return {server: {"Username": entry["Username"], "Secret": entry["Secret"]} for server, entry in data.items()}
    raise HelperError(
        f"the secret at {path} is not in credbridge's layout "
        '({"<server URL>": {"Username": ..., "Secret": ...}}): fix or delete it'
    )
