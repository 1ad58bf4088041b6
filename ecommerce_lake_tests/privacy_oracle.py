"""Reading the lake's encrypted personal values independently of Spark: Python's ``cryptography`` AES-GCM over the
documented layout ("k<version>:" + base64(IV 12 bytes + ciphertext + tag 16 bytes), associated data
``ecommerce_lake:customers``). If the two disagree on the format, the tests using this fail."""

from __future__ import annotations

import base64
import re

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ecommerce_lake.platform.secrets import Keyring

ENCRYPTED = re.compile(r"^k([0-9]+):([A-Za-z0-9+/]+={0,2})$")
AAD = b"ecommerce_lake:customers"


def test_keyring() -> Keyring:
    ring = Keyring({}, "tests")
    ring.add_version()
    return ring


def decrypt(value: str, keys: dict[int, bytes]) -> str:
    m = ENCRYPTED.match(value)
    if not m:
        raise ValueError(f"not an encrypted value: {value[:12]}...")
    raw = base64.b64decode(m.group(2))
    return AESGCM(keys[int(m.group(1))]).decrypt(raw[:12], raw[12:], AAD).decode("utf-8")


def opened(value, keys: dict[int, bytes]):
    """``value`` with every encrypted string in it decrypted (strings, maps as dicts or key/value pairs, lists)."""
    if isinstance(value, str):
        return decrypt(value, keys) if ENCRYPTED.match(value) else value
    if isinstance(value, dict):
        return {k: opened(v, keys) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(opened(v, keys) for v in value)
    return value
