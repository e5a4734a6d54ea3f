"""docker-credential-cryptfile: every credential in one encrypted file, for headless machines.

The key comes from the session's key cache (`credbridge unlock`), else from
CREDBRIDGE_PASSPHRASE_FILE (batch jobs); with neither the store is locked.
Both are consulted on every call, so `credbridge lock` takes effect at once,
also in the agent. The decrypted content is kept only while the file on
disk is the very one it came from (inode, size, times), so an instance in
the agent never serves stale data. Writes lock, re-read and replace the file
atomically (credbridge.atomicfile); a failed operation never writes.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Mapping, Optional, TypeVar

from credbridge import atomicfile, cryptformat, debuglog, keycache, urls, userdirs
from credbridge.errors import CredentialsNotFound, HelperError
from credbridge.store import Credentials

T = TypeVar("T")

LOCKED = "cryptfile is locked: run 'credbridge unlock'"


def cryptfile_path(env: Mapping[str, str]) -> str:
    """CREDBRIDGE_CRYPTFILE, else $XDG_DATA_HOME/credbridge/credentials.cbf."""
    if env.get("CREDBRIDGE_CRYPTFILE"):
        return os.path.abspath(env["CREDBRIDGE_CRYPTFILE"])
    return os.path.join(userdirs.data_home(env), "credbridge", "credentials.cbf")


def _signature(info: os.stat_result) -> tuple[int, ...]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class CryptFileStore:
    """The four operations over one cryptfile; also unlock and passphrase change for `credbridge`."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = dict(env)
        self.path = cryptfile_path(env)
        self._passphrase_file = env.get("CREDBRIDGE_PASSPHRASE_FILE") or None
        self._snapshot: Optional[tuple[tuple[int, ...], bytes, cryptformat.Entries]] = None
        self._derived: dict[tuple[bytes, bytes], Optional[bytes]] = {}

    # -- the four operations -------------------------------------------------

    def store(self, credentials: Credentials) -> None:
        def change(entries: cryptformat.Entries) -> bool:
            entries[credentials.server_url] = {"Username": credentials.username, "Secret": credentials.secret}
            return True

        self._update(change)

    def get(self, server_url: str) -> Credentials:
        entries = self._entries()
        match = urls.best_match(server_url, entries)
        if match is None:
            raise CredentialsNotFound()
        return Credentials(server_url, entries[match]["Username"], entries[match]["Secret"])

    def erase(self, server_url: str) -> None:
        def change(entries: cryptformat.Entries) -> bool:
            doomed = urls.same_registry(server_url, entries)
            for key in doomed:
                del entries[key]
            return bool(doomed)

        self._update(change)

    def list(self) -> dict[str, str]:
        return {server: entry["Username"] for server, entry in self._entries().items()}

    # -- management (credbridge unlock / passwd) ------------------------------

    def unlock(self, passphrase: bytes, seconds: float) -> bool:
        """Check the passphrase (creating the file on first use) and cache the key; True if created."""
        with atomicfile.exclusive(self.path):
            found = atomicfile.read(self.path)
            if found is None:
                header, key = cryptformat.new_header(passphrase)
                atomicfile.replace(self.path, cryptformat.seal(header, key, {}))
            else:
                header = self._header(found[0])
                key = self._key_from(header, passphrase, "wrong passphrase")
                self._unseal(found[0], key)  # a damaged file is reported now, not at the next pull
        keycache.save(self._env, self.path, header, key, seconds)
        return found is None

    def change_passphrase(self, old: bytes, new: bytes, seconds: float) -> None:
        """Re-encrypt under `new` (fresh salt and nonce) and cache the new key."""
        with atomicfile.exclusive(self.path):
            found = atomicfile.read(self.path)
            if found is None:
                raise HelperError(f"there is no cryptfile at {self.path} yet: run 'credbridge unlock' to create it")
            entries = self._unseal(found[0], self._key_from(self._header(found[0]), old, "wrong current passphrase"))
            header, key = cryptformat.new_header(new)
            atomicfile.replace(self.path, cryptformat.seal(header, key, entries))
        keycache.save(self._env, self.path, header, key, seconds)

    # -- reading and writing -------------------------------------------------

    def _entries(self) -> cryptformat.Entries:
        """The current content; decrypted again only when the file changed on disk."""
        info = atomicfile.inspect(self.path)
        debuglog.log("cryptfile", file=self.path, exists=info is not None,
                     decrypted_copy_current=info is not None and self._snapshot is not None and self._snapshot[0] == _signature(info))
        if info is None:
            self._snapshot = None
            self._cached_key_or_passphrase()  # locked is locked, even before the first store
            return {}
        if self._snapshot is None or self._snapshot[0] != _signature(info):
            found = atomicfile.read(self.path)
            if found is None:
                return self._entries()
            data, opened = found
            header = self._header(data)
            self._snapshot = (_signature(opened), header, self._unseal(data, self._key(header)))
            return self._snapshot[2]
        self._key(self._snapshot[1])  # the session may have been locked since
        return self._snapshot[2]

    def _update(self, change: Callable[[cryptformat.Entries], bool]) -> None:
        """Read-modify-write under the lock; written only if `change` changed something."""
        debuglog.log("cryptfile update", file=self.path)
        with atomicfile.exclusive(self.path):
            found = atomicfile.read(self.path)
            if found is None:
                header, key = self._new_file_key()
                entries: cryptformat.Entries = {}
            else:
                header = self._header(found[0])
                key = self._key(header)
                entries = self._unseal(found[0], key)
            if change(entries):
                atomicfile.replace(self.path, cryptformat.seal(header, key, entries))
        self._snapshot = None

    # -- keys ----------------------------------------------------------------

    def _key(self, header: bytes) -> bytes:
        """The key for this file: from the session cache, else the passphrase file, else locked."""
        cached = keycache.load(self._env, self.path)
        if cached is not None and cached[0] == header:
            debuglog.log("cryptfile unlocked by", source="the session cache (credbridge unlock)")
            return cached[1]
        passphrase = self._batch_passphrase()
        debuglog.log("cryptfile unlocked by", source="nothing: locked" if passphrase is None else "CREDBRIDGE_PASSPHRASE_FILE")
        if passphrase is None:
            raise HelperError(LOCKED)
        return self._key_from(header, passphrase, f"wrong passphrase in CREDBRIDGE_PASSPHRASE_FILE ({self._passphrase_file})")

    def _new_file_key(self) -> tuple[bytes, bytes]:
        """(header, key) to create a missing file: the session's if unlocked, else from the passphrase file."""
        cached = self._cached_key_or_passphrase()
        if isinstance(cached, tuple):
            return cached
        return cryptformat.new_header(cached)

    def _cached_key_or_passphrase(self) -> tuple[bytes, bytes] | bytes:
        cached = keycache.load(self._env, self.path)
        if cached is not None:
            return cached
        passphrase = self._batch_passphrase()
        if passphrase is None:
            raise HelperError(LOCKED)
        return passphrase

    def _key_from(self, header: bytes, passphrase: bytes, wrong: str) -> bytes:
        """Derive (once per header and passphrase: the agent pays the KDF once) and verify."""
        memo = (header, hashlib.sha256(passphrase).digest())
        if memo not in self._derived:
            self._derived = {memo: self._checked(cryptformat.derive_key, header, passphrase)}
        key = self._derived[memo]
        if key is None:
            raise HelperError(f"{wrong} for the cryptfile {self.path}")
        return key

    def _batch_passphrase(self) -> Optional[bytes]:
        if self._passphrase_file is None:
            return None
        try:
            with open(self._passphrase_file, "rb") as stream:
                passphrase = stream.read().splitlines()
        except OSError as error:
            raise HelperError(f"cannot read CREDBRIDGE_PASSPHRASE_FILE {self._passphrase_file}: {error.strerror}") from None
        if not passphrase or not passphrase[0]:
            raise HelperError(f"CREDBRIDGE_PASSPHRASE_FILE {self._passphrase_file} is empty: put the passphrase on its first line")
        return passphrase[0]

    # -- format errors, with the path ----------------------------------------

    def _header(self, data: bytes) -> bytes:
        return self._checked(cryptformat.header_of, data)

    def _unseal(self, data: bytes, key: bytes) -> cryptformat.Entries:
        return self._checked(cryptformat.unseal, data, key)

    def _checked(self, operation: Callable[..., T], *args: bytes) -> T:
        try:
            return operation(*args)
        except cryptformat.Damaged as error:
            raise HelperError(f"the cryptfile {self.path} {error}") from None
