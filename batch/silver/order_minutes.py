"""Per order, the publication minutes its silver rows lie in: what lets a silver cycle read and rewrite only the
partitions of the orders it touches, however long the history.

order_events, payments_clean, orders_clean and order_payments_enriched are partitioned by `published_minute`
(ecomlake/tables.py). Every row of an order lies in a minute between the first and the last publication of its events
and payments: an event's own, an orders_clean row's latest event's, an enriched row's last_published_ts's. So this
keeps, per order id, the first and the last minute of its rows in order_events and payments_clean, and a cycle looks
up an order in those minutes only, and not at all when the order is new (most of an increment's orders are).

It is derived data, never a second truth: it follows the two tables' Delta logs (the files each data commit added,
whoever wrote it: the one-pass cycle, the jobs, a backfill) and is rebuilt from the tables when it cannot follow
(a log it cannot read, a table replaced). Held in numpy as sorted 64-bit hashes of the ids with two 32-bit minutes,
16 bytes an order; a hash shared by two orders only widens their range, which costs a read, never a row.

The continuous service saves it now and then (`save`, an Arrow file under the lake's _checkpoints with the table
versions it covers), so a new process loads it and follows the logs from those versions instead of reading every
file of a day's history again. A save that does not match the tables (another table id, a version the table has not
reached, a DuckDB whose hash differs, an unreadable file) is ignored and the index is rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import unquote

from ecomlake.errors import EcomlakeError
from ecomlake.lake import delta_log
from ecomlake.lake.fs import resolve
from ecomlake.tables import ORDER_EVENTS, PAYMENTS_CLEAN, PUBLISHED_MINUTE

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from ecomlake.lake import LakeEngine
    from ecomlake.settings import Settings

MERGE_AT = 200_000  # orders kept aside (unsorted into the main arrays) before they are merged in
SAVED_FORMAT = 1
_SAVED_KEY = b"ecomlake.order_minutes"
log = logging.getLogger("ecomlake.silver")
_by_lake: dict[str, "OrderMinutes"] = {}
_lock = threading.Lock()


class CannotFollow(Exception):
    """The tables are not laid out by published_minute (a lake from before it): a cycle reads them whole."""


def for_lake(settings: "Settings") -> "OrderMinutes":
    """The process's index of a lake (the continuous service keeps it across cycles)."""
    with _lock:
        return _by_lake.setdefault(settings.lakehouse_uri, OrderMinutes(settings))


