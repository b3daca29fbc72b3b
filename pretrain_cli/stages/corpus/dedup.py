"""Exact and near-duplicate detection that stays small: 64-bit keys in flat numpy tables.

    >>> seen = KeySet()
    >>> seen.add(np.array([text_key("a"), text_key("b"), text_key("a")]))
    array([False, False,  True])
    >>> hasher = MinHasher.for_threshold(0.8)
    >>> keys = hasher.band_keys("the same sentence, told twice over, is a near duplicate of itself")

Documents, paragraphs and MinHash bands are all reduced to 64-bit keys; a `KeySet` holds them in an
open-addressing table of uint64 at most half full, so a unique key costs 16 bytes (a Python set of
ints costs about 70), and nothing else is kept per document. Near duplicates follow the usual LSH
recipe (Broder's MinHash; Leskovec et al., Mining of Massive Datasets, ch. 3): word 5-gram shingles,
128 hash permutations cut into `bands` × `rows`, and a document is a near duplicate when any band
equals a band of an earlier document. `for_threshold` picks the bands and rows that minimise the
false positive plus false negative probability mass around the Jaccard threshold, as datasketch does.
"""

from __future__ import annotations

import functools
import hashlib
import re

import numpy as np

NUM_PERM = 128
SHINGLE_WORDS = 5
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def text_key(text: str) -> int:
    """A stable 64-bit key of a string (never 0: 0 marks an empty slot)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") or 1


class KeySet:
    """A growable set of non-zero uint64 keys; `add` reports which keys were already present."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._table = np.zeros(capacity, dtype=np.uint64)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        return self._table.nbytes

    def __contains__(self, key: int) -> bool:
        table, mask = self._table, len(self._table) - 1
        slot = (key * 0x9E3779B97F4A7C15 >> 40) & mask
        while (current := int(table[slot])) != 0:
            if current == key:
                return True
            slot = (slot + 1) & mask
        return False

    def add(self, keys: np.ndarray) -> np.ndarray:
        """Insert `keys`; True where a key was present before, or earlier in `keys` itself."""
        keys = np.asarray(keys, dtype=np.uint64)
        if 2 * (self._size + len(keys)) > len(self._table):
            self._grow(2 * (self._size + len(keys)))
        seen = np.zeros(len(keys), dtype=bool)
        for i, key in enumerate(keys.tolist()):  # batches are a document's few keys: a loop is fine
            seen[i] = self._insert(key)
        return seen

    def _insert(self, key: int) -> bool:
        table, mask = self._table, len(self._table) - 1
        slot = (key * 0x9E3779B97F4A7C15 >> 40) & mask  # Fibonacci hashing spreads clustered keys
        while True:
            current = int(table[slot])
            if current == key:
                return True
            if current == 0:
                table[slot] = key
                self._size += 1
                return False
            slot = (slot + 1) & mask

    def _grow(self, at_least: int) -> None:
        old = self._table[self._table != 0]
        capacity = len(self._table)
        while capacity < at_least:
            capacity *= 2
        self._table = np.zeros(capacity, dtype=np.uint64)
        self._size = 0
        for key in old.tolist():
            self._insert(key)


