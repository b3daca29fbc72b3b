"""Task metrics against references: scipy for correlations, the two-class MCC formula and hand counts
for multi-class MCC, and hand-worked BIO sentences for conlleval's entity F1."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats

from pretrain_cli.tasks.metrics import confusion_matrix, entities, task_scores

TAGS = ("O", "B-loc", "B-per", "I-loc", "I-per")


def tag_ids(*sentences: str) -> list[list[int]]:
    return [[TAGS.index(t) for t in sentence.split()] for sentence in sentences]


def test_classification_scores_on_a_worked_example() -> None:
    gold, predicted = [0, 1, 1, 0, 1, 1], [0, 1, 0, 0, 1, 0]
    scores = task_scores("classification", ("neg", "pos"), gold, predicted)
    tp, tn, fp, fn = 2, 2, 0, 2
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert scores["macro_f1"] == pytest.approx((2 * tn / (2 * tn + fn + fp) + 2 / 3) / 2)
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert scores["mcc"] == pytest.approx(expected)


def test_multiclass_mcc_is_gorodkins_and_has_no_binary_f1() -> None:
    gold = [0, 0, 1, 1, 2, 2, 2]
    predicted = [0, 1, 1, 1, 2, 0, 2]
    scores = task_scores("classification", ("a", "b", "c"), gold, predicted)
    assert "f1" not in scores
    # R_K by hand: c = 5 correct of s = 7; true counts t = (2, 2, 3), predicted counts p = (2, 3, 2)
    c, s, t, p = 5, 7, (2, 2, 3), (2, 3, 2)
    numerator = c * s - sum(pk * tk for pk, tk in zip(p, t, strict=True))
    denominator = math.sqrt((s * s - sum(x * x for x in p)) * (s * s - sum(x * x for x in t)))
    assert scores["mcc"] == pytest.approx(numerator / denominator)
    assert confusion_matrix(gold, predicted, 3) == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]


def test_mcc_is_zero_for_a_constant_prediction_and_one_when_perfect() -> None:
    assert task_scores("classification", ("a", "b"), [0, 1, 1, 0], [1, 1, 1, 1])["mcc"] == 0.0
    perfect = task_scores("classification", ("a", "b", "c"), [0, 1, 2, 2], [0, 1, 2, 2])
    assert perfect == {"accuracy": 1.0, "macro_f1": 1.0, "mcc": 1.0}


def test_macro_f1_counts_a_never_predicted_label() -> None:
    collapsed = task_scores("classification", ("a", "b"), [0, 0, 0, 1], [0, 0, 0, 0])
    assert collapsed["accuracy"] == 0.75 and collapsed["f1"] == 0.0
    assert collapsed["macro_f1"] == pytest.approx((6 / 7 + 0) / 2)


def test_confusion_matrix_rows_are_gold() -> None:
    assert confusion_matrix([0, 0, 1], [1, 1, 1], 3) == [[0, 2, 0], [0, 1, 0], [0, 0, 0]]


def test_regression_matches_scipy_with_ties() -> None:
    rng = random.Random(0)
    gold = [round(rng.uniform(0, 5), 1) for _ in range(200)]  # STS-B-like scores, many ties
    predicted = [round(g + rng.gauss(0, 1.5)) for g in gold]  # whole numbers: ties on this side too
    scores = task_scores("regression", (), gold, predicted)
    assert scores["pearson"] == pytest.approx(stats.pearsonr(gold, predicted)[0])
    assert scores["spearman"] == pytest.approx(stats.spearmanr(gold, predicted)[0])
    squares = [(g - p) ** 2 for g, p in zip(gold, predicted, strict=True)]
    assert scores["mse"] == pytest.approx(sum(squares) / 200)


def test_a_constant_prediction_correlates_zero_not_nan() -> None:
    scores = task_scores("regression", (), [1.0, 2.0, 3.5], [2.5, 2.5, 2.5])
    assert scores["pearson"] == 0.0 and scores["spearman"] == 0.0
    assert scores["mse"] == pytest.approx((1.5 ** 2 + 0.5 ** 2 + 1.0 ** 2) / 3)


@pytest.mark.parametrize(("tags", "spans"), [
    ("B-loc I-loc O B-per", {(0, 2, "loc"), (3, 4, "per")}),  # the last entity ends at the sentence end
    ("O I-loc I-loc O", {(1, 3, "loc")}),  # I- without B- starts an entity
    ("B-loc B-loc I-loc", {(0, 1, "loc"), (1, 3, "loc")}),  # adjacent entities of the same type
    ("B-loc I-per I-per", {(0, 1, "loc"), (1, 3, "per")}),  # I- of another type starts a new one
    ("I-per", {(0, 1, "per")}),
    ("O O", set()),
])
def test_entities_read_bio_as_conlleval(tags: str, spans: set) -> None:
    assert entities(tags.split()) == spans


def test_entity_scores_on_hand_worked_sentences() -> None:
    gold = tag_ids("B-per I-per O B-loc", "O B-loc B-loc I-loc", "B-per O O")
    predicted = tag_ids("B-per I-per O B-loc",  # both right
                        "O B-loc I-loc I-loc",  # one loc of three words: neither gold loc matches
                        "I-per O B-loc")  # I- starts the per: right; plus a spurious loc
    scores = task_scores("tokens", TAGS, gold, predicted)
    # gold: per 2, loc 3; predicted: per 2, loc 3; correct: per 2, loc 1
    assert scores["entity_precision"] == pytest.approx(3 / 5)
    assert scores["entity_recall"] == pytest.approx(3 / 5)
    assert scores["entity_f1"] == pytest.approx(3 / 5)
    assert scores["f1_per"] == 1.0 and scores["f1_loc"] == pytest.approx(1 / 3)
    assert scores["token_accuracy"] == pytest.approx(8 / 11)  # I-per for B-per is a wrong tag, a right entity
    assert set(scores) == {"entity_f1", "entity_precision", "entity_recall", "token_accuracy", "f1_loc",
                           "f1_per"}


def test_entity_scores_when_nothing_is_predicted() -> None:
    scores = task_scores("tokens", TAGS, tag_ids("B-loc O"), tag_ids("O O"))
    assert scores["entity_f1"] == scores["entity_precision"] == scores["entity_recall"] == 0.0
    assert scores["token_accuracy"] == 0.5
    assert scores["f1_per"] == 0.0  # a type in neither gold nor predictions scores 0, not missing
