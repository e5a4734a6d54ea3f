"""The Linux keyring: the freedesktop Secret Service (gnome-keyring, KeePassXC, ...).

Reads and writes the very items of Go's docker-credential-secretservice (docs/protocol.md
section 3), so users can switch helpers either way; every D-Bus call and prompt has a deadline
(docs/compatibility.md, "Secret Service providers").
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Optional, TypeVar

import secretstorage
from jeepney import DBusAddress, HeaderFields, MessageType, new_method_call
from jeepney.bus import get_bus
from jeepney.bus_messages import MatchRule, message_bus
from jeepney.io.blocking import DBusConnection, prep_socket
from jeepney.wrappers import DBusErrorResponse, Properties
from secretstorage.exceptions import ItemNotFoundException, SecretServiceNotAvailableException
from secretstorage.util import format_secret

from credbridge import debuglog, urls
from credbridge.errors import CredentialsNotFound, HelperError, StoreLocked, StoreUnavailable
from credbridge.store import Credentials

SCHEMA = "io.docker.Credentials"
#: The attributes Go's helper searches by; items of other programs never match.
DOCKER_ITEM = {"docker_cli": "1", "xdg:schema": SCHEMA}
#: Go's `credentials.CredsLabel`, stored as the `label` attribute of every item.
CREDS_LABEL = "Docker Credentials"
SECRETS_BUS_NAME = "org.freedesktop.secrets"
SERVICE = DBusAddress("/org/freedesktop/secrets", SECRETS_BUS_NAME, "org.freedesktop.Secret.Service")
PROMPT_INTERFACE = "org.freedesktop.Secret.Prompt"
CALL_TIMEOUT_SECONDS = 10.0
#: How long a prompt may wait for a person: one at the screen needs time to type a password.
PROMPT_TIMEOUT_SECONDS = {"desktop": 60.0, "headless": 5.0}
#: Requests awaiting a reply at once: dbus-daemon's built-in max_replies_per_connection is 128 (Debian's
#: session bus raises it to 50000), and over the limit it answers with errors instead.
PIPELINE_WINDOW = 64
#: Error replies meaning "that item is gone": it was deleted between the search and the read.
VANISHED_ERRORS = frozenset(
    {
        "org.freedesktop.DBus.Error.UnknownObject",
        "org.freedesktop.DBus.Error.UnknownMethod",
        "org.freedesktop.Secret.Error.NoSuchObject",
    }
)
HEADLESS_FIX = (
    "on a machine without a desktop session, start one with `dbus-run-session` and `gnome-keyring-daemon --unlock`"
)
UNKNOWN_PROVIDER = "the Secret Service"
#: The provider owning org.freedesktop.secrets, by its process name (/proc/<pid>/comm, cut at 15 bytes).
PROVIDER_NAMES = {
    "gnome-keyring-d": "gnome-keyring",
    "keepassxc": "KeePassXC",
    "kwalletd5": "KWallet",
    "kwalletd6": "KWallet",
    "ksecretd": "KWallet",
}
#: What a person does when the provider waits for them: each provider locks in its own way.
UNLOCK_ADVICE = {
    "gnome-keyring": f"unlock the keyring in your desktop session; {HEADLESS_FIX}",
    "KeePassXC": "unlock the database in KeePassXC (its Secret Service integration must expose a group of it)",
    "KWallet": "open the wallet in KWallet (kwalletmanager5), or log in again so that PAM opens it",
}


T = TypeVar("T")


class _BoundedConnection(DBusConnection):
    """A jeepney connection whose every call has a deadline (secretstorage sets none)."""

    def send_and_get_reply(self, message: Any, *, timeout: Optional[float] = CALL_TIMEOUT_SECONDS) -> Any:
        return super().send_and_get_reply(message, timeout=timeout)


class SecretServiceStore:
    """docker-credential-keyring on Linux."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._bus_address = _session_bus_address(env)
        self._prompt_timeout = PROMPT_TIMEOUT_SECONDS[
            "desktop" if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY") else "headless"
        ]
        self._connection: Optional[DBusConnection] = None
        self._session: Any = None

    # -- the four operations -------------------------------------------------

    def store(self, credentials: Credentials) -> None:
        """Create or replace the item; a new username for the server replaces the old one.

        Go's helper keeps one item per username and `get` then returns either
        at random; the latest login winning is what a user expects.
        """

        def run() -> None:
            collection = self._default_collection()
            self._unlock(collection, collection.collection_path)
            attributes = {
                "label": CREDS_LABEL,
                "server": credentials.server_url,
                "username": credentials.username,
                **DOCKER_ITEM,
            }
            earlier = self._docker_items({"server": credentials.server_url})
            same_login = [path for path, found in earlier.items() if found.get("username") == credentials.username]
            if same_login:
                # Updated in place, not replaced through CreateItem: KeePassXC before 2.7.6 asks a
                # person to allow a replace even with access confirmation off (its issue #9255).
                self._set_secret(same_login[0], credentials.secret.encode())
            else:
                # Display label as written by the Debian/Ubuntu build (0.6.x) of the Go
                # helper, whose `list` reports labels: its list then still works.
                self._create_item(
                    collection.collection_path, credentials.server_url, attributes, credentials.secret.encode()
                )
            for path in earlier:
                if path not in same_login[:1]:
                    self._delete(path)

        self._call(run)

    def get(self, server_url: str) -> Credentials:
        """Two D-Bus round trips in the usual case: search, then attributes and secret together.

        An item deleted between the search and the read (a concurrent erase, or
        a login replaced by a new one) is skipped; if every one found went, the
        search is made once more, so a replaced login is found, not "not found".
        """

        def run() -> Credentials:
            for _search in range(2):
                paths = self._candidates(server_url)
                if not paths:
                    raise CredentialsNotFound()
                login = self._newest_login(paths)
                if login is not None:
                    return Credentials(server_url, *login)
            raise CredentialsNotFound()

        return self._call(run)

    def _candidates(self, server_url: str) -> list[str]:
        """The items of the server's exact `server` attribute, else of its best match among all; locked ones
        are unlocked first (a prompt), so that a locked newer login is never passed over for an older one."""
        paths = self._search({"server": server_url})
        debuglog.log("secret service items with this exact server attribute", bus=self._bus_address, items=paths)
        if paths:
            return paths
        servers = {attributes.get("server", "") for attributes in self._docker_items({}).values()}
        match = urls.best_match(server_url, servers)
        return self._search({"server": match}) if match is not None else []

    def erase(self, server_url: str) -> None:
        def run() -> None:
            everything = self._docker_items({})
            servers = {attributes.get("server", "") for attributes in everything.values()}
            doomed = set(urls.same_registry(server_url, servers))
            for path, attributes in everything.items():
                if attributes.get("server", "") in doomed:
                    self._unlock_item(path)
                    self._delete(path)

        self._call(run)

    def list(self) -> dict[str, str]:
        """Keyed on the `server` attribute, whatever the display label style."""

        def run() -> dict[str, str]:
            items = self._docker_items({})
            paths_by_server: dict[str, list[str]] = {}
            for path, attributes in items.items():
                if "server" in attributes:
                    paths_by_server.setdefault(attributes["server"], []).append(path)
            newest = {server: self._newest_first(paths) for server, paths in paths_by_server.items()}
            return {server: items[paths[0]].get("username", "") for server, paths in newest.items() if paths}

        return self._call(run)

    # -- D-Bus plumbing ------------------------------------------------------

    def _call(self, operation: Callable[[], T], retry: bool = True) -> T:
        """Run an operation; every failure becomes one actionable line."""
        try:
            return operation()
        except HelperError:
            raise
        except Exception as error:
            self._disconnect()
            if retry and isinstance(error, (BrokenPipeError, ConnectionResetError)):
                return self._call(operation, retry=False)  # the bus restarted since the agent's last call
            explained = _explain(error, self._bus_address)
            if explained is None:
                raise
            raise explained from None

    def _bus(self) -> DBusConnection:
        if self._connection is None:
            self._connection = _BoundedConnection(prep_socket(get_bus(self._bus_address), timeout=CALL_TIMEOUT_SECONDS))
            self._session = None
        return self._connection

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None
        self._session = None

    def _secret_session(self) -> Any:
        if self._session is None:
            self._session = secretstorage.util.open_session(self._bus())
        return self._session

    def _item(self, path: str) -> secretstorage.Item:
        return secretstorage.Item(self._bus(), path, self._secret_session())

    def _default_collection(self) -> secretstorage.Collection:
        debuglog.log("secret service", bus=self._bus_address, collection="alias default")
        try:
            return secretstorage.get_collection_by_alias(self._bus(), "default")
        except ItemNotFoundException:
            raise HelperError(
                "the Secret Service has no 'default' collection: create one, or set a collection as "
                "default in your keyring manager (KeePassXC: enable Secret Service integration and expose a group)"
            ) from None

    def _unlock(self, target: Any, path: str) -> None:
        """Unlock a secretstorage Collection or Item (at `path`) if it is locked."""
        if target.is_locked():
            self._unlock_paths([path])

    def _unlock_item(self, path: str) -> None:
        """Unlock the item at `path` if locked; one deleted meanwhile needs nothing."""
        try:
            self._unlock(self._item(path), path)
        except ItemNotFoundException:
            pass

    def _unlock_paths(self, paths: list[str]) -> None:
        """One Unlock request for all paths."""
        _unlocked, prompt = self._checked(
            self._bus().send_and_get_reply(new_method_call(SERVICE, "Unlock", "ao", (paths,)))
        )
        self._complete(prompt, "unlock")

    def _create_item(self, collection_path: str, label: str, attributes: dict[str, str], secret: bytes) -> None:
        """CreateItem replacing the item with the same attributes; KeePassXC answers with a prompt."""
        properties = {
            "org.freedesktop.Secret.Item.Label": ("s", label),
            "org.freedesktop.Secret.Item.Attributes": ("a{ss}", attributes),
        }
        collection = DBusAddress(collection_path, SECRETS_BUS_NAME, "org.freedesktop.Secret.Collection")
        _item, prompt = self._checked(
            self._bus().send_and_get_reply(
                new_method_call(
                    collection,
                    "CreateItem",
                    "a{sv}(oayays)b",
                    (properties, format_secret(self._secret_session(), secret, "text/plain"), True),
                )
            )
        )
        self._complete(prompt, "store the login")

    def _set_secret(self, path: str, secret: bytes) -> None:
        item = DBusAddress(path, SECRETS_BUS_NAME, "org.freedesktop.Secret.Item")
        self._checked(
            self._bus().send_and_get_reply(
                new_method_call(
                    item, "SetSecret", "(oayays)", (format_secret(self._secret_session(), secret, "text/plain"),)
                )
            )
        )

    def _delete(self, path: str) -> None:
        """Delete one item; one deleted meanwhile (by a concurrent erase) is as good as deleted."""
        reply = self._bus().send_and_get_reply(
            new_method_call(DBusAddress(path, SECRETS_BUS_NAME, "org.freedesktop.Secret.Item"), "Delete")
        )
        if not _deleted_meanwhile(reply):
            self._complete(self._checked(reply)[0], "delete the login")

    def _complete(self, prompt: str, purpose: str) -> None:
        """Run a prompt (if the provider asked for one) until its Completed signal, within the prompt deadline.

        KeePassXC emits Completed without a destination: the bus lets such a
        signal in only through a match rule, so one is added before Prompt
        is called (gnome-keyring sends it to the caller; it arrives either
        way). A prompt nobody answers in time is dismissed.
        """
        if prompt == "/":
            return
        bus = self._bus()
        # The bus resolves the well-known sender name; the message itself carries the unique name.
        completed = MatchRule(type="signal", interface=PROMPT_INTERFACE, member="Completed", path=prompt)
        from_provider = MatchRule(
            type="signal", sender=SECRETS_BUS_NAME, interface=PROMPT_INTERFACE, member="Completed", path=prompt
        )
        self._checked(bus.send_and_get_reply(message_bus.AddMatch(from_provider)))
        address = DBusAddress(prompt, SECRETS_BUS_NAME, PROMPT_INTERFACE)
        try:
            with bus.filter(completed) as signals:
                self._checked(bus.send_and_get_reply(new_method_call(address, "Prompt", "s", ("",))))
                dismissed, _result = bus.recv_until_filtered(signals, timeout=self._prompt_timeout).body
        except TimeoutError:
            bus.send(new_method_call(address, "Dismiss"))  # closes the provider's dialog; no need to wait
            self._disconnect()  # drops the match rule with the connection
            raise self._prompt_error(purpose, f"was not answered within {self._prompt_timeout:.0f} s") from None
        except BaseException:
            self._disconnect()  # the agent's connection lives on: no match rule may stay behind on it
            raise
        self._checked(bus.send_and_get_reply(message_bus.RemoveMatch(from_provider)))
        if dismissed:
            raise self._prompt_error(purpose, "was dismissed")

    def _prompt_error(self, purpose: str, why: str) -> HelperError:
        """One line naming the provider, what its prompt was for, and what a person does about it."""
        provider = _provider_at(self._bus_address)
        if purpose == "unlock":
            return StoreLocked(f"{provider} is locked and its unlock prompt {why}: {unlock_advice(provider)}")
        return HelperError(
            f"{provider}'s prompt to {purpose} {why}: answer it in {provider}, or {unlock_advice(provider)}"
        )

    def _search_items(self, extra: dict[str, str]) -> tuple[list[str], list[str]]:
        """(unlocked, locked) paths of the Docker items matching `extra`, in every collection."""
        unlocked, locked = self._checked(
            self._bus().send_and_get_reply(
                new_method_call(SERVICE, "SearchItems", "a{ss}", ({**extra, **DOCKER_ITEM},))
            )
        )
        return list(unlocked), list(locked)

    def _search(self, extra: dict[str, str]) -> list[str]:
        """Paths of the Docker items matching `extra`; locked ones are unlocked first."""
        unlocked, locked = self._search_items(extra)
        if locked:
            self._unlock_paths(locked)
        return unlocked + locked

    def _docker_items(self, extra: dict[str, str]) -> dict[str, dict[str, str]]:
        """All Docker items matching `extra` with their attributes, in one pipelined batch.

        One Properties.Get per item, all sent before any reply is read: one
        round trip for the lot, not one per item. Locked items are listed
        too (attributes are readable without unlocking).
        """
        unlocked, locked = self._search_items(extra)
        paths = unlocked + locked
        replies = _pipelined(self._bus(), [_item_property(path, "Attributes") for path in paths])
        return {
            path: dict(self._checked(reply)[0][1])
            for path, reply in zip(paths, replies)
            if not _deleted_meanwhile(reply)
        }

    def _newest_login(self, paths: list[str]) -> Optional[tuple[str, str]]:
        """(username, secret) of the most recently modified item still there, in one round trip each.

        Several items for one server exist only when Go's helper wrote them
        (one per username): then the latest login wins. None if all were deleted meanwhile.
        """
        session = self._secret_session()
        for path in self._newest_first(paths):
            attributes_reply, secrets_reply = _pipelined(
                self._bus(),
                [
                    _item_property(path, "Attributes"),
                    new_method_call(SERVICE, "GetSecrets", "aoo", ([path], session.object_path)),
                ],
            )
            if _deleted_meanwhile(attributes_reply) or _deleted_meanwhile(secrets_reply):
                continue  # KeePassXC answers GetSecrets of a deleted item with an error, gnome-keyring leaves it out
            secrets = self._checked(secrets_reply)[0]
            if path not in secrets:
                raise CredentialsNotFound()  # still locked: gnome-keyring leaves a locked item out
            username = dict(self._checked(attributes_reply)[0][1]).get("username", "")
            return username, _open_secret(session, secrets[path]).decode("utf-8", errors="replace")
        return None

    def _newest_first(self, paths: list[str]) -> list[str]:
        """Paths still there, the most recently modified first, fetched in one batch; free for a single path."""
        if len(paths) < 2:
            return paths
        replies = _pipelined(self._bus(), [_item_property(path, "Modified") for path in paths])
        modified = {
            path: self._checked(reply)[0][1] for path, reply in zip(paths, replies) if not _deleted_meanwhile(reply)
        }
        return sorted(modified, key=lambda path: (modified[path], path), reverse=True)

    @staticmethod
    def _checked(reply: Any) -> Any:
        if reply.header.message_type == MessageType.error:
            raise DBusErrorResponse(reply)
        return reply.body


