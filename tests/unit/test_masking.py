"""Pairing and masking maths on real text: Wikipedia lead sections encoded with the MiniLM vocabulary.

The real bert-base-uncased vocabulary (special ids 0/100/101/102/103, not 0..4) comes from the
MiniLM sample package, so these tests need no tokenizer training and run in seconds.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from tokenizers import Tokenizer

from pretrain_cli.samples import sample_path
from pretrain_cli.stages.mask.stage import MaskConfig, examples_for_shard, valid_documents
from pretrain_cli.stages.mask.masking import MaskRule, mask_sequences, predictions_per_sequence
from pretrain_cli.stages.mask.pairing import (
    NextSentenceBalance,
    assemble_pairs,
    document_bounds,
    instances_from_document,
    pair_documents,
    ranges,
    truncation,
)
from pretrain_cli.stages.tokenize.stage import encode_table

SPECIAL = {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}
FACTS = {"vocab_size": 30522, "special_ids": SPECIAL, "id_dtype": "uint16"}
N_DOCS = 2500
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@pytest.fixture(scope="module")
def shard() -> pa.Table:
    """A token shard (the `ptk tokenize` schema) of real Wikipedia lead sections, ~250k tokens."""
    summaries = json.loads(sample_path("wiki_summaries").read_text())
    titles = list(summaries)[:N_DOCS]
    sentences = [[s for s in SENTENCE_END.split(summaries[t]["extract"].strip()) if s] for t in titles]
    docs = pa.table({"id": titles, "sentences": sentences})
    tokenizer = Tokenizer.from_file(str(sample_path("minilm") / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    table, tokens = encode_table(tokenizer, docs, "uint16", 1000)
    assert tokens > 100_000
    return table


@pytest.fixture(scope="module")
def examples(shard: pa.Table) -> dict[str, pa.Table]:
    return examples_for_shard(MaskConfig(tokens=Path("tokens"), valid_fraction=0.1), FACTS, 0, shard)


def rows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


def restored(row: dict) -> np.ndarray:
    ids = np.array(row["input_ids"])
    ids[row["masked_positions"]] = row["masked_labels"]
    return ids


# --- pairing --------------------------------------------------------------------------------------

def google_truncate(len_a: int, len_b: int, max_num_tokens: int) -> tuple[int, int]:
    """Google's `truncate_seq_pair` loop, counting removals instead of removing."""
    cut_a = cut_b = 0
    while len_a + len_b > max_num_tokens:
        if len_a > len_b:
            len_a, cut_a = len_a - 1, cut_a + 1
        else:
            len_b, cut_b = len_b - 1, cut_b + 1
    return cut_a, cut_b


def test_truncation_matches_google_loop() -> None:
    for max_num_tokens in (5, 13, 61):
        for len_a in range(1, 70):
            for len_b in range(1, 70):
                expected = google_truncate(len_a, len_b, max_num_tokens)
                assert truncation(len_a, len_b, max_num_tokens) == expected


def test_ranges_and_document_bounds() -> None:
    assert ranges(np.array([5, 0, 9]), np.array([2, 0, 3])).tolist() == [5, 6, 9, 10, 11]
    # doc 0: sentences of 3, 0 (empty) and 2 tokens; doc 1: one empty sentence; doc 2: 4 tokens.
    sentence_offsets = np.array([0, 3, 3, 5, 5, 9])
    doc_offsets = np.array([0, 3, 4, 5])
    assert document_bounds(sentence_offsets, doc_offsets, np.ones(3, bool)) == [[0, 3, 5], [5, 9]]
    assert document_bounds(sentence_offsets, doc_offsets, np.array([False, True, True])) == [[5, 9]]


def test_actual_next_pairs_are_consecutive_sentences() -> None:
    # Sentences of 4 tokens; a chunk closes at 8 tokens, so every chunk is 2 sentences: A, then B.
    documents = [list(range(0, 41, 4)), list(range(40, 81, 4))]
    rng = np.random.default_rng(0)
    spans = instances_from_document(documents, 0, 8, 0.0, NextSentenceBalance(0.0), rng)
    assert spans == [(a, a + 4, a + 4, a + 8, 0) for a in range(0, 40, 8)]


