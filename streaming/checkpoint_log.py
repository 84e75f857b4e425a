"""Reading a Structured Streaming checkpoint's offsets and commits logs, on any file system the lake is on.

The Python source keeps no state of its own in Kafka: after a restart it finds its position in the offsets log
(the last line of `<checkpoint>/offsets/<batch id>` is the source's offset JSON), and bronze uses the same log to
recognise a batch replayed after a crash.
"""

from __future__ import annotations

import json
import posixpath

from ecomlake.lake.fs import resolve
from streaming.offsets import Offsets, canonical


def read_text(uri: str) -> str | None:
    """A small file's text, or None when it does not exist."""
    from pyarrow import fs

    filesystem, path = resolve(uri)
    if filesystem.get_file_info(path).type != fs.FileType.File:
        return None
    with filesystem.open_input_stream(path) as stream:
        return stream.read().decode("utf-8")


def write_text(uri: str, text: str) -> None:
    filesystem, path = resolve(uri)
    filesystem.create_dir(posixpath.dirname(path), recursive=True)
    with filesystem.open_output_stream(path) as stream:
        stream.write(text.encode("utf-8"))


def batch_ids(uri: str) -> list[int]:
    from pyarrow import fs

    filesystem, path = resolve(uri)
    if filesystem.get_file_info(path).type != fs.FileType.Directory:
        return []
    infos = filesystem.get_file_info(fs.FileSelector(path))
    return sorted(int(i.base_name) for i in infos if i.base_name.isdigit())


def checkpoint_offsets(checkpoint: str, batch_id: int | None = None) -> tuple[int, Offsets] | None:
    """(batch id, source offsets) from the query's offsets log: batch `batch_id`, default the latest planned."""
    ids = batch_ids(f"{checkpoint}/offsets")
    if batch_id is None:
        if not ids:
            return None
        batch_id = ids[-1]
    text = read_text(f"{checkpoint}/offsets/{batch_id}")
    if text is None:
        return None
    return batch_id, canonical(json.loads(text.strip().splitlines()[-1]))


def committed_offsets(checkpoint: str) -> tuple[int, Offsets] | None:
    """(batch id, source offsets) of the last batch the query committed, or None before the first commit."""
    ids = batch_ids(f"{checkpoint}/commits")
    return checkpoint_offsets(checkpoint, ids[-1]) if ids else None
