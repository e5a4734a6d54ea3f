"""docker-credential-keyring over one python-keyring backend (macOS, Windows, KWallet).

python-keyring cannot list and Windows limits a value to 2560 bytes, so every value is a record
split into parts under a generation, plus an index for `list` (docs/design.md, "keyring").
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from contextlib import contextmanager
from importlib import import_module
from typing import Any, Callable, Iterator, Mapping, Optional, TypeVar

from credbridge import debuglog, urls
from credbridge.errors import CredentialsNotFound, HelperError
from credbridge.files import userdirs
from credbridge.store import Credentials

T = TypeVar("T")

#: The python-keyring `username` of every entry: one entry per server whatever
#: its login, so a new username overwrites the old one and leaves nothing behind.
ACCOUNT = "credbridge"
INDEX_SERVICE = "credbridge-index"
CREDENTIAL_PREFIX = "credbridge:"
PART_PREFIX = "credbridge-part:"
HEAD_TAG = "credbridge-1"
#: A rewrite deletes the parts a reader is about to read at most this often in a row.
READ_ATTEMPTS = 5
LOCK_TIMEOUT_SECONDS = 30.0


def split(value: str, limit: Optional[int]) -> list[str]:
    """Consecutive pieces of `value`, each at most `limit` UTF-16 bytes, never splitting a character.

    Always at least one piece (an empty value is one empty piece); `limit`
    None means the backend takes any size.
    """
    if limit is None:
        return [value]
    pieces, start, size = [], 0, 0
    for index, char in enumerate(value):
        width = 4 if ord(char) > 0xFFFF else 2
        if size + width > limit:
            pieces.append(value[start:index])
            start, size = index, 0
        size += width
    pieces.append(value[start:])
    return pieces


#: What python-keyring's Linux backends read from the process environment (jeepney, dbus-python) rather
#: than from an argument: the agent serves callers with different session buses, so each call runs with
#: the caller's values, one call at a time.
PROCESS_ENV_NAMES = ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR")
_PROCESS_ENV_LOCK = threading.RLock()


@contextmanager
def callers_session(env: Mapping[str, str]) -> Iterator[None]:
    with _PROCESS_ENV_LOCK:
        saved = {name: os.environ.get(name) for name in PROCESS_ENV_NAMES}
        try:
            _set_environ({name: env.get(name) for name in PROCESS_ENV_NAMES})
            yield
        finally:
            _set_environ(saved)


def _set_environ(values: Mapping[str, Optional[str]]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def load_backend(spec: str, label: str, env: Mapping[str, str]) -> Any:
    """An instance of the python-keyring backend class `module:Class`, imported directly.

    Never keyring.get_keyring(): its entry-point scan and probing of every
    backend costs ~0.15 s per call. The class's own `priority` check says
    whether it can work here (python-keyring raises RuntimeError naming the
    cause, e.g. "macOS required"); it is asked, not trusted blindly.
    """
    module_name, _, class_name = spec.partition(":")
    try:
        backend_class = getattr(import_module(module_name), class_name)
        from keyring.backend import KeyringBackend
    except (ImportError, AttributeError) as error:
        raise HelperError(
            f"cannot load the keyring backend {spec} ({type(error).__name__}: {error}): "
            "check CREDBRIDGE_KEYRING_BACKEND and that python-keyring is installed"
        ) from None
    if not (isinstance(backend_class, type) and issubclass(backend_class, KeyringBackend)):
        raise HelperError(f"{spec} is not a python-keyring backend class: check CREDBRIDGE_KEYRING_BACKEND")
    try:
        with callers_session(env):
            priority = backend_class.priority
    except Exception as error:
        raise HelperError(
            f"the keyring ({label}) cannot be used here ({error}): "
            "set CREDBRIDGE_KEYRING_BACKEND to a keyring this machine has"
        ) from None
    if not priority or priority <= 0:
        raise HelperError(
            f"the keyring ({label}) cannot be used here (python-keyring rates it {priority}): "
            "set CREDBRIDGE_KEYRING_BACKEND to a keyring this machine has"
        )
    return backend_class()


def index_lock_path(env: Mapping[str, str]) -> str:
    """Per user, not per session: every process writing this user's keyring must meet on it."""
    if sys.platform == "win32":
        base = env.get("LOCALAPPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Local")
    else:
        base = userdirs.data_home(env)
    return os.path.join(base, "credbridge", "keyring-index")


