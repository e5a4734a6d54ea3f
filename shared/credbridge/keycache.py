"""The unlocked cryptfile key, cached for the login session so a helper call costs no KDF.

Choice: a 0600 file per cryptfile in the agent's private directory,
`$XDG_RUNTIME_DIR/credbridge/` (0700, tmpfs that logind empties at the last
logout), holding the derived key, the header it belongs to and an expiry.
Not the kernel session keyring, although keyctl works on this machine:
- the agent is shared by all of a user's logins and serves each call with
  the caller's environment, but it can only read the session keyring it was
  started in; a keyring unlock in one ssh session would be invisible to the
  agent, or to a batch job started from another session. The runtime
  directory is exactly the scope of the agent's socket.
- containers and HPC sandboxes often block keyctl with seccomp (Docker's
  default profile does): a fallback file would be needed anyway, so there
  would be two code paths with different lifetimes for one feature.
- checking the cache on every call (a stat and a small read) is cheap, so
  `credbridge lock` takes effect at once, also inside a running agent.
Without XDG_RUNTIME_DIR (ssh without logind) the agent's fallback
directory, /tmp/credbridge-<uid> (0700), is used, as for its socket. The key
is only ever the derived key, never the passphrase.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import time
from typing import Mapping, Optional

from credbridge import atomicfile, wire

DEFAULT_SECONDS = 12 * 3600
_PREFIX = "key-"


def save(env: Mapping[str, str], cryptfile: str, header: bytes, key: bytes, seconds: float = DEFAULT_SECONDS) -> None:
    path = _entry_path(env, cryptfile)
    record = {"expires": time.time() + seconds, "header": _b64(header), "key": _b64(key)}
    with atomicfile.exclusive(path):
        atomicfile.replace(path, json.dumps(record).encode())


def load(env: Mapping[str, str], cryptfile: str) -> Optional[tuple[bytes, bytes]]:
    """(header, key) cached for this cryptfile and not expired, else None (an expired entry is removed)."""
    path = _entry_path(env, cryptfile)
    found = atomicfile.read(path)
    if found is None:
        return None
    try:
        record = json.loads(found[0])
        if time.time() < record["expires"]:
            return base64.b64decode(record["header"]), base64.b64decode(record["key"])
    except (ValueError, KeyError, TypeError):
        pass
    _remove(path)
    return None


def forget(env: Mapping[str, str]) -> None:
    """Remove every cached key of this session (and their lock files)."""
    for path in glob.glob(os.path.join(glob.escape(wire.agent_dir(env)), _PREFIX + "*")):
        _remove(path)


def _entry_path(env: Mapping[str, str], cryptfile: str) -> str:
    name = hashlib.sha256(os.path.abspath(cryptfile).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return os.path.join(wire.agent_dir(env), _PREFIX + name)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
