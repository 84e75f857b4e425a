"""`ecomlake register-tables`: make every Delta table of the lake visible in Trino (cluster stack).

Spark writes bronze and silver by path, `${LAKEHOUSE_URI}/<schema>/<table>`; Trino's Delta catalog lists only the
tables its Hive Metastore knows. This creates the schemas with their lake locations (so the tables dbt creates
in gold land at `${LAKEHOUSE_URI}/gold/...` too) and registers every table whose Delta log exists with the
connector's `register_table` procedure. Idempotent: known tables are left alone, tables Spark has not written yet
are reported and picked up by a later run: the continuous gold service on the trino target runs it whenever the
lake's tables changed (pipeline/services.py), and Airflow's silver_jobs after each catch-up run.

Connection: TRINO_HOST, TRINO_PORT, TRINO_USER, TRINO_CATALOG, the variables the dbt profile reads.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Sequence

from ecomlake import tables
from ecomlake.errors import EcomlakeError
from ecomlake.settings import Settings, TrinoConfig, load


def _lake_schemas() -> dict[str, tuple[str, ...]]:
    """schema -> the Delta tables Spark writes there. Gold's has none: dbt creates its tables through Trino."""
    schemas: dict[str, tuple[str, ...]] = {}
    for table in tables.TABLES:
        schemas[table.schema] = schemas.get(table.schema, ()) + ((table.name,) if table.written_by == "spark" else ())
    return schemas


LAKE_TABLES = _lake_schemas()



@dataclass
class Report:
    created_schemas: list[str] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)
    already_known: list[str] = field(default_factory=list)
    not_written_yet: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"created schema {s}" for s in self.created_schemas]
        out += [f"registered {t}" for t in self.registered]
        if self.already_known:
            out.append(f"already registered: {', '.join(self.already_known)}")
        if self.not_written_yet:
            out.append(f"not written yet (registered by a later run): {', '.join(self.not_written_yet)}")
        return out


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def trino_location(settings: Settings, path: str) -> str:
    """A lake location as Trino takes it: a local LAKEHOUSE_URI as file:// (Trino rejects a bare path)."""
    return f"file://{path}" if settings.is_local_lake else path


def schema_location(settings: Settings, schema: str) -> str:
    return trino_location(settings, f"{settings.lakehouse_uri}/{schema}")


def register_tables(cursor, settings: Settings, catalog: str) -> Report:
    """Create missing schemas (with lake locations) and register every written, unregistered Delta table."""
    from trino.exceptions import TrinoUserError

    def rows(sql: str) -> list:
        cursor.execute(sql)
        return cursor.fetchall()

    report = Report()
    schemas = {row[0] for row in rows(f"SHOW SCHEMAS FROM {catalog}")}
    for schema, names in LAKE_TABLES.items():
        if schema not in schemas:
            rows(f"CREATE SCHEMA IF NOT EXISTS {catalog}.{schema} "
                 f"WITH (location = {_quote(schema_location(settings, schema))})")
            report.created_schemas.append(schema)
        known = {row[0] for row in rows(f"SHOW TABLES FROM {catalog}.{schema}")}
        for table in names:
            name = f"{schema}.{table}"
            if table in known:
                report.already_known.append(name)
                continue
            try:
                rows(f"CALL {catalog}.system.register_table(schema_name => {_quote(schema)}, "
                     f"table_name => {_quote(table)}, "
                     f"table_location => {_quote(trino_location(settings, settings.table_uri(schema, table)))})")
            except TrinoUserError as err:
                if "No transaction log found" in err.message:
                    report.not_written_yet.append(name)
                elif "already exists" in err.message:
                    report.already_known.append(name)
                else:
                    raise EcomlakeError(f"registering {name} failed: {err.message}") from None
            else:
                report.registered.append(name)
    return report


def connect(config: TrinoConfig):
    import trino

    return trino.dbapi.connect(host=config.host, port=config.port, user=config.user, catalog=config.catalog,
                               http_scheme="http", source="ecomlake-register-tables")


def _wait_for_trino(config: TrinoConfig, wait_s: float):
    """A connection whose first query worked; Trino answers 'starting' for a while after its port opens."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn = connect(config)
            cursor = conn.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()
            return conn
        except Exception as err:  # noqa: BLE001 - any failure means "not ready yet" until the deadline
            if time.monotonic() >= deadline:
                raise EcomlakeError(
                    f"Trino at {config.host}:{config.port} did not answer within {wait_s:.0f}s ({err})") from None
            print(f"waiting for Trino at {config.host}:{config.port} ...", file=sys.stderr, flush=True)
            time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))


def register_lake_tables(settings: Settings, config: TrinoConfig, wait_s: float = 0.0) -> Report:
    """One registration pass on its own connection, waiting up to `wait_s` for Trino to answer."""
    conn = _wait_for_trino(config, wait_s)
    try:
        return register_tables(conn.cursor(), settings, config.catalog)
    finally:
        conn.close()


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="ecomlake register-tables",
        description="Create the bronze_raw/silver/gold schemas in Trino's Delta catalog with their LAKEHOUSE_URI "
        "locations and register every Delta table Spark has written (idempotent).")
    parser.add_argument("--wait", type=float, default=0.0, metavar="S",
                        help="wait up to S seconds for Trino to answer (default: fail at once)")
    args = parser.parse_args(argv)
    config = TrinoConfig.from_env()
    report = register_lake_tables(load(), config, args.wait)
    for line in report.lines():
        print(line)
    print(f"{config.catalog}: {len(report.registered) + len(report.already_known)} lake tables registered, "
          f"{len(report.not_written_yet)} not written yet")
    return 0