class PyKeyringStore:
    """The four operations over a python-keyring backend, with an index and split values."""

    def __init__(
        self, backend: Any, label: str, chunk_bytes: Optional[int], lock_path: str, env: Mapping[str, str]
    ) -> None:
        self._env = env
        self._backend = backend
        self._label = label
        self._chunk_bytes = chunk_bytes
        self._lock_path = lock_path

    # -- the four operations -------------------------------------------------

    def store(self, credentials: Credentials) -> None:
        """The credential first, then the index: an index entry always has its credential."""
        with self._locked():
            index = self._index()
            self._write(
                CREDENTIAL_PREFIX + credentials.server_url, json.dumps([credentials.username, credentials.secret])
            )
            if index.get(credentials.server_url) != credentials.username:
                index[credentials.server_url] = credentials.username
                self._write(INDEX_SERVICE, json.dumps(index, sort_keys=True))

    def get(self, server_url: str) -> Credentials:
        match = urls.best_match(server_url, self._index())
        value = None if match is None else self._read(CREDENTIAL_PREFIX + match)
        if match is None or value is None:
            raise CredentialsNotFound()
        username, secret = self._decoded(value, CREDENTIAL_PREFIX + match)
        return Credentials(server_url, username, secret)

    def erase(self, server_url: str) -> None:
        """Credentials first, then the index: a secret is never left where no index entry leads.

        The query's own spelling is erased even when the index lacks it: a
        store killed between its two writes left exactly that behind.
        """
        with self._locked():
            index = self._index()
            doomed = urls.same_registry(server_url, index)
            for key in {*doomed, server_url}:
                self._delete(CREDENTIAL_PREFIX + key)
            if doomed:
                for key in doomed:
                    del index[key]
                self._write(INDEX_SERVICE, json.dumps(index, sort_keys=True))

    def list(self) -> dict[str, str]:
        return self._index()

    # -- records: a head naming its parts ------------------------------------

    def _index(self) -> dict[str, str]:
        debuglog.log("python-keyring index", backend=self._label, service=INDEX_SERVICE)
        value = self._read(INDEX_SERVICE)
        return {} if value is None else self._decoded(value, INDEX_SERVICE)

    def _read(self, service: str) -> Optional[str]:
        """The record's value, None if there is none; read again when a concurrent rewrite removed
        its head or parts meanwhile (readers take no lock)."""
        for _ in range(READ_ATTEMPTS):
            try:
                head = self._head(service)
                if head is None:
                    return None
                parts = [self._get(_part_service(service, head[0], number)) for number in range(head[1])]
            except _Vanished:
                continue
            if None not in parts:
                return "".join(parts)
        raise HelperError(
            f"the keyring entry {service} has lost parts of its value: "
            f"remove the entries named *{service} from the keyring ({self._label}) and log in again"
        )

    def _write(self, service: str, value: str) -> None:
        """Parts under a fresh generation, then the head, then the old parts go."""
        old = self._head(service)
        generation = os.urandom(4).hex()
        parts = split(value, self._chunk_bytes)
        for number, part in enumerate(parts):
            self._set(_part_service(service, generation, number), part)
        self._set(service, f"{HEAD_TAG} {generation} {len(parts)}")
        if old is not None:
            self._delete_parts(service, *old)

    def _delete(self, service: str) -> None:
        old = self._head(service)
        if old is not None:
            self._delete_entry(service)
            self._delete_parts(service, *old)

    def _delete_parts(self, service: str, generation: str, count: int) -> None:
        for number in range(count):
            self._delete_entry(_part_service(service, generation, number))

    def _delete_entry(self, service: str) -> None:
        from keyring.errors import PasswordDeleteError

        try:
            self._call(self._backend.delete_password, service, ACCOUNT)
        except (PasswordDeleteError, _Vanished):
            pass  # already gone: a killed writer's leftovers, or a reader's race

    def _head(self, service: str) -> Optional[tuple[str, int]]:
        """(generation, part count) of the record at `service`, None if absent."""
        head = self._get(service)
        if head is None:
            return None
        tag, _, rest = head.partition(" ")
        generation, _, count = rest.partition(" ")
        if tag != HEAD_TAG or not generation or not count.isdigit() or int(count) < 1:
            raise HelperError(
                f"the keyring entry {service} was not written by this credbridge: "
                f"remove it from the keyring ({self._label}), then log in again"
            )
        return generation, int(count)

    def _decoded(self, value: str, service: str) -> Any:
        try:
            return json.loads(value)
        except ValueError:
            raise HelperError(
                f"the keyring entry {service} is damaged: remove it from the keyring ({self._label}), then log in again"
            ) from None

    # -- the backend and the lock --------------------------------------------

    def _get(self, service: str) -> Optional[str]:
        """One value, None if absent; _Vanished if it was deleted between the backend's search and read."""
        return self._call(self._backend.get_password, service, ACCOUNT)

    def _set(self, service: str, value: str) -> None:
        """Written once more when the provider lost the item as it made it: seen once in a run of concurrent
        writers and readers on gnome-keyring (ItemNotFoundException from the writer holding the lock)."""
        try:
            self._call(self._backend.set_password, service, ACCOUNT, value)
        except _Vanished:
            self._call(self._backend.set_password, service, ACCOUNT, value)

    def _call(self, operation: Callable[..., T], *args: str) -> T:
        """One backend call; its failures become one line (python-keyring's own messages hold no secret)."""
        from keyring.errors import KeyringError, KeyringLocked, PasswordDeleteError

        try:
            with callers_session(self._env):
                return operation(*args)
        except (PasswordDeleteError, _Vanished):
            raise
        except KeyringLocked:
            raise HelperError(f"the keyring ({self._label}) is locked: unlock it and try again") from None
        except KeyringError as error:
            raise HelperError(f"the keyring ({self._label}) refused the request: {error}") from None
        except Exception as error:
            if _deleted_meanwhile(error):
                raise _Vanished() from None
            raise HelperError(
                f"the keyring ({self._label}) failed ({type(error).__name__}): check that it is running and unlocked"
            ) from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The writers' lock; an item the provider lost under it (never another writer) is one line, not a crash."""
        if sys.platform == "win32":
            lock = _windows_lock(self._lock_path + ".lock")
        else:
            from credbridge.files import atomicfile

            lock = atomicfile.exclusive(self._lock_path)
        with lock:
            try:
                yield
            except _Vanished:
                raise HelperError(
                    f"the keyring ({self._label}) lost an item while credbridge wrote to it: run the command again"
                ) from None