def _item_property(path: str, name: str) -> Any:
    return Properties(DBusAddress(path, SECRETS_BUS_NAME, "org.freedesktop.Secret.Item")).get(name)


def _open_secret(session: Any, secret: tuple) -> bytes:
    """The plain secret from a Secret Service (session, parameters, value, type) struct.

    As secretstorage's Item.get_secret does, for a secret fetched in a
    batch: AES-128-CBC with PKCS#7 padding under the DH session key, or
    the value itself in a plain session.
    """
    _session, parameters, value, _content_type = secret
    if not session.encrypted:
        return bytes(value)
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.padding import PKCS7

    try:
        decryptor = Cipher(algorithms.AES(session.aes_key), modes.CBC(bytes(parameters))).decryptor()
        unpadder = PKCS7(algorithms.AES.block_size).unpadder()
        return unpadder.update(decryptor.update(bytes(value)) + decryptor.finalize()) + unpadder.finalize()
    except ValueError:  # a wrong key or a damaged value: never answer with a truncated or empty secret
        raise HelperError(
            "the Secret Service sent a secret that does not decrypt under this session's key: try again"
        ) from None


def _pipelined(connection: DBusConnection, messages: list[Any]) -> list[Any]:
    """Send the messages and collect the replies in order, at most PIPELINE_WINDOW awaiting at a time."""
    serials: list[int] = []
    replies: dict[int, Any] = {}

    def receive_one() -> None:
        reply = connection.receive(timeout=CALL_TIMEOUT_SECONDS)
        reply_to = reply.header.fields.get(HeaderFields.reply_serial)
        if reply_to is not None:
            replies[reply_to] = reply

    for message in messages:
        while len(serials) - len(replies) >= PIPELINE_WINDOW:
            receive_one()
        serial = next(connection.outgoing_serial)
        connection.send(message, serial=serial)
        serials.append(serial)
    while len(replies) < len(serials):
        receive_one()
    return [replies[serial] for serial in serials]


