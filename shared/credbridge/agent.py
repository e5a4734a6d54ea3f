"""credbridge agent: the per-user process that serves helper calls, like ssh-agent.

It keeps what is expensive to build so that a helper call costs one Unix-socket round trip;
nothing a caller does can wedge it (docs/design.md, "The fast path"; docs/trust.md).
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import socketserver
import threading
import time
from typing import Mapping, Optional

from credbridge import __version__, audit, debuglog, helperclient, wire
from credbridge.errors import HelperError
from credbridge.files import execdirs
from credbridge.protocol import list_tokens_asked, serve
from credbridge.store import CredentialStore
from credbridge.stores.catalog import open_store
from credbridge.stores.cryptfile import keycache
from credbridge.stores.router import tokencache
from credbridge.stores.router.helperfiles import HelperFiles

DEFAULT_IDLE_SECONDS = 900
#: A call still running after this long is answered with an error and abandoned: a little below the
#: client's own wait, so the caller hears why instead of timing out (CREDBRIDGE_AGENT_CALL_SECONDS).
DEFAULT_CALL_SECONDS = wire.REPLY_TIMEOUT_SECONDS - 10
#: Of a call's time, what its helpers may take in all: a hung one is then named in the answer.
HELPER_SHARE_OF_A_CALL = 0.9
#: The whole request must arrive within this (not per read: a trickle cannot hold a connection).
REQUEST_READ_SECONDS = 10.0
MAX_CONNECTIONS = 64
#: Bytes of requests being read, all connections together (each is at most wire.MAX_REQUEST_BYTES).
MAX_BUFFERED_BYTES = 4 * wire.MAX_REQUEST_BYTES
#: Abandoned calls still stuck in a store: beyond this the agent exits (its threads with it) and the
#: next helper call starts a fresh one.
MAX_STUCK_CALLS = 8
#: How often a running agent removes the directories of execs killed with their watcher.
EXEC_SWEEP_SECONDS = 10.0
MAX_CACHED_ENVIRONMENTS = 16
MAX_IDLE_STORES_PER_ENVIRONMENT = 4


class StoreCache:
    """Idle stores per (helper, environment), each lent to one call at a time.

    A call never waits for another: it borrows an idle store or opens one.
    A store a hung call still holds is simply never given back, and `clear`
    (on lock and key expiry) drops every store and every caller environment
    kept as a key, even those lent out at that moment.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple, list[CredentialStore]] = {}
        self._generation = 0

    def lease(self, name: str, env: Mapping[str, str]) -> "StoreLease":
        return StoreLease(self, name, env)

    def borrow(self, key: tuple) -> tuple[Optional[CredentialStore], int]:
        """An idle store for this key (None: open one), and the generation it belongs to."""
        with self._lock:
            idle = self._idle.get(key)
            return (idle.pop() if idle else None), self._generation

    def give_back(self, key: tuple, generation: int, store: CredentialStore) -> None:
        with self._lock:
            if generation != self._generation:
                return  # cleared since it was lent out
            if key not in self._idle and len(self._idle) >= MAX_CACHED_ENVIRONMENTS:
                self._idle.pop(next(iter(self._idle)))
            idle = self._idle.setdefault(key, [])
            if len(idle) < MAX_IDLE_STORES_PER_ENVIRONMENT:
                idle.append(store)

    def clear(self) -> None:
        with self._lock:
            self._idle.clear()
            self._generation += 1


class StoreLease:
    """The store of one call: opened (or borrowed) only if the action needs one, given back after."""

    def __init__(self, cache: StoreCache, name: str, env: Mapping[str, str]) -> None:
        self._cache, self._name, self._env = cache, name, env
        self._key = (name, tuple(sorted(env.items())))
        self._store: Optional[CredentialStore] = None
        self._generation = 0

    def open(self) -> CredentialStore:
        if self._store is None:
            self._store, self._generation = self._cache.borrow(self._key)
            if self._store is None:
                self._store = open_store(self._name, self._env)
        return self._store

    def give_back(self) -> None:
        if self._store is not None:
            self._cache.give_back(self._key, self._generation, self._store)


