"""The analytics questions, once: the SQL files in trino/queries, shared by the demo, Metabase and the Trino CLI.

Each file starts with `-- <title>: <what it shows>`. The SQL names tables as `<schema>.<table>` without a catalog,
so the same text runs on DuckDB's embedded warehouse (gold) and on Trino with the lake's catalog as the session
catalog (the Trino CLI's `--catalog delta`, Metabase's database connection).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

QUERIES_DIR = Path(__file__).resolve().parent.parent / "trino" / "queries"


@dataclass(frozen=True)
class Query:
    name: str
    title: str
    sql: str


def load(name: str) -> Query:
    """The query in trino/queries/<name>.sql: its title and its SQL without comments or the final semicolon."""
    lines = (QUERIES_DIR / f"{name}.sql").read_text().splitlines()
    title = lines[0].removeprefix("--").split(":", 1)[0].strip()
    sql = "\n".join(line for line in lines if not line.lstrip().startswith("--")).strip().rstrip(";").strip()
    return Query(name, title, sql)


def names() -> list[str]:
    return sorted(path.stem for path in QUERIES_DIR.glob("*.sql"))