class Deduplicator:
    """The corpus-wide memory of what was kept: whole documents, paragraphs, MinHash bands.

    Only kept documents are remembered, so a document is dropped as a near duplicate of a document
    that is in the output, never because of a chain through documents that were dropped.
    """

    def __init__(self, documents: bool, paragraphs: bool, near: bool) -> None:
        self.documents = KeySet() if documents else None
        self.paragraphs = KeySet() if paragraphs else None
        self.bands = KeySet() if near else None

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in (self.documents, self.paragraphs, self.bands) if s is not None)

    def check(self, key: int, band_keys: np.ndarray | None) -> str | None:
        """The drop reason of a document ("duplicate", "near_duplicate"), or None."""
        if self.documents is not None and key in self.documents:
            return "duplicate"
        if self.bands is not None and band_keys is not None and any(int(k) in self.bands for k in band_keys):
            return "near_duplicate"
        return None

    def new_paragraphs(self, paragraph_keys: list[int]) -> list[bool]:
        """Which paragraphs were never kept before (the first of two equal paragraphs in a document
        counts as new, the second does not); without paragraph dedup, all of them."""
        if self.paragraphs is None:
            return [True] * len(paragraph_keys)
        new, earlier = [], set()
        for key in paragraph_keys:
            new.append(key not in earlier and key not in self.paragraphs)
            earlier.add(key)
        return new

    def remember(self, key: int, band_keys: np.ndarray | None, paragraph_keys: list[int]) -> None:
        """Record a kept document."""
        if self.documents is not None:
            self.documents.add(np.array([key], dtype=np.uint64))
        if self.bands is not None and band_keys is not None:
            self.bands.add(band_keys)
        if self.paragraphs is not None:
            self.paragraphs.add(np.array(paragraph_keys, dtype=np.uint64))


class MinHasher:
    """MinHash band keys of a text: equal keys in any band mark a likely near duplicate.

    The signature is one-permutation MinHash (Li, Owen & Zhang 2012) with densification by random
    probing (Shrivastava 2017): each shingle is hashed once and falls into one of 128 bins, each bin
    keeps its minimum. Its Jaccard estimate matches 128-permutation MinHash at 1/128 of the hashing,
    which is what lets near-dedup keep pace with cleaning.
    """

    def __init__(self, bands: int, rows: int, seed: int = 1) -> None:
        assert bands * rows <= NUM_PERM
        self.bands, self.rows = bands, rows
        self._salt = np.uint64(seed * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF)
        # Where each empty bin looks for a filled one: a fixed random sequence of bins per bin.
        self._probes = np.random.default_rng(seed).integers(0, NUM_PERM, size=(NUM_PERM, _PROBES))
        self._band_salt = np.arange(1, bands + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)

    @classmethod
    def for_threshold(cls, threshold: float, seed: int = 1) -> MinHasher:
        return cls(*lsh_params(threshold), seed=seed)

    def signature(self, text: str) -> np.ndarray | None:
        """128 bin minima (uint64), or None when the text has no words."""
        shingles = shingle_hashes(text)
        if len(shingles) == 0:
            return None
        hashed = _mix(shingles ^ self._salt)
        signature = np.full(NUM_PERM, _EMPTY, dtype=np.uint64)
        np.minimum.at(signature, (hashed >> np.uint64(57)).astype(np.intp), hashed & _LOW57)
        empty = signature == _EMPTY
        if empty.any():
            # A short text leaves bins empty. Each empty bin copies the first filled bin of its own
            # random probe sequence, so that two texts with the same shingles fill their empty bins
            # alike while different empty bins copy different filled ones. Copying the next bin to
            # the right instead (rotation) makes runs of equal bins, and two short texts sharing a
            # single shingle then collide in a whole band.
            holes = np.flatnonzero(empty)
            hits = ~empty[self._probes[holes]]
            first = hits.argmax(axis=1)
            found = hits[np.arange(len(holes)), first]
            signature[holes[found]] = signature[self._probes[holes[found], first[found]]]
            if not found.all():  # almost every bin empty: fall back to the nearest filled bin
                filled = np.flatnonzero(~empty)
                rest = holes[~found]
                nearest = filled[np.searchsorted(filled, rest) % len(filled)]
                signature[rest] = signature[nearest] + ((nearest - rest) % NUM_PERM).astype(np.uint64) * _STEP
        return signature

    def band_keys(self, text: str) -> np.ndarray:
        """`bands` uint64 keys; an empty array when the text has no words."""
        signature = self.signature(text)
        if signature is None:
            return np.zeros(0, dtype=np.uint64)
        rows = signature[:self.bands * self.rows].reshape(self.bands, self.rows)
        # Fold each band's rows into one key (polynomial hash, wrapping mod 2^64), salted per band.
        keys = np.zeros(self.bands, dtype=np.uint64)
        for column in rows.T:
            keys = keys * np.uint64(1_000_003) + column
        keys = _mix(keys ^ self._band_salt)
        keys[keys == 0] = 1
        return keys