class Call:
    """One helper call, run in a thread of its own so that the connection can be answered at the deadline."""

    def __init__(
        self,
        server: "AgentServer",
        store: str,
        program: str,
        args: list[str],
        stdin: bytes,
        env: Mapping[str, str],
        helper_pid: int,
    ) -> None:
        self._server, self._program, self._args, self._stdin, self._env = server, program, args, stdin, env
        self._lease = server.stores.lease(store, env)
        self._audit = audit.begin(env, store, program, args, helper_pid, "agent")  # helper waits
        self._finished = threading.Event()
        self._abandoned = False
        self._reply = b""

    def answer(self, seconds: float) -> bytes:
        """The reply, or a timeout error once `seconds` have passed (the call then goes on unwatched)."""
        deadline = time.monotonic() + seconds * HELPER_SHARE_OF_A_CALL
        threading.Thread(target=self._run, args=(deadline,), daemon=True).start()
        if self._finished.wait(seconds):
            return self._reply
        with self._server.counting:
            self._abandoned = not self._finished.is_set()
            self._server.stuck_calls += self._abandoned
        if not self._abandoned:
            return self._reply
        action = " ".join(self._args)
        return wire.reply(
            1,
            (
                f"credbridge: {self._program} {action} did not finish within {seconds:g} s and was given up "
                f"(a keyring waiting for a prompt, a FIFO or a hung helper?): "
                f"run it again with CREDBRIDGE_DEBUG=1 to see where it stops\n"
            ).encode(),
        )

    def _run(self, helpers_deadline: float) -> None:
        helperclient.answer_by(helpers_deadline)
        # the record is written before the answer: a helper that returned is logged
        (output, exit_code), debug_log = debuglog.capture(
            self._env,
            f"agent {os.getpid()}",
            lambda: audit.finish(
                self._audit,
                serve(self._program, self._args, self._stdin, self._lease.open, list_tokens_asked(self._env)),
            ),
        )
        with self._server.counting:
            self._reply = wire.reply(exit_code, output, debug_log)
            self._finished.set()
            if self._abandoned:
                self._server.stuck_calls -= 1  # its store is not given back: it hung once
                return
        self._lease.give_back()


class _Handler(socketserver.BaseRequestHandler):
    server: "AgentServer"

    def handle(self) -> None:
        self.server.touch()
        connection: socket.socket = self.request
        peer = wire.peer_credentials(connection)
        if peer is None or peer[1] != os.getuid():
            return  # closed unanswered: the client serves itself at once
        try:
            request = self.server.read_request(connection)
        except (OSError, ValueError):
            return
        connection.sendall(wire.ACK)
        command = wire.parse_control(request)
        if command is not None:
            connection.sendall(self.server.control(command))
            return
        try:
            store, program, args, stdin, env = wire.parse_request(request)
        except ValueError:
            return
        del request
        call = Call(self.server, store, program, args, stdin, env, helper_pid=peer[0])
        connection.sendall(call.answer(self.server.call_seconds))
        self.server.touch()


class AgentServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, path: str, call_seconds: float) -> None:
        self.stores = StoreCache()
        self.tokens = tokencache.activate(HelperFiles(os.path.dirname(path)))
        self.call_seconds = call_seconds
        self.last_activity = time.monotonic()
        self.counting = threading.Lock()
        self.connections = 0
        self.buffered_bytes = 0
        self.stuck_calls = 0
        self.stopping = False
        self._place_version = -1
        self._key_expiry = float("inf")
        self._next_sweep = 0.0
        super().__init__(path, _Handler)
        self.identity = _identity(path)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        """A connection over the cap is closed at once: its client serves the call itself."""
        with self.counting:
            full = self.connections >= MAX_CONNECTIONS
            self.connections += not full
        if full:
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.counting:
                self.connections -= 1

    def read_request(self, connection: socket.socket) -> bytes:
        """The whole request within REQUEST_READ_SECONDS, within the size and shared byte limits."""
        deadline = time.monotonic() + REQUEST_READ_SECONDS
        chunks: list[bytes] = []
        held = 0
        try:
            while True:
                connection.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = connection.recv(1 << 16)
                if not chunk:
                    return b"".join(chunks)
                self._reserve(len(chunk), held)
                chunks.append(chunk)
                held += len(chunk)
        finally:
            with self.counting:
                self.buffered_bytes -= held

    def _reserve(self, size: int, held: int) -> None:
        """Count `size` more bytes read for a request already holding `held`, or refuse them."""
        with self.counting:
            if held + size > wire.MAX_REQUEST_BYTES or self.buffered_bytes + size > MAX_BUFFERED_BYTES:
                raise ValueError("request too large, or too many bytes being read at once")
            self.buffered_bytes += size

    def control(self, command: str) -> bytes:
        """`credbridge lock`: forget stores, caller environments and tokens; `stop-agent`: exit."""
        if command == "lock":
            self.stores.clear()
            self.tokens.clear()
        elif command == "forget-tokens":  # `credbridge login` / `logout`, served in process
            self.tokens.clear()
        elif command == "stop":
            self.stopping = True
        else:
            return wire.reply(1, f"credbridge agent: unknown control command {command!r}\n".encode())
        return wire.reply(0, b"")

    def forget_at_key_expiry(self, place: str) -> None:
        """Drop every store (decrypted secrets, caller environments) once a cached key expires."""
        try:
            version = os.stat(place).st_mtime_ns
            if version != self._place_version or time.time() >= self._key_expiry:
                if time.time() >= self._key_expiry:
                    self.stores.clear()
                self._place_version, self._key_expiry = version, keycache.sweep(place)
        except (OSError, HelperError):
            self.stores.clear()

    def sweep_exec_dirs(self, place: str) -> None:
        """A killed exec's plaintext remote.yaml, its watcher killed too, is gone within seconds."""
        if time.monotonic() >= self._next_sweep:
            execdirs.remove_stale(place)
            self._next_sweep = time.monotonic() + EXEC_SWEEP_SECONDS

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def still_wanted(self, idle_seconds: float) -> bool:
        """False once idle too long, asked to stop, too many calls are stuck, or our socket file went."""
        return (
            time.monotonic() - self.last_activity < idle_seconds
            and not self.stopping
            and self.stuck_calls < MAX_STUCK_CALLS
            and _identity(self.server_address) == self.identity
        )


def _identity(path: str) -> tuple[int, int]:
    try:
        info = os.lstat(path)
    except OSError:
        return (-1, -1)
    return (info.st_dev, info.st_ino)


def ensure_private_dir(path: str) -> None:
    """Create the agent directory 0700, or refuse one that is not ours alone."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    if not wire.private_dir_is_safe(path):
        raise SystemExit(f"credbridge agent: {path} is not a private directory owned by you (mode 0700)")


def _seconds(name: str, default: float, ceiling: float = float("inf")) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        value = default
    return min(value, ceiling) if value > 0 else default


def main() -> None:
    """Serve until idle; exits at once if another agent already holds the lock."""
    os.umask(0o077)
    os.chdir("/")  # nothing resolves against wherever the first helper call happened
    idle_seconds = _seconds("CREDBRIDGE_AGENT_IDLE_SECONDS", DEFAULT_IDLE_SECONDS)
    call_seconds = _seconds("CREDBRIDGE_AGENT_CALL_SECONDS", DEFAULT_CALL_SECONDS, DEFAULT_CALL_SECONDS)
    directory = wire.agent_dir(os.environ)
    if directory is None:
        raise SystemExit(
            "credbridge agent: no private place for the agent: set XDG_RUNTIME_DIR to a directory of "
            "yours alone (mode 0700), or make ~/.local/state writable (helpers serve every call "
            "in process meanwhile)"
        )
    ensure_private_dir(directory)
    execdirs.remove_stale(directory)
    try:
        keycache.remember_place(os.environ, directory)  # so that `credbridge lock` from any session reaches us
    except (OSError, HelperError):
        pass  # a read-only HOME: lock from this session still does
    lock = os.open(f"{directory}/agent-{__version__}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return
    path = wire.socket_in(directory)
    if os.path.lexists(path):
        os.unlink(path)
    try:
        server = AgentServer(path, call_seconds)
    except OSError as error:  # one line, as every error of ours
        raise SystemExit(f"credbridge agent: cannot listen on {path}: {error.strerror or error}") from None
    os.ftruncate(lock, 0)
    os.write(lock, f"{os.getpid()}\n".encode())
    server.timeout = min(1.0, idle_seconds)
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "stopping", True))  # leave through `finally`
    try:
        while server.still_wanted(idle_seconds):
            server.handle_request()
            server.forget_at_key_expiry(directory)
            server.sweep_exec_dirs(directory)
    finally:
        if _identity(path) == server.identity:
            os.unlink(path)
        server.server_close()
        server.tokens.clear()  # and the helpers' token files in `directory`
