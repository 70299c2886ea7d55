"""Quantitative products from the harmonized record, each with a per-pixel uncertainty."""
