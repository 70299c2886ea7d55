"""musyq: multi-source satellite data to consistent analysis-ready tiles and products."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("musyq")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
