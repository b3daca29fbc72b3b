"""A global shuffle of examples across shards in bounded memory: the two-pass (scatter, gather) shuffle.

    scatter(table, buckets=4, rng=rng, path=scatter_dir / "train-00007.arrow")   # pass 1, per input shard
    gather([scatter_dir / "train-00000.arrow", ...], bucket=2, rng=rng)          # pass 2, per output shard

Pass 1 sends every example of one input shard to a uniformly random output bucket and writes
the shard's examples grouped by bucket, one Arrow record batch per bucket, in the IPC *file*
format so pass 2 can read a single batch without touching the rest. Pass 2 builds output shard b
from batch b of every scattered file and permutes it. Independent uniform bucket choices followed
by a uniform permutation inside each bucket give a uniformly random order of all examples, while
no step holds more than one input or one output shard: memory is set by the shard size, never by
the corpus. Each pass draws from its own seeded generator, so the result does not depend on how
many processes run the passes, or in which order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from pretrain_cli.store.files import commit, temp_path


def scatter(table: pa.Table, *, buckets: int, rng: np.random.Generator, path: Path) -> np.ndarray:
    """Write `table`'s rows grouped by a random bucket to `path` (atomically); returns rows per bucket."""
    bucket = rng.integers(buckets, size=table.num_rows)
    grouped = table.take(np.argsort(bucket, kind="stable")).combine_chunks()
    counts = np.bincount(bucket, minlength=buckets)
    starts = np.cumsum(counts) - counts
    tmp = temp_path(path)
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        for start, count in zip(starts, counts, strict=True):
            batch = grouped.slice(int(start), int(count)).to_batches()
            writer.write_batch(batch[0] if batch else pa.RecordBatch.from_pylist([], schema=table.schema))
    commit(tmp, path)
    return counts


def gather(paths: list[Path], *, bucket: int, rng: np.random.Generator) -> pa.Table:
    """Output shard `bucket`: that bucket's rows from every scattered file, in a random order."""
    parts = []
    for path in paths:
        with pa.OSFile(str(path), "rb") as source:  # a plain read: only this batch's bytes are loaded
            parts.append(pa.ipc.open_file(source).get_batch(bucket))
    table = pa.Table.from_batches(parts).combine_chunks()
    return table.take(rng.permutation(table.num_rows))
