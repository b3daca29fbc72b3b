"""Rows for nsp, sop and none: Google's pairs, ALBERT's ordered pairs and RoBERTa's packed sentences.

Statistics run on real Wikipedia lead sections (150k bert-base-uncased tokens, see real_tokens.py);
exact layouts on small synthetic documents where a property needs precise lengths.
"""

from __future__ import annotations

import numpy as np
import pytest
from real_tokens import TokenDocuments, real_token_documents

from pretrain_cli.stages.mask.pairing import (
    A_HI,
    A_LO,
    B_HI,
    B_LO,
    CLS,
    LABEL,
    SEP,
    Assembled,
    NextSentenceBalance,
    assemble_pairs,
    document_bounds,
    instances_from_document,
    order_pairs,
    pack_documents,
    pair_documents,
    ranges,
    truncate_pairs,
    truncation,
)


@pytest.fixture(scope="module")
def real() -> TokenDocuments:
    return real_token_documents(150_000)


@pytest.fixture(scope="module")
def documents(real: TokenDocuments) -> list[list[int]]:
    return document_bounds(real.sentence_offsets, real.doc_offsets, np.ones(real.doc_offsets.size - 1, bool))


def document_of(documents: list[list[int]], tokens: np.ndarray) -> np.ndarray:
    """Index in `documents` of the document holding each token index (documents in token order)."""
    starts = np.array([bounds[0] for bounds in documents])
    return np.searchsorted(starts, tokens, side="right") - 1


def rows(assembled: Assembled) -> list[np.ndarray]:
    return np.split(assembled.source, assembled.offsets[1:-1]) if assembled.offsets.size > 1 else []


# --- truncation and helpers -----------------------------------------------------------------------

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
    len_a, len_b = (grid.ravel() for grid in np.meshgrid(np.arange(1, 70), np.arange(1, 70)))
    for max_num_tokens in (5, 13, 61):
        cut_a, cut_b = truncation(len_a, len_b, max_num_tokens)
        expected = [google_truncate(a, b, max_num_tokens) for a, b in zip(len_a, len_b, strict=True)]
        assert list(zip(cut_a.tolist(), cut_b.tolist(), strict=True)) == expected


def test_truncate_pairs_cuts_inside_each_segment() -> None:
    rng = np.random.default_rng(0)
    lo = rng.integers(0, 1000, (500, 2))
    length = rng.integers(1, 120, (500, 2))
    spans = np.stack([lo[:, 0], lo[:, 0] + length[:, 0], lo[:, 1], lo[:, 1] + length[:, 1],
                      rng.integers(0, 2, 500)], axis=1)
    cut = truncate_pairs(spans, 61, rng)
    cut_a, cut_b = truncation(length[:, 0], length[:, 1], 61)
    assert np.array_equal(cut[:, A_HI] - cut[:, A_LO], length[:, 0] - cut_a)
    assert np.array_equal(cut[:, B_HI] - cut[:, B_LO], length[:, 1] - cut_b)
    assert np.all(cut[:, [A_LO, B_LO]] >= spans[:, [A_LO, B_LO]])
    assert np.all(cut[:, [A_HI, B_HI]] <= spans[:, [A_HI, B_HI]])
    assert np.array_equal(cut[:, LABEL], spans[:, LABEL])
    fronts = (cut[:, A_LO] - spans[:, A_LO]).sum() / cut_a.sum()
    assert 0.45 < fronts < 0.55  # a fair coin per removed token: front or back


def test_ranges_and_document_bounds() -> None:
    assert ranges(np.array([5, 0, 9]), np.array([2, 0, 3])).tolist() == [5, 6, 9, 10, 11]
    # doc 0: sentences of 3, 0 (empty) and 2 tokens; doc 1: one empty sentence; doc 2: 4 tokens.
    sentence_offsets = np.array([0, 3, 3, 5, 5, 9])
    doc_offsets = np.array([0, 3, 4, 5])
    assert document_bounds(sentence_offsets, doc_offsets, np.ones(3, bool)) == [[0, 3, 5], [5, 9]]
    assert document_bounds(sentence_offsets, doc_offsets, np.array([False, True, True])) == [[5, 9]]


def test_gather_gives_ids_and_word_starts() -> None:
    rows_ = assemble_pairs(np.array([[2, 4, 0, 1, 1]]))
    values = np.array([7, 8, 9, 10, 11], np.uint16)
    assert rows_.gather(values, 101, 102).tolist() == [101, 9, 10, 102, 7, 102]
    assert rows_.gather(values, 101, 102).dtype == np.uint16
    starts = np.array([True, False, True, False, True])
    assert rows_.gather(starts, True, True).tolist() == [True, True, False, True, True, True]


