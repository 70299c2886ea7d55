"""Product names as users give them and as musyq spells them, without importing the products' kernels (the
order planner checks names before any work)."""

from __future__ import annotations

from collections.abc import Sequence

from musyq.core.errors import MusyqError
from musyq.products.indices import catalog_name, index_bands

VARIABLES = ("LAI", "FAPAR", "FCOVER")  # the biophysical variables
ALBEDO_PRODUCTS = ("ALBEDO", "BSA", "WSA")


def resolve_products(names: Sequence[str]) -> list[str]:
    """Product names as musyq spells them: its own (FVC, LAI, FAPAR, FCOVER, ALBEDO, BSA, WSA) in any case, and
    the indices of the Awesome Spectral Indices catalog."""
    own = ("FVC",) + VARIABLES + ALBEDO_PRODUCTS
    resolved = []
    for name in names:
        for part in filter(None, (p.strip() for p in name.split(","))):
            if part.upper() in own:
                resolved.append(part.upper())
                continue
            name_in_catalog = catalog_name(part)
            index_bands(name_in_catalog)  # raises for a name the catalog lacks
            resolved.append(name_in_catalog)
    if not resolved:
        raise MusyqError("name at least one product (an index such as NDVI, or FVC, LAI, FAPAR, FCOVER, ALBEDO)")
    return list(dict.fromkeys(resolved))
