"""The cryptfile format: a versioned header, then the whole content under AES-256-GCM.

The header names the KDF (bounded before any derivation), a key check value, the file's id and
generation and a salted index of its registries (docs/protocol.md section 6; docs/trust.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from typing import Any, NamedTuple, Optional

from credbridge.errors import HelperError
from credbridge.urls import canonical

MAGIC = b"CBCF"
VERSION = 2
_PREFIX = struct.Struct(">4sHI")
_NONCE_BYTES = 12
_TAG_BYTES = 16
_KEY_BYTES = 32
_INDEX_HASH_BYTES = 16
#: The index holds 16 bytes per registry: room for some 190,000 of them.
_MAX_HEADER_BYTES = 4 * 1024 * 1024
_CHECK_LABEL = b"credbridge cryptfile key check"
#: RFC 9106's second recommended Argon2id setting (64 MiB, 3 passes, 4 lanes).
ARGON2ID_PARAMS = {"memory_kib": 64 * 1024, "iterations": 3, "lanes": 4}
#: scrypt where OpenSSL lacks Argon2id: 128 MiB, as strong as practical in a prompt.
SCRYPT_PARAMS = {"n": 2**17, "r": 8, "p": 1}
#: (floor, ceiling) per parameter. Floors are what credbridge writes; ceilings keep one derivation
#: within 1 GiB of memory and 32 times the work of ours (seconds, not hours).
KDF_BOUNDS = {
    "argon2id": {"memory_kib": (64 * 1024, 1024 * 1024), "iterations": (3, 6), "lanes": (1, 16)},
    "scrypt": {"n": (2**17, 2**20), "r": (8, 8), "p": (1, 2)},
}
_KEY_FIELDS = ("kdf", "salt", "check")

Entries = dict[str, dict[str, str]]


#: What to do about a damaged file; credbridge never repairs one by writing over it.
RESTORE = "restore it from a backup, or move it away and log in again"


class Damaged(HelperError):
    """The file cannot be read; the message completes "the cryptfile <path> ..."."""


class Sealed(NamedTuple):
    """What a sealed file's header says before anything is decrypted; trustworthy only once unsealed."""

    header: bytes
    key_header: bytes  # see key_header()
    file_id: str  # "" in format 1
    generation: int  # 0 in format 1


def new_header(passphrase: bytes) -> tuple[bytes, bytes]:
    """(key header, key) for a new file: fresh salt, the strongest KDF this build offers."""
    salt = os.urandom(16)
    for kdf, params in (("argon2id", ARGON2ID_PARAMS), ("scrypt", SCRYPT_PARAMS)):
        try:
            key = _derive(kdf, params, salt, passphrase)
        except _KdfUnavailable:
            continue
        return _json({"kdf": kdf, **params, "salt": _b64(salt), "check": _b64(_check_value(key))}), key
    raise HelperError("neither Argon2id nor scrypt is available in this Python's cryptography/OpenSSL build")


def key_header(header: bytes) -> bytes:
    """The part of a header the key depends on (KDF, parameters, salt, check): equal for every
    generation of a file until its passphrase changes; what the key cache keeps."""
    return _key_part(_header_fields(header))


def derive_key(header: bytes, passphrase: bytes) -> bytes | None:
    """The key this passphrase gives under `header`, or None when it is the wrong passphrase."""
    fields = _header_fields(header)
    try:
        key = _derive(
            fields["kdf"],
            {name: fields[name] for name in KDF_BOUNDS[fields["kdf"]]},
            base64.b64decode(fields["salt"]),
            passphrase,
        )
    except _KdfUnavailable:
        raise HelperError(
            f"this file needs the {fields['kdf']} KDF, which this Python's cryptography/OpenSSL build lacks"
        ) from None
    except (KeyError, TypeError, ValueError):
        raise Damaged(f"has a damaged header (bad KDF parameters): {RESTORE}") from None
    return key if hmac.compare_digest(_check_value(key), base64.b64decode(fields["check"])) else None


def parse(data: bytes) -> Sealed:
    """The header of a sealed file; Damaged for anything that is not a whole file of our format."""
    if len(data) < _PREFIX.size:
        raise Damaged(f"is truncated: {RESTORE}")
    magic, version, header_length = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise Damaged("is not a credbridge cryptfile: move it away, or set CREDBRIDGE_CRYPTFILE to the right file")
    if version > VERSION:
        raise Damaged(
            f"was written by a newer credbridge (format {version}; this one reads up to {VERSION}): upgrade credbridge"
        )
    if version < 1 or header_length > _MAX_HEADER_BYTES:
        raise Damaged(f"has a damaged header: {RESTORE}")
    if len(data) < _PREFIX.size + header_length + _NONCE_BYTES + _TAG_BYTES:
        raise Damaged(f"is truncated: {RESTORE}")
    header = data[_PREFIX.size : _PREFIX.size + header_length]
    fields = _header_fields(header)
    file_id, generation = fields.get("file", ""), fields.get("generation", 0)
    if not isinstance(file_id, str) or not _is_int(generation) or generation < 0:
        raise Damaged(f"has a damaged header (bad generation): {RESTORE}")
    return Sealed(header, _key_part(fields), file_id, generation)


