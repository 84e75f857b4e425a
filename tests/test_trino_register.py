"""`ecomlake register-tables` (serving/trino_tables.py) through the real `trino` client against a stand-in.

The stand-in is NOT Trino: a small http.server on 127.0.0.1 speaking the subset of Trino's client protocol the
client uses (POST /v1/statement answered with the final result or error) and executing only the statements the
registrar sends, against an in-memory metastore plus a set of "written" Delta locations. It checks the
statements (schema locations under LAKEHOUSE_URI, register_table with each table's path) and idempotence.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ecomlake import contract, tables
from ecomlake.errors import EcomlakeError
from ecomlake.settings import Settings
from gold import service as gold_service
from pipeline import services
from pipeline.cli import COMMANDS
from serving.trino_tables import LAKE_TABLES, TrinoConfig, connect, register_tables, trino_location

LAKE = "s3a://lakehouse"


class TrinoStandIn:
    def __init__(self):
        self.schemas: dict[str, str] = {"information_schema": ""}
        self.tables: dict[tuple[str, str], str] = {}
        self.written: set[str] = set()
        self.statements: list[str] = []
        self.users: set[str] = set()

    def execute(self, sql: str) -> tuple[list[str], list[list], dict | None]:
        self.statements.append(sql)
        if sql == "SELECT 1":
            return ["_col0"], [[1]], None
        if m := re.fullmatch(r"SHOW SCHEMAS FROM delta", sql):
            return ["Schema"], [[s] for s in sorted(self.schemas)], None
        if m := re.fullmatch(r"CREATE SCHEMA IF NOT EXISTS delta\.(\w+) WITH \(location = '([^']+)'\)", sql):
            self.schemas.setdefault(m.group(1), m.group(2))
            return [], [], None
        if m := re.fullmatch(r"SHOW TABLES FROM delta\.(\w+)", sql):
            if m.group(1) not in self.schemas:
                return [], [], _error("SCHEMA_NOT_FOUND", f"Schema '{m.group(1)}' does not exist")
            return ["Table"], [[t] for (s, t) in sorted(self.tables) if s == m.group(1)], None
        if m := re.fullmatch(r"CALL delta\.system\.register_table\(schema_name => '(\w+)', "
                             r"table_name => '(\w+)', table_location => '([^']+)'\)", sql):
            schema, table, location = m.groups()
            if schema not in self.schemas:
                return [], [], _error("SCHEMA_NOT_FOUND", f"Schema '{schema}' does not exist")
            if location not in self.written:
                return [], [], _error("GENERIC_USER_ERROR", f"No transaction log found in location {location}/_delta_log")
            if (schema, table) in self.tables:
                return [], [], _error("ALREADY_EXISTS", f"Table already exists: '{schema}.{table}'")
            self.tables[(schema, table)] = location
            return [], [], None
        return [], [], _error("SYNTAX_ERROR", f"stand-in cannot run: {sql}")


def _error(name: str, message: str) -> dict:
    return {"message": message, "errorCode": 1, "errorName": name, "errorType": "USER_ERROR"}


@pytest.fixture
def trino_standin():
    state = TrinoStandIn()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            sql = self.rfile.read(int(self.headers["Content-Length"])).decode()
            state.users.add(self.headers.get("X-Trino-User"))
            columns, rows, error = state.execute(sql)
            query_id = f"q{len(state.statements)}"
            payload = {"id": query_id, "infoUri": f"http://127.0.0.1/ui/{query_id}",
                       "stats": {"state": "FAILED" if error else "FINISHED"}}
            if error:
                payload["error"] = error
            else:
                payload["columns"] = [{"name": c, "type": "varchar",
                                       "typeSignature": {"rawType": "varchar", "arguments": []}} for c in columns]
                payload["data"] = rows
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.config = TrinoConfig(host="127.0.0.1", port=server.server_address[1], user="ecomlake", catalog="delta")
    yield state
    server.shutdown()
    server.server_close()


def cluster_settings() -> Settings:
    return Settings.from_env({"LAKEHOUSE_URI": LAKE})


def run(standin):
    conn = connect(standin.config)
    try:
        return register_tables(conn.cursor(), cluster_settings(), "delta")
    finally:
        conn.close()


def lake_path(schema: str, table: str) -> str:
    return f"{LAKE}/{schema}/{table}"


def test_creates_schemas_at_their_lake_locations_and_registers_written_tables(trino_standin):
    written = [(contract.BRONZE_SCHEMA, contract.BRONZE_ORDERS), (contract.BRONZE_SCHEMA, contract.BRONZE_PAYMENTS),
               (contract.SILVER_SCHEMA, contract.SILVER_ENRICHED)]
    trino_standin.written = {lake_path(s, t) for s, t in written}

    report = run(trino_standin)

    assert trino_standin.schemas == {"information_schema": "", "bronze_raw": f"{LAKE}/bronze_raw",
                                     "silver": f"{LAKE}/silver", "gold": f"{LAKE}/gold"}
    assert trino_standin.tables == {(s, t): lake_path(s, t) for s, t in written}
    assert sorted(report.registered) == sorted(f"{s}.{t}" for s, t in written)
    assert sorted(report.not_written_yet) == sorted(f"silver.{t}" for t in (
        contract.SILVER_ORDERS, contract.SILVER_ORDER_EVENTS, contract.SILVER_PAYMENTS, contract.SILVER_QUARANTINE))
    assert trino_standin.users == {"ecomlake"}


def test_second_run_registers_nothing_twice_and_picks_up_newly_written_tables(trino_standin):
    every = {lake_path(s, t) for s, tables in LAKE_TABLES.items() for t in tables}
    trino_standin.written = every - {lake_path(contract.SILVER_SCHEMA, contract.SILVER_QUARANTINE)}
    run(trino_standin)
    first_tables = dict(trino_standin.tables)

    count = len(trino_standin.statements)
    report = run(trino_standin)
    again = trino_standin.statements[count:]
    assert not [s for s in again if s.startswith("CREATE")]
    assert [s for s in again if s.startswith("CALL")] == [
        f"CALL delta.system.register_table(schema_name => 'silver', table_name => '{contract.SILVER_QUARANTINE}', "
        f"table_location => '{lake_path('silver', contract.SILVER_QUARANTINE)}')"]
    assert report.registered == [] and report.not_written_yet == [f"silver.{contract.SILVER_QUARANTINE}"]
    assert trino_standin.tables == first_tables

    trino_standin.written = every
    report = run(trino_standin)
    assert report.registered == [f"silver.{contract.SILVER_QUARANTINE}"]
    assert len(trino_standin.tables) == sum(len(t) for t in LAKE_TABLES.values())


def test_unexpected_trino_error_is_one_clear_line(trino_standin):
    trino_standin.written = {lake_path(contract.BRONZE_SCHEMA, contract.BRONZE_ORDERS)}
    original = trino_standin.execute

    def broken(sql):
        if sql.startswith("CALL"):
            trino_standin.statements.append(sql)
            return [], [], _error("PERMISSION_DENIED", "register_table procedure is disabled")
        return original(sql)

    trino_standin.execute = broken
    with pytest.raises(EcomlakeError, match=r"registering bronze_raw\.orders_raw failed: register_table procedure "
                                            r"is disabled"):
        run(trino_standin)


def test_the_gold_service_on_trino_registers_each_new_lake_table_before_the_build_that_reads_it(
        trino_standin, tmp_path, monkeypatch):
    """Silver's tables appear after trino-init ran: the continuous gold service (as `ecomlake gold --continuous`
    wires it) registers every newly written table before its next build, and asks Trino nothing while the lake's
    tables stay the same. dbt is replaced by a recorder of what Trino knew when each build ran."""
    settings = Settings.from_env({"LAKEHOUSE_URI": str(tmp_path / "lake"), "DBT_TARGET": "trino"})
    monkeypatch.setenv("TRINO_HOST", "127.0.0.1")
    monkeypatch.setenv("TRINO_PORT", str(trino_standin.config.port))
    known_at_build: list[set] = []

    def build(settings, **options):
        known_at_build.append(set(trino_standin.tables))
        return {"status": "ok", "duration_s": 0.0, "errors": []}

    monkeypatch.setattr(gold_service, "run_gold", build)
    service = gold_service.continuous_service(settings, services.register_in_trino)
    service.manifest = "parsed"
    versions: dict[str, int] = {}

    def commit(*written):
        for table in written:
            version = versions[table.qualified] = versions.get(table.qualified, -1) + 1
            log = tmp_path / "lake" / table.schema / table.name / "_delta_log"
            log.mkdir(parents=True, exist_ok=True)
            (log / f"{version:020d}.json").write_text("{}\n")
            trino_standin.written.add(trino_location(settings, table.uri(settings)))

    first = (tables.ORDERS_RAW, tables.PAYMENTS_RAW, *tables.GOLD_SOURCES)
    commit(*first)
    assert service.cycle() is not None
    assert known_at_build[-1] == {(t.schema, t.name) for t in first}

    commit(tables.ORDER_EVENTS, tables.ORDER_PAYMENTS_ENRICHED)
    assert service.cycle() is not None
    assert (tables.ORDER_EVENTS.schema, tables.ORDER_EVENTS.name) in known_at_build[-1]

    asked = len(trino_standin.statements)
    commit(tables.ORDER_PAYMENTS_ENRICHED)
    assert service.cycle() is not None and len(known_at_build) == 3
    assert trino_standin.statements[asked:] == [], "the lake's tables did not change: nothing to register"


def test_gold_registers_tables_only_where_it_reads_silver_through_trino():
    def register(settings):
        raise AssertionError("DuckDB reads silver by path")

    duckdb = gold_service.continuous_service(Settings.from_env({"DBT_TARGET": "duckdb"}), register)
    trino = gold_service.continuous_service(Settings.from_env({"DBT_TARGET": "trino"}), register)
    assert duckdb.on_new_tables is None and trino.on_new_tables is not None
    assert COMMANDS["gold"][0] == "pipeline.services:gold_main"


def test_trino_connection_settings_come_from_the_dbt_profile_variables():
    assert TrinoConfig.from_env({"TRINO_HOST": "trino", "TRINO_PORT": "8080", "TRINO_USER": "dbt"}) == \
        TrinoConfig(host="trino", port=8080, user="dbt", catalog="delta")
    with pytest.raises(EcomlakeError, match="TRINO_PORT"):
        TrinoConfig.from_env({"TRINO_PORT": "x"})
