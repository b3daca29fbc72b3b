"""Arrow shards: the IPC stream format, which `pyarrow` and `datasets.Dataset.from_file` both open.

Shards are memory-mapped on read, so a reader touches only the pages it uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from pretrain_cli.errors import UserError
from pretrain_cli.store.files import commit, file_sha256, temp_path
from pretrain_cli.store.manifest import Manifest, ShardInfo


def write_table(path: Path, table: pa.Table, *, tokens: int, split: str) -> ShardInfo:
    """Write `table` to `path` atomically and describe it."""
    tmp = temp_path(path)
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=1024)
    commit(tmp, path)
    return ShardInfo(file=path.name, rows=table.num_rows, tokens=tokens, sha256=file_sha256(path),
                     bytes=path.stat().st_size, split=split)


def list_parts(column: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """The values a list column's rows cover, and its offsets (int64) rebased to them.

    A list array read from a shard may be a slice (a record batch of a stream, a table slice): its
    offsets need not start at 0, and its values buffer may hold rows outside it.
    """
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets = array.offsets.to_numpy().astype(np.int64)
    return array.values.slice(offsets[0], offsets[-1] - offsets[0]), offsets - offsets[0]


def read_shard(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_stream(source).read_all()


def iter_shards(manifest: Manifest, split: str = "train") -> Iterator[tuple[ShardInfo, pa.Table]]:
    """Each shard of `split`, checked against the manifest (existence, size, rows) before use."""
    assert manifest.directory is not None
    for info in manifest.shards_of(split):
        path = manifest.directory / info.file
        if not path.is_file() or path.stat().st_size != info.bytes:
            raise UserError(f"{path}: missing or changed since {manifest.directory}/manifest.json was "
                            f"written; rerun `ptk {manifest.stage}` with --force")
        table = read_shard(path)
        if table.num_rows != info.rows:
            raise UserError(f"{path}: {table.num_rows} rows but the manifest says {info.rows}; "
                            f"rerun `ptk {manifest.stage}` with --force")
        yield info, table
