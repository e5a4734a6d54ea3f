"""The audit log: one line per get, store, erase and list served, naming the program that asked.

When a token leaks, the first question is who read it. A helper is run by a
tool (docker, podman, skopeo, a script): the agent learns the helper's pid
from the kernel (SO_PEERCRED), in process the helper is this process, and
its parent, read from /proc while the helper waits, is the tool. A record
never holds a username or a secret (docs/design.md, "The audit log").
"""

from __future__ import annotations

import json
import os
import stat
import time
from typing import Callable, Mapping, NamedTuple, Optional, TypeVar

from credbridge import debuglog, protocol
from credbridge.files.userdirs import state_home
from credbridge.protocol import AUDITED_ACTIONS, Reply, Served
from credbridge.store import CredentialStore

LOG_NAME = "audit.log"
#: The live file is rotated past this size; KEEP_ROTATED older ones are kept (audit.log.1 newest).
MAX_BYTES = 1024 * 1024
KEEP_ROTATED = 3
#: Each field is cut to this: a record stays one small write, whatever a process calls itself.
MAX_FIELD_CHARS = 256
#: A tool run by one of these is named with its script (`python3 deploy.py`), not the interpreter.
INTERPRETERS = ("python", "perl", "ruby", "node", "sh", "bash", "dash", "zsh", "ksh")
#: Stores that never spell out a registry name on disk (the cryptfile encrypts them, and its index
#: keeps only hashes): their records keep the registry as hidden_name(), which a guess can be
#: tested against (`credbridge audit --registry`) but which names nothing.
NAMELESS_STORES = frozenset({"cryptfile"})
#: The router's store name (credbridge.stores.router): its records name the store behind it,
#: `credbridge>keyring`, and hide the registry as that store would; one it never routed, always.
ROUTER = "credbridge"
T = TypeVar("T")


class Tool(NamedTuple):
    """The program that ran the helper ("" for what /proc does not say)."""

    pid: int
    exe: str
    argv0: str
    name: str


class Pending(NamedTuple):
    """A record begun while the helper waits for its answer, completed once the call is served."""

    path: str
    store: str
    helper: str
    helper_pid: int
    served_by: str
    tool: Tool


def enabled(env: Mapping[str, str]) -> bool:
    """On unless the configuration says `audit: false`; one that cannot be read leaves it on."""
    from credbridge.errors import HelperError

    try:
        from credbridge.files import config  # its file locks need fcntl: not on Windows

        return config.load_config(env).get("audit", True) is not False
    except (HelperError, OSError, ImportError):  # the call itself reports a broken configuration
        return True


def log_path(env: Mapping[str, str]) -> str:
    """$XDG_STATE_HOME/credbridge/audit.log, else ~/.local/state/credbridge/audit.log."""
    return os.path.join(state_home(env), "credbridge", LOG_NAME)


def log_files(env: Mapping[str, str]) -> list[str]:
    """The rotated files and the log that exist, oldest first."""
    path = log_path(env)
    candidates = [f"{path}.{number}" for number in range(KEEP_ROTATED, 0, -1)] + [path]
    return [candidate for candidate in candidates if os.path.lexists(candidate)]


def begin(
    env: Mapping[str, str],
    store: str,
    program: str,
    args: list[str],
    helper_pid: int,
    served_by: str,
    tool_pid: Optional[int] = None,
) -> Optional[Pending]:
    """Note who asks while the helper is alive; None for a call not audited or a log turned off.

    `tool_pid`: the helper's parent when known (in process: os.getppid()), else read from /proc.
    """
    if len(args) != 1 or args[0] not in AUDITED_ACTIONS or not enabled(env):
        return None
    if tool_pid is None:
        tool_pid = parent_pid(helper_pid)
    return Pending(log_path(env), store, os.path.basename(program), helper_pid, served_by, tool_of(tool_pid))


def finish(pending: Optional[Pending], result: tuple[Reply, Served]) -> Reply:
    """Append the record of a call served and return its reply."""
    reply, served = result
    record_served(pending, served)
    return reply


