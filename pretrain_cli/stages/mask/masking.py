"""Masked-LM targets for a batch of sequences at once: Google BERT's `create_masked_lm_predictions`.

    rule = MaskRule(masked_lm_prob=0.15, max_predictions=20, mask_token_prob=0.8,
                    random_token_prob=0.1, mask_id=4, vocab_size=8192, never_mask=(0, 2, 3, 4))
    masked = mask_sequences(ids, offsets, rule, rng)

Per sequence, `round(masked_lm_prob * candidates)` positions (at least one, at most
`max_predictions`) are drawn uniformly without replacement among the tokens that are not
[CLS]/[SEP]/[PAD]/[MASK]; each is replaced by [MASK] with `mask_token_prob`, by a uniformly random
vocabulary id with `random_token_prob`, and otherwise kept. Google draws a shuffled candidate list per
sequence in Python; here one argsort of random keys does it for the whole batch.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class MaskRule:
    """How to choose and corrupt MLM positions.

    masked_lm_prob: share of candidate tokens to predict (Google: 0.15).
    max_predictions: cap per sequence (Google: 20 for 128 tokens).
    mask_token_prob / random_token_prob: the 80 % / 10 % split; the rest stay unchanged.
    mask_id: the [MASK] id. vocab_size: random replacements are drawn from [0, vocab_size).
    never_mask: ids that are never candidates ([CLS], [SEP], [PAD], [MASK]).
    """

    masked_lm_prob: float
    max_predictions: int
    mask_token_prob: float
    random_token_prob: float
    mask_id: int
    vocab_size: int
    never_mask: tuple[int, ...]


@dataclasses.dataclass
class MaskedBatch:
    """The corrupted ids (same layout as the input) and, per sequence, sorted positions and labels."""

    input_ids: np.ndarray
    positions: np.ndarray       # position inside its sequence, sequences in order, ascending within
    labels: np.ndarray          # original id at each position
    counts: np.ndarray          # predictions per sequence: positions/labels offsets are its cumsum


def predictions_per_sequence(candidates: np.ndarray, rule: MaskRule) -> np.ndarray:
    """How many positions each sequence predicts, given its number of candidate tokens."""
    wanted = np.maximum(1, np.rint(candidates * rule.masked_lm_prob).astype(np.int64))
    return np.minimum(np.minimum(wanted, rule.max_predictions), candidates)


def mask_sequences(ids: np.ndarray, offsets: np.ndarray, rule: MaskRule,
                   rng: np.random.Generator) -> MaskedBatch:
    """Choose and apply MLM corruption for the sequences `ids[offsets[i]:offsets[i + 1]]`."""
    n_sequences = offsets.size - 1
    sequence = np.repeat(np.arange(n_sequences), np.diff(offsets))
    candidate_at = np.flatnonzero(~np.isin(ids, rule.never_mask))
    candidate_of = sequence[candidate_at]
    candidates = np.bincount(candidate_of, minlength=n_sequences)
    wanted = predictions_per_sequence(candidates, rule)

    # Sorting by sequence + a random key in [0, 1) shuffles each sequence's candidates in place; the
    # first `wanted` of each group are a uniform sample without replacement (Google: shuffle, take).
    order = np.argsort(candidate_of + rng.random(candidate_at.size))
    group_start = np.cumsum(candidates) - candidates
    rank = np.arange(order.size) - np.repeat(group_start, candidates)
    chosen = np.sort(candidate_at[order[rank < np.repeat(wanted, candidates)]])

    labels = ids[chosen]
    draw = rng.random(chosen.size)
    replacement = rng.integers(0, rule.vocab_size, chosen.size).astype(ids.dtype)
    to_mask = draw < rule.mask_token_prob
    to_random = ~to_mask & (draw < rule.mask_token_prob + rule.random_token_prob)
    corrupted = ids.copy()
    corrupted[chosen[to_mask]] = rule.mask_id
    corrupted[chosen[to_random]] = replacement[to_random]
    owner = sequence[chosen]
    return MaskedBatch(input_ids=corrupted, positions=chosen - offsets[owner], labels=labels,
                       counts=np.bincount(owner, minlength=n_sequences))
