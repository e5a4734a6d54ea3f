"""docker-credential-cryptfile: every credential in one encrypted file, for headless machines.

The key comes from the session's key cache, else CREDBRIDGE_PASSPHRASE_FILE, on every call; a
locked file still answers "not found" from its index (docs/design.md, "cryptfile").
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Mapping, NamedTuple, Optional, TypeVar

from credbridge import debuglog, urls
from credbridge.errors import CredentialsNotFound, HelperError, StoreLocked
from credbridge.files import atomicfile, secretfile, userdirs
from credbridge.store import Credentials, answer
from credbridge.stores.cryptfile import fileformat, generations, keycache

T = TypeVar("T")

LOCKED = "cryptfile is locked: run 'credbridge unlock'"
#: Asked of every new passphrase (not of existing ones, which open the files they always opened).
MIN_PASSPHRASE_CHARACTERS = 8


def cryptfile_path(env: Mapping[str, str]) -> str:
    """CREDBRIDGE_CRYPTFILE, else $XDG_DATA_HOME/credbridge/credentials.cbf."""
    if env.get("CREDBRIDGE_CRYPTFILE"):
        return os.path.abspath(env["CREDBRIDGE_CRYPTFILE"])
    return os.path.join(userdirs.data_home(env), "credbridge", "credentials.cbf")


def _signature(info: os.stat_result) -> tuple[int, ...]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class _Snapshot(NamedTuple):
    signature: tuple[int, ...]
    sealed: fileformat.Sealed
    entries: fileformat.Entries


class _Locked(StoreLocked):
    """Locked, with the header whose index tells what the file holds."""

    def __init__(self, header: bytes) -> None:
        super().__init__(LOCKED)
        self.header = header


class CryptFileStore:
    """The four operations over one cryptfile; also unlock and passphrase change for `credbridge`."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = dict(env)
        self.path = cryptfile_path(env)
        self._passphrase_file = env.get("CREDBRIDGE_PASSPHRASE_FILE") or None
        self._snapshot: Optional[_Snapshot] = None
        self._derived: dict[tuple[bytes, bytes], Optional[bytes]] = {}

    # -- the four operations -------------------------------------------------

    def store(self, credentials: Credentials) -> None:
        def change(entries: fileformat.Entries) -> bool:
            entries[credentials.server_url] = {"Username": credentials.username, "Secret": credentials.secret}
            return True

        self._update(change)

    def get(self, server_url: str) -> Credentials:
        try:
            entries = self._entries()
        except _Locked as locked:
            self._raise_if_held(locked, server_url)
            raise CredentialsNotFound() from None
        return answer(server_url, entries)

    def erase(self, server_url: str) -> None:
        def change(entries: fileformat.Entries) -> bool:
            doomed = urls.same_registry(server_url, entries)
            for key in doomed:
                del entries[key]
            return bool(doomed)

        if atomicfile.safe_lstat(self.path) is None:
            return  # nothing to erase: no key needed, no directory made
        try:
            self._update(change)
        except _Locked as locked:
            self._raise_if_held(locked, server_url)

    def list(self) -> dict[str, str]:
        return {server: entry["Username"] for server, entry in self._entries().items()}

    # -- management (credbridge unlock / passwd) ------------------------------

    def unlock(self, passphrase: bytes, seconds: float, create: bool = False, accept_rollback: bool = False) -> None:
        """Check the passphrase and cache the key; `create` makes a new file, which must not exist yet.

        A format 1 file is rewritten as format 2 here, so that its index answers while it is locked.
        """
        with atomicfile.exclusive(self.path):
            found = atomicfile.read(self.path)
            if create:
                if found is not None:
                    raise HelperError(f"{self.path} already exists: run 'credbridge unlock' without --new")
                header, key = self._new_header(passphrase)
                self._write(header, key, {}, after=None)
            elif found is None:
                raise HelperError(f"there is no cryptfile at {self.path}: run 'credbridge unlock --new' to create it")
            else:
                sealed = self._parse(found[0])
                header, key = sealed.key_header, self._key_from(sealed.key_header, passphrase, "wrong passphrase")
                entries = self._open(
                    found[0], sealed, key, accept_rollback
                )  # damage is reported now, not at the next pull
                if not sealed.file_id:
                    self._write(header, key, entries, after=sealed)
        keycache.save(self._env, self.path, header, key, seconds)

    def change_passphrase(self, old: bytes, new: bytes, seconds: float) -> None:
        """Re-encrypt under `new` (fresh salt and nonce, same file id, next generation) and cache the new key."""
        with atomicfile.exclusive(self.path):
            found = atomicfile.read(self.path)
            if found is None:
                raise HelperError(
                    f"there is no cryptfile at {self.path} yet: run 'credbridge unlock --new' to create it"
                )
            sealed = self._parse(found[0])
            entries = self._open(found[0], sealed, self._key_from(sealed.key_header, old, "wrong current passphrase"))
            header, key = self._new_header(new)
            self._write(header, key, entries, after=sealed)
        keycache.save(self._env, self.path, header, key, seconds)

    # -- reading and writing -------------------------------------------------

    def _entries(self) -> fileformat.Entries:
        """The current content; decrypted again only when the file changed on disk. No file: nothing, no key."""
        info = atomicfile.safe_lstat(self.path)
        current = info is not None and self._snapshot is not None and self._snapshot.signature == _signature(info)
        debuglog.log("cryptfile", file=self.path, exists=info is not None, decrypted_copy_current=current)
        if info is None:
            self._snapshot = None
            return {}
        if current:
            self._key(self._snapshot.sealed)  # the session may have been locked since
            return self._snapshot.entries
        found = atomicfile.read(self.path)
        if found is None:
            return self._entries()
        data, opened = found
        sealed = self._parse(data)
        try:
            entries = self._open(data, sealed, self._key(sealed))
        except generations.Rollback:
            if self._replaced_since(opened):
                return self._entries()  # a writer replaced it meanwhile: the newer one is the answer
            raise
        self._snapshot = _Snapshot(_signature(opened), sealed, entries)
        return entries

    def _update(self, change: Callable[[fileformat.Entries], bool]) -> None:
        """Read-modify-write under the lock; written only if `change` changed something."""
        debuglog.log("cryptfile update", file=self.path)
        # a locked store refuses to create the file before its directory or lock file is made
        new_file_key = self._new_file_key() if atomicfile.safe_lstat(self.path) is None else None
        with atomicfile.exclusive(self.path):
            found = atomicfile.read(self.path)
            if found is None:
                entries: fileformat.Entries = {}
                if change(entries):
                    header, key = new_file_key or self._new_file_key()
                    self._write(header, key, entries, after=None)
            else:
                sealed = self._parse(found[0])
                key = self._key(sealed)
                entries = self._open(found[0], sealed, key)
                if change(entries):
                    self._write(sealed.key_header, key, entries, after=sealed)
        self._snapshot = None

    def _open(
        self, data: bytes, sealed: fileformat.Sealed, key: bytes, accept_rollback: bool = False
    ) -> fileformat.Entries:
        """Decrypt (which authenticates the header), then hold its generation against the newest seen."""
        entries = self._unseal(data, key)
        remember = generations.accept if accept_rollback else generations.check
        remember(self._env, self.path, sealed.file_id, sealed.generation)
        return entries

    def _write(
        self, header: bytes, key: bytes, entries: fileformat.Entries, after: Optional[fileformat.Sealed]
    ) -> None:
        """Replace the file with the generation after `after` (a new file when None), and remember it."""
        data = fileformat.seal(header, key, entries, after)
        atomicfile.replace(self.path, data)
        written = fileformat.parse(data)
        remember = generations.accept if after is None else generations.check
        remember(self._env, self.path, written.file_id, written.generation)

    def _replaced_since(self, opened: os.stat_result) -> bool:
        info = atomicfile.safe_lstat(self.path)
        return info is None or _signature(info) != _signature(opened)

    def _raise_if_held(self, locked: _Locked, server_url: str) -> None:
        """While locked, the header's index says whether the file holds `server_url` (see cryptformat)."""
        held = self._checked(fileformat.may_hold, locked.header, server_url)
        debuglog.log("cryptfile locked: index lookup", server=server_url, held=held)
        if held:
            raise locked

    # -- keys ----------------------------------------------------------------

    def _key(self, sealed: fileformat.Sealed) -> bytes:
        """The key for this file: from the session cache, else the passphrase file, else locked."""
        cached = keycache.load(self._env, self.path)
        if cached is not None and self._checked(fileformat.key_header, cached[0]) == sealed.key_header:
            debuglog.log("cryptfile unlocked by", source="the session cache (credbridge unlock)")
            return cached[1]
        passphrase = self._batch_passphrase()
        debuglog.log(
            "cryptfile unlocked by", source="nothing: locked" if passphrase is None else "CREDBRIDGE_PASSPHRASE_FILE"
        )
        if passphrase is None:
            raise _Locked(sealed.header)
        return self._key_from(
            sealed.key_header, passphrase, f"wrong passphrase in CREDBRIDGE_PASSPHRASE_FILE ({self._passphrase_file})"
        )

    def _new_file_key(self) -> tuple[bytes, bytes]:
        """(header, key) to create a missing file: the session's if unlocked, else from the passphrase file."""
        cached = keycache.load(self._env, self.path)
        if cached is not None:
            return cached
        passphrase = self._batch_passphrase()
        if passphrase is None:
            raise StoreLocked(LOCKED)
        return self._new_header(passphrase)

    def _new_header(self, passphrase: bytes) -> tuple[bytes, bytes]:
        if len(passphrase.decode("utf-8", "replace")) < MIN_PASSPHRASE_CHARACTERS:
            raise HelperError(
                f"a new passphrase needs at least {MIN_PASSPHRASE_CHARACTERS} characters: choose a longer one"
            )
        return fileformat.new_header(passphrase)

    def _key_from(self, key_header: bytes, passphrase: bytes, wrong: str) -> bytes:
        """Derive (once per key header and passphrase: the agent pays the KDF once) and verify."""
        memo = (key_header, hashlib.sha256(passphrase).digest())
        if memo not in self._derived:
            self._derived = {memo: self._checked(fileformat.derive_key, key_header, passphrase)}
        key = self._derived[memo]
        if key is None:
            raise HelperError(f"{wrong} for the cryptfile {self.path}")
        return key

    def _batch_passphrase(self) -> Optional[bytes]:
        """The first line of CREDBRIDGE_PASSPHRASE_FILE, read anew on every call (credbridge.files.secretfile's
        rules)."""
        if self._passphrase_file is None:
            return None
        passphrase = (secretfile.read(self._passphrase_file, "CREDBRIDGE_PASSPHRASE_FILE") or b"").splitlines()
        if not passphrase or not passphrase[0]:
            raise HelperError(
                f"CREDBRIDGE_PASSPHRASE_FILE {self._passphrase_file} is empty: put the passphrase on its first line"
            )
        return passphrase[0]

    # -- format errors, with the path ----------------------------------------

    def _parse(self, data: bytes) -> fileformat.Sealed:
        return self._checked(fileformat.parse, data)

    def _unseal(self, data: bytes, key: bytes) -> fileformat.Entries:
        return self._checked(fileformat.unseal, data, key)

    def _checked(self, operation: Callable[..., T], *args: object) -> T:
        try:
            return operation(*args)
        except fileformat.Damaged as error:
            raise HelperError(f"the cryptfile {self.path} {error}") from None