def by_command(
    env: Mapping[str, str], command: str, action: str, server_url: str, router: CredentialStore, call: Callable[[], T]
) -> T:
    """Run and record a call a credbridge command makes to the router itself (`credbridge logout` reads,
    then erases): this process asks and serves, named by its command, as its argv[0] may be an interpreter."""
    pending = begin(env, ROUTER, ROUTER, [action], os.getpid(), "in process", tool_pid=os.getpid())
    if pending is not None:
        pending = pending._replace(tool=pending.tool._replace(name=_field(command)))
    try:
        result = call()
    except Exception as error:
        record_served(pending, protocol.served(action, server_url, error, router))
        raise
    record_served(pending, protocol.served(action, server_url, None, router))
    return result


def record_served(pending: Optional[Pending], served: Served) -> None:
    """Append the record of a call served: a log that cannot be written never changes the answer;
    it leaves a debug line, and `credbridge doctor` says why and how to mend it."""
    if pending is None or not served.action:
        return
    tool = pending.tool
    holder = served.source or pending.store
    registry = registry_name(served.server_url)
    if registry and (holder in NAMELESS_STORES or holder == ROUTER or NAMELESS_STORES.intersection(served.consulted)):
        registry = hidden_name(registry)
    record = {
        "time": round(time.time(), 3),
        "action": served.action,
        "registry": registry,
        "store": f"{pending.store}>{served.source}" if served.source else pending.store,
        "outcome": served.outcome,
        "tool": tool.name,
        "tool_exe": tool.exe,
        "tool_argv0": tool.argv0,
        "tool_pid": tool.pid,
        "helper": pending.helper,
        "helper_pid": pending.helper_pid,
        "served_by": pending.served_by,
    }
    try:
        append(pending.path, record)
    except Exception as error:  # auditing never breaks a pull
        debuglog.log("audit record not written", path=pending.path, error=str(error), see="credbridge doctor")


def unwritable(env: Mapping[str, str]) -> Optional[tuple[str, str]]:
    """Why no record can be written, and the command that mends it; None when one can.

    A helper skips a record it cannot write, so `credbridge doctor` asks. It
    only looks: an existing log is opened as a write opens it, a missing one
    needs a directory of ours to be made in, and nothing is created (run for
    another HOME, what doctor made would not be that user's).
    """
    from credbridge.errors import HelperError

    path = log_path(env)
    directory = os.path.dirname(path)
    try:
        if os.path.lexists(path):
            os.close(_open_private(path))
        elif os.path.lexists(directory):
            _refuse_unless_private_dir(directory)
    except (HelperError, OSError) as error:
        return _why_unwritable(path, error)
    return None


def _refuse_unless_private_dir(directory: str) -> None:
    """What a write refuses of the log's directory (credbridge.files.atomicfile), and one it cannot write in."""
    from credbridge.files.atomicfile import refuse_unsafe

    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(f"{directory} is not a directory")
    refuse_unsafe(directory, info)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"{directory} is not writable")


def _why_unwritable(path: str, error: Exception) -> tuple[str, str]:
    """What stands at the log's path or its directory instead of a private file of ours, and its remedy."""
    import shlex

    summary = f"no record of who takes which credential can be written to {path}"
    directory = os.path.dirname(path)
    #: (what, the kind it must be, its mode, the bits a write refuses, the bits a write needs)
    expected = ((directory, stat.S_ISDIR, 0o700, 0o022, 0o300), (path, stat.S_ISREG, 0o600, 0o077, 0o200))
    for target, is_kind, mode, refused, needed in expected:
        try:
            info = os.lstat(target)
        except OSError:
            continue  # made by the next write
        named = "it" if target == path else f"its directory {target}"
        aside = f"mv {shlex.quote(target)} {shlex.quote(target + time.strftime('.moved-%Y%m%d-%H%M%S'))}"
        if not is_kind(info.st_mode):
            kind = _KINDS.get(stat.S_IFMT(info.st_mode), "device")
            if stat.S_ISDIR(info.st_mode) and not os.listdir(target):
                remedy = f"rmdir {shlex.quote(target)}"
            elif stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode):
                remedy = aside  # may hold something of value
            else:
                remedy = f"rm {shlex.quote(target)}"  # a symlink, a FIFO, a socket: removing it loses nothing
            return f"{summary}: {named} is a {kind}", remedy
        if info.st_uid != os.getuid():
            return f"{summary}: {named} is not yours", aside
        if info.st_mode & refused or info.st_mode & needed != needed:
            loose = f"{summary}: {named} is mode {stat.S_IMODE(info.st_mode):04o}"
            return loose, f"chmod {mode:o} {shlex.quote(target)}"
    return f"{summary}: {error}", ""