def minute_number(values: "pa.Array") -> "np.ndarray":
    """Minutes since the epoch of UTC timestamps (int32)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    micros = pc.cast(values.cast(pa.timestamp("us", tz="UTC")), pa.int64())
    return np.asarray(pc.divide(micros, 60_000_000).to_numpy(zero_copy_only=False), dtype=np.int32)


def minute_values(numbers) -> "pa.Array":
    """The published_minute values of minute numbers."""
    import numpy as np
    import pyarrow as pa

    return pa.array(np.asarray(numbers, dtype=np.int64) * 60_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def hashes(order_ids) -> "np.ndarray":
    """64-bit hashes of order ids, in their order (DuckDB's hash, vectorised; a Python loop holds the GIL per id)."""
    import numpy as np
    import pyarrow as pa

    if len(order_ids) == 0:
        return np.empty(0, np.uint64)
    con = _duckdb()
    con.register("ids", pa.table({"id": order_ids}))
    try:
        # DuckDB keeps the insertion order of a projection (preserve_insertion_order, on by default).
        return con.execute("SELECT hash(CAST(id AS VARCHAR)) AS h FROM ids").fetchnumpy()["h"].astype(np.uint64)
    finally:
        con.unregister("ids")


def _hash_version() -> str:
    """Saved hashes are DuckDB's: another DuckDB version may hash otherwise."""
    import duckdb

    return f"duckdb {duckdb.__version__}"


_local = threading.local()


def _duckdb():
    import duckdb

    if getattr(_local, "con", None) is None:
        _local.con = duckdb.connect()
    return _local.con


class OrderMinutes:
    def __init__(self, settings: "Settings"):
        import numpy as np

        self.uris = (ORDER_EVENTS.uri(settings), PAYMENTS_CLEAN.uri(settings))
        self.saved_uri = f"{settings.checkpoint_uri('silver_order_index')}/order_minutes.arrow"
        self.loaded = False  # True when the index started from a save rather than from the tables
        self._tried_saved = False
        self.keys = np.empty(0, np.uint64)
        self.lo = np.empty(0, np.int32)
        self.hi = np.empty(0, np.int32)
        self.aside: list[tuple] = []  # (keys, lo, hi) added since the last merge, each unsorted
        self.synced: dict[str, tuple[str, int]] = {}  # table uri -> (table id, version followed)
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.keys) + sum(len(k) for k, _, _ in self.aside)

    # --- following the tables ---------------------------------------------------------------------------------
    def follow(self, lake: "LakeEngine") -> None:
        """Brings the index up to the tables' latest versions (raises CannotFollow on a lake laid out otherwise).
        A log it cannot follow (a file or commit gone, a table replaced at the same place) makes it start again
        from the tables."""
        with self.lock:
            try:
                self._follow(lake)
            except (OSError, EcomlakeError) as err:
                if self.loaded:
                    log.info("silver: the saved order index does not match the tables (%s); rebuilding it",
                             str(err).splitlines()[0] if str(err) else type(err).__name__)
                self._reset()
                self._follow(lake)
            except CannotFollow:
                self._reset()
                raise

    def _follow(self, lake: "LakeEngine") -> None:
        if not self._tried_saved:
            self._tried_saved = True
            self._load()
        for uri in self.uris:
            version = lake.version(uri)
            if version is None:
                continue
            identity = lake.table_id(uri)
            done = self.synced.get(uri)
            if done is not None and (done[0] != identity or done[1] > version):
                raise EcomlakeError(f"{uri} is not the table the index followed")
            if done is None:
                self._add_all(lake, uri)
            elif done[1] < version:
                self._add_files(uri, delta_log.added_files(uri, done[1], version))
            self.synced[uri] = (identity, version)

    def _reset(self) -> None:
        import numpy as np

        self.keys, self.lo, self.hi = np.empty(0, np.uint64), np.empty(0, np.int32), np.empty(0, np.int32)
        self.aside, self.synced, self.loaded = [], {}, False

    # --- saving and loading -----------------------------------------------------------------------------------
    def save(self) -> int | None:
        """Writes the index and the table versions it covers to `saved_uri`, whole or not at all (a new file moved
        over the old); the number of orders saved, None when the index has not followed the tables yet."""
        import pyarrow as pa
        import pyarrow.ipc as ipc

        with self.lock:  # the arrays are replaced, never changed in place: holding them is a consistent snapshot
            if set(self.synced) != set(self.uris):
                return None
            parts = [(self.keys, self.lo, self.hi), *self.aside]
            state = {"format": SAVED_FORMAT, "hash": _hash_version(), "synced": self.synced}
        schema = pa.schema([("key", pa.uint64()), ("lo", pa.int32()), ("hi", pa.int32())],
                           metadata={_SAVED_KEY: json.dumps(state).encode()})
        filesystem, path = resolve(self.saved_uri)
        filesystem.create_dir(posixpath.dirname(path), recursive=True)
        partial = f"{path}.{os.getpid()}.partial"
        with filesystem.open_output_stream(partial) as out, ipc.new_file(out, schema) as writer:
            for keys, lo, hi in parts:  # the first part sorted, the others as kept aside
                writer.write_batch(pa.record_batch([keys, lo, hi], schema=schema))
        filesystem.move(partial, path)
        return sum(len(keys) for keys, _, _ in parts)

    def _load(self) -> None:
        """Starts from the save when it matches these tables' names, format and hash; _follow then checks the
        table ids and versions and reads only the commits since."""
        import pyarrow as pa
        import pyarrow.ipc as ipc

        started = time.perf_counter()
        filesystem, path = resolve(self.saved_uri)
        try:
            with filesystem.open_input_file(path) as source:
                reader = ipc.open_file(source)
                state = json.loads(reader.schema.metadata[_SAVED_KEY])
                if state.get("format") != SAVED_FORMAT or state.get("hash") != _hash_version() \
                        or set(state.get("synced", {})) != set(self.uris):
                    log.info("silver: the saved order index %s is of another lake or version; rebuilding it", path)
                    return
                parts = [tuple(reader.get_batch(i).column(c).to_numpy() for c in range(3))
                         for i in range(reader.num_record_batches)]
        except FileNotFoundError:
            return
        except (OSError, KeyError, ValueError, TypeError, pa.ArrowException) as err:
            log.info("silver: the saved order index %s cannot be read (%s); rebuilding it", path,
                     str(err).splitlines()[0] if str(err) else type(err).__name__)
            return
        if not parts:
            return
        (self.keys, self.lo, self.hi), self.aside = parts[0], list(parts[1:])
        self.synced = {uri: (identity, int(version)) for uri, (identity, version) in state["synced"].items()}
        self.loaded = True
        log.info("silver: order index of %s orders loaded from %s in %.1f s", f"{len(self):,}", path,
                 time.perf_counter() - started)

    def _add_all(self, lake: "LakeEngine", uri: str) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        if lake.partition_columns(uri) != [PUBLISHED_MINUTE]:
            raise CannotFollow(f"{uri} is not partitioned by {PUBLISHED_MINUTE}")
        filesystem, _ = resolve(uri)
        ids, minutes = [], []
        files, started = lake.partition_files(uri, PUBLISHED_MINUTE), time.perf_counter()
        if len(files) >= 100:
            log.info("silver: building the order index from the %d files of %s ...", len(files), uri)
        for path, value in files:
            column = pq.read_table(path, columns=["order_id"], filesystem=filesystem)["order_id"]
            ids.extend(column.chunks)
            minutes.append(np.full(len(column), int(value.timestamp() // 60), np.int32))
        if ids:
            self._add(pa.chunked_array([c.cast(pa.string()) for c in ids], pa.string()), np.concatenate(minutes))
        if len(files) >= 100:
            log.info("silver: order index: %s rows of %s read in %.1f s", f"{sum(len(m) for m in minutes):,}", uri,
                     time.perf_counter() - started)

    def _add_files(self, uri: str, adds: list[dict]) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        filesystem, root = resolve(uri)
        ids, minutes = [], []
        for add in adds:
            value = (add.get("partitionValues") or {}).get(PUBLISHED_MINUTE)
            if value is None:
                raise CannotFollow(f"{uri}: {add['path']} has no {PUBLISHED_MINUTE} partition")
            minute = int(datetime.fromisoformat(value).replace(tzinfo=timezone.utc).timestamp() // 60)
            column = pq.read_table(posixpath.join(root, unquote(add["path"])), columns=["order_id"],
                                   filesystem=filesystem)["order_id"]
            ids.append(column)
            minutes.append(np.full(len(column), minute, np.int32))
        if ids:
            self._add(pa.chunked_array([c.cast(pa.string()) for chunk in ids for c in chunk.chunks], pa.string()),
                      np.concatenate(minutes))

    def _add(self, order_ids, minutes: "np.ndarray") -> None:
        import numpy as np

        if len(minutes) == 0:
            return
        keys = hashes(order_ids)
        order = np.lexsort((minutes, keys))
        keys, minutes = keys[order], minutes[order]
        first = np.r_[True, keys[1:] != keys[:-1]]
        starts = np.flatnonzero(first)
        ends = np.r_[starts[1:], len(keys)] - 1
        self.aside.append((keys[starts], minutes[starts], minutes[ends]))
        if sum(len(k) for k, _, _ in self.aside) >= max(MERGE_AT, len(self.keys) // 20):
            self._merge()

    def _merge(self) -> None:
        import numpy as np

        keys = np.concatenate([self.keys, *(k for k, _, _ in self.aside)])
        lo = np.concatenate([self.lo, *(v for _, v, _ in self.aside)])
        hi = np.concatenate([self.hi, *(v for _, _, v in self.aside)])
        order = np.argsort(keys, kind="stable")
        keys, lo, hi = keys[order], lo[order], hi[order]
        first = np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.empty(0, bool)
        starts = np.flatnonzero(first)
        self.keys = keys[starts]
        self.lo = np.minimum.reduceat(lo, starts) if len(starts) else lo
        self.hi = np.maximum.reduceat(hi, starts) if len(starts) else hi
        self.aside = []

    # --- looking up -------------------------------------------------------------------------------------------
    def ranges(self, order_ids: "pa.Array") -> tuple["np.ndarray", "np.ndarray", "np.ndarray"]:
        """(known, first minute, last minute) for each id: known is False for an order silver holds no row of."""
        import numpy as np

        with self.lock:
            keys = hashes(order_ids)
            known = np.zeros(len(keys), bool)
            lo = np.full(len(keys), np.iinfo(np.int32).max, np.int32)
            hi = np.full(len(keys), np.iinfo(np.int32).min, np.int32)
            for table_keys, table_lo, table_hi in [(self.keys, self.lo, self.hi), *self.aside]:
                if not len(table_keys):
                    continue
                if table_keys is self.keys:
                    at = np.searchsorted(table_keys, keys)
                    at[at == len(table_keys)] = 0
                    hit = table_keys[at] == keys
                else:
                    order = np.argsort(table_keys)
                    sorted_keys = table_keys[order]
                    pos = np.searchsorted(sorted_keys, keys)
                    pos[pos == len(sorted_keys)] = 0
                    hit = sorted_keys[pos] == keys
                    at = order[pos]
                known |= hit
                lo[hit] = np.minimum(lo[hit], table_lo[at[hit]])
                hi[hit] = np.maximum(hi[hit], table_hi[at[hit]])
            return known, lo, hi

    def minutes(self, order_ids: "pa.Array") -> tuple["pa.Array", "pa.Array"]:
        """(the ids silver holds rows of, the published_minute partitions those rows are in)."""
        import numpy as np
        import pyarrow as pa

        known, lo, hi = self.ranges(order_ids)
        spans = [np.arange(a, b + 1) for a, b in zip(lo[known], hi[known])]
        numbers = np.unique(np.concatenate(spans)) if spans else np.empty(0, np.int64)
        return pa.array(order_ids).filter(pa.array(known)), minute_values(numbers)
