"""Masked-LM targets for a batch of sequences at once: token (BERT), whole-word (BERT wwm) and span
(SpanBERT) masking.

    rule = MaskRule(mask_id=103, vocab_size=30522, never_mask=(0, 100, 101, 102, 103),
                    strategy="whole-word", masked_lm_prob=0.15, max_predictions=24)
    masked = mask_sequences(ids, offsets, rule, rng, word_starts=word_starts)
    masked.input_ids[offsets[i]:offsets[i + 1]]   # sequence i, corrupted

Candidates. A token is a candidate unless its id is in `never_mask`. A word is a candidate token
whose word-start flag is set (or that follows a non-candidate, or opens its sequence) plus the
candidate tokens after it whose flag is not set: words never cross a special token.

Budget. Each sequence predicts `masks_per_sequence` tokens if that is set, else
`masked_lm_prob × candidates` rounded stochastically (the floor, plus one with the fractional part
as probability), so the expected realised rate is the setting exactly; then at most
`max_predictions` and at most the candidates. Google rounds to the nearest integer and forces at
least one, which biases short sequences (15 % of 3 candidates masks 33 %, of 10 masks 20 %).

Choosing. Ragged rows are padded to a 2-D grid, so every per-row shuffle or scan below is one
numpy call over the whole batch.

- token: `budget` candidates per sequence, uniformly without replacement (Google).
- whole-word: each sequence's words, shuffled, lie end to end on a circle of `candidates` tokens;
  the words that start within `budget` tokens after a uniformly random token are taken. Whatever
  the order, that takes each word with probability budget / candidates, so every candidate token
  is predicted at exactly the rate whatever its word's length (as in token masking), no word is
  split, and the count is the budget on average. Google takes words in shuffled order while they
  fit and skips one that would overshoot, which favours one-token words.
- span: each run of candidate words (the words between two special tokens) is tiled into spans,
  each followed by a one-word gap. Span lengths in words follow Geometric(span_p) truncated at
  `max_span_words` and renormalised (SpanBERT: mean 3.8 words at p = 0.2, max 10); the tiling
  starts mid-piece the way a stationary process would, so runs do not all open with a span.
  Spans are then taken like whole words, each with probability budget / (tokens in spans): a
  choice blind to length, so the spans taken follow the tiling's lengths. Those are the configured
  ones except where a run of candidates ends and cuts a span: at p = 0.2, a total variation of
  0.03 and a mean of 3.6 words on 128-token pair rows (two ~50-word runs), 0.009 and 3.76 words on
  512-token rows of one run. (Drawing spans one by one until the budget is met, as SpanBERT does,
  also cuts the last span of every sequence: 0.085 and 3.3 words on the same pair rows at 15 %.)
  Spans never cross a special token nor overlap, and an unmasked word separates two spans, so
  every masked run is one span. Spans cover ~μ/(μ + 1) of the words for a mean length μ (80 % at
  p = 0.2, 50 % at p = 1): a sequence whose spans hold fewer tokens than its budget predicts them
  all and falls short. SpanBERT also draws a start token rather than word (long words start more
  spans), lets spans touch, and cuts the last one mid-word to meet the count exactly.

With `masks_per_sequence` the count itself must be exact, so whole-word and span take whole units
(words, spans) in shuffled order while they fit, skipping one that would overshoot (Google's fill):
fewer only when no remaining unit fits (~3 % of 128-token rows end 1 or 2 tokens short with
spans). A unit that would take a sequence past `max_predictions` is never taken, so a cap close to
the budget lowers the realised rate of span masking: 15 % of 128-token rows gives 13.8 % under a
cap of 20, 14.7 % under 24 and the full rate from 30 (whole-word: 15.0 % under 20).

Corrupting. Each chosen token becomes [MASK] with `mask_token_prob`, a uniformly random id in
[0, vocab_size) with `random_token_prob`, and otherwise stays; span masking makes that decision
once per span (SpanBERT), with an independent random id per token. Labels are the original ids and
positions ascend within each sequence. Every draw comes from `rng` in a fixed order, so the output
is a function of the inputs and the generator's state.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

STRATEGIES = ("token", "whole-word", "span")


@dataclasses.dataclass(frozen=True)
class MaskRule:
    """How to choose and corrupt MLM positions.

    mask_id: the [MASK] id.
    vocab_size: random replacements are drawn from [0, vocab_size).
    never_mask: ids never chosen ([CLS], [SEP], [PAD], [MASK], [unusedN], other added tokens).
    strategy: "token" (BERT), "whole-word" (BERT wwm) or "span" (SpanBERT).
    masked_lm_prob: share of candidate tokens to predict (BERT 0.15; up to 0.4 in Wettig et al.).
    masks_per_sequence: when > 0, predict exactly this many tokens per sequence instead of the rate
        (fewer only when the candidates run out or no remaining whole word or span fits).
    max_predictions: hard cap on predictions per sequence (Google: 20 for 128 tokens).
    mask_token_prob: share of chosen tokens (span: of spans) replaced by [MASK].
    random_token_prob: share replaced by random ids; the rest stay unchanged.
    span_p: span length in words ~ Geometric(span_p) (SpanBERT: 0.2) ...
    max_span_words: ... truncated at this many words and renormalised (SpanBERT: 10).
    """

    mask_id: int
    vocab_size: int
    never_mask: tuple[int, ...]
    strategy: str = "token"
    masked_lm_prob: float = 0.15
    masks_per_sequence: int = 0
    max_predictions: int = 20
    mask_token_prob: float = 0.8
    random_token_prob: float = 0.1
    span_p: float = 0.2
    max_span_words: int = 10

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown masking strategy {self.strategy!r}; expected one of {STRATEGIES}")

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> MaskRule:
        """The rule `dataclasses.asdict(rule)` was made from, after a JSON round trip."""
        return cls(**{**fields, "never_mask": tuple(fields["never_mask"])})

    # Computed once per rule: a rule masks many batches, some of a single sequence.
    @functools.cached_property
    def never_table(self) -> np.ndarray:
        """Bool per id, True for `never_mask` ids: one lookup per token instead of np.isin."""
        table = np.zeros(max(self.vocab_size, max(self.never_mask, default=0) + 1), bool)
        table[list(self.never_mask)] = True
        return table

    @functools.cached_property
    def span_cdf(self) -> np.ndarray:
        """P(L ≤ k) for k = 1 … max_span_words: Geometric(span_p) truncated and renormalised."""
        return _cdf(self.span_p * (1 - self.span_p) ** np.arange(self.max_span_words))

    @functools.cached_property
    def covering_span_cdf(self) -> np.ndarray:
        """The same for the span whose tiling piece (span + gap word) covers a given word: weighted by
        the piece's L + 1 words."""
        return _cdf(self.span_p * (1 - self.span_p) ** np.arange(self.max_span_words)
                    * np.arange(2, self.max_span_words + 2))


