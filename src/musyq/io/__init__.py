"""Reading Level-1 products and writing what the chain makes: COGs, quality codes, STAC, reports."""
