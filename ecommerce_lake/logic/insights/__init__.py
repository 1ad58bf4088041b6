"""Curated -> insights: the business's monthly questions as tables."""
