"""Gold: the dbt project in dbt/ (ecom_analytics), run in-process through dbt's programmatic `dbtRunner`.

`ecomlake gold [--test-only] [--docs] [--full-refresh]` builds (seeds, models, data and unit tests),
`ecomlake freshness` checks the silver sources' freshness; `run_gold` is the same build for the demo scheduler.
The target comes from settings.dbt_target (DBT_TARGET): duckdb writes settings.warehouse_path and reads
silver with DuckDB's delta extension; trino writes the Delta catalog's gold schema.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from ecomlake.arguments import non_negative_int
from ecomlake.duckdb_delta import scan_uri
from ecomlake.errors import EcomlakeError
from ecomlake.lake.fs import resolve
from ecomlake.locks import single_writer
from ecomlake.settings import Settings
from ecomlake.tables import GOLD_SOURCES

DBT_DIR = Path(__file__).resolve().parent.parent / "dbt"


class DbtError(EcomlakeError):
    """dbt could not run at all (bad project, profile or connection), as opposed to failing models or tests."""


def dbt_env(settings: Settings) -> dict[str, str]:
    """The environment dbt's profiles.yml and sources read (env_var(...)). DuckDB's delta_scan reads an S3 lake as
    s3:// (ecomlake.duckdb_delta.scan_uri), and its warehouse file is settings.warehouse_path (DUCKDB_WAREHOUSE)."""
    env = settings.to_env()
    env["LAKEHOUSE_URI"] = scan_uri(settings.lakehouse_uri)
    env["DUCKDB_WAREHOUSE"] = settings.warehouse_path
    env["DUCKDB_GOLD_STATE"] = settings.gold_state_path
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    return env


def artifacts_dir(settings: Settings) -> Path:
    """dbt's target/ and logs/ for these settings: per run dir, so concurrent lakehouses never share state."""
    return Path(settings.run_dir) / "dbt"


def missing_silver_tables(settings: Settings) -> list[str]:
    """Silver tables gold reads that do not exist yet, where DuckDB reads them (a local or S3 lake; Trino: [])."""
    if settings.dbt_target != "duckdb":
        return []
    from pyarrow import fs

    def exists(uri: str) -> bool:
        filesystem, path = resolve(uri)
        return filesystem.get_file_info(f"{path}/_delta_log").type == fs.FileType.Directory

    return [t.name for t in GOLD_SOURCES if not exists(t.uri(settings))]