@dataclasses.dataclass
class MaskedBatch:
    """The corrupted ids (same layout as the input) and, per sequence, sorted positions and labels."""

    input_ids: np.ndarray
    positions: np.ndarray       # position inside its sequence, sequences in order, ascending within
    labels: np.ndarray          # original id at each position
    counts: np.ndarray          # predictions per sequence: positions/labels offsets are its cumsum


def mask_sequences(ids: np.ndarray, offsets: np.ndarray, rule: MaskRule, rng: np.random.Generator,
                   word_starts: np.ndarray | None = None) -> MaskedBatch:
    """Choose and apply MLM corruption for the sequences `ids[offsets[i]:offsets[i + 1]]`.

    `word_starts` (bool, aligned with `ids`) marks the first token of each word; whole-word and
    span masking need it.
    """
    if rule.strategy != "token" and word_starts is None:
        raise ValueError(f"{rule.strategy} masking needs word_starts")
    candidate = ~np.take(rule.never_table, ids)
    if rule.strategy == "token":
        tokens = Grid.of(offsets)
        budget = prediction_budget(tokens.spread(candidate, False).sum(axis=1), rule, rng)
        chosen = choose_tokens(candidate, tokens, budget, rng)
        return corrupt(ids, offsets, chosen, np.arange(chosen.size), rule, rng)
    units = Units.words(candidate, offsets, np.asarray(word_starts, bool))
    budget = prediction_budget(units.tokens_per_row(), rule, rng)
    if rule.strategy == "span":
        units = tile_spans(units, rule, rng)
    taken = choose_units(units, budget, rule, rng)
    chosen, unit = units.tokens(taken)
    if rule.strategy == "whole-word":
        unit = np.arange(chosen.size)  # one 80/10/10 decision per token, as in Google's wwm
    return corrupt(ids, offsets, chosen, unit, rule, rng)