def _deleted_meanwhile(reply: Any) -> bool:
    """An error reply saying the item no longer exists (any other error is a real failure)."""
    return (
        reply.header.message_type == MessageType.error
        and reply.header.fields.get(HeaderFields.error_name) in VANISHED_ERRORS
    )


def _session_bus_address(env: Mapping[str, str]) -> str:
    """DBUS_SESSION_BUS_ADDRESS, else the systemd per-user bus, as libdbus does."""
    address = env.get("DBUS_SESSION_BUS_ADDRESS")
    if address:
        return address
    runtime_bus = os.path.join(env.get("XDG_RUNTIME_DIR", ""), "bus")
    if env.get("XDG_RUNTIME_DIR") and os.path.exists(runtime_bus):
        return "unix:path=" + runtime_bus
    raise StoreUnavailable(
        "no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is unset (an ssh or batch session?): "
        f"run inside `dbus-run-session`, or {HEADLESS_FIX}"
    )


def _explain(error: Exception, bus_address: str) -> Optional[HelperError]:
    """One actionable line for each way the Secret Service is out of reach; None if unknown."""
    if isinstance(error, (FileNotFoundError, ConnectionRefusedError)):
        return StoreUnavailable(
            f"cannot connect to the D-Bus session bus at {bus_address} ({error.strerror}): the session that "
            f"owned it has ended; log in again or unset DBUS_SESSION_BUS_ADDRESS, or {HEADLESS_FIX}"
        )
    if isinstance(error, TimeoutError):
        provider = _provider_at(bus_address)
        return StoreUnavailable(
            f"{provider} did not answer within {CALL_TIMEOUT_SECONDS:.0f} s "
            f"(it may be waiting to be unlocked): {unlock_advice(provider)}"
        )
    if isinstance(error, (SecretServiceNotAvailableException, DBusErrorResponse)):
        name = getattr(error, "name", "") or getattr(getattr(error, "__cause__", None), "name", "")
        if (
            "ServiceUnknown" in name
            or "NameHasNoOwner" in name
            or isinstance(error, SecretServiceNotAvailableException)
        ):
            return StoreUnavailable(
                "no Secret Service provider on the D-Bus session bus: start gnome-keyring-daemon "
                f"(or KeePassXC with Secret Service integration), or {HEADLESS_FIX}"
            )
        return HelperError(f"the Secret Service refused the request ({name or 'D-Bus error'})")
    if isinstance(error, OSError):
        return HelperError(f"D-Bus session bus error at {bus_address}: {error.strerror or type(error).__name__}")
    if isinstance(error, ValueError):
        return HelperError(f"cannot use the D-Bus address {bus_address!r}: it is not a valid unix: address")
    return None