def test_random_next_puts_unused_sentences_back() -> None:
    documents = [list(range(0, 41, 4)), list(range(100, 141, 4))]
    spans = instances_from_document(documents, 0, 8, 0.0, NextSentenceBalance(1.0), np.random.default_rng(0))
    # Every A is one sentence and the next A starts right after it: nothing of the document is skipped.
    assert [(a_lo, a_hi) for a_lo, a_hi, *_ in spans] == [(a, a + 4) for a in range(0, 40, 4)]
    assert all(100 <= b_lo < b_hi <= 140 and random for _, _, b_lo, b_hi, random in spans)


def test_balance_keeps_the_share_when_some_are_forced() -> None:
    rng = np.random.default_rng(0)
    balance, free = NextSentenceBalance(0.5), []
    for step in range(20_000):
        forced = rng.random() < (0.1 if step < 10_000 else 0.4)  # the forced share drifts mid-way
        random_next = 1 if forced else int(rng.random() < balance.chance())
        if not forced:
            free.append(random_next)
        balance.record(forced, random_next)
    assert abs(balance.excess) < 20  # realised share 0.5 within 0.1 %
    assert 0.25 < np.mean(free) < 0.45  # the free choices make up for the forced ones


def test_pairs_fit_and_segments_are_in_order() -> None:
    values = np.arange(1000, dtype=np.uint16) + 1000
    documents = [list(range(s, s + 101, 10)) for s in range(0, 900, 100)]
    spans = pair_documents(documents, 29, 0.3, 0.5, np.random.default_rng(1))
    ids, offsets, b_start = assemble_pairs(values, spans, cls_id=101, sep_id=102)
    for row, (lo, hi) in enumerate(zip(offsets[:-1], offsets[1:], strict=True)):
        seq = ids[lo:hi]
        assert len(seq) <= 32 and seq[0] == 101 and seq[-1] == 102 and seq[b_start[row] - 1] == 102
        a, b = seq[1:b_start[row] - 1], seq[b_start[row]:-1]
        assert len(a) and len(b)
        assert np.all(np.diff(a.astype(int)) == 1) and np.all(np.diff(b.astype(int)) == 1)  # contiguous
        if spans[row, 4] == 0:
            assert b[0] > a[-1] and (b[0] - 1000) // 100 == (a[0] - 1000) // 100  # later, same document


# --- masking --------------------------------------------------------------------------------------

def test_predictions_per_sequence() -> None:
    rule = MaskRule(masked_lm_prob=0.15, max_predictions=20, mask_token_prob=0.8, random_token_prob=0.1,
                    mask_id=103, vocab_size=30522, never_mask=(0, 101, 102, 103))
    candidates = np.array([0, 1, 3, 10, 100, 125, 500])
    assert predictions_per_sequence(candidates, rule).tolist() == [0, 1, 1, 2, 15, 19, 20]


def test_masking_batch_keeps_layout() -> None:
    rule = MaskRule(masked_lm_prob=0.6, max_predictions=3, mask_token_prob=1.0, random_token_prob=0.0,
                    mask_id=4, vocab_size=50, never_mask=(0, 2, 3, 4))
    ids = np.array([2, 10, 11, 3, 12, 13, 14, 3, 2, 20, 3, 21, 3], np.uint16)
    offsets = np.array([0, 8, 13])
    masked = mask_sequences(ids, offsets, rule, np.random.default_rng(0))
    assert masked.counts.tolist() == [3, 1]
    assert masked.input_ids.dtype == np.uint16 and len(masked.input_ids) == len(ids)
    flat_positions = masked.positions + np.repeat(offsets[:-1], masked.counts)
    assert np.all(masked.input_ids[flat_positions] == 4)
    assert np.array_equal(ids[flat_positions], masked.labels)
    untouched = np.setdiff1d(np.arange(len(ids)), flat_positions)
    assert np.array_equal(masked.input_ids[untouched], ids[untouched])


# --- whole shards of real text --------------------------------------------------------------------