_KINDS = {
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
    stat.S_IFDIR: "directory",
    stat.S_IFREG: "regular file",
}


def registry_name(server_url: str) -> str:
    """The canonical registry without `?`/`#` parts; userinfo (a username, maybe a password)
    becomes `~<8 hex of the username's SHA-256>@`."""
    if not server_url:
        return ""
    from credbridge.urls import canonical

    name = canonical(server_url).split("?", 1)[0].split("#", 1)[0].rstrip("/")
    authority, slash, path = name.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if at:
        import hashlib

        username = userinfo.partition(":")[0].encode("utf-8", "surrogateescape")
        name = f"~{hashlib.sha256(username).hexdigest()[:8]}@{host}{slash}{path}"
    return _field(name)


def hidden_name(registry: str) -> str:
    """`#` and 12 hex digits of a registry_name()'s SHA-256: one per registry, naming none."""
    import hashlib

    return "#" + hashlib.sha256(f"credbridge-audit:{registry}".encode()).hexdigest()[:12]


def parent_pid(pid: int) -> int:
    """The parent of `pid` from /proc/<pid>/status; 0 when it cannot be read (gone, not Linux)."""
    status = _read_proc(f"/proc/{pid}/status")
    start = status.find(b"\nPPid:") + 6
    try:
        return int(status[start : status.index(b"\n", start)]) if start > 5 else 0
    except ValueError:
        return 0


def tool_of(pid: int) -> Tool:
    """The executable and argv[0] of `pid`, and a script's name after an interpreter: no other
    argument is read, since arguments may hold secrets."""
    if pid <= 0:
        return Tool(pid, "", "", "")
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = ""
    argv = _read_proc(f"/proc/{pid}/cmdline").split(b"\0")
    argv0, script = (part.decode("utf-8", "backslashreplace") for part in (argv + [b""])[:2])
    name = os.path.basename(argv0) or os.path.basename(exe)
    if name.rstrip("0123456789.").startswith(INTERPRETERS) and script[:1] not in ("", "-"):
        name = f"{name} {os.path.basename(script)}"
    return Tool(pid, _field(exe), _field(argv0), _field(name))


def _read_proc(path: str) -> bytes:
    """The first 8 KiB of a /proc file, b"" if unreadable: on every call, so no buffered file."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        return os.read(descriptor, 8192)
    except OSError:
        return b""
    finally:
        os.close(descriptor)


def _field(text: str) -> str:
    """Printable text within MAX_FIELD_CHARS: a record is one line, whatever a name holds."""
    escaped = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)
    return escaped[:MAX_FIELD_CHARS]


def append(path: str, record: Mapping[str, object], max_bytes: int = MAX_BYTES, keep: int = KEEP_ROTATED) -> None:
    """Append a JSON line: one write under the file's flock, rotating a file grown past max_bytes.

    A writer that waited while another rotated holds the lock of a file no
    longer at `path`: it opens the new one, so no record lands in a rotated file.
    """
    import fcntl  # not on Windows, where no record is written

    from credbridge.files.atomicfile import private_dir

    line = (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode()
    private_dir(os.path.dirname(path))
    while True:
        descriptor = _open_private(path)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            if not _is_at(descriptor, path):
                continue  # rotated while we waited
            size = os.lseek(descriptor, 0, os.SEEK_END)
            if size and size + len(line) > max_bytes:
                _rotate(path, keep)
                continue
            _write_all(descriptor, line)
            return
        finally:
            os.close(descriptor)  # releases the lock


def _open_private(path: str) -> int:
    """A descriptor of the log, a regular file of ours alone; anything else is refused."""
    descriptor = os.open(path, debuglog.APPEND_FLAGS, 0o600)
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        os.close(descriptor)
        raise PermissionError(f"{path} is not a private file of yours")
    return descriptor


def _is_at(descriptor: int, path: str) -> bool:
    held = os.fstat(descriptor)
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return False
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)


def _rotate(path: str, keep: int) -> None:
    """audit.log -> .1 -> ... -> .<keep> (keep >= 1), the oldest dropped; under the log's lock."""
    for number in range(keep - 1, 0, -1):
        try:
            os.replace(f"{path}.{number}", f"{path}.{number + 1}")
        except FileNotFoundError:
            pass
    os.replace(path, f"{path}.1")


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]
