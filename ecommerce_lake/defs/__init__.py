"""Dagster definitions, one module (and one ``Definitions``) per domain."""
