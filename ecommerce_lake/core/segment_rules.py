"""The RFM segment rule table: the one place it lives (docs, metadata, schema checks and Spark code read it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SegmentRule:
    segment: str
    r: tuple[int, int]  # inclusive range of the recency score
    f: tuple[int, int]  # inclusive range of the frequency score
    meaning: str


# The one place the segment rules live: every (R, F) score pair falls in exactly one rule (a test checks it).
# R = recency score (5 = bought most recently), F = frequency score (5 = most orders).
SEGMENT_RULES: tuple[SegmentRule, ...] = (
    SegmentRule("Champions", (5, 5), (4, 5), "bought very recently and most often"),
    SegmentRule("Loyal", (3, 4), (4, 5), "buy often, fairly recently"),
    SegmentRule("Potential Loyalist", (4, 5), (2, 3), "recent customers with a few orders"),
    SegmentRule("New", (5, 5), (1, 1), "first order, very recently"),
    SegmentRule("Promising", (4, 4), (1, 1), "one recent order"),
    SegmentRule("Need Attention", (3, 3), (3, 3), "average recency and frequency"),
    SegmentRule("About to Sleep", (3, 3), (1, 2), "few orders, not recently"),
    SegmentRule("At Risk", (1, 2), (3, 4), "used to buy often, not for a while"),
    SegmentRule("Can't Lose Them", (1, 2), (5, 5), "were among the most frequent, gone quiet"),
    SegmentRule("Hibernating", (2, 2), (1, 2), "few orders, long ago"),
    SegmentRule("Lost", (1, 1), (1, 2), "few orders, longest ago"),
)
SEGMENTS = tuple(r.segment for r in SEGMENT_RULES)


def segment_of(r: int, f: int) -> str:
    matches = [rule.segment for rule in SEGMENT_RULES if rule.r[0] <= r <= rule.r[1] and rule.f[0] <= f <= rule.f[1]]
    if len(matches) != 1:
        raise ValueError(f"R={r}, F={f} matches {matches}: the rule table must cover every pair exactly once")
    return matches[0]


def rules_markdown() -> str:
    lines = ["| segment | R score | F score | meaning |", "|---|---|---|---|"]
    for rule in SEGMENT_RULES:
        r = f"{rule.r[0]}" if rule.r[0] == rule.r[1] else f"{rule.r[0]}–{rule.r[1]}"
        f = f"{rule.f[0]}" if rule.f[0] == rule.f[1] else f"{rule.f[0]}–{rule.f[1]}"
        lines.append(f"| {rule.segment} | {r} | {f} | {rule.meaning} |")
    return "\n".join(lines) + "\n"
