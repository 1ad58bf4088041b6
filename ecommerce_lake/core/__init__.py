"""Facts every layer shares, with no Spark and no Dagster: the landing contract, the county reference, the
Nairobi calendar and the RFM segment rules."""
