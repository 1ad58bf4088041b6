"""The data dictionary (docs/tables.md), generated from the table schemas (``ecommerce-lake docs``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ecommerce_lake.core.segment_rules import rules_markdown
from ecommerce_lake.schemas.spark import describe_check, type_string

if TYPE_CHECKING:
    import pandera.pyspark as pa

TABLES_MD = "docs/tables.md"
HEADER = """# Data dictionary

Generated from the pandera schemas in `ecommerce_lake/schemas/` by `ecommerce-lake docs`; a test fails when
this file is stale. Each table lives at `<lake_root>/<layer>/<table>` (Delta) and is registered in the catalog
as `<layer>.<table>`. Types are Spark SQL types; "rules" are the checks the `value_rules` asset check
enforces; "(from ...)" is the column lineage also shown in the Dagster UI.
"""


def render_tables_md() -> str:
    parts = [HEADER]
    from ecommerce_lake import schemas

    for layer in schemas.LAYERS:
        parts.append(f"\n## {layer}\n")
        for schema in schemas.ALL:
            if schema.name.startswith(layer + "."):
                parts.append("\n" + dictionary_markdown(schema))
                if schema.name == "ml.rfm_scores":
                    parts.append("\n#### Segment rules (R and F scores)\n\n" + rules_markdown())
    return "".join(parts)


def dictionary_markdown(schema: pa.DataFrameSchema) -> str:
    lines = [f"### `{schema.name}`", ""]
    if schema.description:
        lines += [schema.description.strip(), ""]
    if schema.unique:
        lines += [f"Key: ({', '.join(schema.unique)})", ""]
    lines += ["| column | type | nullable | rules | description |", "|---|---|---|---|---|"]
    for name, column in schema.columns.items():
        rules = "; ".join(describe_check(c) for c in column.checks)
        desc = (column.description or "").replace("|", "\\|")
        lineage = (column.metadata or {}).get("lineage")
        if lineage:
            desc += f" (from {', '.join(lineage)})"
        lines.append(
            f"| `{name}` | {type_string(column)} | {'yes' if column.nullable else 'no'} | "
            f"{rules.replace('|', chr(92) + '|')} | {desc} |"
        )
    return "\n".join(lines) + "\n"
