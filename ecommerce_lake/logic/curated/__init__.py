"""Refined -> curated: the analysts' tables."""