def may_hold(header: bytes, server_url: str) -> bool:
    """Whether the file may hold a login for `server_url`, decided without the key (see the module's
    docstring for what that trusts). A format 1 file has no index: it may hold anything."""
    index = _header_fields(header).get("index")
    if index is None:
        return True
    try:
        salt, hashes = base64.b64decode(index["salt"]), base64.b64decode(index["hashes"])
    except (KeyError, TypeError, ValueError):
        raise Damaged(f"has a damaged header (bad index): {RESTORE}") from None
    wanted = _index_hash(salt, server_url)
    return any(
        hmac.compare_digest(wanted, hashes[start : start + _INDEX_HASH_BYTES])
        for start in range(0, len(hashes), _INDEX_HASH_BYTES)
    )


def seal(header: bytes, key: bytes, entries: Entries, after: Optional[Sealed] = None) -> bytes:
    """The file that follows `after` (its id, the next generation), or a new file when None.

    `header` gives the key's part (key_header); the index is built afresh from `entries`.
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    fields = json.loads(key_header(header))
    fields.update(
        file=after.file_id if after and after.file_id else _b64(os.urandom(12)),
        generation=after.generation + 1 if after else 1,
        index=_index(entries),
    )
    full_header = _json(fields)
    associated = _PREFIX.pack(MAGIC, VERSION, len(full_header)) + full_header
    nonce = os.urandom(_NONCE_BYTES)
    plaintext = json.dumps(entries, ensure_ascii=False, separators=(",", ":")).encode()
    return associated + nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def unseal(data: bytes, key: bytes) -> Entries:
    """The entries of a file whose header was checked with parse and whose key was verified."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    boundary = _PREFIX.size + len(parse(data).header)
    nonce, ciphertext = data[boundary : boundary + _NONCE_BYTES], data[boundary + _NONCE_BYTES :]
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
            return Argon2id(
                salt=salt,
                length=_KEY_BYTES,
                iterations=params["iterations"],
                lanes=params["lanes"],
                memory_cost=params["memory_kib"],
            ).derive(passphrase)
        if kdf == "scrypt":
            from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

            return Scrypt(salt=salt, length=_KEY_BYTES, n=params["n"], r=params["r"], p=params["p"]).derive(passphrase)
    except UnsupportedAlgorithm:
        raise _KdfUnavailable() from None
    raise _KdfUnavailable()


def _header_fields(header: bytes) -> dict[str, Any]:
    try:
        fields = json.loads(header)
    except ValueError:
        fields = None
    if not isinstance(fields, dict) or not set(_KEY_FIELDS) <= fields.keys() or fields["kdf"] not in KDF_BOUNDS:
        raise Damaged(f"has a damaged header: {RESTORE}")
    _refuse_out_of_bounds(fields)
    return fields


def _key_part(fields: dict[str, Any]) -> bytes:
    return _json({name: fields[name] for name in (*_KEY_FIELDS, *KDF_BOUNDS[fields["kdf"]])})


def _refuse_out_of_bounds(fields: dict[str, Any]) -> None:
    """Before any derivation: a parameter below the floor makes guessing cheap, above the ceiling
    it makes a helper call run for hours or run out of memory."""
    kdf = fields["kdf"]
    for name, (floor, ceiling) in KDF_BOUNDS[kdf].items():
        value = fields.get(name)
        if not _is_int(value):
            raise Damaged(f"has a damaged header (bad KDF parameter {name}): {RESTORE}")
        if not floor <= value <= ceiling:
            side, limit = ("below", floor) if value < floor else ("above", ceiling)
            raise Damaged(
                f"has KDF parameters {side} credbridge's limits ({kdf} {name} {value}, limit {limit}), "
                f"so credbridge did not write it: {RESTORE}"
            )


def _index(entries: Entries) -> dict[str, str]:
    salt = os.urandom(16)
    hashes = sorted({_index_hash(salt, server_url) for server_url in entries})
    return {"salt": _b64(salt), "hashes": _b64(b"".join(hashes))}


def _index_hash(salt: bytes, server_url: str) -> bytes:
    """The same canonical form get matches by (an exact key is also canonically equal)."""
    return hmac.new(salt, canonical(server_url).encode("utf-8", "surrogateescape"), hashlib.sha256).digest()[
        :_INDEX_HASH_BYTES
    ]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_value(key: bytes) -> bytes:
    return hmac.new(key, _CHECK_LABEL, hashlib.sha256).digest()[:16]


def _json(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
