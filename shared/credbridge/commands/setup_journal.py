"""What `credbridge setup` changed, so that `setup --undo` can give every file back.

Per file: its bytes from before the first edit, its mode, whether it existed and a digest of
setup's last write; saved before the file is replaced (docs/design.md, "setup").
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Callable, Mapping, NamedTuple, Optional

from credbridge.errors import HelperError
from credbridge.files import atomicfile, userdirs
from credbridge.files.tomlkey import ABSENT


class Entry(NamedTuple):
    path: str
    file_format: str  # which key format the file is in (see credbridge.commands.tool_setup.FORMATS)
    existed: bool  # False: setup created the file
    original: Optional[bytes]  # the bytes before setup; None when it created the file or they held logins
    mode: Optional[int]
    before: Any  # the key's value before setup (tomlkey.ABSENT: not set)
    written_digest: str


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def missing_directories(path: str) -> list[str]:
    """The directories that creating `path` would create, outermost first."""
    missing = []
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    return missing[::-1]


class Journal:
    """`manages` says whether setup could have written a path: undo refuses a journal naming any other
    file (edited by hand) whole, so that it never writes or removes a file setup does not manage."""

    def __init__(self, env: Mapping[str, str], manages: Callable[[str], bool]) -> None:
        self.directory = os.path.join(userdirs.data_home(env), "credbridge", "setup")
        self.path = os.path.join(self.directory, "journal.json")
        self._manages = manages

    def exists(self) -> bool:
        return atomicfile.safe_lstat(self.path) is not None

    def record(
        self,
        path: str,
        file_format: str,
        existed: bool,
        original: Optional[bytes],
        mode: Optional[int],
        before: Any,
        written: bytes,
        created: list[str],
    ) -> None:
        """Note that `written` replaces `path`; the first record of a path keeps its original for good."""
        newly_created = [item for item in missing_directories(self.path) if not os.path.lexists(item)]
        with atomicfile.exclusive(self.path):
            state = self._load()
            state["created"] += [item for item in newly_created + created if item not in state["created"]]
            files = state["files"]
            if path not in files:
                backup = None
                if original is not None:
                    backup = f"{len(files) + 1}-{os.path.basename(path)}.orig"
                    atomicfile.replace(os.path.join(self.directory, backup), original)
                files[path] = {
                    "format": file_format,
                    "existed": existed,
                    "backup": backup,
                    "mode": mode,
                    "before": [] if before is ABSENT else [before],
                }
            files[path]["written"] = digest(written)
            atomicfile.replace(self.path, json.dumps(state, indent=1).encode())

    def entries(self) -> list[Entry]:
        """Every recorded file, most recent first (the order to undo in)."""
        with atomicfile.exclusive(self.path):
            state = self._checked(self._load())
        found = []
        for path, item in reversed(list(state["files"].items())):
            original = None
            if item["backup"] is not None:
                backup = atomicfile.read(os.path.join(self.directory, item["backup"]))
                if backup is None:
                    raise HelperError(f"the backup of {path} is missing from {self.directory}: restore {path} by hand")
                original = backup[0]
            before = item["before"][0] if item["before"] else ABSENT
            found.append(Entry(path, item["format"], item["existed"], original, item["mode"], before, item["written"]))
        return found

    def forget(self) -> list[str]:
        """Remove the journal and its backups; what setup created, to be removed last (innermost first)."""
        with atomicfile.exclusive(self.path):
            state = self._checked(self._load())
            for item in state["files"].values():
                if item["backup"] is not None:
                    atomicfile.remove(os.path.join(self.directory, item["backup"]))
            atomicfile.remove(self.path)
        return state["created"][::-1]

    def _load(self) -> dict[str, Any]:
        found = atomicfile.read(self.path)
        if found is None:
            return {"files": {}, "created": []}
        try:
            state = json.loads(found[0])
            if isinstance(state.get("files"), dict) and isinstance(state.get("created"), list):
                return state
        except (ValueError, AttributeError):
            pass
        raise self._refused("is damaged")

    def _checked(self, state: dict[str, Any]) -> dict[str, Any]:
        """The state, if it names only files setup manages, backups inside the journal's directory, and
        as created only their directories (and, from older versions, their lock files): what undo acts on."""
        for path, item in state["files"].items():
            if not self._manages(path):
                raise HelperError(
                    f"{self.path} names {path}, which is no tool file setup manages with this HOME "
                    "and these variables: undo with the variables setup ran with (DOCKER_CONFIG, "
                    "APPTAINER_CONFIGDIR, ...), or move the journal away"
                )
            backup = item.get("backup")
            if backup is not None and not (isinstance(backup, str) and _is_plain_name(backup)):
                raise self._refused(f"names a backup outside {self.directory}")
        recorded = [*state["files"], self.path]
        for path in state["created"]:
            if not (path in {item + ".lock" for item in recorded} or any(_contains(path, item) for item in recorded)):
                raise self._refused(
                    f"names {path} as created by setup, which is neither a directory of its files nor their lock"
                )
        return state

    def _refused(self, why: str) -> HelperError:
        return HelperError(f"{self.path} {why}: move it away (undo will then not know what setup changed)")


def _is_plain_name(name: str) -> bool:
    return name not in ("", ".", "..") and os.path.basename(name) == name and not os.path.isabs(name)


def _contains(directory: object, path: str) -> bool:
    return (
        isinstance(directory, str) and os.path.isabs(directory) and path.startswith(directory.rstrip(os.sep) + os.sep)
    )
