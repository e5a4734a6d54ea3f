"""Safe private files: the one place that reads, locks and replaces them.

Batch jobs write one file at once and may be killed at any instant, so a write is locked and
atomic, and a file others could swap is refused (docs/design.md, "Files"; docs/trust.md).
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

from credbridge.errors import HelperError

#: What a person can do about a write the system refused; other errors are bugs and stay unexpected.
_WRITE_FIXES = {
    errno.ENOSPC: "free some disk space and retry",
    errno.EDQUOT: "free some space within your disk quota and retry",
    errno.EROFS: "the file system is read-only: point credbridge at a writable place (see its documentation)",
    errno.EACCES: "make the directory writable by you, or point credbridge at another place",
}
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


class CannotWrite(HelperError):
    """The system refused a write for a reason a person can fix (see _WRITE_FIXES); `reason` is its strerror."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def refuse_unsafe(path: str, info: os.stat_result) -> None:
    """A file or directory of ours that a write would refuse: a link, another user's, writable by others."""
    if stat.S_ISLNK(info.st_mode):
        raise HelperError(
            f"{path} is a symlink: replace it with the real file or directory, or point credbridge at the target"
        )
    if info.st_uid != os.getuid():
        raise HelperError(f"{path} is not owned by you: move it away, or point credbridge at a file of yours")
    if info.st_mode & 0o022:
        raise HelperError(f"{path} is writable by group or others: run `chmod go-w {path}`")


@contextmanager
def writing(path: str) -> Iterator[None]:
    """A full disk, a read-only HOME or a quota is one line naming the cause and the fix, not a crash.

    FileExistsError is left to the caller: making what another process just made is a race, not a failure."""
    try:
        yield
    except FileExistsError:
        raise
    except OSError as error:
        fix = _WRITE_FIXES.get(error.errno or 0)
        reason = error.strerror or str(error)
        raise CannotWrite(f"cannot write {path}: {reason}" + (f": {fix}" if fix else ""), reason) from None


#: Our own directory's name (~/.config/credbridge, ~/.local/state/credbridge, ...): it and everything
#: below it must be ours alone; the directories above it (~/.local, ~/.config) are the user's to link.
OWN_DIRECTORY = "credbridge"


def private_dir(path: str) -> None:
    """Create `path` and each missing parent mode 0700 (the XDG rule), or refuse an unsafe one of ours."""
    missing = []
    head = path
    while head and not os.path.lexists(head):
        missing.append(head)
        head = os.path.dirname(head)
    ours = _ours(path)
    for directory in reversed(ours):  # an unsafe one of ours is refused before anything is made inside it
        if directory not in missing:
            refuse_unsafe(directory, os.lstat(directory))
    for directory in reversed(missing):
        try:
            with writing(directory):
                os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
    for directory in ours:
        refuse_unsafe(directory, os.lstat(directory))


def _ours(path: str) -> list[str]:
    """`path`, and its parents up to our own directory when it lies below one."""
    if OWN_DIRECTORY not in path.split(os.sep)[:-1]:
        return [path]
    found = [path]
    while os.path.basename(found[-1]) != OWN_DIRECTORY:
        found.append(os.path.dirname(found[-1]))
    return found


def safe_lstat(path: str) -> Optional[os.stat_result]:
    """The file's lstat (None if absent) after refusing an unsafe file or directory: cheap, for change checks."""
    directory = os.path.dirname(path) or "."
    try:
        refuse_unsafe(directory, os.lstat(directory))
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    refuse_unsafe(path, info)
    return info


def open_regular(path: str, flags: int = 0) -> tuple[int, os.stat_result]:
    """A read descriptor of the regular file at `path`, and its fstat: anything else is one line naming it.

    The open never blocks: a FIFO planted in a file's place would otherwise wait for a writer forever.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | flags)
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a FIFO, socket or device"
            raise HelperError(f"{path} is not a regular file ({kind}): move it away, or put the file there")
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor, info


def read(path: str) -> Optional[tuple[bytes, os.stat_result]]:
    """The content and the stat of exactly that content (files are replaced, never rewritten), or None."""
    if safe_lstat(path) is None:
        return None
    try:
        descriptor, info = open_regular(path, os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:  # became a symlink since safe_lstat()
            raise HelperError(f"{path} is a symlink: replace it with the real file") from None
        raise
    try:
        refuse_unsafe(path, info)
        with os.fdopen(descriptor, "rb", closefd=False) as stream:
            return stream.read(), info
    finally:
        os.close(descriptor)


@contextmanager
def exclusive(path: str) -> Iterator[None]:
    """Hold the exclusive write lock of `path` (creating its directory 0700); clears stale temp files.

    The `.lock` file exists only while it is held: the holder removes it before letting go, so no file
    the user did not ask for stays beside their config.
    """
    directory = os.path.dirname(path) or "."
    private_dir(directory)
    with _thread_lock(path):
        descriptor = _acquire(path + ".lock")
        try:
            _remove_stale_temporaries(path)
            yield
        finally:
            remove(path + ".lock")  # still held: a waiter finds its inode gone and opens a new one
            os.close(descriptor)  # releases the lock


def _acquire(lock_path: str) -> int:
    """A locked descriptor of the file that is at `lock_path` now.

    A waiter may get the lock of a file its holder removed meanwhile (or, on NFS, a stale handle):
    then that lock guards nothing, and it tries again with the file now at the path.
    """
    while True:
        with writing(lock_path):
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            current = _lock_if_current(descriptor, lock_path)
        except BaseException:
            os.close(descriptor)
            raise
        if current:
            return descriptor
        os.close(descriptor)


def _lock_if_current(descriptor: int, lock_path: str) -> bool:
    """Lock `descriptor`; whether its file is still the one at `lock_path` (else the lock guards nothing)."""
    refuse_unsafe(lock_path, os.fstat(descriptor))
    try:
        fcntl.lockf(descriptor, fcntl.LOCK_EX)
        return _same_file(os.fstat(descriptor), lock_path)
    except OSError as error:
        if error.errno == errno.ESTALE:  # NFS: another host removed the file while we waited
            return False
        raise


def _same_file(held: os.stat_result, path: str) -> bool:
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def remove(path: str) -> None:
    """Unlink `path`; already gone is fine (another process may have removed it first)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def replace(path: str, data: bytes) -> None:
    """Atomically and durably make `data` the content of `path` (mode 0600); hold `exclusive(path)`."""
    with writing(path):
        _replace(path, data)


def _replace(path: str, data: bytes) -> None:
    directory = os.path.dirname(path) or "."
    temporary = _temporary_prefix(path) + secrets.token_hex(8)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
        os.close(descriptor)
        descriptor = -1
        os.rename(temporary, path)
    except BaseException:
        if descriptor >= 0:
            os.close(descriptor)
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise
    directory_descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(directory_descriptor)
    finally:
        os.close(directory_descriptor)


def _temporary_prefix(path: str) -> str:
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.tmp-")


def _remove_stale_temporaries(path: str) -> None:
    """Under the lock no one else is writing: a temporary file left now is a killed writer's."""
    directory, prefix = os.path.split(_temporary_prefix(path))
    for name in os.listdir(directory or "."):
        if name.startswith(prefix):
            try:
                os.unlink(os.path.join(directory, name))
            except FileNotFoundError:
                pass


def _thread_lock(path: str) -> threading.Lock:
    """fcntl locks belong to the process: threads of the agent need their own."""
    key = os.path.abspath(path)
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(key, threading.Lock())
