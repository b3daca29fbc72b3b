"""Rows for the three sentence objectives of the BERT family: nsp (BERT), sop (ALBERT), none (RoBERTa).

    documents = document_bounds(sentence_offsets, doc_offsets, keep)
    spans = pair_documents(documents, 125, short_seq_prob=0.1, random_next_prob=0.5, rng=rng)  # nsp
    spans = order_pairs(documents, 125, short_seq_prob=0.1, swap_prob=0.5, rng=rng)            # sop
    rows = assemble_pairs(spans)
    rows = pack_documents(documents, 126, rng)                                                 # none
    input_ids = rows.gather(values, cls_id, sep_id)  # row i is input_ids[offsets[i]:offsets[i + 1]]

A document is its sentence boundaries in the shard's flat token array (sentence j is
`values[b[j]:b[j + 1]]`), so a segment is a contiguous slice and a pair is one row of the int64
spans array (A_LO, A_HI, B_LO, B_HI, LABEL), not token lists. Rows never copy tokens: `Assembled`
holds, per output token, its index in `values` or a [CLS]/[SEP] sentinel, so the same rows give the
ids and the word-start flags. Only the documents passed in are read, one shard's at a time: that is
the bounded buffer random-next segments come from, so memory does not grow with the corpus.

nsp follows Google's `create_instances_from_document`, its random choices made in the same order,
with two deliberate differences:

- the token-by-token truncation loop is replaced by its closed form (same distribution, see
  `truncation`), applied to all pairs at once after they are drawn, so its front/back draws come last;
- the random-next share is kept at `random_next_prob`. Google forces a random B whenever a chunk
  holds one sentence (a one-sentence document, or the tail left after a random B put sentences
  back), so its share overshoots: 58 % on IMDB reviews and 65 % on Wikipedia lead sections for
  0.5. Here the free choices (chunks of two or more sentences) take a random B with a chance
  lowered by the forced share and by any excess so far, so the realised share is
  `random_next_prob` (see `NextSentenceBalance`).

sop and none are described at `order_pairs` and `pack_documents`.
"""

from __future__ import annotations

import bisect
import dataclasses

import numpy as np

# Columns of the spans array returned by `pair_documents` and `order_pairs`.
A_LO, A_HI, B_LO, B_HI, LABEL = range(5)
# Sentinels in `Assembled.source` where a row holds [CLS] or [SEP] instead of a token of the shard.
CLS, SEP = -1, -2


@dataclasses.dataclass(frozen=True)
class Assembled:
    """Rows of token indices, one row per example, all rows in flat arrays.

    source: int64, per output token the index of the token in the shard's flat `values`, or CLS / SEP.
    offsets: int64, rows + 1: row i is `source[offsets[i]:offsets[i + 1]]`.
    segment_b_start: int64 per row, the index of B's first token in the row; the row length when
        the row has no segment B (objective none).
    labels: int8 per row: nsp 1 = B is random, sop 1 = A and B swapped, none -1.
    """

    source: np.ndarray
    offsets: np.ndarray
    segment_b_start: np.ndarray
    labels: np.ndarray

    def gather(self, values: np.ndarray, cls_value: int | bool, sep_value: int | bool) -> np.ndarray:
        """`values` read at every source index, with `cls_value`/`sep_value` at the sentinels.

        rows.gather(values, cls_id, sep_id) gives the ids, rows.gather(word_starts, True, True) the
        word-start flags (a special token stands alone, as a word of its own).
        """
        out = values[np.maximum(self.source, 0)]  # sentinels read index 0, then are overwritten
        out[self.source == CLS] = cls_value
        out[self.source == SEP] = sep_value
        return out


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


# --- truncation (nsp and sop) ---------------------------------------------------------------------

