"""Business logic as plain functions on real Spark DataFrames (no Dagster), expectations written by hand."""

import datetime as dt
import hashlib
import hmac
import re
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from ecommerce_lake.contract import LANDING_FILES
from ecommerce_lake.logic import counties, parsing, pii

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "text, code",
    [
        ("Nairobi", 47), ("nairobi", 47), ("  NAIROBI  ", 47), ("Nairobi City", 47), ("Nairobi County", 47),
        ("Nairobi City County", 47), ("nairobi.", 47), ("Mombasa", 1), ("Taita Taveta", 6), ("Taita-Taveta", 6),
        ("taita  taveta", 6), ("Tharaka Nithi", 13), ("Tharaka-Nithi", 13), ("Elgeyo Marakwet", 28),
        ("Elgeyo-Marakwet", 28), ("Homa Bay", 43), ("Homa-Bay", 43), ("HomaBay", 43), ("Muranga", 21),
        ("Murang'a", 21), ("Murang’a County", 21), ("Trans Nzoia", 26), ("Trans-Nzoia", 26),
        ("Uasin Gishu", 27), ("County of Mombasa", 1),
        ("Eldoret", 27), ("Thika", 22), ("Ruiru", 22), ("Juja", 22), ("Kikuyu", 22), ("Limuru", 22),
        ("Malindi", 3), ("Watamu", 3), ("Kitale", 26), ("Nanyuki", 31), ("Naivasha", 32), ("Gilgil", 32),
        ("Molo", 32), ("Ukunda", 2), ("Diani", 2), ("Kitengela", 34), ("Ngong", 34), ("Ongata Rongai", 34),
        ("Athi River", 16), ("Mlolongo", 16), ("Voi", 6), ("Webuye", 39), ("Kimilili", 39),
        ("Atlantis", None), ("", None), ("N/A", None), ("Kampala", None),
    ],
)
def test_county_text_resolution(spark, text, code):
    df = spark.createDataFrame([(text,)], "county string")
    out = counties.resolve_county(df, "county", "c", spark).collect()[0]
    assert out["c_code"] == code


def test_every_reference_county_resolves_to_itself(spark):
    names = spark.createDataFrame([(c.name, c.code) for c in __import__("ecommerce_lake.reference",
                                                                         fromlist=["counties"]).counties()],
                                  "county string, expected int")
    out = counties.resolve_county(names, "county", "c", spark).collect()
    assert len(out) == 47 and all(r["c_code"] == r["expected"] for r in out)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2025-11-30T14:05:00+03:00", "2025-11-30T11:05:00"),
        ("2025-11-30T14:05:00", "2025-11-30T11:05:00"),        # no offset: Nairobi
        ("2025-11-30 14:05:00", "2025-11-30T11:05:00"),
        ("2025-11-30T11:05:00Z", "2025-11-30T11:05:00"),
        ("2025-11-30T14:05:00+0300", "2025-11-30T11:05:00"),
        ("2025-11-30T08:05:00-03:00", "2025-11-30T11:05:00"),
        ("2025-11-30T14:05", "2025-11-30T11:05:00"),
        ("2025-11-30T14:05:00.123456+03:00", "2025-11-30T11:05:00.123456"),
        ("  2025-11-30T14:05:00+03:00 ", "2025-11-30T11:05:00"),
        ("2025-02-30T10:00:00", None), ("yesterday", None), ("12/05/2024 10:00", None), ("2025-11-30", None),
        ("2025-11-30T25:00:00", None),
    ],
)
def test_timestamp_parsing(spark, text, expected):
    p = parsing.parse_timestamp(F.lit(text))
    row = spark.range(1).select(p.value.alias("v"), p.invalid.alias("bad")).collect()[0]
    if expected is None:
        assert row["v"] is None and row["bad"] is True
    else:
        assert row["v"] == dt.datetime.fromisoformat(expected) and row["bad"] is False


def test_nairobi_date_crosses_midnight(spark):
    ts = parsing.parse_timestamp(F.lit("2025-11-30T22:30:00Z")).value  # 01:30 on Dec 1st in Nairobi
    assert spark.range(1).select(parsing.nairobi_date(ts)).collect()[0][0] == dt.date(2025, 12, 1)


