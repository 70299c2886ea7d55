"""Production: orders of products over an area and a period, planned as a graph of tasks, tracked in a
database and run on Dask."""
