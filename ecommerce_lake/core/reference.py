"""Reference data shipped with the package: Kenya's 47 counties (KNBS 2019 census) and county aliases."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

UNKNOWN_COUNTY_CODE = 0
UNKNOWN_COUNTY_NAME = "Unknown"


@dataclass(frozen=True)
class County:
    code: int
    name: str
    former_province: str
    population_2019: int


def _rows(name: str) -> list[dict[str, str]]:
    text = files("ecommerce_lake.data").joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


@cache
def counties() -> tuple[County, ...]:
    out = tuple(
        County(int(r["county_code"]), r["county_name"], r["former_province"], int(r["population_2019"]))
        for r in _rows("kenya_counties.csv")
    )
    if len(out) != 47 or sorted(c.code for c in out) != list(range(1, 48)):
        raise ValueError("kenya_counties.csv must hold the 47 counties with codes 1..47")
    return out


@cache
def county_aliases() -> tuple[tuple[str, int, str], ...]:
    return tuple((r["alias"], int(r["county_code"]), r["kind"]) for r in _rows("county_aliases.csv"))
