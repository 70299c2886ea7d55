"""Dense time series from ARD: the multi-sensor cube, composites, and gap-free reconstruction (ARD+)."""

from musyq.timeseries.cube import open_cube

__all__ = ["open_cube"]
