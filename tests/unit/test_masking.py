"""MLM masking on real text: Wikipedia lead sections encoded with the bert-base-uncased vocabulary.

Rows are built like pretraining pairs, [CLS] A [SEP] B [SEP] of at most 128 tokens from consecutive
sentences (~150k tokens, ~1,400 rows; one span test also uses 512-token [CLS] text [SEP] rows).
Seeds are fixed, and every statistical tolerance below is several standard errors wide at the
sample size used; the comments give the figures.
"""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
import pytest
from real_tokens import real_token_documents

from pretrain_cli.stages.mask.masking import (
    MaskedBatch,
    MaskRule,
    Units,
    mask_sequences,
    prediction_budget,
    tile_spans,
)

MAX_LEN = 128
STRATEGIES = ("token", "whole-word", "span")


@dataclasses.dataclass(frozen=True)
class Rows:
    """A batch of real pair rows and, per token, what the tests check masking against."""

    ids: np.ndarray          # uint16, rows concatenated
    offsets: np.ndarray      # int64, rows + 1
    word_starts: np.ndarray  # bool per token
    candidate: np.ndarray    # bool per token: not a special token
    word: np.ndarray         # word number of each candidate token, -1 on special tokens
    word_length: np.ndarray  # tokens per word
    special: dict[str, int]
    vocab_size: int