def test_empty_input_gives_no_rows() -> None:
    rng = np.random.default_rng(0)
    for spans in (pair_documents([], 125, 0.1, 0.5, rng), order_pairs([], 125, 0.1, 0.5, rng)):
        assert spans.shape == (0, 5)
        assembled = assemble_pairs(spans)
        assert assembled.offsets.tolist() == [0] and assembled.source.size == assembled.labels.size == 0
    packed = pack_documents([], 126, rng)
    assert packed.offsets.tolist() == [0] and packed.source.size == packed.segment_b_start.size == 0
    assert packed.gather(np.zeros(0, np.uint16), 101, 102).size == 0


# --- nsp ------------------------------------------------------------------------------------------

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
    assembled = assemble_pairs(spans)
    ids, offsets, b_start = assembled.gather(values, 101, 102), assembled.offsets, assembled.segment_b_start
    assert np.array_equal(assembled.labels, spans[:, LABEL])
    for row, (lo, hi) in enumerate(zip(offsets[:-1], offsets[1:], strict=True)):
        seq = ids[lo:hi]
        assert len(seq) <= 32 and seq[0] == 101 and seq[-1] == 102 and seq[b_start[row] - 1] == 102
        a, b = seq[1:b_start[row] - 1], seq[b_start[row]:-1]
        assert len(a) and len(b)
        assert np.all(np.diff(a.astype(int)) == 1) and np.all(np.diff(b.astype(int)) == 1)  # contiguous
        if spans[row, LABEL] == 0:
            assert b[0] > a[-1] and (b[0] - 1000) // 100 == (a[0] - 1000) // 100  # later, same document


def test_nsp_share_on_real_tokens(real: TokenDocuments, documents: list[list[int]]) -> None:
    assert real.values.size >= 100_000
    for seed in range(3):
        spans = pair_documents(documents, 125, 0.1, 0.5, np.random.default_rng(seed))
        assert len(spans) > 2000 and abs(spans[:, LABEL].mean() - 0.5) <= 0.01
        assert np.all(spans[:, A_HI] - spans[:, A_LO] + spans[:, B_HI] - spans[:, B_LO] <= 125)


# --- sop ------------------------------------------------------------------------------------------

def test_sop_share_on_real_tokens(documents: list[list[int]]) -> None:
    for seed, swap_prob in ((0, 0.5), (1, 0.5), (2, 0.3)):
        spans = order_pairs(documents, 125, 0.1, swap_prob, np.random.default_rng(seed))
        assert len(spans) > 1500 and abs(spans[:, LABEL].mean() - swap_prob) <= 0.01


def test_sop_pairs_are_adjacent_and_swapped_by_label() -> None:
    # Sentences of 4 tokens and 8-token pairs: every chunk is two sentences and nothing is truncated.
    documents = [list(range(0, 41, 4)), list(range(40, 81, 4))]
    spans = order_pairs(documents, 8, 0.0, 0.5, np.random.default_rng(0))
    earlier = np.where(spans[:, LABEL, None] == 1, spans[:, [B_LO, B_HI]], spans[:, [A_LO, A_HI]])
    later = np.where(spans[:, LABEL, None] == 1, spans[:, [A_LO, A_HI]], spans[:, [B_LO, B_HI]])
    assert earlier[:, 0].tolist() == list(range(0, 80, 8))  # every sentence, once, chunk by chunk
    assert np.array_equal(earlier[:, 1], later[:, 0]) and np.all(later[:, 1] - later[:, 0] == 4)
    assert spans[:, LABEL].sum() == 5


def test_sop_segments_on_real_tokens(documents: list[list[int]]) -> None:
    """Both segments from one document; the later one starts where the earlier one's text ends,
    up to truncation: a sentence boundary (or, for a one-sentence chunk, a token) between them."""
    spans = order_pairs(documents, 125, 0.1, 0.5, np.random.default_rng(3))
    swapped = spans[:, LABEL] == 1
    earlier = np.where(swapped[:, None], spans[:, [B_LO, B_HI]], spans[:, [A_LO, A_HI]])
    later = np.where(swapped[:, None], spans[:, [A_LO, A_HI]], spans[:, [B_LO, B_HI]])
    assert np.all(earlier[:, 1] <= later[:, 0]) and np.all(np.diff(spans[:, :4], axis=1)[:, [0, 2]] > 0)
    untouched = (earlier[:, 1] - earlier[:, 0]) + (later[:, 1] - later[:, 0]) < 125  # not truncated
    assert untouched.sum() > 500 and np.array_equal(earlier[untouched, 1], later[untouched, 0])
    doc = document_of(documents, earlier[:, 0])
    assert np.array_equal(doc, document_of(documents, later[:, 1] - 1))
    sentence_bounds = np.concatenate(documents)
    one_sentence = 0
    for (e_lo, e_hi), (l_lo, l_hi) in zip(earlier, later, strict=True):
        between = sentence_bounds[(sentence_bounds >= e_hi) & (sentence_bounds <= l_lo)]
        if between.size == 0:  # split inside a sentence: both segments lie in that one sentence
            start = sentence_bounds[sentence_bounds <= e_lo].max()
            assert sentence_bounds[sentence_bounds > start].min() >= l_hi
            one_sentence += 1
    assert 0 < one_sentence < len(spans)  # both kinds of split occur (~18 % within one sentence here)


