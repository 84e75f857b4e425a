"""Silver: incremental Spark batch jobs from bronze to the silver tables (one module per job, `jobs` runs them all).

Import the modules you need (`from batch.silver import orders`); this package imports none of them itself, so a
job never pulls in the others.
"""
