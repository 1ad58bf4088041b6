"""Read-only SQL over the lake without Spark: each Delta table read by delta-rs (its current snapshot, as Arrow)
and queried by DuckDB under the lake's catalog names (``<layer>.<table>``: a DuckDB schema per layer, a view per
table). What ``ecommerce-lake sql`` uses when the engine is not running, or with ``--engine duckdb``.

Only the tables a query names are opened (each open reads the table's Delta log), or every table for a query
that names none (``SHOW ALL TABLES``). Once they are registered, DuckDB's access to files and the network is
switched off and the configuration locked: the connection can read those tables and nothing else, and write
nowhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ecommerce_lake.platform.locations import delta_rs_location
from ecommerce_lake.schemas import ALL, LAYERS, layer_of, table_of

READ_ONLY = re.compile(r"^\s*(\(\s*)*(select|with|from|values|show|describe|summarize|table|pivot|unpivot)\b",
                       re.IGNORECASE | re.DOTALL)
NAME = re.compile(r"\b(" + "|".join(LAYERS) + r")\s*\.\s*([a-z_][a-z0-9_]*)\b", re.IGNORECASE)


class DuckError(RuntimeError):
    pass


@dataclass
class Catalog:
    connection: object
    tables: list[str] = field(default_factory=list)  # the catalog names registered


def is_read_only(query: str) -> bool:
    return bool(READ_ONLY.match(_strip_comments(query)))


def _strip_comments(query: str) -> str:
    return re.sub(r"--[^\n]*|/\*.*?\*/", " ", query, flags=re.DOTALL)


def connect(root: str, query: str | None = None, s3_endpoint: str = "", s3_region: str = "us-east-1",
            s3_path_style: bool = False) -> Catalog:
    """A DuckDB connection with the lake's tables (those ``query`` names; all of them without a query or when it
    names none) as ``<layer>.<table>`` views, locked to reading them."""
    import duckdb
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    known = {s.name: s for s in ALL}
    wanted = sorted({f"{m.group(1).lower()}.{m.group(2).lower()}" for m in NAME.finditer(query or "")} & set(known))
    if not wanted:
        wanted = sorted(known)
    con = duckdb.connect(":memory:")
    catalog = Catalog(con)
    for name in wanted:
        schema = known[name]
        layer, table = layer_of(schema), table_of(schema)
        uri, options = delta_rs_location(f"{root.rstrip('/')}/{layer}/{table}", s3_endpoint, s3_region, s3_path_style)
        try:
            dataset = DeltaTable(uri, storage_options=options).to_pyarrow_dataset()
        except TableNotFoundError:
            continue
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{layer}"')
        con.register(f"__{layer}__{table}", dataset)
        con.execute(f'CREATE VIEW "{layer}"."{table}" AS SELECT * FROM "__{layer}__{table}"')
        catalog.tables.append(name)
    con.execute("SET TimeZone = 'UTC'")  # Spark writes instants in UTC; show them as such
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return catalog


def query(catalog: Catalog, sql: str):
    """The result of a read-only query, as a DuckDB relation (``.fetchall()``, ``.show()``, ``.arrow()``)."""
    if not is_read_only(sql):
        raise DuckError("DuckDB answers read-only queries (SELECT, WITH, SHOW, DESCRIBE ...); run other statements "
                        "on Spark: --engine spark")
    return catalog.connection.sql(sql)