def truncation(len_a: np.ndarray, len_b: np.ndarray, max_num_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """How many tokens each A and B lose in Google's `truncate_seq_pair`, for arrays of lengths.

    Google removes one token at a time from the longer segment (B on a tie) until the pair fits;
    the counts follow from the lengths alone, so only the front/back choices need random draws.
    """
    excess = np.maximum(len_a + len_b - max_num_tokens, 0)
    a_longer = len_a > len_b
    # A longer: A shrinks to B's length, then B, A, B, ...  Otherwise B shrinks below A's length,
    # then A, B, A, ...
    first = np.minimum(excess, np.where(a_longer, len_a - len_b, len_b - len_a + 1))
    rest = excess - first
    cut_a = np.where(a_longer, first + rest // 2, (rest + 1) // 2)
    cut_b = np.where(a_longer, (rest + 1) // 2, first + rest // 2)
    return cut_a, cut_b


def truncate_pairs(spans: np.ndarray, max_num_tokens: int, rng: np.random.Generator) -> np.ndarray:
    """`spans` with every pair cut to at most `max_num_tokens` tokens, as Google's `truncate_seq_pair`.

    Google flips a fair coin per removed token (front or back), so the front share of a cut is
    binomial. Needs max_num_tokens >= 2 so that A and B keep a token each.
    """
    cut_a, cut_b = truncation(spans[:, A_HI] - spans[:, A_LO], spans[:, B_HI] - spans[:, B_LO],
                              max_num_tokens)
    front_a, front_b = rng.binomial(cut_a, 0.5), rng.binomial(cut_b, 0.5)
    out = spans.copy()
    out[:, A_LO] += front_a
    out[:, A_HI] -= cut_a - front_a
    out[:, B_LO] += front_b
    out[:, B_HI] -= cut_b - front_b
    return out


# --- nsp: Google BERT -----------------------------------------------------------------------------

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


def instances_from_document(documents: list[list[int]], index: int, max_num_tokens: int,
                            short_seq_prob: float, balance: NextSentenceBalance,
                            rng: np.random.Generator) -> list[tuple[int, int, int, int, int]]:
    """Google's `create_instances_from_document` for `documents[index]`, before truncation.

    Returns (a_lo, a_hi, b_lo, b_hi, random_next) per instance.
    """
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
    """One pass of Google's loop over all documents: int64 spans (instances, 5), LABEL 1 = B is random."""
    spans = []
    balance = NextSentenceBalance(random_next_prob)
    for index in range(len(documents)):
        spans.extend(instances_from_document(documents, index, max_num_tokens, short_seq_prob,
                                             balance, rng))
    return truncate_pairs(np.array(spans, dtype=np.int64).reshape(-1, 5), max_num_tokens, rng)


# --- sop: ALBERT ----------------------------------------------------------------------------------

def order_pairs(documents: list[list[int]], max_num_tokens: int, short_seq_prob: float,
                swap_prob: float, rng: np.random.Generator) -> np.ndarray:
    """ALBERT's sentence-order pairs: int64 spans (instances, 5), LABEL 1 = A and B swapped.

    Chunks as Google's and ALBERT's `create_instances_from_document` (a target length per document,
    shorter with `short_seq_prob`; a chunk closes at the sentence that reaches it or at the
    document's end; A is its first 1..n-1 sentences at random), and B is always the rest of the
    chunk, the text that actually follows A. Three choices differ from or pin down ALBERT's code:

    - a one-sentence chunk is split at a random token boundary (a one-token chunk gives no pair).
      ALBERT takes B from a random document there, which mixes NSP negatives into the "swapped"
      label: 1 would mean swapped or unrelated;
    - exactly floor(swap_prob * n + u) of the n pairs of a call are swapped, a uniform random
      subset (u uniform in [0, 1)). Each pair is still swapped with probability swap_prob, but the
      realised share is exact on every shard, where a coin per pair has a 1.6-point standard
      deviation on 1,000 pairs. Swapping does not change which pairs exist, so the count can be
      fixed up front (nsp cannot: its random B changes the chunks that follow);
    - the swap comes before truncation, as in ALBERT. On a tie Google's rule cuts the segment
      listed second, so a pair cut down to balance ends with the first-listed segment one token
      longer (63 + 62 at max_num_tokens 125) whatever the label; truncating before the swap would
      give the extra token to the earlier text, and segment lengths would reveal the label.
    """
    flat = np.concatenate(documents) if documents else np.zeros(1, np.int64)
    first, last = _chunks(documents, max_num_tokens, short_seq_prob, rng)
    lo, hi = flat[first], flat[last]
    # Where the earlier segment ends: a random sentence boundary inside the chunk, or a random token
    # boundary when the chunk is one sentence.
    split = np.empty_like(lo)
    whole = last - first >= 2
    split[whole] = flat[first[whole] + rng.integers(1, (last - first)[whole])]
    one = ~whole & (hi - lo >= 2)
    split[one] = lo[one] + rng.integers(1, (hi - lo)[one])
    keep = whole | one
    lo, split, hi = lo[keep], split[keep], hi[keep]

    swapped = np.zeros(lo.size, np.int64)
    swapped[rng.permutation(lo.size)[:int(swap_prob * lo.size + rng.random())]] = 1
    flip = swapped == 1
    spans = np.stack([np.where(flip, split, lo), np.where(flip, hi, split),
                      np.where(flip, lo, split), np.where(flip, split, hi), swapped], axis=1)
    return truncate_pairs(spans, max_num_tokens, rng)


def _chunks(documents: list[list[int]], max_num_tokens: int, short_seq_prob: float,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Google's chunks without random B: per chunk, the indices of its first and last boundary in
    the concatenated `documents`."""
    short = rng.random(len(documents)) < short_seq_prob
    targets = np.where(short, rng.integers(2, max_num_tokens + 1, len(documents)), max_num_tokens)
    first, last = [], []
    base = 0
    for bounds, target in zip(documents, targets.tolist(), strict=True):
        n_sentences = len(bounds) - 1
        start = 0
        while start < n_sentences:
            # The first boundary at least `target` tokens on; the document's end if none is.
            end = min(bisect.bisect_left(bounds, bounds[start] + target, start + 1), n_sentences)
            first.append(base + start)
            last.append(base + end)
            start = end
        base += len(bounds)
    return np.array(first, np.int64), np.array(last, np.int64)


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of `arange(s, s + n)` for each start and length, without a Python loop."""
    total = int(lengths.sum())
    shift = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return shift + np.arange(total)


def assemble_pairs(spans: np.ndarray) -> Assembled:
    """`[CLS] A [SEP] B [SEP]` for every span row; labels from the LABEL column."""
    len_a = spans[:, A_HI] - spans[:, A_LO]
    len_b = spans[:, B_HI] - spans[:, B_LO]
    offsets = np.zeros(len(spans) + 1, np.int64)
    np.cumsum(len_a + len_b + 3, out=offsets[1:])
    starts = offsets[:-1]
    source = np.full(int(offsets[-1]), SEP, np.int64)  # the two [SEP] stay where no token lands
    source[starts] = CLS
    source[ranges(starts + 1, len_a)] = ranges(spans[:, A_LO], len_a)
    source[ranges(starts + 2 + len_a, len_b)] = ranges(spans[:, B_LO], len_b)
    return Assembled(source=source, offsets=offsets, segment_b_start=len_a + 2,
                     labels=spans[:, LABEL].astype(np.int8))


# --- none: RoBERTa FULL-SENTENCES -----------------------------------------------------------------

def pack_documents(documents: list[list[int]], max_num_tokens: int, rng: np.random.Generator) -> Assembled:
    """RoBERTa's FULL-SENTENCES rows: `[CLS] s1 s2 ... [SEP]`, at most max_num_tokens + 2 tokens.

    Documents are visited in a random order (so each dupe round cuts rows elsewhere) and their
    sentences taken whole and in order, crossing document boundaries with an extra [SEP] between
    two documents in the same row (none at a row's start). A sentence that does not fit, with its
    [SEP] if it opens a document, starts the next row. A sentence longer than a whole row is cut
    into pieces of max_num_tokens tokens (the last one shorter), each packed as a sentence: every
    token is used exactly once per call.
    """
    if not documents:
        return Assembled(source=np.zeros(0, np.int64), offsets=np.zeros(1, np.int64),
                         segment_b_start=np.zeros(0, np.int64), labels=np.zeros(0, np.int8))
    visits = [np.asarray(documents[d], np.int64) for d in rng.permutation(len(documents))]
    lo = np.concatenate([bounds[:-1] for bounds in visits])
    hi = np.concatenate([bounds[1:] for bounds in visits])
    opens = np.zeros(lo.size, bool)
    opens[np.cumsum([0] + [len(bounds) - 1 for bounds in visits[:-1]])] = True

    # Pieces of at most max_num_tokens tokens; only a document's first piece opens it.
    n_pieces = -(-(hi - lo) // max_num_tokens)
    piece = np.arange(int(n_pieces.sum())) - np.repeat(np.cumsum(n_pieces) - n_pieces, n_pieces)
    lo = np.repeat(lo, n_pieces) + piece * max_num_tokens
    length = np.minimum(np.repeat(hi, n_pieces) - lo, max_num_tokens)
    opens = np.repeat(opens, n_pieces) & (piece == 0)

    # Greedy rows: a row starting at piece k takes pieces k..m-1 for the largest m that fits; the
    # [SEP] of the piece opening a row is not written, hence `opens[k]` of slack.
    cost = np.zeros(length.size + 1, np.int64)
    np.cumsum(length + opens, out=cost[1:])
    cost_list = cost.tolist()
    first = []
    k = 0
    while k < length.size:
        first.append(k)
        k = bisect.bisect_right(cost_list, cost_list[k] + int(opens[k]) + max_num_tokens, k + 1) - 1
    first = np.array(first, np.int64)

    separated = opens.copy()
    separated[first] = False
    row = np.repeat(np.arange(first.size), np.diff(np.r_[first, length.size]))
    written = length + separated
    before = np.cumsum(written) - written  # tokens and [SEP] of earlier pieces, all rows
    offsets = np.r_[before[first], before[-1] + written[-1]] + 2 * np.arange(first.size + 1)
    source = np.full(int(offsets[-1]), SEP, np.int64)  # row ends and document separators stay [SEP]
    source[offsets[:-1]] = CLS
    source[ranges(before + 2 * row + 1 + separated, length)] = ranges(lo, length)
    return Assembled(source=source, offsets=offsets, segment_b_start=np.diff(offsets),
                     labels=np.full(first.size, -1, np.int8))
