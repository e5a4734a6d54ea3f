"""Which keyring docker-credential-keyring uses: named explicitly, never auto-detected.

python-keyring's auto-detection probes every backend (~0.15 s on every pull), so the backend comes
from the platform or CREDBRIDGE_KEYRING_BACKEND; on Linux it is the Secret Service store
(docs/design.md, "keyring").
"""

from __future__ import annotations

import sys
from typing import Mapping, Optional

from credbridge.errors import HelperError
from credbridge.store import CredentialStore

BACKEND_ENV = "CREDBRIDGE_KEYRING_BACKEND"
#: Split values into parts of at most this many UTF-16 bytes (tests force splitting with it).
CHUNK_ENV = "CREDBRIDGE_KEYRING_CHUNK_BYTES"
#: name -> (python-keyring backend class, what the user calls it)
BACKENDS = {
    "macos": ("keyring.backends.macOS:Keyring", "macOS Keychain"),
    "windows": ("keyring.backends.Windows:WinVaultKeyring", "Windows Credential Locker"),
    "kwallet": ("keyring.backends.kwallet:DBusKeyring", "KWallet"),
}
PLATFORM_DEFAULTS = {"darwin": "macos", "win32": "windows"}
#: Windows' CRED_MAX_CREDENTIAL_BLOB_SIZE; the password is stored UTF-16-LE.
BLOB_LIMITS = {"keyring.backends.Windows:WinVaultKeyring": 2560}
#: A part must hold at least one character of any kind (4 bytes for a surrogate pair).
MIN_CHUNK_BYTES = 4


def backend_choice(env: Mapping[str, str]) -> str:
    """CREDBRIDGE_KEYRING_BACKEND, else this platform's keyring: `secretservice` on Linux."""
    return env.get(BACKEND_ENV) or PLATFORM_DEFAULTS.get(sys.platform, "secretservice")


def open_keyring(env: Mapping[str, str]) -> CredentialStore:
    """The store for CREDBRIDGE_KEYRING_BACKEND, else for this platform."""
    choice = backend_choice(env)
    if choice == "secretservice":
        from credbridge.stores.secretservice import SecretServiceStore

        return SecretServiceStore(env)
    spec, label = BACKENDS.get(choice, (choice, choice))
    if ":" not in spec:
        raise HelperError(
            f"unknown {BACKEND_ENV}={choice!r}: use secretservice, macos, windows, kwallet "
            "or a python-keyring backend class as module:Class"
        )
    from credbridge.stores import pykeyring

    chunk_bytes = _chunk_bytes(env, BLOB_LIMITS.get(spec))
    return pykeyring.PyKeyringStore(
        pykeyring.load_backend(spec, label, env), label, chunk_bytes, pykeyring.index_lock_path(env), env
    )


def _chunk_bytes(env: Mapping[str, str], blob_limit: Optional[int]) -> Optional[int]:
    """The smaller of the backend's blob limit and CREDBRIDGE_KEYRING_CHUNK_BYTES; None: no limit."""
    wanted = env.get(CHUNK_ENV)
    if not wanted:
        return blob_limit
    if not wanted.isdigit() or int(wanted) < MIN_CHUNK_BYTES:
        raise HelperError(f"{CHUNK_ENV}={wanted!r} is not a number of bytes >= {MIN_CHUNK_BYTES}")
    return min(int(wanted), blob_limit or int(wanted))