@functools.cache
def real_rows(max_len: int = MAX_LEN, pairs: bool = True) -> Rows:
    """[CLS] A [SEP] B [SEP] rows (`pairs`) or [CLS] text [SEP] rows of at most `max_len` tokens."""
    docs = real_token_documents(150_000)
    cls, sep = docs.special_ids["cls"], docs.special_ids["sep"]
    ids: list[int] = []
    starts: list[bool] = []
    offsets = [0]
    row, row_starts, halves = [cls], [True], 1 if pairs else 2
    bounds = docs.sentence_offsets
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        hi = min(hi, lo + max_len // 2 - 2)  # long sentences are cut to fit half a row
        if halves == 1 and len(row) + hi - lo > max_len // 2:
            row, row_starts, halves = row + [sep], row_starts + [True], 2  # A ends, B begins
        if len(row) + hi - lo + 1 > max_len:
            ids += row + [sep]
            starts += row_starts + [True]
            offsets.append(len(ids))
            row, row_starts, halves = [cls], [True], 1 if pairs else 2
        row += docs.values[lo:hi].tolist()
        row_starts += docs.word_starts[lo:hi].tolist()
    ids_array, offsets_array = np.array(ids, np.uint16), np.array(offsets, np.int64)
    starts_array = np.array(starts, bool)
    candidate = ~np.isin(ids_array, list(docs.special_ids.values()))
    begins = candidate & (starts_array | np.r_[True, ~candidate[:-1]])
    begins[offsets_array[:-1]] = candidate[offsets_array[:-1]]
    word = np.where(candidate, np.cumsum(begins) - 1, -1)
    return Rows(ids_array, offsets_array, starts_array, candidate, word, np.bincount(word[candidate]),
                docs.special_ids, docs.vocab_size)


def make_rule(rows: Rows, **changes: object) -> MaskRule:
    rule = MaskRule(mask_id=rows.special["mask"], vocab_size=rows.vocab_size,
                    never_mask=tuple(sorted(rows.special.values())), max_predictions=MAX_LEN)
    return dataclasses.replace(rule, **changes)


def masked_flags(rows: Rows, masked: MaskedBatch) -> np.ndarray:
    """Bool per token: chosen for prediction."""
    flags = np.zeros(rows.ids.size, bool)
    flags[masked.positions + np.repeat(rows.offsets[:-1], masked.counts)] = True
    return flags


def run(rows: Rows, rule: MaskRule, seeds: range) -> list[MaskedBatch]:
    return [mask_sequences(rows.ids, rows.offsets, rule, np.random.default_rng(seed), rows.word_starts)
            for seed in seeds]


def test_rows_are_real_and_big_enough() -> None:
    rows = real_rows()
    assert rows.candidate.sum() > 100_000 and rows.offsets.size > 1000
    assert np.diff(rows.offsets).max() <= MAX_LEN and (rows.word_length > 1).mean() > 0.05


# --- rate ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [0.1, 0.15, 0.4])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_realised_rate_matches_the_setting(strategy: str, rate: float) -> None:
    """Masked / candidate tokens within ±0.2 points over 4 rounds (~540k candidates). Standard error:
    token and whole-word ≈ 0.01 point; span ≈ 0.05 (its count per row varies by up to a span)."""
    rows = real_rows()
    batches = run(rows, make_rule(rows, strategy=strategy, masked_lm_prob=rate), range(4))
    realised = sum(int(m.counts.sum()) for m in batches) / (4 * rows.candidate.sum())
    assert abs(realised - rate) < 0.002, realised


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_max_predictions_caps_the_count(strategy: str) -> None:
    """At 40 % of ~110 candidates the cap of 20 binds: token masking predicts exactly 20; whole
    words and spans stop before the unit that would pass it."""
    rows = real_rows()
    rule = make_rule(rows, strategy=strategy, masked_lm_prob=0.4, max_predictions=20)
    (masked,) = run(rows, rule, range(1))
    assert masked.counts.max() == 20
    assert (masked.counts == 20).mean() > (0.9 if strategy == "token" else 0.1)


def test_budget_rounds_stochastically_not_to_nearest() -> None:
    rows = real_rows()
    rule = make_rule(rows, masked_lm_prob=0.15)
    budget = prediction_budget(np.full(20_000, 3), rule, np.random.default_rng(0))
    assert set(np.unique(budget)) == {0, 1}  # Google: always round(0.45) → at least 1, a 33 % rate
    assert abs(budget.mean() - 0.45) < 0.015  # standard error 0.0035
    assert prediction_budget(np.array([0, 10, 400]), rule, np.random.default_rng(0)).tolist()[::2] == [0, 60]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_masks_per_sequence_is_exact(strategy: str) -> None:
    """Exact for tokens and whole words (every row has one-token words left to fill up with); spans
    are taken whole, so ~3 % of rows end 1 or 2 short when no remaining span fits."""
    rows = real_rows()
    share = 1.0 if strategy != "span" else 0.95
    for wanted, cap in ((10, 20), (25, 20)):
        rule = make_rule(rows, strategy=strategy, masks_per_sequence=wanted, max_predictions=cap)
        (masked,) = run(rows, rule, range(1))
        assert masked.counts.max() == min(wanted, cap) and np.mean(masked.counts == min(wanted, cap)) >= share


# --- what is chosen --------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", STRATEGIES)
def test_special_tokens_are_never_chosen_and_the_rest_is_untouched(strategy: str) -> None:
    rows = real_rows()
    # Frequent real tokens in never_mask too: "the", ",", "." (ids 1996, 1010, 1012).
    never = (*sorted(rows.special.values()), 1010, 1012, 1996)
    rule = make_rule(rows, strategy=strategy, never_mask=never, masked_lm_prob=0.4)
    for masked in run(rows, rule, range(2)):
        flags = masked_flags(rows, masked)
        assert not np.isin(masked.labels, never).any()
        assert np.array_equal(masked.labels, rows.ids[flags])
        assert np.array_equal(masked.input_ids[~flags], rows.ids[~flags])
        assert np.array_equal(masked.counts, np.add.reduceat(flags, rows.offsets[:-1]))
        flat = masked.positions + np.repeat(rows.offsets[:-1], masked.counts)
        assert np.all(np.diff(flat) > 0)  # positions ascend within each row


@pytest.mark.parametrize("exact", [0, 12])
@pytest.mark.parametrize("strategy", ["whole-word", "span"])
def test_whole_words_are_never_split(strategy: str, exact: int) -> None:
    rows = real_rows()
    rule = make_rule(rows, strategy=strategy, masked_lm_prob=0.4, masks_per_sequence=exact,
                     max_predictions=40)
    for masked in run(rows, rule, range(2)):
        flags = masked_flags(rows, masked)
        per_word = np.bincount(rows.word[flags], minlength=rows.word_length.size)
        assert np.all((per_word == 0) | (per_word == rows.word_length))


def test_whole_word_masks_long_and_short_words_at_the_rate() -> None:
    """Each word is taken with probability budget / candidates, so tokens of multi-token words (19 %
    of candidates) are masked at the rate too. Google's skip-to-fit masks them at 13.8 % for 15 %
    (one-token words 15.3 %). 4 rounds: standard error ≈ 0.22 point for the multi-token share."""
    rows = real_rows()
    in_long_word = rows.candidate & (rows.word_length[rows.word] > 1)
    batches = run(rows, make_rule(rows, strategy="whole-word", masked_lm_prob=0.15), range(4))
    share = np.mean([masked_flags(rows, m)[in_long_word].mean() for m in batches])
    assert abs(share - 0.15) < 0.0075, share


def span_lengths(rows: Rows, flags: np.ndarray) -> np.ndarray:
    """Length in words of every maximal run of masked tokens."""
    edges = np.diff(np.r_[0, flags.astype(np.int8), 0])
    lo, hi = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    begins = rows.candidate & (rows.word != np.r_[-1, rows.word[:-1]])
    counted = np.r_[0, np.cumsum(begins)]
    return counted[hi] - counted[lo]


@pytest.mark.parametrize(("p", "longest", "max_len", "pairs", "tv", "mean"), [
    (0.2, 10, 128, True, 0.05, 0.3),
    (0.3, 5, 128, True, 0.04, 0.12),
    (0.2, 10, 512, False, 0.02, 0.1),
])
def test_span_lengths_follow_the_truncated_geometric(p: float, longest: int, max_len: int, pairs: bool,
                                                     tv: float, mean: float) -> None:
    """Realised masked runs in words against Geometric(p) truncated at `longest` and renormalised.

    Spans are cut where their run of candidates ends (module docstring), so the realised lengths
    fall short of the configured ones by an amount that shrinks as runs grow. Measured on 4 rounds
    (~20k spans, sampling noise ≈ 0.01 of total variation and 0.03 words of mean): 128-token pair
    rows (two runs of ~50 words) 0.032 TV and 0.21 words short at p = 0.2, 0.023 and 0.07 at p = 0.3;
    512-token rows of one run 0.009 and 0.04. The tolerances sit above those with room for noise.
    """
    rows = real_rows(max_len, pairs)
    rule = make_rule(rows, strategy="span", span_p=p, max_span_words=longest, max_predictions=max_len)
    lengths = np.concatenate([span_lengths(rows, masked_flags(rows, m)) for m in run(rows, rule, range(4))])
    assert lengths.size > 15_000 and lengths.min() >= 1 and lengths.max() <= longest
    configured = p * (1 - p) ** np.arange(longest)
    configured /= configured.sum()
    realised = np.bincount(lengths, minlength=longest + 1)[1:] / lengths.size
    assert 0.5 * np.abs(realised - configured).sum() < tv
    assert abs(lengths.mean() - np.arange(1, longest + 1) @ configured) < mean


def test_spans_tile_runs_of_whole_words() -> None:
    """Spans hold whole words of one run of candidates, at most `max_span_words` of them, and a
    word separates two spans: the masked runs of the output are the spans."""
    rows = real_rows()
    rule = make_rule(rows, strategy="span", max_span_words=6)
    words = Units.words(rows.candidate, rows.offsets, rows.word_starts)
    spans = tile_spans(words, rule, np.random.default_rng(0))
    end = spans.start + spans.length
    assert np.all(spans.start[1:] > end[:-1])  # in order, never touching
    in_span = np.zeros(rows.ids.size + 1, np.int64)
    np.add.at(in_span, spans.start, 1)
    np.add.at(in_span, end, -1)
    covered = np.cumsum(in_span)[:-1].astype(bool)
    assert rows.candidate[covered].all()  # no special token inside a span
    starts_word = rows.word[spans.start] != np.r_[-1, rows.word][spans.start]
    ends_word = rows.word[end - 1] != np.r_[rows.word, -1][end]
    assert starts_word.all() and ends_word.all()
    words_in = np.add.reduceat(covered & (rows.word != np.r_[-1, rows.word[:-1]]), spans.start)
    assert words_in.max() == 6 and words_in.min() == 1
    assert 0.7 < spans.length.sum() / rows.candidate.sum() < 0.85  # ~μ / (μ + 1) of the words


# --- corruption ------------------------------------------------------------------------------------

def replacement_shares(rows: Rows, batches: list[MaskedBatch]) -> tuple[float, float, float]:
    shown = np.concatenate([m.input_ids[masked_flags(rows, m)] for m in batches])
    labels = np.concatenate([m.labels for m in batches])
    as_mask, kept = np.mean(shown == rows.special["mask"]), np.mean(shown == labels)
    return as_mask, 1 - as_mask - kept, kept


@pytest.mark.parametrize("strategy", ["token", "whole-word"])
def test_80_10_10_split(strategy: str) -> None:
    """One decision per token: 3 rounds at 15 % give ~61k masked tokens, a standard error of 0.16
    point on the [MASK] share, 0.12 on the others; tolerance ±1 point."""
    rows = real_rows()
    batches = run(rows, make_rule(rows, strategy=strategy), range(3))
    as_mask, random, kept = replacement_shares(rows, batches)
    assert abs(as_mask - 0.8) < 0.01 and abs(random - 0.1) < 0.01 and abs(kept - 0.1) < 0.01


def test_80_10_10_split_is_per_span() -> None:
    """SpanBERT decides per span, so the shares move in steps of whole spans: 8 rounds at 40 %
    give ~118k spans of ~4.5 tokens, a standard error of ~0.15 point on the [MASK] share (the
    per-token binomial error times sqrt(E[len²] / E[len]) ≈ 2.3); tolerance ±1 point."""
    rows = real_rows()
    rule = make_rule(rows, strategy="span", masked_lm_prob=0.4, mask_token_prob=0.7, random_token_prob=0.2)
    as_mask, random, kept = replacement_shares(rows, run(rows, rule, range(8)))
    assert abs(as_mask - 0.7) < 0.01 and abs(random - 0.2) < 0.01 and abs(kept - 0.1) < 0.01
    # Every masked run is all [MASK] or all kept: one decision per run, so a run is one span.
    half = dataclasses.replace(rule, mask_token_prob=0.5, random_token_prob=0.0)
    for masked in run(rows, half, range(2)):
        flags = masked_flags(rows, masked)
        edges = np.diff(np.r_[0, flags.astype(np.int8), 0])
        lo, hi = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        as_mask_so_far = np.r_[0, np.cumsum(masked.input_ids == rows.special["mask"])]
        in_run = as_mask_so_far[hi] - as_mask_so_far[lo]
        assert np.all((in_run == 0) | (in_run == hi - lo))


def test_random_replacements_stay_in_the_vocabulary() -> None:
    rows = real_rows()
    rule = make_rule(rows, masked_lm_prob=0.4, mask_token_prob=0.0, random_token_prob=1.0)
    (masked,) = run(rows, rule, range(1))
    shown = masked.input_ids[masked_flags(rows, masked)]
    assert shown.max() < rows.vocab_size and abs(shown.mean() / rows.vocab_size - 0.5) < 0.01
    assert np.mean(shown == masked.labels) < 0.001


# --- determinism, layout, edge cases ---------------------------------------------------------------

@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_rng_state_same_output(strategy: str) -> None:
    rows = real_rows()
    rule = make_rule(rows, strategy=strategy)
    first, again, other = run(rows, rule, range(1)) + run(rows, rule, range(1)) + run(rows, rule, range(1, 2))
    for field in ("input_ids", "positions", "labels", "counts"):
        assert np.array_equal(getattr(first, field), getattr(again, field))
    assert not np.array_equal(first.positions, other.positions)


@pytest.mark.parametrize("exact", [0, 3])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_small_batches_keep_layout(strategy: str, exact: int) -> None:
    """Empty rows, rows without candidates, and a word interrupted by a special token."""
    rule = MaskRule(mask_id=4, vocab_size=50, never_mask=(0, 2, 3, 4), strategy=strategy,
                    masked_lm_prob=0.4, masks_per_sequence=exact, max_predictions=5, mask_token_prob=1.0,
                    random_token_prob=0.0)
    ids = np.array([2, 10, 11, 3, 12, 13, 14, 3, 2, 3, 2, 20, 3, 21, 22], np.uint16)
    starts = np.array([1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1], bool)  # 21 follows [SEP]: a word
    offsets = np.array([0, 0, 8, 10, 15, 15])
    masked = mask_sequences(ids, offsets, rule, np.random.default_rng(0), starts)
    assert masked.input_ids.dtype == np.uint16 and masked.input_ids.size == ids.size
    assert masked.counts[[0, 2, 4]].tolist() == [0, 0, 0] and masked.counts.max() <= 5
    flat = masked.positions + np.repeat(offsets[:-1], masked.counts)
    assert np.all(masked.input_ids[flat] == 4) and np.array_equal(ids[flat], masked.labels)
    untouched = np.setdiff1d(np.arange(ids.size), flat)
    assert np.array_equal(masked.input_ids[untouched], ids[untouched])
    if exact and strategy != "span":  # spans are taken whole: 3 exactly may not be reachable
        assert masked.counts[[1, 3]].tolist() == [3, 3]
    empty = mask_sequences(ids[:0], np.array([0]), rule, np.random.default_rng(0), starts[:0])
    assert empty.counts.size == 0 and empty.positions.size == 0


def test_whole_word_and_span_need_word_starts() -> None:
    for strategy in ("whole-word", "span"):
        with pytest.raises(ValueError, match="word_starts"):
            mask_sequences(np.array([5]), np.array([0, 1]), MaskRule(4, 50, (0,), strategy=strategy),
                           np.random.default_rng(0))
    with pytest.raises(ValueError, match="strategy"):
        MaskRule(4, 50, (0,), strategy="words")


def test_rule_survives_a_json_round_trip() -> None:
    rule = make_rule(real_rows(), strategy="span", span_p=0.3)
    assert MaskRule.from_dict(json.loads(json.dumps(dataclasses.asdict(rule)))) == rule
