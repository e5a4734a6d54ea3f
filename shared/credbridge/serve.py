"""What runs on every helper call: forward to the per-user agent, else serve in process.

Imports only interpreter builtins until it must do the work itself: Python's start-up is the
cost of a call (docs/design.md, "The fast path"). If no agent answers in time, the call is
served here and an agent is started for the next one.
"""

import sys

from credbridge import wire

try:
    import posix
except ImportError:  # Windows: no Unix-socket agent there, every call is served in process
    posix = None

TYPE_CHECKING = False  # typing costs more import time than a whole agent round trip
if TYPE_CHECKING:
    import _socket
    from typing import NoReturn, Optional

MAX_STDIN_BYTES = 16 * 1024 * 1024


def run_helper(store: str) -> "NoReturn":
    """Entry point of every docker-credential-<store> executable."""
    args = sys.argv[1:]
    program = sys.argv[0].rpartition("/")[2] or f"docker-credential-{store}"
    if posix is None:
        _run_without_posix(store, program, args)
    stdin = _read_stdin() if wire.reads_stdin(args) else b""
    env = wire.process_env()
    in_process = env.get("CREDBRIDGE_NO_AGENT") or wire.names_process_relative_path(env)
    answer = None if in_process else _ask_agent(store, program, args, stdin, env)
    if answer is None:
        answer = _serve_in_process(store, program, args, stdin, env)
    exit_code, output = answer
    view = memoryview(output)
    while view:
        view = view[posix.write(1, view) :]
    sys.exit(exit_code)


def _run_without_posix(store: str, program: str, args: "list[str]") -> "NoReturn":
    """Windows: the same protocol and stores in process, with the portable I/O of `os`/`sys`."""
    import os

    program = os.path.basename(program)
    stdin = sys.stdin.buffer.read(MAX_STDIN_BYTES + 1) if wire.reads_stdin(args) else b""
    exit_code, output = _serve_in_process(store, program, args, stdin, wire.relevant_env(os.environ))
    sys.stdout.buffer.write(output)
    sys.stdout.buffer.flush()
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


def _ask_agent(
    store: str, program: str, args: "list[str]", stdin: bytes, env: "dict[str, str]"
) -> "Optional[tuple[int, bytes]]":
    """The agent's answer, or None when there is no usable agent (then start one)."""
    import _socket  # the C module: `socket` would pull in enum and selectors

    directory = wire.agent_dir(env)
    if directory is None:
        return None  # no place others cannot tamper with
    if not wire.private_dir_is_safe(directory):
        if not _exists(directory):
            _start_agent(env)
        return None  # someone else's or loose directory: never trust a socket in it
    request = wire.request(store, program, args, stdin, env)
    if len(request) > wire.MAX_REQUEST_BYTES:
        return None
    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        return _answer(wire.parse_reply(_exchange(connection, wire.socket_in(directory), request)), env)
    except (FileNotFoundError, ConnectionRefusedError):
        _start_agent(env)
        return None
    except OSError:
        return None
    finally:
        connection.close()


def _exchange(connection: "_socket.socket", path: str, request: bytes) -> bytes:
    """Send `request` to the agent at `path` and read its reply; b"" if it does not take the call.

    Not one byte goes to a listener that is not this user's. Once the agent
    has acknowledged the call, a missing reply is an error, not a reason to
    run the call again here (it would hang the same way).
    """
    import _socket

    connection.settimeout(wire.ACK_TIMEOUT_SECONDS)
    connection.connect(path)
    if wire.peer_uid(connection) != posix.getuid():
        return b""  # someone else listens at our socket
    connection.sendall(request)
    connection.shutdown(_socket.SHUT_WR)
    if connection.recv(1) != wire.ACK:
        return b""
    connection.settimeout(wire.REPLY_TIMEOUT_SECONDS)
    chunks = []
    try:
        while chunk := connection.recv(1 << 16):
            chunks.append(chunk)
    except _socket.timeout:
        return wire.reply(
            1,
            (
                f"credbridge: the agent took the call but gave no answer within {wire.REPLY_TIMEOUT_SECONDS:g} s: "
                "run `credbridge stop-agent` and try again\n"
            ).encode(),
        )
    return b"".join(chunks)


def tell_agent(path: str, command: str) -> bool:
    """Send a control command (wire.control_request) to this user's agent at `path`; True once it obeyed."""
    import _socket

    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        reply = wire.parse_reply(_exchange(connection, path, wire.control_request(command)))
    except OSError:
        return False
    finally:
        connection.close()
    return reply is not None and reply[0] == 0


def _answer(reply: "Optional[tuple[int, bytes, bytes]]", env: "dict[str, str]") -> "Optional[tuple[int, bytes]]":
    """The agent's (exit code, output); the call's debug log, if any, goes where CREDBRIDGE_DEBUG says."""
    if reply is None:
        return None
    exit_code, output, debug_log = reply
    if debug_log:
        from credbridge import debuglog

        debuglog.emit(env, debug_log)
    return exit_code, output


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
    argv = _agent_argv()
    child_env = {
        name: value
        for name, value in posix.environ.items()
        if name
        in (
            b"PATH",
            b"HOME",
            b"XDG_RUNTIME_DIR",
            b"XDG_STATE_HOME",
            b"CREDBRIDGE_AGENT_IDLE_SECONDS",
            b"CREDBRIDGE_AGENT_CALL_SECONDS",
        )
    }
    try:
        posix.posix_spawn(
            argv[0],
            argv,
            child_env,
            setsid=True,
            file_actions=[
                (posix.POSIX_SPAWN_OPEN, 0, "/dev/null", posix.O_RDONLY, 0),
                (posix.POSIX_SPAWN_OPEN, 1, "/dev/null", posix.O_WRONLY, 0),
                (posix.POSIX_SPAWN_OPEN, 2, "/dev/null", posix.O_WRONLY, 0),
            ],
        )
    except OSError:
        pass  # no agent: every call is served in process, only slower


def _agent_argv() -> "list[str]":
    """How to run `credbridge agent` with the very code of this helper.

    In the PyInstaller bundle sys.executable is this helper's own executable,
    which cannot run arbitrary code: its sibling `credbridge` serves instead.
    """
    if getattr(sys, "frozen", False):
        return [sys.executable.rpartition("/")[0] + "/credbridge", "agent"]
    bootstrap = f"import sys; sys.path[:] = {sys.path!r}; from credbridge.agent import main; main()"
    return [sys.executable, "-I", "-S", "-c", bootstrap]


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


def _serve_in_process(
    store: str, program: str, args: "list[str]", stdin: bytes, env: "dict[str, str]"
) -> "tuple[int, bytes]":
    import os

    from credbridge import audit, debuglog
    from credbridge.protocol import list_tokens_asked, serve
    from credbridge.stores.catalog import open_store

    pending = audit.begin(env, store, program, args, os.getpid(), "in process", tool_pid=os.getppid())
    (output, exit_code), debug_log = debuglog.capture(
        env,
        "in process",
        lambda: audit.finish(
            pending, serve(program, args, stdin, lambda: open_store(store, env), list_tokens_asked(env))
        ),
    )
    if debug_log:
        debuglog.emit(env, debug_log)
    return exit_code, output
