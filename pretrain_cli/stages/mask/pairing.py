"""Sentence pairs for next-sentence prediction: Google BERT's `create_instances_from_document`.

    documents = document_bounds(sentence_offsets, doc_offsets, keep)
    spans = pair_documents(documents, max_num_tokens=125, short_seq_prob=0.1, random_next_prob=0.5, rng=rng)
    ids, offsets, segment_b_start = assemble_pairs(values, spans, cls_id=2, sep_id=3)

A document is its sentence boundaries in a flat token array (sentence j is `values[b[j]:b[j+1]]`),
so every segment A or B is a contiguous slice and an instance is four integers, not token lists.
The random choices are Google's, made in the same order, with two deliberate differences:

- the token-by-token truncation loop is replaced by its closed form (same distribution, see
  `truncation`);
- the random-next share is kept at `random_next_prob`. Google forces a random B whenever a chunk
  holds one sentence (a one-sentence document, or the tail left after a random B put sentences
  back), so its share overshoots: 58 % on IMDB reviews and 65 % on Wikipedia lead sections for
  0.5. Here the free choices (chunks of two or more sentences) take a random B with a chance
  lowered by the forced share and by any excess so far, so the realised share is
  `random_next_prob` (see `NextSentenceBalance`).
"""

from __future__ import annotations

import numpy as np

# Columns of the spans array returned by `pair_documents`.
A_LO, A_HI, B_LO, B_HI, RANDOM_NEXT = range(5)


class NextSentenceBalance:
    """The chance of a random B for a free choice, steering the realised share to `target`.

    Forced random B push the share up. With a forced share f, free choices at
    q = (target - f) / (1 - f) give `target` on average; f is estimated from the instances made so
    far. The forced share drifts along a pass (long articles, then short abstracts), which a running
    estimate follows late, so q is also lowered in proportion to the excess of random B made so far;
    that keeps the excess bounded and the realised share at `target`.
    """

    gain = 0.02  # per instance of excess: small, so q stays a fair coin near its estimate

    def __init__(self, target: float) -> None:
        self.target = target
        self.instances = self.forced = 0
        self.excess = 0.0

    def chance(self) -> float:
        forced = self.forced / self.instances if self.instances else 0.0
        if forced >= 1.0:  # only forced ones so far: no estimate of what free choices must make up
            return self.target
        chance = (self.target - forced) / (1.0 - forced) - self.gain * self.excess
        return min(1.0, max(0.0, chance))

    def record(self, forced: bool, random_next: int) -> None:
        self.instances += 1
        self.forced += forced
        self.excess += random_next - self.target


def document_bounds(sentence_offsets: np.ndarray, doc_offsets: np.ndarray,
                    keep: np.ndarray) -> list[list[int]]:
    """Per kept document with tokens, its sentence boundaries with empty sentences dropped.

    sentence_offsets: token offset of each sentence (length sentences + 1).
    doc_offsets: sentence offset of each document (length documents + 1).
    keep: which documents to take (one split's documents).
    """
    documents = []
    for d in np.flatnonzero(keep):
        bounds = sentence_offsets[doc_offsets[d]:doc_offsets[d + 1] + 1]
        if bounds.size < 2 or bounds[-1] == bounds[0]:
            continue  # Google drops documents without tokens
        # An empty sentence repeats its start offset; dropping repeats drops it (Google skips empty lines).
        bounds = bounds[np.r_[True, np.diff(bounds) > 0]]
        documents.append(bounds.tolist())
    return documents


def truncation(len_a: int, len_b: int, max_num_tokens: int) -> tuple[int, int]:
    """How many tokens A and B lose in Google's `truncate_seq_pair`.

    Google removes one token at a time from the longer segment (B on a tie) until the pair fits;
    the counts follow from the lengths alone, so only the front/back choices need random draws.
    """
    excess = len_a + len_b - max_num_tokens
    if excess <= 0:
        return 0, 0
    if len_a > len_b:
        cut_a = min(excess, len_a - len_b)          # A shrinks to B's length, then B, A, B, ...
        rest = excess - cut_a
        return cut_a + rest // 2, (rest + 1) // 2
    cut_b = min(excess, len_b - len_a + 1)          # B shrinks below A's length, then A, B, A, ...
    rest = excess - cut_b
    return (rest + 1) // 2, cut_b + rest // 2


def _trim(lo: int, hi: int, cut: int, rng: np.random.Generator) -> tuple[int, int]:
    if cut == 0:
        return lo, hi
    front = int(rng.binomial(cut, 0.5))  # Google flips a fair coin per removed token: front or back
    return lo + front, hi - (cut - front)


