"""credbridge agent: the per-user process that serves helper calls, like ssh-agent.

It keeps what is expensive to build (imported modules, the D-Bus connection
and Secret Service session, parsed stores) so that a helper call costs one
Unix-socket round trip. Only the user's own processes are served (checked
with SO_PEERCRED), each call with the caller's environment; the agent exits
after a spell of idleness, or when its socket is taken away.
"""

from __future__ import annotations

import fcntl
import os
import socket
import socketserver
import threading
import time
from typing import Callable, Mapping

from credbridge import debuglog, wire
from credbridge.protocol import handle
from credbridge.store import CredentialStore
from credbridge.stores import open_store

DEFAULT_IDLE_SECONDS = 900
MAX_REQUEST_BYTES = 32 * 1024 * 1024
REQUEST_READ_TIMEOUT_SECONDS = 10.0
MAX_CACHED_STORES = 16


class StoreCache:
    """One store per (helper, environment): a test's private bus never meets the user's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple, tuple[list, threading.Lock]] = {}

    def session(self, name: str, env: Mapping[str, str]) -> tuple[Callable[[], CredentialStore], threading.Lock]:
        """An opener that builds the store once, and the lock that serialises its calls."""
        key = (name, tuple(sorted(env.items())))
        with self._lock:
            if key not in self._entries:
                if len(self._entries) >= MAX_CACHED_STORES:
                    self._entries.pop(next(iter(self._entries)))
                self._entries[key] = ([], threading.Lock())
            slot, lock = self._entries[key]

        def opener() -> CredentialStore:
            if not slot:
                slot.append(open_store(name, env))
            return slot[0]

        return opener, lock


class _Handler(socketserver.BaseRequestHandler):
    server: "AgentServer"

    def handle(self) -> None:
        self.server.touch()
        connection: socket.socket = self.request
        if wire.peer_uid(connection) != os.getuid():
            return  # closed unanswered: the client serves itself at once
        connection.settimeout(REQUEST_READ_TIMEOUT_SECONDS)
        try:
            store, program, args, stdin, env = wire.parse_request(_read_all(connection))
        except (OSError, ValueError):
            return
        connection.sendall(wire.ACK)
        opener, lock = self.server.stores.session(store, env)
        with lock:
            (output, exit_code), debug_log = debuglog.capture(
                env, f"agent {os.getpid()}", lambda: handle(program, args, stdin, opener))
        connection.sendall(wire.reply(exit_code, output, debug_log))
        self.server.touch()


def _read_all(connection: socket.socket) -> bytes:
    chunks, size = [], 0
    while chunk := connection.recv(1 << 16):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise ValueError("request too large")
    return b"".join(chunks)


class AgentServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str) -> None:
        self.stores = StoreCache()
        self.last_activity = time.monotonic()
        super().__init__(path, _Handler)
        self.identity = _identity(path)

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def still_wanted(self, idle_seconds: float) -> bool:
        """False once idle too long, or once our socket file was removed or replaced."""
        return (time.monotonic() - self.last_activity < idle_seconds
                and _identity(self.server_address) == self.identity)


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


def main() -> None:
    """Serve until idle; exits at once if another agent already holds the lock."""
    os.umask(0o077)
    idle_seconds = float(os.environ.get("CREDBRIDGE_AGENT_IDLE_SECONDS", DEFAULT_IDLE_SECONDS))
    ensure_private_dir(wire.agent_dir(os.environ))
    lock = os.open(wire.agent_lock_path(os.environ), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return
    path = wire.agent_socket_path(os.environ)
    if os.path.lexists(path):
        os.unlink(path)
    server = AgentServer(path)
    os.ftruncate(lock, 0)
    os.write(lock, f"{os.getpid()}\n".encode())
    server.timeout = min(5.0, idle_seconds)
    try:
        while server.still_wanted(idle_seconds):
            server.handle_request()
    finally:
        if _identity(path) == server.identity:
            os.unlink(path)
        server.server_close()
