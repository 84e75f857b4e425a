"""Streaming jobs: Kafka -> bronze Delta tables (bronze.py) over a pluggable Kafka source (kafka_source.py)."""
