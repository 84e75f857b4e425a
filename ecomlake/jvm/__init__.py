"""The cluster stack's JVM parts (Delta Lake for Spark, Spark's Kafka source, hadoop-aws, Apache Kafka, Trino),
pinned in `parts` and fetched from Maven Central into a cache, so tests and benchmarks can run them locally."""
