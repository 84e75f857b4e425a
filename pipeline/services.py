"""The continuous services as `ecomlake` starts them, wired to what their own stage may not import.

Gold on the trino target reads silver through Trino's Delta catalog, which lists only registered tables; the
registration lives in serving/, which gold/ may not import. So `ecomlake gold` enters here and hands gold's
continuous service the registration: whenever the lake's tables changed (the first silver commit after start-up,
a table new to silver later), every written table is registered before the build that reads it.
"""

from __future__ import annotations

import logging
from typing import Sequence

from ecomlake.settings import Settings, TrinoConfig
from gold import service as gold_service
from serving.trino_tables import register_lake_tables

log = logging.getLogger("ecomlake.gold")

# Trino restarting under a running gold service: wait this long before the service gives up (Docker restarts it).
TRINO_WAIT_S = 60.0


def register_in_trino(settings: Settings) -> None:
    """Register every written lake table in Trino's Delta catalog (idempotent), one log line per change."""
    report = register_lake_tables(settings, TrinoConfig.from_env(), wait_s=TRINO_WAIT_S)
    for schema in report.created_schemas:
        log.info("created schema %s in Trino", schema)
    for table in report.registered:
        log.info("registered %s in Trino", table)


def gold_main(argv: Sequence[str] | None = None) -> int:
    """`ecomlake gold`: gold's own command, its continuous service registering new lake tables in Trino."""
    return gold_service.main(argv, register_tables=register_in_trino)
