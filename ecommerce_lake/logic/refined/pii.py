"""PII handling as Spark expressions: keyed pseudonyms (HMAC-SHA-256), E.164 phone normalisation, and the
reversible AES-GCM encryption of personal values (below).

HMAC(K, m) = H((K' xor opad) || H((K' xor ipad) || m)) with H = SHA-256 and K' the key padded to the 64-byte
block. The two padded keys are constants computed here, so the whole HMAC is plain Spark SQL (``sha2``,
``unhex``, ``concat`` on binary) – vectorised, no Python UDF, identical to Python's ``hmac`` module (tested).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ecommerce_lake.schemas._base import ENCRYPTED

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


# ---- reversible encryption of personal values: AES-256-GCM by Spark's aes_encrypt / aes_decrypt -------------
# An encrypted value is "k<version>:" + base64(IV (12 bytes) + ciphertext + tag (16 bytes)), the layout of
# Spark's GCM mode (a random IV per value): the prefix names the key version that encrypted it. The associated
# data binds every ciphertext to this project's personal customer data.
ENCRYPTED_PATTERN = ENCRYPTED
AAD = "ecommerce_lake:customers"


def encrypt(value: Column, key: bytes, version: int) -> Column:
    """The string ``value`` encrypted with ``key`` (key version ``version``); null stays null."""
    sealed = F.aes_encrypt(F.encode(value, "UTF-8"), F.lit(key), F.lit("GCM"), F.lit("DEFAULT"),
                           F.unhex(F.lit("")), F.lit(AAD))
    # Spark's base64 may break long output into 76-character lines (spark.sql.chunkBase64String.enabled): one line
    return F.when(value.isNotNull(), F.concat(F.lit(f"k{version}:"), F.regexp_replace(F.base64(sealed), r"[\r\n]", "")))


def key_version(value: Column) -> Column:
    """The key version an encrypted value names (null for null)."""
    return F.regexp_extract(value, r"^k([0-9]+):", 1).cast("int")


def decrypt(value: Column, keys: dict[int, bytes]) -> Column:
    """The plaintext of an encrypted value. A value whose key version is not in ``keys`` (retired, or a foreign
    key) fails the query instead of reading as null, so nothing is silently lost."""
    if not keys:
        raise ValueError("no key to decrypt with")
    version = key_version(value)
    key = F.lit(None).cast("binary")
    for v, k in sorted(keys.items()):
        key = F.when(version == v, F.lit(k)).otherwise(key)
    key = F.coalesce(key, F.raise_error(F.concat(F.lit("encrypted value with unknown or retired key k"),
                                                 version.cast("string"))).cast("binary"))
    payload = F.unbase64(F.regexp_extract(value, r"^k[0-9]+:(.*)$", 1))
    return F.when(value.isNotNull(),
                  F.aes_decrypt(payload, key, F.lit("GCM"), F.lit("DEFAULT"), F.lit(AAD)).cast("string"))


def reencrypt(value: Column, keys: dict[int, bytes], key: bytes, version: int) -> Column:
    """An encrypted value under key ``version`` (values already under it are kept as they are)."""
    return F.when(key_version(value) == version, value).otherwise(encrypt(decrypt(value, keys), key, version))


@dataclass(frozen=True)
class Keys:
    """What Spark code needs of the keyring: the keys that decrypt (version -> key), the version that encrypts, and
    the retired versions (values under them fail the checks)."""

    readable: Mapping[int, bytes]
    version: int
    retired: tuple[int, ...] = ()

    @property
    def key(self) -> bytes:
        return self.readable[self.version]


def transform(df: DataFrame, columns: Sequence[str], fn: Callable[[Column], Column],
              entry: Callable[[Column], Column] | None = None) -> DataFrame:
    """``df`` with ``fn`` applied to every encrypted value of its encrypted ``columns``: a string column's values,
    a map column's values (only the entries whose key ``entry`` accepts, when given)."""
    types = dict(df.dtypes)
    out = {}
    for c in columns:
        if not types[c].startswith("map"):
            out[c] = fn(F.col(c))
        elif entry is not None:
            out[c] = F.transform_values(F.col(c), lambda k, v: F.when(entry(k), fn(v)).otherwise(v))
        else:
            out[c] = F.transform_values(F.col(c), lambda k, v: fn(v))
    return df.withColumns(out)


def seal(df: DataFrame, columns: Sequence[str], keys: Keys) -> DataFrame:
    """``df`` with its personal ``columns`` encrypted (string columns; a map column's values)."""
    return transform(df, columns, lambda v: encrypt(v, keys.key, keys.version))


def unseal(df: DataFrame, columns: Sequence[str], keys: Keys) -> DataFrame:
    """``df`` with its encrypted ``columns`` decrypted (the inverse of :func:`seal`)."""
    return transform(df, columns, lambda v: decrypt(v, keys.readable))
