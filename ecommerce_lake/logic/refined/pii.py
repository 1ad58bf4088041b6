"""PII handling: keyed pseudonyms (HMAC-SHA-256) and E.164 phone normalisation, as Spark expressions.

HMAC(K, m) = H((K' xor opad) || H((K' xor ipad) || m)) with H = SHA-256 and K' the key padded to the 64-byte
block. The two padded keys are constants computed here, so the whole HMAC is plain Spark SQL (``sha2``,
``unhex``, ``concat`` on binary) – vectorised, no Python UDF, identical to Python's ``hmac`` module (tested).
"""

from __future__ import annotations

import hashlib

from pyspark.sql import Column
from pyspark.sql import functions as F

BLOCK = 64


def _padded_keys(key: bytes) -> tuple[bytes, bytes]:
    if len(key) > BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def hmac_sha256_hex(message: Column, key: bytes) -> Column:
    """Lower-case hex HMAC-SHA-256 of the UTF-8 string ``message`` (null stays null)."""
    ipad, opad = _padded_keys(key)
    inner = F.unhex(F.sha2(F.concat(F.lit(ipad), F.encode(message, "UTF-8")), 256))
    outer = F.sha2(F.concat(F.lit(opad), inner), 256)
    return F.when(message.isNotNull(), outer)


def pseudonym(value: Column, key: bytes, namespace: str) -> Column:
    """A stable pseudonym for an identifier; the namespace keeps e.g. customer and phone pseudonyms apart."""
    return hmac_sha256_hex(F.concat(F.lit(namespace + ":"), value), key)


def e164_kenya(phone: Column) -> Column:
    """Normalise a Kenyan phone number to E.164 (+2547XXXXXXXX / +2541XXXXXXXX); null if it is not one."""
    digits = F.regexp_replace(F.trim(phone), r"[^0-9]", "")
    national = (
        F.when(digits.rlike(r"^254[17][0-9]{8}$"), F.substring(digits, 4, 9))
        .when(digits.rlike(r"^0[17][0-9]{8}$"), F.substring(digits, 2, 9))
        .when(digits.rlike(r"^[17][0-9]{8}$"), digits)
    )
    return F.when(national.isNotNull(), F.concat(F.lit("+254"), national))


def email_domain(email: Column) -> Column:
    e = F.lower(F.trim(email))
    return F.when(e.rlike(r"^[^@\s]+@[a-z0-9.-]+\.[a-z]{2,}$"), F.substring_index(e, "@", -1))
