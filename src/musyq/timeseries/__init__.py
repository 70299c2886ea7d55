"""Dense time series from ARD: the multi-sensor cube, composites, and gap-free reconstruction (ARD+)."""