class _Vanished(Exception):
    """An item deleted between the provider's search and read: by a writer, while a reader fetched it."""


def _deleted_meanwhile(error: Exception) -> bool:
    """secretstorage's ItemNotFoundException, raised when python-keyring's SecretService backend found an
    item by search and it was gone by the time it asked for the secret."""
    if "secretstorage" not in sys.modules:
        return False
    from secretstorage.exceptions import ItemNotFoundException

    return isinstance(error, ItemNotFoundException)


def _part_service(service: str, generation: str, number: int) -> str:
    return f"{PART_PREFIX}{generation}.{number}:{service}"


@contextmanager
def _windows_lock(path: str) -> Iterator[None]:
    """Windows has no fcntl: msvcrt.locking on the lock file's first byte, released by close or exit.

    LK_NBLCK fails at once when another process holds the byte, so it is
    retried until a deadline rather than waiting on LK_LOCK's fixed 10 s.
    """
    import msvcrt

    os.makedirs(os.path.dirname(path), exist_ok=True)
    deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
    with open(path, "a+b") as stream:
        while True:
            try:
                stream.seek(0)
                msvcrt.locking(stream.fileno(), msvcrt.LK_NBLCK, 1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise HelperError(
                        f"another credbridge process holds {path} for over "
                        f"{LOCK_TIMEOUT_SECONDS:.0f} s: end it, or delete the file"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            stream.seek(0)
            msvcrt.locking(stream.fileno(), msvcrt.LK_UNLCK, 1)
