"""The newest generation of each cryptfile this user has seen, so that an older copy is noticed.

Kept per file under $XDG_STATE_HOME/credbridge/generations, ids and numbers only; a lower
generation is refused until `credbridge unlock --accept-rollback` (docs/design.md, "cryptfile").
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from typing import Iterator, Mapping, Optional

from credbridge import debuglog
from credbridge.errors import HelperError
from credbridge.files import atomicfile, userdirs

ACCEPT = "credbridge unlock --accept-rollback"


class Rollback(HelperError):
    """The cryptfile is older than, or not, the one last seen at its path."""


def check(env: Mapping[str, str], cryptfile: str, file_id: str, generation: int) -> None:
    """Refuse an older generation or another file than the one last seen; remember a newer generation."""
    with _unless_unwritable(env, cryptfile):
        seen = _seen(env, cryptfile)
        if seen is not None:
            _refuse_going_back(cryptfile, seen, file_id, generation)
            if seen == (file_id, generation):
                return
        with atomicfile.exclusive(_entry_path(env, cryptfile)):
            seen = _seen(env, cryptfile)  # another process may have seen a newer one meanwhile
            if seen is not None:
                _refuse_going_back(cryptfile, seen, file_id, generation)
                if seen[1] >= generation:
                    return
            _write(env, cryptfile, file_id, generation)


def accept(env: Mapping[str, str], cryptfile: str, file_id: str, generation: int) -> None:
    """Make this the newest generation seen, even an older one: for files credbridge just wrote anew,
    and for `credbridge unlock --accept-rollback`."""
    with _unless_unwritable(env, cryptfile), atomicfile.exclusive(_entry_path(env, cryptfile)):
        _write(env, cryptfile, file_id, generation)


@contextmanager
def _unless_unwritable(env: Mapping[str, str], cryptfile: str) -> Iterator[None]:
    """A record the system will not let us read or write is a warning, not a failed call (a refusal still is)."""
    try:
        yield
    except (atomicfile.CannotWrite, OSError) as error:
        reason = error.reason if isinstance(error, atomicfile.CannotWrite) else error.strerror
        debuglog.warn(
            f"cannot keep the newest generation of the cryptfile {cryptfile} in "
            f"{os.path.dirname(_entry_path(env, cryptfile))} ({reason}): an older copy put back would go "
            "unnoticed; make that directory writable, or set XDG_STATE_HOME to a writable directory of yours"
        )


def _refuse_going_back(cryptfile: str, seen: tuple[str, int], file_id: str, generation: int) -> None:
    seen_id, seen_generation = seen
    if seen_id not in ("", file_id):  # "": a format 1 file was seen, which the next write gave an id
        raise Rollback(
            f"the cryptfile {cryptfile} is a different file from the one last seen there (which had "
            f"generation {seen_generation}): an older copy may bring back logins you erased; restore "
            f"the right file, or keep this one with '{ACCEPT}'"
        )
    if generation < seen_generation:
        raise Rollback(
            f"the cryptfile {cryptfile} is an older copy (generation {generation}; generation "
            f"{seen_generation} was seen): it may bring back logins you erased; restore the newer "
            f"file, or keep this one with '{ACCEPT}'"
        )


def _seen(env: Mapping[str, str], cryptfile: str) -> Optional[tuple[str, int]]:
    found = atomicfile.read(_entry_path(env, cryptfile))
    if found is None:
        return None
    try:
        record = json.loads(found[0])
        return str(record["file"]), int(record["generation"])
    except (ValueError, KeyError, TypeError):
        return None  # a damaged record is no evidence: the next open writes a fresh one


def _write(env: Mapping[str, str], cryptfile: str, file_id: str, generation: int) -> None:
    record = {"cryptfile": cryptfile, "file": file_id, "generation": generation}
    atomicfile.replace(_entry_path(env, cryptfile), json.dumps(record).encode())


def _entry_path(env: Mapping[str, str], cryptfile: str) -> str:
    name = hashlib.sha256(os.path.realpath(cryptfile).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return os.path.join(userdirs.state_home(env), "credbridge", "generations", name + ".json")
