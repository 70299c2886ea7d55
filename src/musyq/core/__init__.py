"""Foundations of the chain: sensors as data, the tile grid, sun and view geometry, scenes, errors."""
