"""Example loading: flat columns, padding, masks at the right places, the seeded order and its cursor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from pretrain_fixtures import FixtureMaskConfig

from pretrain_cli.errors import UserError
from pretrain_cli.store import StageOutput, iter_shards, read_manifest, shard_name
from pretrain_cli.training.data import MicroBatches, PairExamples, SampleOrder, loader


def test_collate_pads_to_longest_and_places_segments_and_masks(examples: Path,
                                                                train_set: PairExamples) -> None:
    table = pa.concat_tables(t for _, t in iter_shards(read_manifest(examples, "mask"), "train")).to_pylist()
    assert len(table) == len(train_set)
    indices = np.array([5, 0, 17, len(table) - 1])
    batch = train_set.collate(indices, pad_id=0)
    rows = [table[i] for i in indices]
    longest = max(len(r["input_ids"]) for r in rows)
    assert batch.input_ids.shape == (4, longest) and batch.input_ids.dtype == torch.int64
    assert batch.tokens == sum(len(r["input_ids"]) for r in rows)
    for b, row in enumerate(rows):
        n = len(row["input_ids"])
        assert batch.input_ids[b, :n].tolist() == row["input_ids"]
        assert batch.input_ids[b, n:].eq(0).all() and batch.attention_mask[b, n:].eq(0).all()
        assert batch.attention_mask[b, :n].eq(1).all()
        types = batch.token_type_ids[b, :n].tolist()
        assert types == [0] * row["segment_b_start"] + [1] * (n - row["segment_b_start"])
        mine = batch.mlm_rows == b
        assert batch.mlm_cols[mine].tolist() == row["masked_positions"]
        assert batch.mlm_labels[mine].tolist() == row["masked_labels"]
        assert batch.nsp_labels[b].item() == row["next_sentence_label"]
    assert batch.masked == sum(len(r["masked_positions"]) for r in rows)


def test_every_epoch_is_a_seeded_permutation_and_the_stream_crosses_epochs() -> None:
    order = SampleOrder(10, seed=3)
    first, second = order.permutation(0), order.permutation(1)
    assert sorted(first) == list(range(10)) and sorted(second) == list(range(10))
    assert not np.array_equal(first, second)
    assert np.array_equal(first, SampleOrder(10, seed=3).permutation(0))
    assert not np.array_equal(first, SampleOrder(10, seed=4).permutation(0))
    assert order.take(7, 6).tolist() == [*first[7:], *second[:3]]
    assert order.cursor(23) == (2, 3)


def test_a_stream_started_at_a_cursor_continues_the_uninterrupted_one(train_set: PairExamples) -> None:
    first = len(train_set) // 7 - 3  # ten micro-batches from here cross into the second epoch
    whole = MicroBatches(train_set, SampleOrder(len(train_set), seed=0), start=0, micro_batch_size=7,
                         accum=1, steps=first + 10, pad_id=0)
    resumed = MicroBatches(train_set, SampleOrder(len(train_set), seed=0), start=7 * first,
                           micro_batch_size=7, accum=1, steps=10, pad_id=0)
    for k in range(10):
        assert torch.equal(whole[first + k].input_ids, resumed[k].input_ids)


def test_ranks_read_exactly_the_micro_batches_one_process_accumulates(train_set: PairExamples) -> None:
    """1 process × 2 accumulated micro-batches = 2 processes × 1: the same rows, grouped the same."""
    single = MicroBatches(train_set, SampleOrder(len(train_set), 0), start=5, micro_batch_size=4, accum=2,
                          steps=3, pad_id=0)
    ranks = [MicroBatches(train_set, SampleOrder(len(train_set), 0), start=5, micro_batch_size=4, accum=1,
                          steps=3, pad_id=0, world_size=2, rank=r) for r in range(2)]
    for step in range(3):
        for rank in range(2):
            ours, theirs = single[2 * step + rank], ranks[rank][step]
            assert torch.equal(ours.input_ids, theirs.input_ids)
            assert torch.equal(ours.mlm_labels, theirs.mlm_labels)


def test_a_step_reads_its_positions_bucketed_by_length(train_set: PairExamples) -> None:
    order = SampleOrder(len(train_set), 0)
    batches = MicroBatches(train_set, order, start=0, micro_batch_size=8, accum=4, steps=2, pad_id=0)
    lengths = train_set.lengths()
    for step in range(2):
        micro = [batches[step * 4 + j] for j in range(4)]
        positions = order.take(step * 32, 32)
        # every example of the step exactly once, nothing from other steps
        assert sum(b.tokens for b in micro) == int(lengths[positions].sum())
        widths = [b.input_ids.shape[1] for b in micro]
        assert widths == sorted(widths)  # shortest examples first
        unbucketed = sum(8 * int(lengths[positions[j * 8:(j + 1) * 8]].max()) for j in range(4))
        assert sum(b.input_ids.numel() for b in micro) <= unbucketed


def test_loader_workers_change_nothing_but_speed(train_set: PairExamples) -> None:
    batches = MicroBatches(train_set, SampleOrder(len(train_set), 0), start=0, micro_batch_size=8, accum=2,
                           steps=3, pad_id=0)
    inline = [b.input_ids for b in loader(batches, workers=0, pin_memory=False)]
    background = [b.input_ids for b in loader(batches, workers=2, pin_memory=False)]
    assert all(torch.equal(a, b) for a, b in zip(inline, background, strict=True))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("masked_positions", [[1, 9]], "masked_positions outside their example"),
    ("masked_labels", [[7, 5000]], "token ids outside the 100-token vocabulary"),
    ("segment_b_start", [7], "segment_b_start outside its example"),
])
def test_malformed_shards_fail_with_their_name(tmp_path: Path, field: str, value: list, message: str) -> None:
    row = {"input_ids": [[2, 4, 11, 3, 4, 3]], "segment_b_start": [4], "masked_positions": [[1, 4]],
           "masked_labels": [[7, 12]], "next_sentence_label": [0]}
    types = {"input_ids": pa.list_(pa.uint16()), "segment_b_start": pa.int16(),
             "masked_positions": pa.list_(pa.int16()), "masked_labels": pa.list_(pa.uint16()),
             "next_sentence_label": pa.int8()}
    row[field] = value
    out = StageOutput(FixtureMaskConfig(out=tmp_path), tmp_path)
    out.up_to_date()
    out.write_shard(shard_name(0), pa.table({k: pa.array(v, types[k]) for k, v in row.items()}), tokens=6)
    manifest = out.finish()
    with pytest.raises(UserError, match=f"train-00000.arrow: {message}"):
        PairExamples.from_manifest(manifest, "train", vocab_size=100)