@pytest.mark.parametrize(
    "text, value, bad",
    [("1250", "1250.00", False), ("1250.5", "1250.50", False), ("-100.00", "-100.00", False), (" 7.25 ", "7.25", False),
     ("1,250.00", None, True), ("12.345", None, True), ("KES 300", None, True), ("", None, False), ("abc", None, True),
     ("99999999999999999999", None, True)],
)
def test_amount_parsing(spark, text, value, bad):
    p = parsing.parse_amount(F.lit(text))
    row = spark.range(1).select(p.value.cast("string").alias("v"), p.invalid.alias("bad")).collect()[0]
    assert row["v"] == value and row["bad"] is bad


def test_hmac_matches_python_hmac(spark):
    key = b"a-test-key-that-is-long-enough"
    values = ["C0000001", "customer:C0000001", "Zoë", "", "x" * 300]
    df = spark.createDataFrame([(v,) for v in values], "v string")
    got = [r[0] for r in df.select(pii.hmac_sha256_hex(F.col("v"), key)).collect()]
    assert got == [hmac.new(key, v.encode(), hashlib.sha256).hexdigest() for v in values]
    long_key = b"k" * 100  # longer than the block: hashed first, as RFC 2104 says
    got = spark.range(1).select(pii.hmac_sha256_hex(F.lit("m"), long_key)).collect()[0][0]
    assert got == hmac.new(long_key, b"m", hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    "phone, e164",
    [("0712345678", "+254712345678"), ("+254712345678", "+254712345678"), ("254712345678", "+254712345678"),
     ("0712 345 678", "+254712345678"), ("(0712) 345-678", "+254712345678"), ("712345678", "+254712345678"),
     ("0112345678", "+254112345678"), ("12345", None), ("+1 415 555 0100", None), ("", None)],
)
def test_phone_normalisation(spark, phone, e164):
    assert spark.range(1).select(pii.e164_kenya(F.lit(phone))).collect()[0][0] == e164


def test_generator_is_deterministic_and_follows_the_contract(tmp_path):
    from ecommerce_lake.generator.generate import GeneratorConfig, generate

    def run(out, seed):
        generate(GeneratorConfig(out=out, seed=seed, days=5, customers=50, products=20, lines=400,
                                 end_date=dt.date(2025, 6, 30)))
        return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(out.rglob("*")) if p.is_file()}

    a, b, c = run(tmp_path / "a", 1), run(tmp_path / "b", 1), run(tmp_path / "c", 2)
    assert a == b and a != c
    assert sorted({k.split("/")[0] for k in a}) == [f"2025-06-{d}" for d in range(26, 31)]
    assert all(f"2025-06-{d}/_SUCCESS" in a for d in range(26, 31))
    import csv

    for spec in LANDING_FILES:
        for path in (tmp_path / "a").glob(f"*/{spec.filename}"):
            with path.open(encoding="utf-8-sig", newline="") as fh:
                header = next(csv.reader(fh))
            assert set(spec.required) <= set(header), path


def test_landing_contract_doc_matches_the_contract():
    text = (REPO / "docs" / "landing-contract.md").read_text()
    for spec in LANDING_FILES:
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {spec.filename} |"))
        cells = line.split("|")[2].strip().split(", ")
        assert [c.rstrip("*") for c in cells] == list(spec.columns) or \
            sorted(c.rstrip("*") for c in cells) == sorted(spec.columns), spec.filename
        assert sorted(c.rstrip("*") for c in cells if c.endswith("*")) == sorted(spec.required), spec.filename
    from ecommerce_lake.contract import REJECT_RULES

    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.M))
    assert documented == set(REJECT_RULES)


def test_data_dictionary_is_current():
    from ecommerce_lake.docs import TABLES_MD, render_tables_md

    assert (REPO / TABLES_MD).read_text() == render_tables_md(), "docs/tables.md is stale: run `ecommerce-lake docs`"
