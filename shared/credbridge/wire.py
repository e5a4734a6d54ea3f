"""Where a helper call meets the per-user agent, and the bytes they exchange.

Imported on every helper call, before anything else is known, so it uses
interpreter builtins only: `posix`, not `os` (which -S no longer preloads),
no json, no typing, not even `from __future__`.
"""

import sys

try:
    import posix
except ImportError:  # Windows: only the portable parts (relevant_env, ACTIONS_READING_STDIN) are used there
    posix = None

from credbridge import __version__
from credbridge.stores.catalog import env_prefixes

TYPE_CHECKING = False  # typing costs more import time than a whole agent round trip
if TYPE_CHECKING:
    import _socket
    from typing import Mapping, Optional

#: Actions whose input comes on stdin: `list` must never read it (docker-py
#: leaves the parent's stdin attached and a read would block).
ACTIONS_READING_STDIN = frozenset({"store", "get", "erase"})


def reads_stdin(args: "list[str]") -> bool:
    """Whether a helper called with `args` reads its input: the one place that decides."""
    return len(args) == 1 and args[0] in ACTIONS_READING_STDIN


#: The environment a store may depend on; nothing else reaches the agent.
#: PATH: a store that delegates (credsStore in a config file) runs the helper the caller would find.
RELEVANT_ENV_NAMES = frozenset(
    {"HOME", "USER", "LOGNAME", "PATH", "DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "REGISTRY_AUTH_FILE"}
)
#: Variables naming a file or directory. A relative one means relative to the caller's directory,
#: which the agent (running in /) cannot know: the client makes them absolute before anything is served.
PATH_VARIABLES = (
    "CREDBRIDGE_CRYPTFILE",
    "CREDBRIDGE_PASSPHRASE_FILE",
    "CREDBRIDGE_CONFIG",
    "DOCKER_CONFIG",
    "REGISTRY_AUTH_FILE",
    "APPTAINER_CONFIGDIR",
    "SINGULARITY_CONFIGDIR",
    "APPTAINER_AUTH_FILE",
    "APPTAINER_AUTHFILE",
    "SINGULARITY_AUTHFILE",
    "VAULT_CACERT",
    "BAO_CACERT",
)
#: Paths that name something of the process that opens them (its descriptors, its own /proc entry):
#: the agent would open its own, so a call naming one is served in the caller's process.
PROCESS_RELATIVE_PREFIXES = ("/dev/fd/", "/dev/std", "/proc/self/", "/proc/thread-self/")
#: What the token-minting helpers of the clouds read (credbridge.stores.router.helperenv): the router passes each
#: its own, and a route's `env` may name any of them.
HELPER_ENV_PREFIXES = ("AWS_", "GOOGLE_", "CLOUDSDK_", "AZURE_")
HELPER_ENV_NAMES = frozenset(
    {"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR"}
)
#: The variables of every store (one table: credbridge.stores.catalog) and of those helpers.
RELEVANT_ENV_PREFIXES = env_prefixes() + HELPER_ENV_PREFIXES
#: Version 2 replies carry the call's debug log (credbridge.debuglog) for the caller to write.
REQUEST_MAGIC = b"credbridge-request-2"
#: Asks an agent to forget its stores (`credbridge lock`) or to exit (`credbridge stop-agent`).
CONTROL_MAGIC = b"credbridge-control-1"
#: A bigger request (a huge secret on stdin) is served in process: the agent never buffers more per call.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
#: Sent by the agent as soon as it holds the whole request: a wedged agent is
#: noticed within ACK_TIMEOUT_SECONDS, a slow keyring prompt is still waited for.
#: The longest Unix socket path: sun_path holds 108 bytes on Linux, 104 on macOS and the BSDs, NUL included.
MAX_SOCKET_PATH_BYTES = 107 if sys.platform.startswith("linux") else 103
ACK = b"+"
ACK_TIMEOUT_SECONDS = 3.0
REPLY_TIMEOUT_SECONDS = 120.0


def relevant_env(environ: "Mapping[str, str]") -> "dict[str, str]":
    return {
        name: value
        for name, value in environ.items()
        if name in RELEVANT_ENV_NAMES or name in HELPER_ENV_NAMES or name.startswith(RELEVANT_ENV_PREFIXES)
    }


def process_env() -> "dict[str, str]":
    """This process's relevant environment, decoded as os.environ would (without importing os),
    with relative paths made absolute against this process's directory."""
    env = relevant_env(
        {
            name.decode("utf-8", "surrogateescape"): value.decode("utf-8", "surrogateescape")
            for name, value in posix.environ.items()
        }
    )
    relative = [name for name in PATH_VARIABLES if env.get(name, "/")[:1] not in ("/", "")]
    if relative:
        try:
            directory = posix.getcwd().rstrip("/")
        except OSError:  # a removed directory: what cannot be resolved is left as it is
            return env
        env.update((name, f"{directory}/{env[name]}") for name in relative)
    return env


def is_process_relative(path: str) -> bool:
    return path.startswith(PROCESS_RELATIVE_PREFIXES)


def names_process_relative_path(env: "Mapping[str, str]") -> bool:
    """Whether a path variable means a file of the caller's process (`<(...)` is /dev/fd/N): not the agent's to open."""
    return any(is_process_relative(env.get(name, "")) for name in PATH_VARIABLES)


def agent_dir(environ: "Mapping[str, str]", create: bool = True) -> "Optional[str]":
    """The agent's place: its socket, its lock and the cached cryptfile keys; None when there is
    no place others cannot tamper with (then every call is served in process, nothing is cached).

    $XDG_RUNTIME_DIR/credbridge when that runtime dir is ours alone and short enough for a socket,
    else a directory of random name in /tmp recorded per host in the user's state dir (docs/trust.md,
    "Only to its owner").
    Without `create`, None rather than make and record that directory when there is none yet.
    """
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime and _is_ours_alone(runtime) and _fits(runtime.rstrip("/") + "/credbridge"):
        return runtime.rstrip("/") + "/credbridge"
    pointer = _fallback_pointer(environ)
    if pointer is None:
        return None
    recorded = _read_line(pointer)
    if recorded.startswith(_fallback_prefix()) and "/" not in recorded[5:] and private_dir_is_safe(recorded):
        return recorded
    return _record_fallback_dir(pointer) if create else None


def _fits(directory: str) -> bool:
    """Whether the socket's path fits a Unix socket address (MAX_SOCKET_PATH_BYTES)."""
    return len(socket_in(directory).encode("utf-8", "surrogateescape")) <= MAX_SOCKET_PATH_BYTES


def state_dir(environ: "Mapping[str, str]") -> "Optional[str]":
    """$XDG_STATE_HOME/credbridge, else ~/.local/state/credbridge: the user's own, whatever the session."""
    base = environ.get("XDG_STATE_HOME", "")
    if not base.startswith("/"):
        home = environ.get("HOME", "")
        base = f"{home.rstrip('/')}/.local/state" if home.startswith("/") else ""
    return f"{base.rstrip('/')}/credbridge" if base else None


def host_name() -> str:
    """This machine's name, for files under a HOME that many machines may share."""
    return posix.uname().nodename.replace("/", "_") or "localhost"


def _fallback_pointer(environ: "Mapping[str, str]") -> "Optional[str]":
    state = state_dir(environ)
    return f"{state}/agent-dir-{host_name()}" if state else None


def _fallback_prefix() -> str:
    return f"/tmp/credbridge-{posix.getuid()}-"


def _others_cannot_rename_in(path: str) -> bool:
    """Owned by us or root, and writable by others only with the sticky bit (as /tmp)."""
    try:
        info = posix.stat(path)
    except OSError:
        return False
    return info.st_uid in (posix.getuid(), 0) and (not info.st_mode & 0o022 or bool(info.st_mode & 0o1000))


def _is_ours_alone(directory: str) -> bool:
    """A directory (symlinks followed, as the spec allows) owned by us that no one else may enter."""
    try:
        info = posix.stat(directory)
    except OSError:
        return False
    return info.st_uid == posix.getuid() and (info.st_mode & 0o170077) == 0o040000


def _read_line(path: str) -> str:
    try:
        descriptor = posix.open(path, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_NONBLOCK)
    except OSError:
        return ""
    try:
        return posix.read(descriptor, 4096).decode("utf-8", "surrogateescape").strip()
    except OSError:
        return ""
    finally:
        posix.close(descriptor)


def _record_fallback_dir(pointer: str) -> "Optional[str]":
    """Make a fresh private directory in /tmp and record it (once per host and boot); None if impossible."""
    from credbridge.errors import HelperError
    from credbridge.files import atomicfile

    try:
        with atomicfile.exclusive(pointer):
            recorded = _read_line(pointer)
            if recorded.startswith(_fallback_prefix()) and private_dir_is_safe(recorded):
                return recorded  # another process made one meanwhile
            if not _others_cannot_rename_in("/tmp"):
                return None
            while True:
                directory = _fallback_prefix() + posix.urandom(8).hex()
                try:
                    posix.mkdir(directory, 0o700)
                    break
                except FileExistsError:
                    continue
            atomicfile.replace(pointer, directory.encode() + b"\n")
            return directory
    except (OSError, HelperError):
        return None


def socket_in(directory: str) -> str:
    """Versioned, so an upgraded client never talks to an agent running old code."""
    return f"{directory}/agent-{__version__}.sock"


def agent_socket_path(environ: "Mapping[str, str]") -> str:
    return socket_in(str(agent_dir(environ)))


def agent_lock_path(environ: "Mapping[str, str]") -> str:
    return f"{agent_dir(environ)}/agent-{__version__}.lock"


def private_dir_is_safe(path: "Optional[str]") -> bool:
    """Ours alone: owned by us, no group/other access, a real directory (not a link)."""
    if path is None:
        return False
    try:
        info = posix.lstat(path)
    except OSError:
        return False
    return info.st_uid == posix.getuid() and (info.st_mode & 0o170777) == 0o040700


def peer_uid(connection: "_socket.socket") -> "Optional[int]":
    """Who is at the other end of a Unix socket (the listener, seen from a client)."""
    credentials = peer_credentials(connection)
    return None if credentials is None else credentials[1]


def peer_credentials(connection: "_socket.socket") -> "Optional[tuple[int, int]]":
    """(pid, uid) of the other end of a Unix socket, from the kernel; pid 0 where it is not told.

    Linux SO_PEERCRED (struct ucred: pid, uid, gid); macOS/BSD LOCAL_PEERCRED (struct xucred:
    cr_version, cr_uid, ...). None where neither exists: such a peer is trusted by neither side.
    """
    import _socket

    if hasattr(_socket, "SO_PEERCRED"):
        raw = connection.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        return int.from_bytes(raw[0:4], sys.byteorder), int.from_bytes(raw[4:8], sys.byteorder)
    if hasattr(_socket, "LOCAL_PEERCRED"):
        raw = connection.getsockopt(getattr(_socket, "SOL_LOCAL", 0), _socket.LOCAL_PEERCRED, 76)
        return 0, int.from_bytes(raw[4:8], sys.byteorder)
    return None


def encode_fields(fields: "list[bytes]") -> bytes:
    return b"".join(len(field).to_bytes(4, "big") + field for field in fields)


def decode_fields(data: bytes) -> "list[bytes]":
    """Inverse of encode_fields; ValueError on anything malformed."""
    fields, offset = [], 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        end = offset + 4 + size
        if offset + 4 > len(data) or end > len(data):
            raise ValueError("truncated frame")
        fields.append(data[offset + 4 : end])
        offset = end
    return fields


def encode_env(env: "Mapping[str, str]") -> bytes:
    return "\0".join(f"{name}={value}" for name, value in sorted(env.items())).encode("utf-8", "surrogateescape")


def decode_env(blob: bytes) -> "dict[str, str]":
    text = blob.decode("utf-8", "surrogateescape")
    return dict(entry.split("=", 1) for entry in text.split("\0") if entry)


def request(store: str, program: str, args: "list[str]", stdin: bytes, env: "Mapping[str, str]") -> bytes:
    head = [REQUEST_MAGIC, store.encode(), program.encode("utf-8", "surrogateescape"), stdin, encode_env(env)]
    return encode_fields(head + [arg.encode("utf-8", "surrogateescape") for arg in args])


def parse_request(data: bytes) -> "tuple[str, str, list[str], bytes, dict[str, str]]":
    fields = decode_fields(data)
    if len(fields) < 5 or fields[0] != REQUEST_MAGIC:
        raise ValueError("not a credbridge request")
    _magic, store, program, stdin, env, *args = fields
    decode = lambda raw: raw.decode("utf-8", "surrogateescape")  # noqa: E731
    return decode(store), decode(program), [decode(arg) for arg in args], stdin, decode_env(env)


def control_request(command: str) -> bytes:
    return encode_fields([CONTROL_MAGIC, command.encode()])


def parse_control(data: bytes) -> "Optional[str]":
    """The command of a control request, None for anything else."""
    if data[4 : 4 + len(CONTROL_MAGIC)] != CONTROL_MAGIC:
        return None
    try:
        _magic, command = decode_fields(data)
    except ValueError:
        return None
    return command.decode("utf-8", "replace")


def reply(exit_code: int, output: bytes, debug_log: bytes = b"") -> bytes:
    return encode_fields([str(exit_code).encode(), output, debug_log])


def parse_reply(data: bytes) -> "Optional[tuple[int, bytes, bytes]]":
    """(exit code, stdout, debug log lines), or None for anything malformed."""
    try:
        code, output, debug_log = decode_fields(data)
        return int(code), output, debug_log
    except ValueError:
        return None
