"""The composite methods by name, without the compositing kernels (the order planner checks names before any
work): best available pixel, median, and the selectors of ``musyq.timeseries.composite.SELECTORS``."""

METHODS = ("bap", "median", "medoid", "maxndvi", "nearest-median")
