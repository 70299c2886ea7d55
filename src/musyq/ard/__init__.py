"""Level-1 to analysis-ready data: TOA, atmosphere, quality mask, co-registration, NBAR, bandpass, the pipeline."""
