"""The local Dagster instance's SQLite storage, with the event log's connections kept open.

Dagster's SQLite event log opens a new engine and a new SQLite connection for every event it stores, and
closes them again: each event then pays for connecting, compiling its SQL statements afresh (SQLAlchemy caches
compiled statements per engine) and closing the last connection of a WAL database, which checkpoints the WAL
and deletes it. A run that materializes day-partitioned tables over two years stores one event per partition
and output (about 7,300 at 730 days, and as many ``ASSET_MATERIALIZATION_PLANNED`` events when the run is
created), so that cost dominates the orchestration overhead of a full build (see docs/performance.md).

:class:`PooledSqliteStorage` is Dagster's own SQLite storage (same files, same layout, same schema) with one
difference: the event log keeps one engine per database file, with a small connection pool, and sets
``PRAGMA synchronous=NORMAL`` on its connections (SQLite's recommended setting in WAL mode: a commit is
durable against a crash of the process; a power cut may lose the last commits, never corrupt the database).
Engines are per process (a forked child opens its own) and the per-run databases kept open are bounded
(least recently used first out).

Configured in ``dagster.yaml`` as :data:`LOCAL_STORAGE_YAML` shows (``base_dir`` from ``DAGSTER_HOME``).
Production uses PostgreSQL (docker/dagster.prod.yaml), which pools its connections already.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

from ecommerce_lake.platform.dagster_private import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    ConfigurableClassData,
    DagsterSqliteStorage,
    SqliteEventLogStorage,
    _event_logs_directory,
    create_engine,
)

MAX_OPEN_RUN_DATABASES = 8  # per process, besides the index database
LOCAL_STORAGE_YAML = """storage:
  custom:
    module: ecommerce_lake.platform.dagster_storage
    class: PooledSqliteStorage
    config:
      base_dir:
        env: DAGSTER_HOME
"""
_ENV_BASE_DIR = re.compile(r"^([ \t]*)base_dir:[ \t]*\n\s*env:[ \t]*DAGSTER_HOME[ \t]*$", re.MULTILINE)


def pinned(dagster_yaml: str, home) -> str:
    """``dagster_yaml`` with the storage's ``base_dir`` set to ``home`` instead of ``$DAGSTER_HOME``, so the
    instance reads its own directory even when opened from a process whose DAGSTER_HOME points elsewhere
    (``DagsterInstance.from_config(directory)``)."""
    found = _ENV_BASE_DIR.findall(dagster_yaml)
    if len(found) != 1:
        raise ValueError(
            f"dagster.yaml: expected one storage `base_dir:` taken from `env: DAGSTER_HOME` (as in LOCAL_STORAGE_YAML), "
            f"found {len(found)}; cannot pin the instance's directory to {home}"
        )
    return _ENV_BASE_DIR.sub(lambda m: f"{m.group(1)}base_dir: {json.dumps(str(home))}", dagster_yaml)


def instance_yaml(home) -> str:
    """The dagster.yaml of a local instance at ``home`` (what bench and the tests create): this storage."""
    return pinned("telemetry:\n  enabled: false\n" + LOCAL_STORAGE_YAML, home)


def _on_connect(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log storage, keeping an engine (and pooled connections) per database file."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data, config_value):  # ty: ignore[invalid-method-override]
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        """The shard's engine; called with ``self._db_lock`` held."""
        if self._engines_pid != os.getpid():  # forked: the parent's connections are not ours to use
            for engine in self._engines.values():
                engine.dispose(close=False)
            self._engines.clear()
            self._engines_pid = os.getpid()
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = create_engine(
            self.conn_string_for_shard(shard),
            poolclass=QueuePool,
            pool_size=1,
            max_overflow=4,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
        )
        event.listen(engine, "connect", _on_connect)
        self._engines[shard] = engine
        runs = [s for s in self._engines if s != INDEX_SHARD_NAME]
        for old in runs[: max(0, len(runs) - MAX_OPEN_RUN_DATABASES)]:
            self._engines.pop(old).dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn:
                with conn.begin():
                    yield conn

    def close_engines(self) -> None:
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def wipe(self) -> None:
        self.close_engines()  # wipe deletes the run databases' files
        super().wipe()

    def dispose(self) -> None:
        super().dispose()
        self.close_engines()


class PooledSqliteStorage(DagsterSqliteStorage):
    """``DagsterSqliteStorage`` (same layout under ``base_dir``) with :class:`PooledSqliteEventLogStorage`."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        # two processes opening a new instance at once (two runs started together) would both create the SQLite
        # schema and one fails ("table backfill_tags already exists"): the creation is serialized by a file lock
        os.makedirs(base_dir, exist_ok=True)
        with open(os.path.join(base_dir, ".storage-init.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                super().__init__(base_dir, inst_data)
                # Dagster's event log (built above: it creates the index database the first time, then holds
                # nothing open) swapped for the pooled one over the same directory
                self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @classmethod
    def from_config_value(cls, inst_data, config_value):  # ty: ignore[invalid-method-override]
        return cls.from_local(inst_data=inst_data, **config_value)