def unlock_advice(provider: str) -> str:
    """What a person does when `provider` (as provider_name says) waits for them."""
    return UNLOCK_ADVICE.get(provider, f"unlock it in {provider} or answer its prompt; {HEADLESS_FIX}")


def provider_name(env: Mapping[str, str]) -> Optional[str]:
    """The program serving the Secret Service on the caller's session bus, as people call it; None if none."""
    try:
        address = _session_bus_address(env)
    except HelperError:
        return None
    name = _provider_at(address)
    return None if name == UNKNOWN_PROVIDER else name


def _provider_at(bus_address: str, timeout: float = 2.0) -> str:
    """Who owns org.freedesktop.secrets, asked of the bus itself (it answers even when the provider hangs)."""
    try:
        bus = _BoundedConnection(prep_socket(get_bus(bus_address), timeout=timeout))
    except (OSError, ValueError):
        return UNKNOWN_PROVIDER
    try:
        reply = bus.send_and_get_reply(message_bus.GetConnectionUnixProcessID(SECRETS_BUS_NAME), timeout=timeout)
        if reply.header.message_type == MessageType.error:
            return UNKNOWN_PROVIDER
        with open(f"/proc/{reply.body[0]}/comm", encoding="utf-8", errors="replace") as comm:
            command = comm.read().strip()
    except (OSError, TimeoutError):
        return UNKNOWN_PROVIDER
    finally:
        bus.close()
    return PROVIDER_NAMES.get(command, command or UNKNOWN_PROVIDER)


def provider_reachable(env: Mapping[str, str], timeout: float = 2.0) -> bool:
    """Whether a Secret Service runs on the caller's session bus.

    The router's default primary store depends on it: a headless session
    (no bus, or a bus without a running provider) gets the encrypted file
    instead. A provider D-Bus could only activate does not count: started
    headless, gnome-keyring has a locked collection and no one to unlock it.
    """
    from jeepney.bus_messages import message_bus

    try:
        bus = _BoundedConnection(prep_socket(get_bus(_session_bus_address(env)), timeout=timeout))
    except (HelperError, OSError, ValueError):
        return False
    try:
        return bool(bus.send_and_get_reply(message_bus.NameHasOwner(SECRETS_BUS_NAME), timeout=timeout).body[0])
    except (OSError, TimeoutError, DBusErrorResponse):
        return False
    finally:
        bus.close()
