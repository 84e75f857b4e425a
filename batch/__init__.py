"""Batch jobs: the incremental silver jobs and table maintenance."""
