"""A stand-in for a Trino coordinator's client protocol (POST /v1/statement), NOT Trino: no SQL is executed.

It records every statement dbt-trino sends and answers only the metadata queries dbt needs to compile
(schemata, information_schema.tables), so `dbt compile --target trino` renders the models with the trino
adapter's macros here, where no Trino can run. The rendered SQL is then checked by a Trino-dialect parser.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VARCHAR = {"rawType": "varchar", "arguments": [{"kind": "LONG", "value": 2147483647}]}


WATERMARK = "2026-12-06 02:00:00.000000 UTC"


class TrinoStub:
    def __init__(self, catalog: str = "delta", schemas=("gold", "silver"), tables: dict[str, list[str]] | None = None):
        """tables: schema -> names of existing tables (so is_incremental() is true for them)."""
        self.catalog = catalog
        self.schemas = list(schemas)
        self.tables = tables or {}
        self.statements: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server API)
                sql = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                stub.statements.append(sql)
                columns, rows = stub.answer(sql)
                body = json.dumps({
                    "id": f"q{len(stub.statements)}", "infoUri": "http://127.0.0.1/ui",
                    "columns": [{"name": c, "type": "varchar", "typeSignature": VARCHAR} for c in columns],
                    "data": rows, "stats": {"state": "FINISHED"},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, sql: str) -> tuple[list[str], list[list]]:
        low = sql.lower()
        if ".schemata" in low and "count(" in low:
            schema = re.search(r"schema_name = '([^']+)'", low)
            return ["_col0"], [[str(int(bool(schema) and schema.group(1) in self.schemas))]]
        if ".schemata" in low:
            return ["schema_name"], [[s] for s in self.schemas]
        if ".tables" in low and "table_schema" in low:
            schema = re.search(r"t\.table_schema = '([^']+)'", low)
            names = self.tables.get(schema.group(1), []) if schema else []
            return ["database", "name", "schema", "table_type"], [[self.catalog, n, schema.group(1), "table"] for n in names]
        query = re.sub(r"/\*.*?\*/", "", low, flags=re.S).strip()
        if query.startswith("select cast(") and "max(" in query:  # a watermark (or span) read before a model
            columns = query.split(" from ")[0].count(" as varchar)")
            return [f"_col{i}" for i in range(columns)], [[WATERMARK] * columns]
        return [], []

    def __enter__(self) -> "TrinoStub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