def instances_from_document(documents: list[list[int]], index: int, max_num_tokens: int,
                            short_seq_prob: float, balance: NextSentenceBalance,
                            rng: np.random.Generator) -> list[tuple[int, int, int, int, int]]:
    """Google's `create_instances_from_document` for `documents[index]`: (a_lo, a_hi, b_lo, b_hi, random)."""
    bounds = documents[index]
    n_sentences = len(bounds) - 1
    # Mostly fill the sequence; sometimes aim shorter so the model also sees short inputs.
    target = max_num_tokens
    if rng.random() < short_seq_prob:
        target = int(rng.integers(2, max_num_tokens + 1))
    instances = []
    chunk_start = 0  # first sentence of the chunk being accumulated
    i = 0
    while i < n_sentences:
        if i == n_sentences - 1 or bounds[i + 1] - bounds[chunk_start] >= target:
            chunk = i - chunk_start + 1
            a_end = chunk_start + (int(rng.integers(1, chunk)) if chunk >= 2 else 1)
            a_lo, a_hi = bounds[chunk_start], bounds[a_end]
            forced = chunk == 1  # no second sentence to follow A: B can only be random
            if forced or rng.random() < balance.chance():
                random_next = 1
                b_lo, b_hi = _random_segment(documents, index, target - (a_hi - a_lo), rng)
                # The chunk's sentences after A were not used: give them to the next chunk.
                i = a_end - 1
            else:
                random_next = 0
                b_lo, b_hi = bounds[a_end], bounds[i + 1]
            balance.record(forced, random_next)
            cut_a, cut_b = truncation(a_hi - a_lo, b_hi - b_lo, max_num_tokens)
            a_lo, a_hi = _trim(a_lo, a_hi, cut_a, rng)
            b_lo, b_hi = _trim(b_lo, b_hi, cut_b, rng)
            assert a_hi > a_lo and b_hi > b_lo
            instances.append((a_lo, a_hi, b_lo, b_hi, random_next))
            chunk_start = i + 1
        i += 1
    return instances


def _random_segment(documents: list[list[int]], index: int, target_length: int,
                    rng: np.random.Generator) -> tuple[int, int]:
    """Sentences from another document, from a random start until `target_length` tokens (Google)."""
    for _ in range(10):  # Google's bounded retry: with one document, B comes from the same one
        other = int(rng.integers(len(documents)))
        if other != index:
            break
    bounds = documents[other]
    start = int(rng.integers(len(bounds) - 1))
    end = start + 1
    while end < len(bounds) - 1 and bounds[end] - bounds[start] < target_length:
        end += 1
    return bounds[start], bounds[end]


def pair_documents(documents: list[list[int]], max_num_tokens: int, short_seq_prob: float,
                   random_next_prob: float, rng: np.random.Generator) -> np.ndarray:
    """One pass of Google's loop over all documents: int64 array (instances, 5), columns A_LO..RANDOM_NEXT."""
    spans = []
    balance = NextSentenceBalance(random_next_prob)
    for index in range(len(documents)):
        spans.extend(instances_from_document(documents, index, max_num_tokens, short_seq_prob,
                                             balance, rng))
    return np.array(spans, dtype=np.int64).reshape(-1, 5)


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of `arange(s, s + n)` for each start and length, without a Python loop."""
    total = int(lengths.sum())
    shift = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return shift + np.arange(total)


def assemble_pairs(values: np.ndarray, spans: np.ndarray, cls_id: int,
                   sep_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`[CLS] A [SEP] B [SEP]` for every span row: flat ids, row offsets, and B's first index per row."""
    len_a = spans[:, A_HI] - spans[:, A_LO]
    len_b = spans[:, B_HI] - spans[:, B_LO]
    offsets = np.zeros(len(spans) + 1, np.int64)
    np.cumsum(len_a + len_b + 3, out=offsets[1:])
    starts = offsets[:-1]
    ids = np.empty(int(offsets[-1]), values.dtype)
    ids[starts] = cls_id
    ids[starts + 1 + len_a] = sep_id
    ids[offsets[1:] - 1] = sep_id
    ids[ranges(starts + 1, len_a)] = values[ranges(spans[:, A_LO], len_a)]
    ids[ranges(starts + 2 + len_a, len_b)] = values[ranges(spans[:, B_LO], len_b)]
    return ids, offsets, len_a + 2
