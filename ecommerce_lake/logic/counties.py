"""Resolving free-text county names to Kenya's 47 counties.

Both the reference names/aliases and the incoming text go through the same Spark expression
(:func:`county_key`): case, accents, punctuation, hyphens, apostrophes and spacing are ignored, and
``County``/``City``/``Town`` suffixes dropped. The key is then looked up in a small broadcast table of
canonical names, spelling variants and major towns (``ecommerce_lake/data/county_aliases.csv``).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ecommerce_lake.core.reference import UNKNOWN_COUNTY_CODE, UNKNOWN_COUNTY_NAME, counties, county_aliases

_ACCENTED = "áàâäãåéèêëíìîïóòôöõúùûüçñ"
_PLAIN = "aaaaaaeeeeiiiiooooouuuucn"

COUNTY_SCHEMA = T.StructType(
    [
        T.StructField("county_code", T.IntegerType(), False),
        T.StructField("county_name", T.StringType(), False),
        T.StructField("former_province", T.StringType(), False),
        T.StructField("population_2019", T.LongType(), False),
    ]
)


def county_key(c: Column) -> Column:
    s = F.translate(F.lower(F.trim(c)), _ACCENTED, _PLAIN)
    s = F.regexp_replace(s, "['’‘`´]", "")
    s = F.regexp_replace(s, "[^a-z0-9]+", " ")
    s = F.trim(s)
    s = F.regexp_replace(s, r"^(the )?(county|city) of ", "")
    s = F.regexp_replace(s, r"( (city|county|town|municipality|sub county|subcounty))+$", "")
    s = F.regexp_replace(s, " ", "")
    return F.when(s == "", F.lit(None).cast("string")).otherwise(s)


def counties_df(spark: SparkSession) -> DataFrame:
    rows = [(c.code, c.name, c.former_province, c.population_2019) for c in counties()]
    return spark.createDataFrame(rows, COUNTY_SCHEMA)


def alias_lookup(spark: SparkSession) -> DataFrame:
    """(key, county_code) for canonical names and aliases; fails loudly if two counties share a key."""
    rows = [(c.name, c.code) for c in counties()] + [(a, code) for a, code, _ in county_aliases()]
    df = spark.createDataFrame(rows, "alias string, county_code int")
    lookup = df.select(county_key(F.col("alias")).alias("county_key"), "county_code").distinct()
    clashes = lookup.groupBy("county_key").count().where("count > 1").collect()
    if clashes:
        raise ValueError(f"county aliases map one text to several counties: {[r['county_key'] for r in clashes]}")
    return lookup


def resolve_county(df: DataFrame, text_col: str, prefix: str, spark: SparkSession) -> DataFrame:
    """Add ``<prefix>_code`` (0 when it does not resolve) for the county text in ``text_col``."""
    lookup = F.broadcast(
        alias_lookup(spark).withColumnRenamed("county_key", f"__{prefix}_key").withColumnRenamed(
            "county_code", f"{prefix}_code"
        )
    )
    keyed = df.withColumn(f"__{prefix}_key", county_key(F.col(text_col)))
    return keyed.join(lookup, on=f"__{prefix}_key", how="left").drop(f"__{prefix}_key")


def attach_county_names(df: DataFrame, code_col: str, spark: SparkSession) -> DataFrame:
    """Add county_name and former_province for ``code_col`` (code 0 is 'Unknown')."""
    names = counties_df(spark).select(
        F.col("county_code").alias("__code"), "county_name", "former_province"
    )
    out = df.join(F.broadcast(names), F.col(code_col) == F.col("__code"), "left").drop("__code")
    return out.withColumn("county_name", F.coalesce("county_name", F.lit(UNKNOWN_COUNTY_NAME))).withColumn(
        "former_province", F.coalesce("former_province", F.lit(UNKNOWN_COUNTY_NAME))
    )


UNKNOWN = UNKNOWN_COUNTY_CODE
