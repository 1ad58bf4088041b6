"""``ecommerce-lake bench --suite sql``: how long ``ecommerce-lake sql`` takes to answer, on the configured lake (it
must be built), through each engine: DuckDB over delta-rs (no JVM), the warm engine (when one is up at
ECOMMERCE_LAKE_SPARK_REMOTE), else in-process Spark (a JVM started for the query). Each query runs ``repeat`` times
per engine as a fresh ``ecommerce-lake sql`` process, the way a person runs it: the process's wall time and the
query's own time (what the command prints on stderr); the medians are reported. The answers of the engines are
compared too (the same rows, whitespace aside)."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import time

from ecommerce_lake.bench.suites import EXE, _machine

QUERIES = {
    "county_ranking": "select county_name, net_revenue_kes, revenue_rank from insights.county_scorecard "
                      "where month = (select max(month) from insights.county_scorecard) order by revenue_rank, "
                      "county_name limit 10",
    "monthly_revenue": "select year(order_date) as y, month(order_date) as m, sum(net_revenue_kes) as kes, "
                       "count(*) as lines from curated.fact_sales group by 1, 2 order by 1, 2",
    "county_category": "select county_code, category, sum(net_revenue_kes) as kes from curated.daily_sales "
                       "group by 1, 2 order by 3 desc, 1, 2 limit 10",
}
SECONDS = re.compile(r"\(([\d.]+) s on ")


def _one(query: str, engine: str, remote: str | None) -> tuple[float, float, list[str]]:
    env = dict(os.environ)
    if remote is not None:
        env["ECOMMERCE_LAKE_SPARK_REMOTE"] = remote
    started = time.monotonic()
    proc = subprocess.run([str(EXE), "sql", "--engine", engine, "--limit", "1000", query], env=env,
                          capture_output=True, text=True, timeout=900)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"sql --engine {engine} failed: {proc.stderr[-2000:]}")
    own = SECONDS.findall(proc.stderr)
    return wall, float(own[-1]) if own else wall, _rows(proc.stdout)


def _rows(out: str) -> list[str]:
    """The data rows of either table format: Spark's (after the second ``+---`` rule) or DuckDB's (after ``├``),
    each as its values separated by one space."""
    lines, rows, rules = out.splitlines(), [], 0
    for line in lines:
        if line.startswith(("+-", "├")):
            rules += 1
            continue
        if line.startswith(("└", "+-")) or not line.startswith(("|", "│")):
            continue
        if (line.startswith("|") and rules >= 2) or (line.startswith("│") and rules >= 1):
            rows.append(" ".join(v.strip() for v in re.split(r"[|│]", line)[1:-1]))
    return rows


def bench_sql(repeat: int = 3, engine_up: bool = False) -> dict:
    # Spark: the engine when it is up, else in-process Spark (not both: locally, the engine holds the embedded
    # metastore an in-process Spark would open; stop the engine and run the suite again to measure that)
    engines = {"duckdb": ("duckdb", None)}
    engines.update({"spark_engine": ("spark", None)} if engine_up else {"spark_in_process": ("spark", "off")})
    figures: dict = {}
    for name, query in QUERIES.items():
        answers = {}
        for label, (engine, remote) in engines.items():
            runs = [_one(query, engine, remote) for _ in range(1 if label == "spark_in_process" else repeat)]
            figures.setdefault(name, {})[label] = {
                "wall_s": round(statistics.median(r[0] for r in runs), 2),
                "query_s": round(statistics.median(r[1] for r in runs), 2), "runs": len(runs)}
            answers[label] = runs[0][2]
        first = next(iter(answers.values()))
        figures[name]["same_answer"] = all(a == first for a in answers.values()) and bool(first)
    return {"machine": _machine(), "queries": QUERIES, "figures": figures}
