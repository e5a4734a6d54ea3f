"""Decrypting a batch-fetched Secret Service secret: the right bytes, or one clear error, never a cut value."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.padding import PKCS7

from credbridge.errors import HelperError
from credbridge.stores.secretservice import _open_secret

KEY, IV = os.urandom(16), os.urandom(16)
SESSION = SimpleNamespace(encrypted=True, aes_key=KEY)


def encrypted(plain: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(KEY), modes.CBC(IV)).encryptor()
    return encryptor.update(plain) + encryptor.finalize()


def padded(plain: bytes) -> bytes:
    padder = PKCS7(128).padder()
    return padder.update(plain) + padder.finalize()


@pytest.mark.parametrize("secret", [b"", b"s3cret", b"exactly-16-bytes", "pässwörd-🔑".encode()])
def test_a_padded_secret_decrypts_to_exactly_its_bytes(secret: bytes) -> None:
    assert _open_secret(SESSION, ("/session", IV, encrypted(padded(secret)), "text/plain")) == secret


@pytest.mark.parametrize(
    "plain",
    [b"fifteen-bytes!!\x00", b"fifteen-bytes!!\x11", b"fourteen-bytes\x01\x02"],
    ids=["zero-pad-byte", "pad-longer-than-block", "inconsistent-padding"],
)
def test_a_secret_with_broken_padding_is_an_error_not_an_empty_or_cut_secret(plain: bytes) -> None:
    """Seen with kwalletd5: a zero last byte used to turn into an empty Secret."""
    with pytest.raises(HelperError, match="does not decrypt"):
        _open_secret(SESSION, ("/session", IV, encrypted(plain), "text/plain"))
