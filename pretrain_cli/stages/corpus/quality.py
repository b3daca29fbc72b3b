"""Offline language identification and document quality filters in the spirit of Gopher and C4.

    >>> language_of("Paris is the capital and largest city of France.")
    ('en', 0.95)
    >>> quality_problem(["word " * 10], "en", 0.99, QualityThresholds(min_words=50))
    'too_few_words'

Languages come from py3langid (langid.py's 97-language model, shipped inside the package: no
download). The filters follow Rae et al. 2021 (Gopher, appendix A) and Raffel et al. 2020 (C4);
each threshold is a flag, and 0 turns a filter off. A document fails on the first filter it breaks,
and the name of that filter is the drop reason counted in the manifest.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass

# A language is decided from the start of a document: a paragraph or two of prose is enough for a
# confident call, and the cost grows with the sample.
LANGUAGE_SAMPLE_CHARS = 1000
# Scripts written without spaces between words: their "words" are counted as characters and the
# mean-word-length filter does not apply.
_UNSPACED = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SYMBOLS = re.compile(r"#|\.\.\.|…")


@dataclass(frozen=True)
class QualityThresholds:
    """Drop thresholds; 0 disables a filter (`languages` empty keeps every language)."""

    languages: frozenset[str] = frozenset()
    min_language_score: float = 0.0
    min_words: int = 0
    max_words: int = 0
    min_mean_word_length: float = 0.0
    max_mean_word_length: float = 0.0
    max_symbol_ratio: float = 0.0
    max_repeated_lines: float = 0.0


@functools.cache
def _identifier():  # noqa: ANN202 - py3langid has no type stubs
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def language_of(text: str) -> tuple[str, float]:
    """The ISO 639-1 code of the text's language and the model's probability for it."""
    code, probability = _identifier().classify(text[:LANGUAGE_SAMPLE_CHARS])
    return code, round(float(probability), 4)


def count_words(text: str) -> int:
    """Space-separated words, plus one per Chinese, Japanese or Thai character."""
    words, unspaced = _words(text)
    return len(words) + unspaced


def _words(text: str) -> tuple[list[str], int]:
    """The space-separated words of the text outside unspaced scripts, and how many characters
    of unspaced script (each counted as a word) it holds."""
    unspaced = len(_UNSPACED.findall(text))
    return (_UNSPACED.sub(" ", text) if unspaced else text).split(), unspaced


def quality_problem(paragraphs: list[str], lang: str, score: float, limits: QualityThresholds) -> str | None:
    """The first filter the document breaks (its drop reason), or None when it passes them all."""
    if limits.languages and lang not in limits.languages:
        return "language"
    if limits.min_language_score and score < limits.min_language_score:
        return "language_score"
    text = "\n".join(paragraphs)
    words, unspaced = _words(text)
    n_words = len(words) + unspaced
    if limits.min_words and n_words < limits.min_words:
        return "too_few_words"
    if limits.max_words and n_words > limits.max_words:
        return "too_many_words"
    # Word length means little in Chinese or Japanese; apply it where most of the text is spaced.
    if words and unspaced < len(text) // 4:
        mean = sum(map(len, words)) / len(words)
        if limits.min_mean_word_length and mean < limits.min_mean_word_length:
            return "mean_word_length"
        if limits.max_mean_word_length and mean > limits.max_mean_word_length:
            return "mean_word_length"
    symbols = len(_SYMBOLS.findall(text)) if limits.max_symbol_ratio else 0
    if n_words and symbols / n_words > limits.max_symbol_ratio > 0:
        return "symbol_ratio"
    if limits.max_repeated_lines and len(paragraphs) > 1:
        counts = Counter(paragraphs)
        repeated = sum(count - 1 for count in counts.values())  # the first of each stays, as in Gopher
        if repeated / len(paragraphs) > limits.max_repeated_lines:
            return "repeated_lines"
    return None
