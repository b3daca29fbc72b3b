"""The tokenizer's training text: a deterministic sample of whole documents, spread over the corpus.

    docs = read_manifest(Path("work/docs"), "corpus")
    buckets = sample_buckets(docs, 200_000_000)   # one pass over ids and string offsets
    tokenizer.train_from_iterator(sample_batches(docs, buckets, 1000), trainer)   # ≤ 200 MB of text

A document is in the sample when a hash of its id falls below a threshold, and the threshold is set
from the corpus's byte count per hash bucket, so the sample is the same set of documents (read in
corpus order) however the corpus is sharded and whatever --workers is. The first pass reads only
ids and Arrow string offsets; memory is one fixed histogram.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from pretrain_cli.store import Manifest

BUCKETS = 1 << 16
# Its own hash key: `ptk mask` holds out documents by an unkeyed hash of the id, and the tokenizer
# sample must not be exactly those documents.
HASH_KEY = b"ptk-tokenizer"


def sample_buckets(docs: Manifest, budget: int) -> int:
    """How many of the lowest hash buckets fit in `budget` bytes (at least the first non-empty one)."""
    import numpy as np

    from pretrain_cli.stages.tokenize.encode import sentence_column
    from pretrain_cli.store import iter_shards

    assert docs.directory is not None
    histogram = np.zeros(BUCKETS, np.int64)
    for info, table in iter_shards(docs):
        column = sentence_column(table, docs.directory / info.file)
        histogram += np.bincount(id_buckets(table.column("id")), weights=document_bytes(column),
                                 minlength=BUCKETS).astype(np.int64)
    filled = np.cumsum(histogram)
    return max(int(np.searchsorted(filled, budget, side="right")), int(np.argmax(histogram > 0)) + 1)


def sample_batches(docs: Manifest, buckets: int, batch_size: int) -> Iterator[list[str]]:
    """Batches of sentences of the documents in the lowest `buckets` hash buckets, in corpus order."""
    import numpy as np

    from pretrain_cli.stages.tokenize.encode import sentence_column
    from pretrain_cli.store import iter_shards

    assert docs.directory is not None
    batch: list[str] = []
    for info, table in iter_shards(docs):
        column = sentence_column(table, docs.directory / info.file)
        for sentences in column.take(np.flatnonzero(id_buckets(table.column("id")) < buckets)).to_pylist():
            batch.extend(sentences)
            if len(batch) >= batch_size:
                yield batch
                batch = []
    if batch:
        yield batch


def id_buckets(ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Each document's hash bucket, from its id alone."""
    import numpy as np

    return np.fromiter((int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=2, key=HASH_KEY)
                                       .digest(), "big") for doc_id in ids.to_pylist()),
                       np.int64, count=len(ids))


def document_bytes(sentences: pa.ListArray) -> np.ndarray:
    """UTF-8 bytes of each document's sentences, from the Arrow offsets (no string is read)."""
    import numpy as np
    import pyarrow.compute as pc

    from pretrain_cli.store import list_parts

    texts, offsets = list_parts(sentences)
    lengths = pc.binary_length(texts).fill_null(0).to_numpy()
    ends = np.zeros(lengths.size + 1, np.int64)
    np.cumsum(lengths, out=ends[1:])
    return ends[offsets[1:]] - ends[offsets[:-1]]

