"""Safe diagnostics: `CREDBRIDGE_DEBUG=1` tells stderr what a helper did and why.

A helper's stdout belongs to its client, so debugging needs another channel; off it costs
nothing, lines and warnings travel back from the agent, and no secret is written
(docs/design.md, "Diagnostics").
"""

import time
from _thread import _local

try:
    import posix
except ImportError:  # Windows
    import nt as posix  # type: ignore[no-redef]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Mapping, TypeVar

    T = TypeVar("T")

VARIABLE = "CREDBRIDGE_DEBUG"
#: Starts each warning line; debug lines start with `credbridge[<pid>]`.
WARNING_PREFIX = "credbridge: warning: "
REDACTED = "<redacted>"
#: A field whose name contains one of these, or is one of SECRET_NAMES, never has its value written.
SECRET_WORDS = ("secret", "password", "passphrase", "token", "credential")
SECRET_NAMES = ("auth", "key")
MAX_VALUE_CHARS = 200

#: Appending to a log: O_NOFOLLOW refuses a planted symlink, O_NONBLOCK a planted fifo (also credbridge.audit).
APPEND_FLAGS = (
    posix.O_WRONLY
    | posix.O_APPEND
    | posix.O_CREAT
    | getattr(posix, "O_NOFOLLOW", 0)
    | getattr(posix, "O_NONBLOCK", 0)
    | getattr(posix, "O_CLOEXEC", 0)
)

_call = _local()


def wanted(env: "Mapping[str, str]") -> bool:
    return env.get(VARIABLE, "") not in ("", "0")


def active() -> bool:
    """Whether this call is being logged: for a detail that costs something to work out."""
    return getattr(_call, "lines", None) is not None


def log(event: str, **fields: object) -> None:
    """Record one step of the current call; a no-op unless the call is being captured."""
    lines = getattr(_call, "lines", None)
    if lines is None:
        return
    elapsed = (time.monotonic() - _call.started) * 1000
    details = "".join(f" {name}={redact(name, value)}" for name, value in fields.items())
    lines.append(f"credbridge[{posix.getpid()}] +{elapsed:.1f}ms {event}{details}\n")


def warn(text: str) -> None:
    """Tell the person behind the current call something they must know (an unchecked certificate), once per call;
    outside a helper call (a `credbridge` command) it goes to stderr at once."""
    from credbridge.urls import redacted  # a warning is rare: `re` only then

    line = f"{WARNING_PREFIX}{redacted(text)}\n"
    warnings = getattr(_call, "warnings", None)
    if warnings is None:
        _write_all(2, line.encode("utf-8", "backslashreplace"))
    elif line not in warnings:
        warnings.append(line)


def capture(env: "Mapping[str, str]", served_by: str, serve: "Callable[[], T]") -> "tuple[T, bytes]":
    """Run one helper call, returning its result and its warnings plus, when debugging is on, its log lines."""
    _call.warnings, _call.lines, _call.started = [], [] if wanted(env) else None, time.monotonic()
    try:
        log("call", served_by=served_by)
        result = serve()
        log("done")
        return result, "".join(_call.warnings + (_call.lines or [])).encode("utf-8", "backslashreplace")
    finally:
        _call.warnings = _call.lines = None


def redact(name: str, value: object) -> str:
    """The value as it may appear in a log: one escaped line, never a secret, never a password in a URL."""
    from credbridge.urls import redacted  # only when logging: the thin client never pays for `re`

    text = redacted(str(_without_secrets(name, value)))
    if len(text) > MAX_VALUE_CHARS:
        text = f"{text[:MAX_VALUE_CHARS]}...({len(text)} chars)"
    return ascii(text) if isinstance(value, str) else ascii(text)[1:-1]  # quoted only when it is text


def _without_secrets(name: str, value: object) -> object:
    """The value with secret-named fields, also inside mappings and sequences, replaced by REDACTED."""
    if name.lower() in SECRET_NAMES or any(word in name.lower() for word in SECRET_WORDS):
        return REDACTED
    if isinstance(value, dict):
        return {key: _without_secrets(str(key), item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_secrets("", item) for item in value]
    if isinstance(value, tuple):
        return tuple(_without_secrets("", item) for item in value)
    return value


def emit(env: "Mapping[str, str]", lines: bytes) -> None:
    """Write a call's warnings to stderr, and its log lines to stderr or to the file CREDBRIDGE_DEBUG names."""
    warnings_end = 0
    for line in lines.splitlines(keepends=True):  # capture puts the warnings first
        if not line.startswith(WARNING_PREFIX.encode()):
            break
        warnings_end += len(line)
    _write_all(2, lines[:warnings_end])
    lines = lines[warnings_end:]
    if not lines:
        return
    target = env.get(VARIABLE, "")
    if "/" not in target:
        _write_all(2, lines)
        return
    try:
        descriptor = posix.open(target, APPEND_FLAGS, 0o600)
    except OSError as error:
        _write_all(
            2, f"credbridge: cannot write the debug log {target}: {error.strerror} (CREDBRIDGE_DEBUG)\n".encode()
        )
        return
    try:
        if not _is_private_file(posix.fstat(descriptor)):
            _write_all(
                2,
                f"credbridge: refusing the debug log {target}: not a private file of yours "
                f"(mode 0600, owned by you): remove it or name another file\n".encode(),
            )
            return
        _write_all(descriptor, lines)
    finally:
        posix.close(descriptor)


def _is_private_file(info: "posix.stat_result") -> bool:
    """Ours alone: a regular file (not a fifo or device), owned by us, no group or other access."""
    if not hasattr(posix, "getuid"):
        return True  # Windows: ACLs, not modes, decide
    return info.st_uid == posix.getuid() and info.st_mode & 0o170077 == 0o100000


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[posix.write(descriptor, view) :]
    except OSError:
        pass  # a log that cannot be written must not change the helper's answer
