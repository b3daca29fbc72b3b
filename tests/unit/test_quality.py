"""Offline language identification and the Gopher/C4-style quality filters, one filter at a time."""

from __future__ import annotations

import json
import re

import pytest

from pretrain_cli.samples import sample_path
from pretrain_cli.stages.corpus.quality import QualityThresholds, count_words, language_of, quality_problem


def chinese_lines(n: int) -> list[str]:
    lines = sample_path("zh_news").read_text(encoding="utf-8").splitlines()
    clean = [re.sub(r"/[a-zA-Z]+\s*", "", line).replace(" ", "") for line in lines]
    return [line for line in clean if len(line) > 40][:n]


def test_language_of_real_english_and_chinese() -> None:
    summaries = json.loads(sample_path("wiki_summaries").read_text(encoding="utf-8"))
    english = [entry["extract"] for entry in list(summaries.values())[:50]]
    assert sum(language_of(text)[0] == "en" for text in english) >= 49
    assert all(language_of(text)[0] == "zh" for text in chinese_lines(20))
    code, score = language_of(english[0])
    assert code == "en" and 0.9 < score <= 1.0


def test_words_are_counted_per_character_in_chinese() -> None:
    assert count_words("two words") == 2
    assert count_words("中华人民共和国") == 7
    assert count_words("GDP 增长") == 1 + 2


PROSE = ("The river rises in the hills above the town and runs south through farmland to the sea. "
         "Its valley was settled early, and the old mill still stands by the bridge. ") * 4


@pytest.mark.parametrize(("paragraphs", "limits", "reason"), [
    ([PROSE], QualityThresholds(languages=frozenset({"de"})), "language"),
    ([PROSE], QualityThresholds(min_language_score=1.01), "language_score"),
    (["Too short to be a document."], QualityThresholds(min_words=30), "too_few_words"),
    ([PROSE], QualityThresholds(max_words=20), "too_many_words"),
    (["a b c d e f g h i j k l m n o p"], QualityThresholds(min_mean_word_length=3), "mean_word_length"),
    (["Pneumonoultramicroscopicsilicovolcanoconiosis " * 5],
     QualityThresholds(max_mean_word_length=10), "mean_word_length"),
    ([PROSE + " " + " #tag" * 20],
     QualityThresholds(max_symbol_ratio=0.1), "symbol_ratio"),
    (["Buy now!", "Buy now!", "Buy now!", PROSE], QualityThresholds(max_repeated_lines=0.3),
     "repeated_lines"),
])
def test_each_filter_names_its_reason(paragraphs: list[str], limits: QualityThresholds, reason: str) -> None:
    lang, score = language_of("\n".join(paragraphs))
    assert quality_problem(paragraphs, lang, score, limits) == reason


def test_real_prose_passes_the_default_thresholds() -> None:
    from pretrain_cli.stages.corpus.build import CorpusConfig

    defaults = CorpusConfig(inputs=[], out=sample_path("zh_news"))
    limits = QualityThresholds(
        min_words=defaults.min_words, max_words=defaults.max_words,
        min_mean_word_length=defaults.min_mean_word_length,
        max_mean_word_length=defaults.max_mean_word_length,
        max_symbol_ratio=defaults.max_symbol_ratio, max_repeated_lines=defaults.max_repeated_lines)
    summaries = json.loads(sample_path("wiki_summaries").read_text(encoding="utf-8"))
    english = [entry["extract"].split("\n") for entry in list(summaries.values())[:300]]
    long_enough = [p for p in english if count_words(" ".join(p)) >= defaults.min_words]
    passed = [p for p in long_enough if quality_problem(p, *language_of(" ".join(p)), limits) is None]
    assert len(passed) >= 0.98 * len(long_enough)
    chinese = ["".join(chinese_lines(10))]
    assert quality_problem(chinese, *language_of(chinese[0]), limits) is None  # no word-length filter
