"""The cryptfile format: a versioned header, then the whole content under AES-256-GCM.

    magic "CBCF" | format version (u16) | header length (u32) | header JSON | nonce (12) | ciphertext+tag

The header names the KDF with its parameters and salt, so they can be
raised later without breaking old files, and a key check value, so that a
wrong passphrase and a damaged file get different answers. Everything
before the nonce is authenticated as associated data. The plaintext is the
JSON map ServerURL -> {Username, Secret}: server names and usernames are
encrypted too. Every seal draws a fresh random nonce.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from typing import Any

from credbridge.errors import HelperError

MAGIC = b"CBCF"
VERSION = 1
_PREFIX = struct.Struct(">4sHI")
_NONCE_BYTES = 12
_TAG_BYTES = 16
_KEY_BYTES = 32
_MAX_HEADER_BYTES = 64 * 1024
_CHECK_LABEL = b"credbridge cryptfile key check"
#: RFC 9106's second recommended Argon2id setting (64 MiB, 3 passes, 4 lanes).
ARGON2ID_PARAMS = {"memory_kib": 64 * 1024, "iterations": 3, "lanes": 4}
#: scrypt where OpenSSL lacks Argon2id: 128 MiB, as strong as practical in a prompt.
SCRYPT_PARAMS = {"n": 2 ** 17, "r": 8, "p": 1}

Entries = dict[str, dict[str, str]]


#: What to do about a damaged file; credbridge never repairs one by writing over it.
RESTORE = "restore it from a backup, or move it away and log in again"


class Damaged(HelperError):
    """The file cannot be read; the message completes "the cryptfile <path> ..."."""


def new_header(passphrase: bytes) -> tuple[bytes, bytes]:
    """(header, key) for a new file: fresh salt, the strongest KDF this build offers."""
    salt = os.urandom(16)
    for kdf, params in (("argon2id", ARGON2ID_PARAMS), ("scrypt", SCRYPT_PARAMS)):
        try:
            key = _derive(kdf, params, salt, passphrase)
        except _KdfUnavailable:
            continue
        fields = {"kdf": kdf, **params, "salt": _b64(salt), "check": _b64(_check_value(key))}
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode(), key
    raise HelperError("neither Argon2id nor scrypt is available in this Python's cryptography/OpenSSL build")


def derive_key(header: bytes, passphrase: bytes) -> bytes | None:
    """The key this passphrase gives under `header`, or None when it is the wrong passphrase."""
    fields = _header_fields(header)
    try:
        key = _derive(fields["kdf"], {k: v for k, v in fields.items() if k not in ("kdf", "salt", "check")},
                      base64.b64decode(fields["salt"]), passphrase)
    except _KdfUnavailable:
        raise HelperError(f"this file needs the {fields['kdf']} KDF, which this Python's cryptography/OpenSSL build lacks") from None
    except (KeyError, TypeError, ValueError):
        raise Damaged(f"has a damaged header (bad KDF parameters): {RESTORE}") from None
    return key if hmac.compare_digest(_check_value(key), base64.b64decode(fields["check"])) else None


def header_of(data: bytes) -> bytes:
    """The header of a sealed file; Damaged for anything that is not a whole file of our format."""
    if len(data) < _PREFIX.size:
        raise Damaged(f"is truncated: {RESTORE}")
    magic, version, header_length = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise Damaged("is not a credbridge cryptfile: move it away, or set CREDBRIDGE_CRYPTFILE to the right file")
    if version > VERSION:
        raise Damaged(f"was written by a newer credbridge (format {version}; this one reads up to {VERSION}): upgrade credbridge")
    if version < 1 or header_length > _MAX_HEADER_BYTES:
        raise Damaged(f"has a damaged header: {RESTORE}")
    if len(data) < _PREFIX.size + header_length + _NONCE_BYTES + _TAG_BYTES:
        raise Damaged(f"is truncated: {RESTORE}")
    header = data[_PREFIX.size:_PREFIX.size + header_length]
    _header_fields(header)
    return header


def seal(header: bytes, key: bytes, entries: Entries) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    associated = _PREFIX.pack(MAGIC, VERSION, len(header)) + header
    nonce = os.urandom(_NONCE_BYTES)
    plaintext = json.dumps(entries, ensure_ascii=False, separators=(",", ":")).encode()
    return associated + nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def unseal(data: bytes, key: bytes) -> Entries:
    """The entries of a file whose header was checked with header_of and whose key was verified."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = header_of(data)
    boundary = _PREFIX.size + len(header)
    nonce, ciphertext = data[boundary:boundary + _NONCE_BYTES], data[boundary + _NONCE_BYTES:]
    try:
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, data[:boundary])
    except InvalidTag:
        raise Damaged(f"is damaged (corrupt or truncated: it fails authentication): {RESTORE}") from None
    entries = json.loads(plaintext)
    if not isinstance(entries, dict):
        raise Damaged(f"holds no credential map: {RESTORE}")
    return entries


class _KdfUnavailable(Exception):
    pass


def _derive(kdf: str, params: dict[str, Any], salt: bytes, passphrase: bytes) -> bytes:
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        if kdf == "argon2id":
            try:
                from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
            except ImportError:
                raise _KdfUnavailable() from None
            return Argon2id(salt=salt, length=_KEY_BYTES, iterations=int(params["iterations"]),
                            lanes=int(params["lanes"]), memory_cost=int(params["memory_kib"])).derive(passphrase)
        if kdf == "scrypt":
            from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

            return Scrypt(salt=salt, length=_KEY_BYTES, n=int(params["n"]), r=int(params["r"]),
                          p=int(params["p"])).derive(passphrase)
    except UnsupportedAlgorithm:
        raise _KdfUnavailable() from None
    raise _KdfUnavailable()


def _header_fields(header: bytes) -> dict[str, Any]:
    try:
        fields = json.loads(header)
        if isinstance(fields, dict) and {"kdf", "salt", "check"} <= fields.keys():
            return fields
    except ValueError:
        pass
    raise Damaged(f"has a damaged header: {RESTORE}")


def _check_value(key: bytes) -> bytes:
    return hmac.new(key, _CHECK_LABEL, hashlib.sha256).digest()[:16]


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
