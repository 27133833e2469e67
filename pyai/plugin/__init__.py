"""eKuiper glue: the portable-plugin protocol and the SQL functions over the Python API."""
