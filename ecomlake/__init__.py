"""ecomlake: shared runtime (settings, Spark session, lake engines, embedded broker, CLI)."""

__version__ = "0.1.0"
