"""What the ingestion and planning logic knows of a landing zone: its batches (:class:`Batch`) and the few reads
it makes (:class:`LandingFiles`). ``platform/landing.py`` implements them on local disk and S3."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol

from ecommerce_lake.core.calendar import nairobi_date_of


@dataclass(frozen=True)
class Batch:
    batch_id: str
    complete: bool
    files: tuple[str, ...] = field(default=())  # file names in the batch folder (without the marker)
    completed_at: dt.datetime | None = None  # when the _SUCCESS marker was written (UTC)
    # entries the landing zone never reads: symbolic links (the batch folder itself is ".") and entries that are
    # not regular files (sub-folders, pipes), each with what it is; a batch holding any is rejected whole
    irregular: tuple[tuple[str, str], ...] = field(default=())
    etags: tuple[tuple[str, str], ...] = field(default=())  # S3: (file name, ETag and size) from the listing

    @property
    def arrival_day(self) -> dt.date:
        """The batch's arrival day (rows whose own date is unusable are filed under it): the date the batch
        id starts with (``2025-11-30``, ``2025-11-30T0215Z``...), else the Nairobi date its _SUCCESS marker
        was written."""
        try:
            return dt.date.fromisoformat(self.batch_id[:10])
        except ValueError:
            pass
        return nairobi_date_of(self.completed_at or dt.datetime.now(dt.timezone.utc))




class LandingFiles(Protocol):
    """A landing zone as the logic reads it (``platform.landing.LandingResource`` is one)."""

    root: str

    def list_batches(self, after: str | None = None) -> list[Batch]: ...

    def fingerprint(self, batch: Batch) -> str: ...

    def read_text(self, batch_id: str, filename: str) -> str: ...

    def read_header(self, batch_id: str, filename: str) -> list[str]: ...

    def spark_path(self, batch_id: str, filename: str) -> str: ...
