"""What runs on every helper call: forward to the per-user agent, else serve in process.

A helper runs on every pull, so this module imports only interpreter
builtins (`posix`, `_socket`) until it knows it must do the work itself:
Python's start-up, not D-Bus, is the cost of a call (docs DESIGN.md, "The
fast path"). A call is never lost to the agent: if none answers in time, it
is served here, and an agent is started in the background for the next call.
"""

import posix
import sys

from credbridge import wire

TYPE_CHECKING = False  # typing costs more import time than a whole agent round trip
if TYPE_CHECKING:
    from typing import NoReturn, Optional

MAX_STDIN_BYTES = 16 * 1024 * 1024


def run_helper(store: str) -> "NoReturn":
    """Entry point of every docker-credential-<store> executable."""
    args = sys.argv[1:]
    program = sys.argv[0].rpartition("/")[2] or f"docker-credential-{store}"
    stdin = _read_stdin() if len(args) == 1 and args[0] in wire.ACTIONS_READING_STDIN else b""
    env = wire.process_env()
    answer = None if env.get("CREDBRIDGE_NO_AGENT") else _ask_agent(store, program, args, stdin, env)
    if answer is None:
        answer = _serve_in_process(store, program, args, stdin, env)
    exit_code, output = answer
    view = memoryview(output)
    while view:
        view = view[posix.write(1, view):]
    sys.exit(exit_code)


def _read_stdin() -> bytes:
    chunks, size = [], 0
    while size <= MAX_STDIN_BYTES:
        chunk = posix.read(0, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _ask_agent(store: str, program: str, args: "list[str]", stdin: bytes, env: "dict[str, str]") -> "Optional[tuple[int, bytes]]":
    """The agent's answer, or None when there is no usable agent (then start one)."""
    import _socket  # the C module: `socket` would pull in enum and selectors

    directory = wire.agent_dir(env)
    if not wire.private_dir_is_safe(directory):
        if not _exists(directory):
            _start_agent(env)
        return None  # someone else's or loose directory: never trust a socket in it
    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        connection.settimeout(wire.ACK_TIMEOUT_SECONDS)
        connection.connect(wire.agent_socket_path(env))
        connection.sendall(wire.request(store, program, args, stdin, env))
        connection.shutdown(_socket.SHUT_WR)
        if connection.recv(1) != wire.ACK:
            return None
        connection.settimeout(wire.REPLY_TIMEOUT_SECONDS)
        chunks = []
        while chunk := connection.recv(1 << 16):
            chunks.append(chunk)
        return wire.parse_reply(b"".join(chunks))
    except (FileNotFoundError, ConnectionRefusedError):
        _start_agent(env)
        return None
    except OSError:
        return None
    finally:
        connection.close()


def _exists(path: str) -> bool:
    try:
        posix.lstat(path)
        return True
    except OSError:
        return False


def _start_agent(env: "dict[str, str]") -> None:
    """Start `credbridge agent` detached (own session, no terminal), without waiting for it."""
    if env.get("CREDBRIDGE_NO_AGENT_START") or _agent_is_starting(env):
        return
    bootstrap = f"import sys; sys.path[:] = {sys.path!r}; from credbridge.agent import main; main()"
    child_env = {name: value for name, value in posix.environ.items()
                 if name in (b"PATH", b"HOME", b"XDG_RUNTIME_DIR", b"CREDBRIDGE_AGENT_IDLE_SECONDS")}
    try:
        posix.posix_spawn(
            sys.executable, [sys.executable, "-I", "-S", "-c", bootstrap], child_env,
            setsid=True,
            file_actions=[
                (posix.POSIX_SPAWN_OPEN, 0, "/dev/null", posix.O_RDONLY, 0),
                (posix.POSIX_SPAWN_OPEN, 1, "/dev/null", posix.O_WRONLY, 0),
                (posix.POSIX_SPAWN_OPEN, 2, "/dev/null", posix.O_WRONLY, 0),
            ],
        )
    except OSError:
        pass  # no agent: every call is served in process, only slower


def _agent_is_starting(env: "dict[str, str]") -> bool:
    """An agent holds its lock from start to exit: do not start a second one."""
    import fcntl

    try:
        descriptor = posix.open(wire.agent_lock_path(env), posix.O_RDONLY | posix.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        posix.close(descriptor)


def _serve_in_process(store: str, program: str, args: "list[str]", stdin: bytes, env: "dict[str, str]") -> "tuple[int, bytes]":
    from credbridge.protocol import handle
    from credbridge.stores import open_store

    output, exit_code = handle(program, args, stdin, lambda: open_store(store, env))
    return exit_code, output
