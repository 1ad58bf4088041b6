"""The pseudonymisation key. Never a config field (so it never shows in the UI), never logged."""

from __future__ import annotations

import os
import secrets
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