def require_silver(settings: Settings) -> None:
    missing = missing_silver_tables(settings)
    if missing:
        raise EcomlakeError(
            f"silver tables not found under {settings.lakehouse_uri}/silver: {', '.join(missing)}; "
            "run `ecomlake silver` first"
        )


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _release_duckdb() -> None:
    """dbt-duckdb keeps its database open for the life of the process; close it so others (the dashboard, the
    next invocation with another lakehouse) can open the warehouse file."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:
        return
    with DuckDBConnectionManager._LOCK:
        env, DuckDBConnectionManager._ENV = DuckDBConnectionManager._ENV, None
    if env is not None:
        try:
            env.close()
        except Exception:  # the handle may already be gone; nothing is lost either way
            pass


_KEEP_OPEN = False
_KEPT_FILES: dict[str, int] = {}


@contextmanager
def warehouse_kept_open() -> Iterator[None]:
    """Within it, dbt-duckdb's database stays open from one invocation to the next, in a process that does nothing
    but build (gold's build process, `ecomlake gold --continuous`). Opening it for each build opened the warehouse and
    gold's state, loaded the delta extension and, on closing, checkpointed both: a large part of a continuous build's
    CPU (docs/benchmarks.md#design-measurements). The process holds the warehouse file until the end, as it did
    during each build; readers use the read snapshot."""
    global _KEEP_OPEN
    _KEEP_OPEN = True
    try:
        yield
    finally:
        _KEEP_OPEN = False
        _release_duckdb()
        while _KEPT_FILES:
            os.close(_KEPT_FILES.popitem()[1])


def _copy_held(path: str, to: Path) -> None:
    """Copy a file DuckDB holds open in this process through a descriptor kept open as long as DuckDB's. DuckDB's
    lock on the file is a POSIX record lock, which the process loses when it closes any descriptor of the file: a
    plain copy (open, read, close) would let another process open the warehouse while this one writes it."""
    if path not in _KEPT_FILES:
        _KEPT_FILES[path] = os.open(path, os.O_RDONLY)
    source = _KEPT_FILES[path]
    size, sent = os.fstat(source).st_size, 0
    with open(to, "wb") as out:
        while sent < size:
            sent += os.sendfile(out.fileno(), source, sent, size - sent)


def _kept_connection(settings: Settings):
    """The DuckDB connection to settings' warehouse that dbt-duckdb holds open in this process (within
    warehouse_kept_open), or None."""
    if not _KEEP_OPEN:
        return None
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    env = DuckDBConnectionManager._ENV
    kept_path = getattr(getattr(env, "creds", None), "path", None)
    return getattr(env, "conn", None) if kept_path == settings.warehouse_path else None


def _check_warehouse_free(path: str) -> None:
    """One clear line instead of dbt's traceback when another process holds the DuckDB warehouse."""
    import duckdb

    if not Path(path).exists():
        return
    try:
        duckdb.connect(path).close()
    except duckdb.IOException as err:
        if "lock" in str(err).lower():
            holder = str(err).split("Conflicting lock is held in", 1)[-1].split(". See", 1)[0].strip()
            raise EcomlakeError(f"the gold warehouse {path} is in use by another process ({holder}); "
                                "stop it (e.g. a running `ecomlake demo`) and retry") from None
    except duckdb.Error:
        pass  # e.g. open in this very process with other settings: dbt will say what is wrong


def invoke(settings: Settings, command: Sequence[str], quiet: bool = False, manifest=None):
    """Run one dbt command on this project; returns dbt's dbtRunnerResult. With `manifest` (from a `parse`
    result) dbt skips parsing the project."""
    from dbt.cli.main import dbtRunner

    if settings.dbt_target == "duckdb" and _kept_connection(settings) is None:
        _check_warehouse_free(settings.warehouse_path)
        _check_warehouse_free(settings.gold_state_path)
    out = artifacts_dir(settings)
    args = [
        *command,
        "--project-dir", str(DBT_DIR),
        "--profiles-dir", str(DBT_DIR),
        "--target", settings.dbt_target,
        "--target-path", str(out / "target"),
        "--log-path", str(out / "logs"),
    ]
    if quiet:
        args[len(command):len(command)] = ["--log-level", "none", "--no-use-colors"]
    with _environ(dbt_env(settings)):
        try:
            return dbtRunner(manifest=manifest).invoke(args)
        finally:
            if not _KEEP_OPEN:
                _release_duckdb()


def _reraise_interrupt(result) -> None:
    """dbt catches Ctrl-C (SIGINT) into its result: hand it on, so `ecomlake gold` ends as interrupted."""
    if isinstance(result.exception, KeyboardInterrupt):
        raise KeyboardInterrupt


def _check(result) -> None:
    _reraise_interrupt(result)
    if result.exception is not None and result.result is None:
        raise DbtError(f"dbt failed before running anything: {str(result.exception).splitlines()[0]}")


def node_failures(result) -> list[str]:
    """One line per failed or erroring node of a build/test/freshness result."""
    lines = []
    for r in getattr(result.result, "results", None) or []:
        status = str(getattr(r.status, "value", r.status)).lower()
        if status in ("error", "fail", "runtime error"):
            message = (r.message or "").strip().splitlines()
            lines.append(f"{r.node.resource_type}.{r.node.name}: {status}" + (f": {message[0]}" if message else ""))
    return lines


def failure_line(result) -> str:
    """Why a dbt build or test run failed, in one line: the failed tests first (`dbt tests failed (2): test.a: fail:
    Got 3 results...; test.b: ...`), else the failed models. `ecomlake gold` prints it last, so Airflow's
    EcomlakeCommand raises it as the task's error and the failure alert carries it."""
    failures = node_failures(result)
    tests = [line for line in failures if line.startswith(("test.", "unit_test."))]
    shown, what = (tests, "dbt tests failed") if tests else (failures, "dbt build failed")
    if not shown:
        exception = str(getattr(result, "exception", None) or "").strip().splitlines()
        return what + (f": {exception[0]}" if exception else "")
    more = f"; and {len(shown) - 3} more" if len(shown) > 3 else ""
    return f"{what} ({len(shown)}): " + "; ".join(shown[:3]) + more


SALES_FIRST = "+fct_sales_minute"


def build(settings: Settings, full_refresh: bool = False, tests: bool = True, quiet: bool = False,
          setup: bool = True, manifest=None, select: Sequence[str] = (), exclude: Sequence[str] = ()):
    """`dbt build`: seeds, models and (unless tests=False) data and unit tests, in dependency order. setup=False
    leaves out what an earlier build of the same manifest created for good, the seeds and the views (the
    continuous service's later builds: five of its thirteen nodes), and the rewrite of target/manifest.json and
    run_results.json, which the first build wrote: fixed costs of every build
    (docs/benchmarks.md#design-measurements)."""
    command = ["build"]
    if full_refresh:
        command.append("--full-refresh")
    if not setup:
        command.append("--no-write-json")
    excluded = ([] if tests else ["resource_type:test", "resource_type:unit_test"]) + (
        [] if setup else ["resource_type:seed", "config.materialized:view"]) + list(exclude)
    if select:
        command += ["--select", *select]
    if excluded:
        command += ["--exclude", *excluded]
    with single_writer(settings.lakehouse_uri, "gold"):
        require_silver(settings)
        if settings.warehouse_path not in _STATE_CHECKED:  # a warehouse gives its order state up once
            move_order_state_out_of_warehouse(settings)
            _STATE_CHECKED.add(settings.warehouse_path)
        result = invoke(settings, command, quiet=quiet, manifest=manifest)
        if result.success:
            publish_read_snapshot(settings)
    _check(result)
    return result


_STATE_CHECKED: set[str] = set()


def move_order_state_out_of_warehouse(settings: Settings) -> bool:
    """A warehouse built before gold kept its order state in settings.gold_state_path still holds int_order_sales (a
    row per order of the history), which the read snapshot would copy after every build. Drop it and rewrite the
    warehouse without it (DuckDB does not give a dropped table's space back); the next build makes the state in
    its own file from silver. True when it did."""
    import duckdb

    path = Path(settings.warehouse_path)
    if settings.dbt_target != "duckdb" or not path.exists():
        return False
    compact = path.with_name(f".{path.name}.{os.getpid()}.compact")
    try:
        with duckdb.connect(str(path)) as con:
            if not con.execute("select count(*) from duckdb_tables() where schema_name = 'gold' "
                               "and table_name = 'int_order_sales'").fetchone()[0]:
                return False
            con.execute("drop table gold.int_order_sales")
            compact.unlink(missing_ok=True)
            con.execute(f"attach '{compact}' as compact")
            con.execute(f"copy from database \"{path.stem}\" to compact")
            con.execute("detach compact")
        os.replace(compact, path)
    except (OSError, duckdb.Error) as err:
        compact.unlink(missing_ok=True)
        raise EcomlakeError(f"could not move gold's order state out of the warehouse {path}: {err}") from None
    return True


def publish_read_snapshot(settings: Settings) -> Path | None:
    """Copy the DuckDB warehouse to settings.warehouse_read_path for readers (the live dashboard).

    DuckDB allows one writer per file and dbt-duckdb holds the warehouse read-write for a whole build, so a reader
    of that file would either fail or, holding it, make the next build fail. Readers open this snapshot instead:
    after a successful build (under gold's single-writer lock) the warehouse is checkpointed, copied to a temporary
    file in the same directory and renamed over the snapshot, atomically: a reader sees the previous build or this
    one, never a partial file, and never touches the writer's file. None for the trino target."""
    import shutil

    import duckdb

    if settings.dbt_target != "duckdb" or not Path(settings.warehouse_path).exists():
        return None
    target = Path(settings.warehouse_read_path)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    for stale in target.parent.glob(f".{target.name}.*.partial"):  # left by a build killed while publishing
        stale.unlink(missing_ok=True)
    try:
        kept = _kept_connection(settings)
        if kept is not None:
            kept.cursor().execute("checkpoint").close()
            _copy_held(settings.warehouse_path, partial)
        else:
            with duckdb.connect(settings.warehouse_path) as con:
                con.execute("checkpoint")
            shutil.copyfile(settings.warehouse_path, partial)
        os.replace(partial, target)
    except (OSError, duckdb.Error) as err:
        partial.unlink(missing_ok=True)
        raise EcomlakeError(f"could not publish the gold read snapshot {target}: {err}") from None
    return target


def run_gold(settings: Settings, tests: bool = True, full_refresh: bool = False, setup: bool = True,
             manifest=None, sales: bool = True, others: bool = True) -> dict:
    """One quiet gold build for the demo scheduler: {"status": ok|failed|waiting, "duration_s", "errors",
    "sales_visible_at"}. "waiting" means silver is not there yet (normal at start-up).

    A build with setup=False (the continuous service's) runs and publishes fct_sales_minute and what it reads first
    (SALES_FIRST; unless not `sales`), then the other models (unless not `others`): the dashboards' headline panels
    do not wait for the payment, cancellation, quarantine and currency facts. `sales_visible_at` is when readers
    could see fct_sales_minute's build (time.time(); None when it was not built)."""
    started = time.perf_counter()
    missing = missing_silver_tables(settings)
    if missing:
        return {"status": "waiting", "duration_s": 0.0, "errors": [f"silver tables missing: {', '.join(missing)}"],
                "sales_visible_at": None}
    parts = [{}] if setup else [part for wanted, part in ((sales, {"select": (SALES_FIRST,)}),
                                                          (others, {"exclude": (SALES_FIRST,)})) if wanted]
    sales_visible_at = None
    try:
        for part in parts:
            result = build(settings, full_refresh=full_refresh, tests=tests, quiet=True, setup=setup,
                           manifest=manifest, **part)
            if not result.success:
                break
            if "exclude" not in part:
                sales_visible_at = time.time()
        _reraise_interrupt(result)
        errors = node_failures(result)
        status = "ok" if result.success else "failed"
        if not result.success and not errors and result.exception is not None:
            errors = [str(result.exception).splitlines()[0]]
    except EcomlakeError as err:
        status, errors = "failed", [str(err)]
    return {"status": status, "duration_s": round(time.perf_counter() - started, 3), "errors": errors,
            "sales_visible_at": sales_visible_at}


def freshness(settings: Settings, warn_after: int | None = None, error_after: int | None = None, quiet: bool = False):
    """`dbt source freshness` over the silver sources; thresholds in minutes override the project's vars."""
    require_silver(settings)
    command = ["source", "freshness"]
    overrides = {name: value for name, value in (("silver_freshness_warn_minutes", warn_after),
                                                 ("silver_freshness_error_minutes", error_after)) if value is not None}
    if overrides:
        command += ["--vars", json.dumps(overrides)]
    result = invoke(settings, command, quiet=quiet)
    _check(result)
    return result


def freshness_summary(result) -> tuple[dict[str, int], list[str]]:
    """Counts per status (pass/warn/error/runtime error) and one line per source that did not pass."""
    counts: dict[str, int] = {}
    lines = []
    for r in getattr(result.result, "results", None) or []:
        status = str(getattr(r.status, "value", r.status)).lower()
        counts[status] = counts.get(status, 0) + 1
        if status != "pass":
            name = f"{r.node.source_name}.{r.node.name}"
            age = getattr(r, "age", None)
            detail = f"newest {r.node.loaded_at_field} is {age / 60:.1f} min old" if age is not None else (r.message or "")
            lines.append(f"{status.upper():<5} {name}: {detail}".rstrip(": "))
    return counts, lines


def _gold_exists(settings: Settings) -> bool:
    return settings.dbt_target != "duckdb" or Path(settings.warehouse_path).exists()


def build_parser() -> tuple[argparse.ArgumentParser, argparse._MutuallyExclusiveGroup]:
    parser = argparse.ArgumentParser(prog="ecomlake gold", description="dbt build of the gold models (project dbt/).")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--test-only", action="store_true", help="run the data and unit tests on what is built")
    mode.add_argument("--docs", action="store_true", help="generate the dbt docs site (static HTML)")
    parser.add_argument("--full-refresh", action="store_true", help="rebuild the incremental models from scratch")
    return parser, mode


def main(argv: Sequence[str] | None = None) -> int:
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    settings = Settings.from_env()

    if args.docs:
        result = invoke(settings, ["docs", "generate", "--static"])
        _check(result)
        if result.success:
            print(f"dbt docs: {artifacts_dir(settings) / 'target' / 'static_index.html'}")
        return 0 if result.success else 1
    if args.test_only:
        require_silver(settings)
        if not _gold_exists(settings):
            raise EcomlakeError(f"gold is not built yet ({settings.warehouse_path} is missing): run `ecomlake gold` first")
        result = invoke(settings, ["test"])
    else:
        result = build(settings, full_refresh=args.full_refresh)
    _check(result)
    if not result.success:
        print(f"ecomlake gold: error: {failure_line(result)}", file=sys.stderr)
    return 0 if result.success else 1




def freshness_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ecomlake freshness",
        description="dbt source freshness of the silver tables; exit 0 when fresh or only warned, 1 on ERROR.",
    )
    parser.add_argument("--warn-after", type=non_negative_int, metavar="MINUTES",
                        help="warn when the newest row is older than this (default: dbt var, 15)")
    parser.add_argument("--error-after", type=non_negative_int, metavar="MINUTES",
                        help="error when the newest row is older than this (default: dbt var, 60)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    result = freshness(settings, warn_after=args.warn_after, error_after=args.error_after)
    counts, lines = freshness_summary(result)
    for line in lines:
        print(line)
    summary = ", ".join(f"{status.upper()} {n}" for status, n in sorted(counts.items())) or "no sources checked"
    print(f"freshness: {summary}")
    if not result.success:
        # The last line, as `ecomlake gold`'s: Airflow's EcomlakeCommand raises it, the failure alert carries it.
        stale = [line for line in lines if line.startswith("ERROR ")]
        others = [line for line in lines if not line.startswith("WARN ")]
        why = f"silver is stale: {'; '.join(stale)}" if stale else f"freshness check failed: {'; '.join(others) or summary}"
        print(f"ecomlake freshness: error: {why}", file=sys.stderr)
    return 0 if result.success else 1
