"""The unlocked cryptfile key, cached for the login session so a helper call costs no KDF.

A 0600 file per cryptfile in the agent's private directory, checked on every call so that
`credbridge lock` takes effect at once; why not the kernel keyring: docs/design.md, "cryptfile".
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import time
from typing import Mapping, Optional

from credbridge import wire
from credbridge.errors import HelperError
from credbridge.files import atomicfile

DEFAULT_SECONDS = 12 * 3600
_PREFIX = "key-"


def save(env: Mapping[str, str], cryptfile: str, header: bytes, key: bytes, seconds: float = DEFAULT_SECONDS) -> None:
    place = wire.agent_dir(env)
    if place is None:
        raise HelperError(
            "no private place to cache the key in: set XDG_RUNTIME_DIR to a directory of yours alone "
            "(mode 0700), or make ~/.local/state writable, then run credbridge unlock again"
        )
    remember_place(env, place)
    path = _entry_path(place, cryptfile)
    record = {"expires": time.time() + seconds, "header": _b64(header), "key": _b64(key)}
    with atomicfile.exclusive(path):
        atomicfile.replace(path, json.dumps(record).encode())


def load(env: Mapping[str, str], cryptfile: str) -> Optional[tuple[bytes, bytes]]:
    """(header, key) cached for this cryptfile and not expired, else None (an expired entry is removed)."""
    place = wire.agent_dir(env)
    if not wire.private_dir_is_safe(place):
        return None  # nothing cached, or a place that is not ours alone: its keys are not ours to use
    path = _entry_path(str(place), cryptfile)
    found = atomicfile.read(path)
    if found is None:
        return None
    record = _record(found[0])
    if record is not None and time.time() < record["expires"]:
        return base64.b64decode(record["header"]), base64.b64decode(record["key"])
    atomicfile.remove(path)
    return None


def sweep(place: str) -> float:
    """Remove the expired keys of `place`; when the first remaining one expires (inf: none is cached).

    The agent calls it to forget its stores at each expiry, not only at the next call that needs the key."""
    expiries = [float("inf")]
    for path in _entries_in(place):
        found = None if path.endswith(".lock") else atomicfile.read(path)
        record = _record(found[0]) if found else None
        if record is not None and time.time() >= record["expires"]:
            atomicfile.remove(path)
        elif record is not None:
            expiries.append(float(record["expires"]))
    return min(expiries)


def forget_everywhere(env: Mapping[str, str]) -> list[str]:
    """Remove every cached key of this user on this host, in every place ever recorded; the places."""
    places = known_places(env)
    for place in places:
        if wire.private_dir_is_safe(place):
            for path in _entries_in(place):
                atomicfile.remove(path)
    return places


def remember_place(env: Mapping[str, str], place: str) -> None:
    """Record a place that holds keys or an agent, for `forget_everywhere`."""
    registry = _registry(env)
    if registry is None or place in _recorded(registry):
        return
    with atomicfile.exclusive(registry):
        recorded = [known for known in _recorded(registry) if os.path.isdir(known)]
        atomicfile.replace(registry, "".join(f"{known}\n" for known in [*recorded, place]).encode())


def known_places(env: Mapping[str, str]) -> list[str]:
    """Every place recorded for this user on this host, and this session's own."""
    registry = _registry(env)
    places = _recorded(registry) if registry else []
    current = wire.agent_dir(env)
    return [*places, current] if current and current not in places else places


def _registry(env: Mapping[str, str]) -> Optional[str]:
    state = wire.state_dir(env)
    return os.path.join(state, f"places-{wire.host_name()}") if state else None


def _recorded(registry: str) -> list[str]:
    try:
        found = atomicfile.read(registry)
    except HelperError:
        return []
    return found[0].decode("utf-8", "surrogateescape").split() if found else []


def _entries_in(place: str) -> list[str]:
    return glob.glob(os.path.join(glob.escape(place), _PREFIX + "*"))


def _record(data: bytes) -> Optional[dict]:
    try:
        record = json.loads(data)
        float(record["expires"])
        return record if isinstance(record, dict) else None
    except (ValueError, KeyError, TypeError):
        return None


def _entry_path(place: str, cryptfile: str) -> str:
    name = hashlib.sha256(os.path.abspath(cryptfile).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return os.path.join(place, _PREFIX + name)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