def test_sop_splits_one_sentence_chunks_at_a_token() -> None:
    documents = [[0, 1], [1, 6], [6, 8]]  # one sentence each: 1 token (no pair), 5 tokens, 2 tokens
    spans = order_pairs(documents, 125, 0.0, 0.5, np.random.default_rng(0))
    assert len(spans) == 2
    for (a_lo, a_hi, b_lo, b_hi, swapped), (lo, hi) in zip(spans, [(1, 6), (6, 8)], strict=True):
        first, second = ((b_lo, b_hi), (a_lo, a_hi)) if swapped else ((a_lo, a_hi), (b_lo, b_hi))
        assert first[0] == lo and first[1] == second[0] and second[1] == hi and lo < first[1] < hi


def test_sop_segment_lengths_do_not_reveal_the_label(documents: list[list[int]]) -> None:
    """Pairs cut down to balance end 63 + 62 tokens; which one is longer must not say the order."""
    spans = np.concatenate([order_pairs(documents, 125, 0.1, 0.5, np.random.default_rng(seed))
                            for seed in range(10)])
    len_a, len_b = spans[:, A_HI] - spans[:, A_LO], spans[:, B_HI] - spans[:, B_LO]
    first_longer = (len_a + len_b == 125) & (len_a == len_b + 1)
    assert first_longer.sum() > 300
    assert abs(spans[first_longer, LABEL].mean() - 0.5) < 0.1


# --- none -----------------------------------------------------------------------------------------

def test_packing_real_tokens(real: TokenDocuments, documents: list[list[int]]) -> None:
    packed = pack_documents(documents, 126, np.random.default_rng(0))
    assert np.array_equal(packed.segment_b_start, np.diff(packed.offsets))
    assert np.all(packed.labels == -1) and packed.labels.dtype == np.int8
    tokens = packed.source[packed.source >= 0]
    # Every token exactly once, and each document's tokens in order.
    assert np.array_equal(np.sort(tokens), np.arange(real.values.size))
    doc = document_of(documents, tokens)
    by_document = tokens[np.argsort(doc, kind="stable")]
    assert np.array_equal(by_document, np.arange(real.values.size))

    bounds = np.concatenate(documents)
    firsts = {bounds_[0] for bounds_ in documents}
    row_list = rows(packed)
    for i, row in enumerate(row_list):
        assert len(row) <= 128 and row[0] == CLS and row[-1] == SEP and np.all(row[1:] != CLS)
        body = row[1:-1]
        inner = body[body >= 0]
        # A [SEP] inside a row exactly where the document changes.
        changes = np.flatnonzero(np.diff(document_of(documents, inner)) != 0)
        separators = np.flatnonzero(body == SEP)
        assert np.array_equal(separators, changes + 1 + np.arange(changes.size))
        assert body[0] >= 0 and body[-1] >= 0
        if i + 1 < len(row_list):
            # Full: the next row's first sentence (with its separator if it opens a document) did not fit.
            following = row_list[i + 1][1:-1]
            start = following[0]
            sentence_end = bounds[bounds > start].min()
            first_piece = min(sentence_end - start, 126)
            assert len(body) + first_piece + (start in firsts) > 126
    fill = np.diff(packed.offsets).mean() / 128
    assert fill >= 0.85  # wasted: the straddling sentence, ~17 tokens on these ~28-token sentences


def test_packing_rounds_differ_and_repeat_by_seed(documents: list[list[int]]) -> None:
    first, again, other = (pack_documents(documents[:200], 126, np.random.default_rng(seed))
                           for seed in (4, 4, 5))
    assert np.array_equal(first.source, again.source) and np.array_equal(first.offsets, again.offsets)
    assert not np.array_equal(first.source, other.source)


def test_packing_cuts_a_sentence_longer_than_a_row() -> None:
    documents = [[0, 300, 310]]  # a 300-token sentence, then a 10-token one
    packed = pack_documents(documents, 126, np.random.default_rng(0))
    assert [row.tolist() for row in rows(packed)] == [
        [CLS, *range(0, 126), SEP], [CLS, *range(126, 252), SEP], [CLS, *range(252, 310), SEP]]


def test_packing_separates_documents_inside_a_row() -> None:
    documents = [[0, 3, 5], [5, 9], [9, 20]]
    packed = pack_documents(documents, 12, np.random.default_rng(0))
    texts = [[("S" if t == SEP else "C" if t == CLS else int(t)) for t in row] for row in rows(packed)]
    flat = [t for row in texts for t in row]
    assert flat.count("C") == len(texts) and all(len(row) <= 14 for row in texts)
    # A sentence that does not fit starts the next row; a row never starts with a separator.
    for row in texts:
        assert row[0] == "C" and row[1] != "S" and row[-1] == "S" and row[-2] != "S"
    assert sorted(t for t in flat if isinstance(t, int)) == list(range(20))