def prediction_budget(candidates: np.ndarray, rule: MaskRule, rng: np.random.Generator) -> np.ndarray:
    """Tokens to predict per sequence, given its candidate tokens (see the module docstring).

        prediction_budget(np.array([3, 125]), MaskRule(103, 30522, (101, 102)), rng)  # [0|1, 18|19]
    """
    if rule.masks_per_sequence > 0:
        wanted = np.full(candidates.size, rule.masks_per_sequence, np.int64)
    else:
        expected = candidates * rule.masked_lm_prob
        wanted = np.floor(expected).astype(np.int64)
        wanted += rng.random(candidates.size) < expected - wanted
    return np.minimum(np.minimum(wanted, rule.max_predictions), candidates)


@dataclasses.dataclass(frozen=True)
class Grid:
    """Ragged rows (row i holds items offsets[i]:offsets[i + 1]) padded to a (count, width) array, so
    that a per-row sort or scan is one numpy call."""

    offsets: np.ndarray          # int64, rows + 1
    width: int                   # the longest row (at least 1)
    real: np.ndarray | None      # (count, width) bool, True on cells holding an item; None: no padding

    @classmethod
    def of(cls, offsets: np.ndarray) -> Grid:
        lengths = np.diff(offsets)
        width = int(lengths.max(initial=1))  # at least one column, so per-row indexing always works
        full = bool((lengths == width).all())
        return cls(offsets, width, None if full else np.arange(width) < lengths[:, None])

    @property
    def count(self) -> int:
        return self.offsets.size - 1

    def spread(self, flat: np.ndarray, fill: Any) -> np.ndarray:
        """`flat` (one value per item) as a (count, width) array, `fill` in the padding."""
        if self.real is None:
            return flat.reshape(self.count, self.width)
        grid = np.full((self.count, self.width), fill, flat.dtype)
        grid[self.real] = flat
        return grid

    def gather(self, grid: np.ndarray) -> np.ndarray:
        """The items of a (count, width) array back in flat order."""
        return grid.ravel() if self.real is None else grid[self.real]


def random_keys(rows: Grid, rng: np.random.Generator, last: np.ndarray | None = None) -> np.ndarray:
    """Distinct random uint64 keys per cell whose low bits hold the column; padding (and cells where
    `last` is True) get all high bits set, so they sort after every other cell of their row.

    Sorting the keys along the rows shuffles every row at once (a 2-D sort of 64-bit integers is
    ~30x faster than one argsort of flat keys), and the sorted keys' low bits are the order.
    """
    bits = np.uint64(rows.width.bit_length())
    keys = rng.bit_generator.random_raw((rows.count, rows.width)) << bits
    keys |= np.arange(rows.width, dtype=np.uint64)
    for skip in (None if rows.real is None else ~rows.real, last):
        if skip is not None:
            keys[skip] |= ~np.uint64(0) << bits
    return keys


