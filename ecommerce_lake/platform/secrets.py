"""The secrets: the pseudonymisation key and the privacy keyring. Never config fields (so they never show in the
UI), never logged."""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from pydantic import Field

KEY_ENV = "ECOMMERCE_LAKE_PSEUDONYM_KEY"


class PseudonymKeyResource(dg.ConfigurableResource):
    """Supplies the HMAC key: from ``ECOMMERCE_LAKE_PSEUDONYM_KEY`` if set, else from ``key_file``.

    In local mode a random key is generated into ``key_file`` (outside the repository, mode 0600) on first
    use. In prod a missing key is an error: pseudonyms must stay stable across machines and runs.
    """

    key_file: str = Field(description="File holding the key (used when the environment variable is unset).")
    generate_if_missing: bool = False

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Checked when a run starts, before any step writes: a run without its key fails at once, not after
        the raw layer is written (in prod) or creates the local key before the first step."""
        self.key()

    def key(self) -> bytes:
        value = os.environ.get(KEY_ENV)
        if value:
            if len(value) < 16:
                raise dg.DagsterInvariantViolationError(f"{KEY_ENV} is too short: use at least 16 characters")
            return value.encode("utf-8")
        path = Path(self.key_file).expanduser()
        if path.is_file():
            text = path.read_text(encoding="utf-8").strip()
            if len(text) < 16:
                raise dg.DagsterInvariantViolationError(f"the pseudonym key in {path} is too short")
            return text.encode("utf-8")
        if not self.generate_if_missing:
            raise dg.DagsterInvariantViolationError(
                f"no pseudonymisation key: set {KEY_ENV} or create {path} (at least 16 characters). "
                "It must be the same on every run, or pseudonyms change."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        return path.read_text(encoding="utf-8").strip().encode("utf-8")


# ---- the privacy keyring: versioned AES-256 keys for the encrypted personal columns -------------------------
KEYRING_ENV = "ECOMMERCE_LAKE_PRIVACY_KEYRING"  # the keyring's JSON itself (production: from a secret store)


class KeyringUnavailable(RuntimeError):
    """No keyring in this environment: personal columns can be neither written nor revealed here."""


@dataclass
class KeyVersion:
    version: int
    key: bytes | None  # None once retired: values encrypted with it can no longer be read
    created_at: str
    retired_at: str | None = None

    @property
    def retired(self) -> bool:
        return self.retired_at is not None


@dataclass
class Keyring:
    """Key versions k1, k2, ...; the newest one not retired encrypts. Each encrypted value starts with the id
    (``k<version>:``) of the key that encrypted it, so old versions keep decrypting until they are retired."""

    versions: dict[int, KeyVersion]
    source: str  # where it came from (a file path, or the environment variable's name); never the keys

    @property
    def active(self) -> KeyVersion:
        live = [v for v in self.versions.values() if not v.retired]
        if not live:
            raise KeyringUnavailable(f"the privacy keyring ({self.source}) has no key that is not retired: run "
                                     "`ecommerce-lake privacy rotate-key`")
        return max(live, key=lambda v: v.version)

    @property
    def readable(self) -> dict[int, bytes]:
        """Version -> key, for every version that still decrypts."""
        return {v.version: v.key for v in self.versions.values() if not v.retired and v.key is not None}

    @property
    def retired(self) -> list[int]:
        return sorted(v.version for v in self.versions.values() if v.retired)

    def describe(self) -> str:
        parts = [f"k{v.version} ({'retired ' + v.retired_at if v.retired else 'active' if v is self.active else 'decrypt only'})"
                 for v in sorted(self.versions.values(), key=lambda v: v.version)]
        return ", ".join(parts)

    # ---- changes (a steward's commands) --------------------------------------------------------------
    def add_version(self) -> KeyVersion:
        version = max(self.versions, default=0) + 1
        self.versions[version] = KeyVersion(version, secrets.token_bytes(32), _now())
        return self.versions[version]

    def retire(self, version: int) -> None:
        if version not in self.versions:
            raise KeyError(f"no key version k{version} in the keyring")
        if self.versions[version].retired:
            return
        if self.active.version == version:
            raise ValueError(f"k{version} is the active key: rotate first (`ecommerce-lake privacy rotate-key`)")
        self.versions[version] = KeyVersion(version, None, self.versions[version].created_at, _now())

    # ---- storage ---------------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"versions": [
            {"version": v.version, "key": base64.b64encode(v.key).decode() if v.key else None,
             "created_at": v.created_at, "retired_at": v.retired_at}
            for v in sorted(self.versions.values(), key=lambda v: v.version)]}, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> Keyring:
        try:
            data = json.loads(text)
            versions = {}
            for item in data["versions"]:
                key = base64.b64decode(item["key"]) if item.get("key") else None
                if key is not None and len(key) != 32:
                    raise ValueError(f"k{item['version']} is not a 256-bit key")
                versions[int(item["version"])] = KeyVersion(int(item["version"]), key, str(item["created_at"]),
                                                            item.get("retired_at"))
        except (ValueError, KeyError, TypeError) as exc:  # never quote the text: it holds the keys
            raise KeyringUnavailable(f"the privacy keyring in {source} is not valid ({type(exc).__name__}: expected "
                                     '{"versions": [{"version", "key" (base64, 32 bytes), "created_at"}]})') from None
        if not versions:
            raise KeyringUnavailable(f"the privacy keyring in {source} holds no key")
        return cls(versions, source)

    def save(self, path: str | Path) -> None:
        """Write the keyring to ``path`` atomically, readable by its owner only."""
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.to_json())
        os.replace(tmp, path)
        self.source = str(path)


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def load_keyring(keyring_file: str, generate_if_missing: bool = False) -> Keyring:
    """The keyring from ``ECOMMERCE_LAKE_PRIVACY_KEYRING`` (its JSON) if set, else from ``keyring_file`` (a local
    file, or a mounted secret in production). With ``generate_if_missing`` (local development) a first key is
    generated into the file, mode 0600. Otherwise a missing keyring raises :class:`KeyringUnavailable`."""
    value = os.environ.get(KEYRING_ENV)
    if value:
        return Keyring.from_json(value, KEYRING_ENV)
    path = Path(keyring_file).expanduser()
    if path.is_file():
        if path.stat().st_mode & 0o077:
            raise KeyringUnavailable(f"the privacy keyring {path} is readable by others: chmod 600 it")
        return Keyring.from_json(path.read_text(encoding="utf-8"), str(path))
    if not generate_if_missing:
        raise KeyringUnavailable(
            f"no privacy keyring in this environment: neither {KEYRING_ENV} nor the file {path} (set "
            "ECOMMERCE_LAKE_PRIVACY_KEYRING_FILE to a mounted secret). Only environments granted the keyring can "
            "write or reveal the encrypted personal columns."
        )
    ring = Keyring({}, str(path))
    ring.add_version()
    ring.save(path)
    return ring


class PrivacyKeysResource(dg.ConfigurableResource):
    """The privacy keyring, loaded only by the steps that encrypt or decrypt personal columns (the customers'
    ingestion and refinement), when they run: never when the definitions load, never into configuration or
    logs. Local development generates a keyring on first use; production reads it from
    ``ECOMMERCE_LAKE_PRIVACY_KEYRING`` or a mounted secret file and fails clearly without it."""

    keyring_file: str = Field(description="Keyring file (used when ECOMMERCE_LAKE_PRIVACY_KEYRING is unset).")
    generate_if_missing: bool = False

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Checked when a run that ingests or refines customers starts, before any step writes: without the keyring
        it fails at once, naming what to set."""
        self.keyring()

    def keyring(self) -> Keyring:
        try:
            return load_keyring(self.keyring_file, self.generate_if_missing)
        except KeyringUnavailable as exc:
            raise dg.DagsterInvariantViolationError(str(exc)) from None

    def spark_keys(self):
        """The keyring as Spark code takes it (:class:`ecommerce_lake.logic.refined.pii.Keys`)."""
        from ecommerce_lake.logic.refined.pii import Keys

        ring = self.keyring()
        return Keys(ring.readable, ring.active.version, tuple(ring.retired))