def test_mask_rate_and_replacement_split(examples: dict[str, pa.Table]) -> None:
    train = rows(examples["train"])
    candidates = sum(len(r["input_ids"]) - 3 for r in train)
    labels = np.concatenate([r["masked_labels"] for r in train])
    shown = np.concatenate([np.array(r["input_ids"])[r["masked_positions"]] for r in train])
    assert abs(len(labels) / candidates - 0.15) < 0.005
    as_mask, kept = np.mean(shown == SPECIAL["mask"]), np.mean(shown == labels)
    assert abs(as_mask - 0.8) < 0.015 and abs(kept - 0.1) < 0.015 and abs(1 - as_mask - kept - 0.1) < 0.015
    assert len(labels) > 10_000


def test_nsp_share_lengths_and_special_tokens(examples: dict[str, pa.Table]) -> None:
    for split, table in examples.items():
        share = np.mean(table.column("next_sentence_label").to_numpy())
        assert abs(share - 0.5) < 0.02, (split, share)
        for row in rows(table):
            ids, b = row["input_ids"], row["segment_b_start"]
            positions = row["masked_positions"]
            assert len(ids) <= 128 and 2 <= b - 1 < len(ids) - 2
            assert ids[0] == SPECIAL["cls"] and ids[b - 1] == SPECIAL["sep"] and ids[-1] == SPECIAL["sep"]
            assert positions == sorted(set(positions)) and 0 < len(positions) <= 20
            assert not {0, b - 1, len(ids) - 1} & set(positions)
            assert not set(row["masked_labels"]) & {SPECIAL["cls"], SPECIAL["sep"], SPECIAL["pad"]}


def segments(row: dict) -> tuple[bytes, bytes]:
    ids = restored(row).astype(np.uint16)
    b = row["segment_b_start"]
    return ids[1:b - 1].tobytes(), ids[b:-1].tobytes()


def find_document(streams: list[bytes], segment: bytes) -> tuple[int, int] | None:
    """(document, token offset) of `segment` in the document token streams, if any."""
    for d, stream in enumerate(streams):
        at = stream.find(segment)
        while at >= 0 and at % 2:  # uint16 alignment
            at = stream.find(segment, at + 1)
        if at >= 0:
            return d, at // 2
    return None


def test_segments_come_from_the_right_documents(shard: pa.Table, examples: dict[str, pa.Table]) -> None:
    """Actual-next B follows A in the same document; random B comes from the same split."""
    in_valid = valid_documents(shard.column("id").to_pylist(), 0.1)
    docs = shard.column("sentences").to_pylist()
    streams = {split: [np.array([t for s in doc for t in s], np.uint16).tobytes()
                       for doc, valid in zip(docs, in_valid, strict=True) if valid == (split == "valid")]
               for split in ("train", "valid")}
    for split, table in examples.items():
        for row in rows(table)[:150]:
            a, b = segments(row)
            where_a, where_b = find_document(streams[split], a), find_document(streams[split], b)
            assert where_a is not None and where_b is not None, "segment not from this split's documents"
            if row["next_sentence_label"] == 0:
                assert where_b[0] == where_a[0] and where_b[1] >= where_a[1] + len(a) // 2


def test_valid_split_is_by_document_id(shard: pa.Table) -> None:
    ids = shard.column("id").to_pylist()
    held_out = valid_documents(ids, 0.1)
    assert 0.07 < held_out.mean() < 0.13
    assert np.array_equal(held_out[::-1], valid_documents(ids[::-1], 0.1))  # order does not matter
    assert not valid_documents(ids, 0.0).any()


def ipc_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def test_same_seed_same_bytes_other_seed_differs(shard: pa.Table, examples: dict[str, pa.Table]) -> None:
    small = shard.slice(0, 400)
    cfg = MaskConfig(tokens=Path("tokens"), valid_fraction=0.1, dupe_factor=2)
    first = examples_for_shard(cfg, FACTS, 3, small)
    again = examples_for_shard(cfg, FACTS, 3, small)
    other = examples_for_shard(dataclasses.replace(cfg, seed=7), FACTS, 3, small)
    for split in ("train", "valid"):
        assert ipc_bytes(first[split]) == ipc_bytes(again[split])
        assert ipc_bytes(first[split]) != ipc_bytes(other[split])
    assert examples["train"].schema.field("input_ids").type == pa.list_(pa.uint16())
