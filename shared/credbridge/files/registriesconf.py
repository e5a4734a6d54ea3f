"""Which registries.conf file decides podman's, skopeo's and buildah's `credential-helpers`.

containers/image reads a main file, then drop-ins that replace its settings; setup writes where
the last word is said (docs/compatibility.md, "registries.conf"; docs/design.md, "Files").
"""

from __future__ import annotations

import os
from typing import Mapping, NamedTuple

from credbridge.errors import HelperError
from credbridge.files import tomlkey, userdirs

KEY = "credential-helpers"
#: The reserved entry that means "the auth files", kept second so logins already in them still work.
AUTH_FILES = "containers-auth.json"
SYSTEM_FILE = "/etc/containers/registries.conf"
SYSTEM_DROPIN_DIR = "/etc/containers/registries.conf.d"
#: The drop-in credbridge writes when it must not create the user's main file.
OWN_DROPIN = "99-credbridge.conf"
_V1_TABLES = ("search", "insecure", "block")


class Target(NamedTuple):
    path: str  # the file to edit, or to create
    start_from: bytes  # its content before the edit when it does not exist yet
    is_main: bool  # a main file may be in the v1 format; drop-ins never are


def helpers_for(name: str) -> list[str]:
    return [name, AUTH_FILES]


def target(env: Mapping[str, str], system_file: str = SYSTEM_FILE, system_dir: str = SYSTEM_DROPIN_DIR) -> Target:
    """The file whose `credential-helpers` podman, skopeo and buildah will obey, by the rules above."""
    user_base = os.path.join(userdirs.home(env), ".config", "containers")
    user_file, user_dir = os.path.join(user_base, "registries.conf"), os.path.join(user_base, "registries.conf.d")
    explicit = env.get("CONTAINERS_REGISTRIES_CONF")
    if explicit:
        chosen, later = Target(explicit, _system_bytes(system_file), True), [*_dropins(system_dir), *_dropins(user_dir)]
    elif os.path.lexists(user_file):
        chosen, later = Target(user_file, b"", True), _dropins(user_dir)
    elif not _dropins(system_dir):
        chosen, later = Target(user_file, _system_bytes(system_file), True), _dropins(user_dir)
    else:
        own = os.path.join(user_dir, OWN_DROPIN)
        chosen, later = Target(own, b"", False), [path for path in _dropins(user_dir) if path > own]
    setters = [path for path in later if path != chosen.path and _sets_key(path)]
    if not setters:
        return chosen
    if os.path.dirname(setters[-1]) != user_dir:
        raise HelperError(
            f"{setters[-1]} sets {KEY} for every user and overrides {chosen.path}: "
            f"ask an administrator, or set CONTAINERS_REGISTRIES_CONF to a file of yours"
        )
    return Target(setters[-1], b"", False)


def effective_helpers(
    env: Mapping[str, str], system_file: str = SYSTEM_FILE, system_dir: str = SYSTEM_DROPIN_DIR
) -> tuple[list[str], str]:
    """The `credential-helpers` podman, skopeo and buildah use now, and the file that set it
    (the last one read that sets the key; containers/image's default when none does)."""
    user_base = os.path.join(userdirs.home(env), ".config", "containers")
    user_file, user_dir = os.path.join(user_base, "registries.conf"), os.path.join(user_base, "registries.conf.d")
    explicit = env.get("CONTAINERS_REGISTRIES_CONF")
    if explicit:
        files = [explicit, *_dropins(system_dir), *_dropins(user_dir)]
    elif os.path.lexists(user_file):
        files = [user_file, *_dropins(user_dir)]
    else:
        files = [system_file, *_dropins(system_dir), *_dropins(user_dir)]
    helpers, source = [AUTH_FILES], "containers/image's default"
    for path in files:
        if os.path.exists(path) and _sets_key(path):
            with open(path, encoding="utf-8") as stream:
                helpers, source = list(tomlkey.value_of(stream.read(), KEY, path)), path
    return helpers, source


def check_format(text: str, path: str) -> None:
    """Refuse a v1-format file (`[registries.search]`...): containers/image rejects v2 keys beside v1 ones."""
    document = tomlkey.parse(text, path)
    tables = document.get("registries")
    if isinstance(tables, dict) and any(
        isinstance(tables.get(name), dict) and "registries" in tables[name] for name in _V1_TABLES
    ):
        raise HelperError(
            f"{path} is in the old v1 format ([registries.search] ...), which cannot hold {KEY}: "
            f"convert it to v2 (unqualified-search-registries, [[registry]]; see containers-registries.conf(5))"
        )


def _dropins(directory: str) -> list[str]:
    """The directory's drop-ins in the order containers/image reads them (WalkDir: by name)."""
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [
        os.path.join(directory, name)
        for name in names
        if name.endswith(".conf") and not os.path.isdir(os.path.join(directory, name))
    ]


def _sets_key(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as error:
        raise HelperError(f"cannot read {path} ({error.strerror}): podman would fail on it too") from None
    return tomlkey.value_of(text, KEY, path) is not tomlkey.ABSENT


def _system_bytes(path: str) -> bytes:
    """The system file as it is (root's, so not read through atomicfile); none is an empty start."""
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except FileNotFoundError:
        return b""
