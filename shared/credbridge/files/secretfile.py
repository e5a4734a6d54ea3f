"""Files that hold a secret: cryptfile passphrase, ~/.vault-token, AppRole secret id, JWT.

One rule for all, as ssh has for a key: a regular file that is this user's alone, opened without
waiting; a JWT file may be root's, as ssh allows for authorized_keys (docs/trust.md).
"""

from __future__ import annotations

import os
import stat
from typing import Optional

from credbridge import wire
from credbridge.errors import HelperError
from credbridge.files import atomicfile

#: More is no passphrase, token or JWT: a pipe is read no further.
MAX_BYTES = 1024 * 1024


def loose(path: str, info: os.stat_result, issued: bool = False) -> Optional[tuple[str, str]]:
    """(problem, fix) when the secret file at `path` is not this user's alone (`issued`: not this user's or
    root's, or writable by others)."""
    if info.st_uid != os.getuid() and not (issued and info.st_uid == 0):
        return (
            f"{path} is not owned by you (owner uid {info.st_uid})",
            "put the secret in a file of your own and run `chmod 600` on it",
        )
    if info.st_mode & (0o022 if issued else 0o077):
        return (
            f"{path} is open to {'writes by ' if issued else ''}group or others (mode {info.st_mode & 0o777:04o})",
            f"chmod {'go-w' if issued else '600'} {path}",
        )
    return None


def read(path: str, what: str, missing_ok: bool = False, issued: bool = False) -> Optional[bytes]:
    """The content of the secret file at `path` (None if it is missing and `missing_ok`); `what` names it in
    errors; `issued`: a token the platform issues (see the module's docstring)."""
    try:
        descriptor, info = _open(path)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise HelperError(f"cannot read {what} {path}: No such file or directory") from None
    except OSError as error:
        raise HelperError(f"cannot read {what} {path}: {error.strerror}") from None
    except HelperError as error:
        raise HelperError(f"{what} {error}") from None
    try:
        problem = loose(path, info, issued)
        if problem is not None:
            raise HelperError(f"{what} {problem[0]}; fix: {problem[1]}")
        return _read_all(descriptor)
    except OSError as error:
        raise HelperError(f"cannot read {what} {path}: {error.strerror}") from None
    finally:
        os.close(descriptor)


def _open(path: str) -> tuple[int, os.stat_result]:
    """atomicfile.open_regular's descriptor, or a pipe when `path` is one of the caller's own descriptors."""
    if wire.is_process_relative(path):
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        info = os.fstat(descriptor)
        if stat.S_ISFIFO(info.st_mode):
            os.set_blocking(descriptor, True)
            return descriptor, info
        os.close(descriptor)
    return atomicfile.open_regular(path)


def _read_all(descriptor: int) -> bytes:
    chunks, size = [], 0
    while size < MAX_BYTES and (chunk := os.read(descriptor, 1 << 16)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
