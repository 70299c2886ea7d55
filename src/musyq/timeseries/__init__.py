"""Time series of analysis-ready data: smoothing and gap filling of per-pixel series."""
