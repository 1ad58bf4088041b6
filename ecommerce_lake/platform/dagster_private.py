"""Every private Dagster API the project uses (``dagster._...``), gathered here and nowhere else.

Only where a measured gain needs one: the local instance's SQLite storage keeps its event log connections open
(``platform/dagster_storage.py``; about five times faster per event than Dagster's stock SQLite storage, which made
a two-year build's 7,300 partition events the largest part of its orchestration overhead: docs/performance.md).
It subclasses Dagster's SQLite storage classes and reuses their helpers.

``ecommerce_lake_tests/test_dagster_storage.py::test_the_private_dagster_apis_are_still_there`` imports this
module and checks every name it re-exports, so a Dagster upgrade that moves or renames one fails there, loudly,
rather than at a run.
"""

from __future__ import annotations

from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from dagster._serdes import ConfigurableClassData

# What dagster_storage.py relies on besides the names above: members of Dagster's classes it calls or overrides
# (checked by the test named above)
SQLITE_EVENT_LOG_MEMBERS = ("__init__", "_connect", "_initdb", "conn_string_for_shard", "wipe", "dispose",
                            "from_config_value")
SQLITE_EVENT_LOG_ATTRIBUTES = ("_db_lock", "_initialized_dbs")  # set by its __init__
SQLITE_STORAGE_ATTRIBUTES = ("_event_log_storage",)  # set by DagsterSqliteStorage.__init__

__all__ = ["INDEX_SHARD_NAME", "SQLITE_BUSY_TIMEOUT_SECONDS", "SQLITE_EVENT_LOG_ATTRIBUTES", "SQLITE_EVENT_LOG_MEMBERS",
           "SQLITE_STORAGE_ATTRIBUTES", "ConfigurableClassData", "DagsterSqliteStorage", "SqliteEventLogStorage",
           "_event_logs_directory", "create_engine"]
