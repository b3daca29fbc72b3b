"""The mask stage's own logic on real text: objectives, dynamic examples, the split, the global shuffle.

Token shards are built from Wikipedia lead sections encoded with the bert-base-uncased vocabulary
(real_tokens), in the `ptk tokenize` schema, so no tokenizer is trained here.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from real_tokens import TokenDocuments, real_token_documents

from pretrain_cli.stages.mask.shuffle import gather, scatter
from pretrain_cli.stages.mask.stage import MaskConfig, examples_for_shard, valid_documents


def token_shard(docs: TokenDocuments, first: int, last: int) -> pa.Table:
    """Documents [first, last) as a `ptk tokenize` shard."""
    s0, s1 = docs.doc_offsets[first], docs.doc_offsets[last]
    t0, t1 = docs.sentence_offsets[s0], docs.sentence_offsets[s1]
    sentence_offsets = pa.array(docs.sentence_offsets[s0:s1 + 1] - t0, pa.int32())
    doc_offsets = pa.array(docs.doc_offsets[first:last + 1] - s0, pa.int32())

    def nested(values: pa.Array) -> pa.ListArray:
        return pa.ListArray.from_arrays(doc_offsets, pa.ListArray.from_arrays(sentence_offsets, values))

    sentences = nested(pa.array(docs.values[t0:t1], pa.uint16()))
    return pa.table({"id": [f"doc-{d}" for d in range(first, last)], "sentences": sentences,
                     "word_starts": nested(pa.array(docs.word_starts[t0:t1], pa.bool_())),
                     "n_tokens": pa.array(np.diff(docs.sentence_offsets[docs.doc_offsets[first:last + 1]]),
                                          pa.int32())})


@pytest.fixture(scope="module")
def docs() -> TokenDocuments:
    return real_token_documents(150_000)


@pytest.fixture(scope="module")
def shard(docs: TokenDocuments) -> pa.Table:
    return token_shard(docs, 0, len(docs.doc_offsets) - 1)


@pytest.fixture(scope="module")
def facts(docs: TokenDocuments) -> dict:
    return {"vocab_size": docs.vocab_size, "special_ids": docs.special_ids, "id_dtype": "uint16",
            "never_mask_ids": sorted(docs.special_ids.values())}


def config(**options: object) -> MaskConfig:
    return MaskConfig(tokens=Path("tokens"), **{"valid_fraction": 0.1, "dupe_factor": 1, **options})


def restored(table: pa.Table) -> list[np.ndarray]:
    """Each row's ids with the original tokens put back at the masked positions."""
    out = []
    for row in table.to_pylist():
        ids = np.array(row["input_ids"], np.int64)
        ids[row["masked_positions"]] = row["masked_labels"]
        out.append(ids)
    return out


def ipc_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


@pytest.mark.parametrize("objective", ["nsp", "sop", "none"])
def test_every_objective_builds_well_formed_rows(objective: str, shard: pa.Table, facts: dict,
                                                 docs: TokenDocuments) -> None:
    cls, sep = docs.special_ids["cls"], docs.special_ids["sep"]
    tables = examples_for_shard(config(objective=objective), facts, 0, shard)
    train = tables["train"]
    assert train.num_rows > 500 and tables["valid"].num_rows > 0
    labels = train.column("next_sentence_label").to_numpy()
    lengths = np.array([len(r) for r in restored(train)])
    assert lengths.max() <= 128
    for ids, b in zip(restored(train), train.column("segment_b_start").to_numpy(), strict=True):
        assert ids[0] == cls and ids[-1] == sep
        if objective == "none":
            assert b == len(ids)
        else:
            assert ids[b - 1] == sep and 2 <= b < len(ids) - 1
    if objective == "none":
        assert (labels == -1).all()
        assert lengths.mean() > 0.85 * 128  # rows are packed full (whole sentences: ~87 %)
    else:
        assert abs(labels.mean() - 0.5) <= 0.02
    # The masking rate is the setting's, counted over the tokens that may be masked.
    masked = sum(len(p) for p in train.column("masked_positions").to_pylist())
    candidates = sum(int(np.isin(ids, list(docs.special_ids.values()), invert=True).sum())
                     for ids in restored(train))
    assert abs(masked / candidates - 0.15) < 0.004


def test_dynamic_stores_train_unmasked_with_word_starts_and_masks_valid(shard: pa.Table, facts: dict,
                                                                         docs: TokenDocuments) -> None:
    tables = examples_for_shard(config(dynamic=True, masking="whole-word"), facts, 0, shard)
    train, valid = tables["train"], tables["valid"]
    assert "word_starts" in train.column_names and "word_starts" not in valid.column_names
    assert all(len(p) == 0 for p in train.column("masked_positions").to_pylist())
    assert docs.special_ids["mask"] not in train.column("input_ids").combine_chunks().values.to_numpy()
    assert sum(len(p) for p in valid.column("masked_positions").to_pylist()) > 0
    row = train.slice(0, 1).to_pylist()[0]
    assert len(row["word_starts"]) == len(row["input_ids"]) and row["word_starts"][0]


def test_valid_split_is_by_document_id(shard: pa.Table) -> None:
    ids = shard.column("id").to_pylist()
    held_out = valid_documents(ids, 0.1)
    assert 0.07 < held_out.mean() < 0.13
    assert np.array_equal(held_out[::-1], valid_documents(ids[::-1], 0.1))  # order does not matter
    assert not valid_documents(ids, 0.0).any()


def test_same_seed_same_bytes_other_seed_differs(shard: pa.Table, facts: dict) -> None:
    small = shard.slice(0, 300)
    cfg = config(dupe_factor=2)
    first = examples_for_shard(cfg, facts, 3, small)
    again = examples_for_shard(cfg, facts, 3, small)
    other = examples_for_shard(dataclasses.replace(cfg, seed=7), facts, 3, small)
    for split in ("train", "valid"):
        assert ipc_bytes(first[split]) == ipc_bytes(again[split])
        assert ipc_bytes(first[split]) != ipc_bytes(other[split])
    assert first["train"].schema.field("input_ids").type == pa.list_(pa.uint16())


def test_scatter_gather_is_a_global_permutation(tmp_path: Path) -> None:
    """Every row lands in exactly one output shard, and each output shard mixes all input shards."""
    inputs = [pa.table({"shard": np.full(500, i), "row": np.arange(500)}) for i in range(4)]
    paths = [tmp_path / f"part-{i}.arrow" for i in range(4)]
    for i, (table, path) in enumerate(zip(inputs, paths, strict=True)):
        counts = scatter(table, buckets=3, rng=np.random.default_rng(i), path=path)
        assert counts.sum() == 500
    outputs = [gather(paths, bucket=b, rng=np.random.default_rng(10 + b)) for b in range(3)]
    seen = sorted((s, r) for out in outputs for s, r in zip(out["shard"].to_pylist(), out["row"].to_pylist(),
                                                             strict=True))
    assert seen == [(s, r) for s in range(4) for r in range(500)]
    for out in outputs:
        shards = out["shard"].to_numpy()
        assert set(shards) == {0, 1, 2, 3} and 0.15 < (shards == 0).mean() < 0.35
        assert not np.all(np.diff(shards) >= 0)  # not grouped by input shard
    again = gather(paths, bucket=1, rng=np.random.default_rng(11))
    assert again.equals(outputs[1])