def choose_tokens(candidate: np.ndarray, tokens: Grid, budget: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """Flat indices (ascending) of `budget` candidates per sequence, uniformly without replacement."""
    keys = random_keys(tokens, rng, last=~tokens.spread(candidate, False))
    # The budget-th smallest key of a row is a threshold: keys are distinct, so exactly `budget`
    # cells are at or below it, none of them a non-candidate since budget ≤ candidates.
    threshold = np.sort(keys, axis=1)[np.arange(tokens.count), np.maximum(budget - 1, 0)]
    chosen = (keys <= threshold[:, None]) & (budget > 0)[:, None]
    return np.flatnonzero(tokens.gather(chosen))


@dataclasses.dataclass(frozen=True)
class Units:
    """Contiguous token ranges that are masked whole (words or spans), in token order."""

    start: np.ndarray    # int64: flat token index of each unit's first token
    length: np.ndarray   # int64: tokens in each unit
    rows: Grid           # units grouped by sequence: row i holds the units of sequence i

    @classmethod
    def words(cls, candidate: np.ndarray, offsets: np.ndarray, word_starts: np.ndarray) -> Units:
        """The candidate words of the sequences `offsets` delimits."""
        begins = candidate & word_starts
        begins[1:] |= candidate[1:] & ~candidate[:-1]
        opens = offsets[:-1][offsets[:-1] < candidate.size]
        begins[opens] = candidate[opens]
        start = np.flatnonzero(begins)
        # A word runs from its start to the next start or the first non-candidate, whichever is first.
        number = np.cumsum(begins)
        length = np.bincount(number[candidate] - 1, minlength=start.size)
        return cls(start, length, Grid.of(_offsets_in(offsets, number)))

    def tokens_per_row(self) -> np.ndarray:
        covered = np.concatenate([[0], np.cumsum(self.length)])
        return np.diff(covered[self.rows.offsets])

    def tokens(self, taken: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices (ascending) of the tokens of the `taken` units, and each one's unit number
        counted among the taken ones."""
        which = np.flatnonzero(taken)
        length = self.length[which]
        before = np.cumsum(length) - length
        index = np.repeat(self.start[which] - before, length) + np.arange(length.sum())
        return index, np.repeat(np.arange(which.size), length)


def _offsets_in(offsets: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """Item offsets per row, given `counted`: the running count of items over the flat positions
    that `offsets` splits into rows."""
    return np.concatenate([[0], counted])[offsets]


def _cdf(weight: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weight) / weight.sum()
    cdf[-1] = 1.0  # so a uniform draw in [0, 1) always lands on a length
    return cdf


def tile_spans(words: Units, rule: MaskRule, rng: np.random.Generator) -> Units:
    """Spans of whole words tiling each run of candidate words, one-word gaps between them."""
    rows = words.rows
    column = np.arange(rows.width)
    length = rows.spread(words.length, 0)
    start = rows.spread(words.start, -1)
    joined = np.zeros(length.shape, bool)  # word j directly follows word j - 1 in one run
    joined[:, 1:] = (start[:, 1:] == start[:, :-1] + length[:, :-1]) & (length[:, 1:] > 0)

    # Pieces of span + one gap word laid along each row, each piece at least 2 words, so this many
    # cover it. The first is the piece that covers column 0 in a stationary tiling: length-biased,
    # at a uniform offset.
    pieces = rows.width // 2 + 2
    spans = np.searchsorted(rule.span_cdf, rng.random((rows.count, pieces)), side="right") + 1
    spans[:, 0] = np.searchsorted(rule.covering_span_cdf, rng.random(rows.count), side="right") + 1
    offset = rng.integers(0, spans[:, 0] + 1)
    piece_start = np.cumsum(spans + 1, axis=1) - (spans + 1) - offset[:, None]
    opens = np.zeros((rows.count, rows.width + 1), np.int64)
    row, later = np.nonzero(piece_start[:, 1:] < rows.width)
    opens[row, piece_start[row, later + 1]] = 1
    piece = np.cumsum(opens[:, :-1], axis=1)  # the piece each column falls in
    in_span = (column - np.take_along_axis(piece_start, piece, axis=1)
               < np.take_along_axis(spans, piece, axis=1)) & (length > 0)
    # A span is cut where its run of candidates ends: the words after the cut start a new span.
    begins = in_span.copy()
    begins[:, 1:] &= ~(in_span[:, :-1] & joined[:, 1:] & (piece[:, 1:] == piece[:, :-1]))

    in_span, begins = rows.gather(in_span), rows.gather(begins)
    number = np.cumsum(begins)
    first = np.flatnonzero(begins)
    length = np.bincount(number[in_span] - 1, words.length[in_span], minlength=first.size).astype(np.int64)
    return Units(start=words.start[first], length=length, rows=Grid.of(_offsets_in(rows.offsets, number)))


def choose_units(units: Units, budget: np.ndarray, rule: MaskRule, rng: np.random.Generator) -> np.ndarray:
    """Which units to predict (bool per unit), whole, about `budget` tokens per sequence."""
    rows = units.rows
    keys = random_keys(rows, rng)
    keys.sort(axis=1)
    order = (keys & np.uint64((1 << rows.width.bit_length()) - 1)).view(np.int64)
    length = np.take_along_axis(rows.spread(units.length, 0), order, axis=1)
    end = np.cumsum(length, axis=1)  # tokens up to and including the unit at this place
    if rule.masks_per_sequence > 0:
        # Google's fill: take units while they fit, skip one that overshoots and go on. A unit
        # longer than what is left never fits later, so each round takes the prefix that fits.
        take = (end <= budget[:, None]) & (length > 0)
        left = budget - (length * take).sum(axis=1)
        alive = ~take & (length > 0)
        while (alive := alive & (length <= left[:, None])).any():
            now = alive & (np.cumsum(length * alive, axis=1) <= left[:, None])
            take |= now
            alive &= ~now
            left -= (length * now).sum(axis=1)
    else:
        # The circle (module docstring): units starting within `budget` tokens of a random token.
        total = end[:, -1]
        circle = np.maximum(total, 1)
        start = end - length - rng.integers(0, circle)[:, None]
        start += np.where(start < 0, circle[:, None], 0)
        take = (start < budget[:, None]) & (length > 0)
        # Tokens taken up to a unit: its start less the gap before the first unit taken.
        first = np.where(take, start, total[:, None]).min(axis=1)
        take &= start - first[:, None] + length <= rule.max_predictions
    chosen = np.zeros_like(take)
    np.put_along_axis(chosen, order, take, axis=1)
    return rows.gather(chosen)


def corrupt(ids: np.ndarray, offsets: np.ndarray, chosen: np.ndarray, unit: np.ndarray, rule: MaskRule,
            rng: np.random.Generator) -> MaskedBatch:
    """Apply the 80/10/10 corruption to the ascending flat positions `chosen`; tokens with the same
    `unit` (numbered from 0) share one decision."""
    draw = rng.random(int(unit.max(initial=-1)) + 1)[unit]
    to_mask = draw < rule.mask_token_prob
    to_random = ~to_mask & (draw < rule.mask_token_prob + rule.random_token_prob)
    corrupted = ids.copy()
    corrupted[chosen[to_mask]] = rule.mask_id
    corrupted[chosen[to_random]] = rng.integers(0, rule.vocab_size, int(to_random.sum())).astype(ids.dtype)
    owner = np.searchsorted(offsets, chosen, side="right") - 1
    return MaskedBatch(input_ids=corrupted, positions=chosen - offsets[owner], labels=ids[chosen],
                       counts=np.bincount(owner, minlength=offsets.size - 1))