_EMPTY = np.uint64(2**64 - 1)
_LOW57 = np.uint64(2**57 - 1)
_STEP = np.uint64(0x9E3779B97F4A7C15)
_PROBES = 64
_WORD_BYTE = np.zeros(256, dtype=bool)
_WORD_BYTE[[*b"0123456789abcdefghijklmnopqrstuvwxyz_", *range(0x80, 256)]] = True
_PRIME = 0x100000001B3
_KEEP_POWERS = 1 << 22
_powers = np.ones(1, dtype=np.uint64)
_inverse_powers = np.ones(1, dtype=np.uint64)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit affects every output bit."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _power_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P^i and P^-i (mod 2^64) for i < n; kept for the next text up to 4 M bytes, so that one
    book-length document does not hold 16 bytes per byte for the rest of the run."""
    global _powers, _inverse_powers
    if len(_powers) >= n:
        return _powers, _inverse_powers
    size = max(n, 2 * len(_powers))
    one = np.ones(1, dtype=np.uint64)  # tables start at P^0; products wrap mod 2^64 on purpose
    powers = np.concatenate((one, np.cumprod(np.full(size - 1, _PRIME, dtype=np.uint64))))
    inverse = np.concatenate((one, np.cumprod(np.full(size - 1, pow(_PRIME, -1, 2**64), dtype=np.uint64))))
    if size <= _KEEP_POWERS:
        _powers, _inverse_powers = powers, inverse
    return powers, inverse


def shingle_hashes(text: str) -> np.ndarray:
    """64-bit hashes of the word 5-grams of `text`, lower-cased. Words are runs of ASCII letters,
    digits and any non-ASCII character (hashed from the UTF-8 bytes in numpy, no Python loop);
    CJK characters count as words, since Chinese and Japanese do not separate words by spaces."""
    lowered = text.lower()
    if _CJK.search(lowered):
        lowered = _CJK.sub(r" \g<0> ", lowered)
    data = np.frombuffer(lowered.encode(), dtype=np.uint8)
    edges = np.flatnonzero(np.diff(np.concatenate(([False], _WORD_BYTE[data], [False])).view(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    if len(starts) == 0:
        return np.zeros(0, dtype=np.uint64)
    powers, inverse = _power_tables(len(data))
    # Σ byte·P^j over a word, shifted to start at P^0: a hash of the word alone, wherever it is.
    prefix = np.concatenate((np.zeros(1, dtype=np.uint64), np.cumsum(data * powers[:len(data)])))
    words = (prefix[ends] - prefix[starts]) * inverse[starts]
    n = min(SHINGLE_WORDS, len(words))
    combined = np.zeros(len(words) - n + 1, dtype=np.uint64)
    for offset in range(n):
        combined = combined * np.uint64(_PRIME) + words[offset:len(words) - n + 1 + offset]
    return combined


@functools.lru_cache
def lsh_params(threshold: float, num_perm: int = NUM_PERM) -> tuple[int, int]:
    """The (bands, rows) with bands·rows ≤ num_perm that minimise the probability of a false
    positive (similarity below `threshold` colliding) plus a false negative (above it not colliding)."""
    grid = np.linspace(0.0, 1.0, 1001)
    best, best_error = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            collide = 1.0 - (1.0 - grid**rows) ** bands
            below, above = grid <= threshold, grid >= threshold
            # Riemann sums of the two error areas (grid step 0.001)
            error = (collide[below].sum() + (1.0 - collide[above]).sum()) / (len(grid) - 1)
            if error < best_error:
                best, best_error = (bands, rows), error
    return best
