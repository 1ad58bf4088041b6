"""The data dictionary (docs/tables.md), generated from the table schemas."""

from __future__ import annotations

from ecommerce_lake import schemas
from ecommerce_lake.platform.schema_meta import dictionary_markdown

TABLES_MD = "docs/tables.md"

HEADER = """# Data dictionary

Generated from the pandera schemas in `ecommerce_lake/schemas/` by `ecommerce-lake docs`; a test fails when
this file is stale. Each table lives at `<lake_root>/<layer>/<table>` (Delta) and is registered in the catalog
as `<layer>.<table>`. Types are Spark SQL types; "rules" are the checks the `value_rules` asset check
enforces; "(from ...)" is the column lineage also shown in the Dagster UI.
"""


def render_tables_md() -> str:
    parts = [HEADER]
    from ecommerce_lake.logic.segments import rules_markdown

    for layer in ("raw", "refined", "curated", "ml", "ops"):
        parts.append(f"\n## {layer}\n")
        for schema in schemas.ALL:
            if schema.name.startswith(layer + "."):
                parts.append("\n" + dictionary_markdown(schema))
                if schema.name == "ml.rfm_scores":
                    parts.append("\n#### Segment rules (R and F scores)\n\n" + rules_markdown())
    return "".join(parts)
