"""Broker incarnations: `ecomlake bronze --reset-source` sets a table's checkpoint aside and reads a new broker (or a
recreated topic) from its earliest offset, keeping every row bronze already holds."""

from __future__ import annotations

import logging

from ecomlake.settings import Settings
from streaming import checkpoint_log
from streaming.bronze_table import BronzeTable, bronze_tables

log = logging.getLogger("ecomlake.bronze")

INCARNATION_FILE = "incarnation"


def incarnation(bronze: BronzeTable) -> int:
    """The broker incarnation the table's checkpoint reads: 0 until the first `--reset-source`."""
    text = checkpoint_log.read_text(f"{bronze.checkpoint}/{INCARNATION_FILE}")
    return int(text) if text and text.strip().isdigit() else 0


def _set_aside(bronze: BronzeTable) -> list[int]:
    """Incarnations whose checkpoints were set aside (`<checkpoint>-incarnation-<n>`)."""
    from pyarrow import fs

    from ecomlake.lake.fs import resolve

    filesystem, path = resolve(bronze.checkpoint)
    parent, prefix = path.rsplit("/", 1)[0], path.rsplit("/", 1)[1] + "-incarnation-"
    if filesystem.get_file_info(parent).type != fs.FileType.Directory:
        return []
    names = [i.base_name for i in filesystem.get_file_info(fs.FileSelector(parent))]
    return [int(n[len(prefix):]) for n in names if n.startswith(prefix) and n[len(prefix):].isdigit()]


def reset_source(bronze: BronzeTable) -> int | None:
    """Start reading a new broker incarnation (a broker that lost its data, a recreated topic) from its earliest
    offset, keeping every row bronze already holds: the checkpoint is set aside as `<checkpoint>-incarnation-<n>`
    and the new one reads incarnation n+1, which new rows carry, so their Kafka coordinates never collide with the
    old rows'. Returns the new incarnation, or None when there was nothing to reset (no checkpoint yet)."""
    from pyarrow import fs

    from ecomlake.lake.fs import resolve

    filesystem, path = resolve(bronze.checkpoint)
    if filesystem.get_file_info(f"{path}/offsets").type != fs.FileType.Directory:
        return None
    current = incarnation(bronze)
    new = max([current, *_set_aside(bronze)]) + 1
    _move_tree(filesystem, path, f"{path}-incarnation-{current}")
    checkpoint_log.write_text(f"{bronze.checkpoint}/{INCARNATION_FILE}", f"{new}\n")
    return new


def _move_tree(filesystem, source: str, target: str) -> None:
    """A rename on a local file system; object stores have no directories to rename, so there every object is
    copied, then the source removed."""
    from pyarrow import fs

    if isinstance(filesystem, fs.LocalFileSystem):
        filesystem.move(source, target)
        return
    for info in filesystem.get_file_info(fs.FileSelector(source, recursive=True)):
        if info.type == fs.FileType.File:
            filesystem.copy_file(info.path, target + info.path[len(source):])
    filesystem.delete_dir(source)


def reset_sources(settings: Settings) -> None:
    """`ecomlake bronze --reset-source`, under the bronze locks."""
    for bronze in bronze_tables(settings):
        new = reset_source(bronze)
        if new is None:
            log.info("%s: no checkpoint yet, nothing to reset", bronze.table)
        else:
            log.info("%s: reading broker incarnation %d from its earliest offset; the rows of earlier "
                     "incarnations stay (their checkpoint: %s-incarnation-%d)", bronze.table, new, bronze.checkpoint,
                     new - 1)
