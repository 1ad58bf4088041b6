"""Inventory policy parameters (no Spark: settings validate them at start-up)."""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist


@dataclass(frozen=True)
class PolicyParams:
    service_level: float = 0.95  # target cycle service level
    lead_time_days: int = 7
    # overrides: "Phones=10" (a category), "county:30=14" (a county code), "Phones@30=21" (both; most specific wins)
    lead_time_overrides: dict[str, int] = field(default_factory=dict)
    ordering_cost_kes: float = 1000.0  # per order
    holding_cost_rate: float = 0.25  # per year, as a share of the unit cost
    # an order buys at most this many days of forecast demand (EOQ alone buys months of a slow seller); 0: no cap
    max_cover_days: int = 28

    @property
    def z(self) -> float:
        return NormalDist().inv_cdf(self.service_level)

    def lead_time(self, category: str, county_code: int) -> int:
        o = self.lead_time_overrides
        for key in (f"{category}@{county_code}", f"county:{county_code}", category):
            if key in o:
                return int(o[key])
        return self.lead_time_days


def parse_overrides(text: str) -> dict[str, int]:
    """``"Phones=10;county:30=14;Phones@30=21"`` -> {"Phones": 10, "county:30": 14, "Phones@30": 21}."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, value = part.rpartition("=")
        if not sep or not key.strip() or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"lead time override {part!r}: expected <category>=<days>, county:<code>=<days> or "
                             "<category>@<code>=<days> with days >= 1")
        out[key.strip()] = int(value)
    return out
