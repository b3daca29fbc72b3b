"""Dev-set scores for every task kind, in plain Python and numpy (no sklearn or seqeval).

    >>> task_scores("classification", ("neg", "pos"), [0, 1, 1, 0], [0, 1, 0, 0])
    {'accuracy': 0.75, 'macro_f1': 0.733..., 'mcc': 0.577..., 'f1': 0.666...}
    >>> task_scores("regression", (), [0.5, 2.0, 4.5], [1.0, 2.5, 4.0])
    {'pearson': 0.98..., 'spearman': 1.0, 'mse': 0.25}
    >>> task_scores("tokens", ("O", "B-loc", "I-loc"), [[1, 2, 0]], [[1, 2, 0]])
    {'entity_f1': 1.0, 'entity_precision': 1.0, 'entity_recall': 1.0, 'token_accuracy': 1.0, 'f1_loc': 1.0}

Macro F1 averages every label's F1, including a label the model never predicts (F1 0), so a model
that collapses onto the majority class scores low even where accuracy looks fine (CoLA, MRPC, QQP);
MCC says the same in one number that is 0 for any constant prediction.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pretrain_cli.tasks.data import TaskKind


def task_scores(task_kind: TaskKind, labels: tuple[str, ...], gold: list[Any],
                predicted: list[Any]) -> dict[str, float]:
    """Every metric of the kind; `gold`/`predicted` are class indices, scores, or per-word tag-index lists."""
    assert gold and len(gold) == len(predicted), "scores need as many predictions as gold labels"
    if task_kind == "classification":
        return classification_scores(gold, predicted, len(labels))
    if task_kind == "regression":
        return regression_scores(gold, predicted)
    return entity_scores(labels, gold, predicted)


def confusion_matrix(gold: list[int], predicted: list[int], num_labels: int) -> list[list[int]]:
    """Counts indexed [gold][predicted]."""
    counts = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(counts, (np.asarray(gold, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return counts.tolist()


def classification_scores(gold: list[int], predicted: list[int], num_labels: int) -> dict[str, float]:
    counts = np.asarray(confusion_matrix(gold, predicted, num_labels), dtype=np.float64)
    tp = np.diag(counts)
    fp = counts.sum(axis=0) - tp
    fn = counts.sum(axis=1) - tp
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    scores = {"accuracy": float(tp.sum() / counts.sum()), "macro_f1": float(f1.mean()), "mcc": mcc(counts)}
    if num_labels == 2:
        scores["f1"] = float(f1[1])  # of the positive class, as GLUE reports for MRPC and QQP
    return scores


def mcc(counts: np.ndarray) -> float:
    """Matthews correlation for K classes (Gorodkin's R_K; for 2 classes the usual MCC), from the
    confusion matrix; 0.0 when every gold or every predicted label is the same (undefined there)."""
    total = counts.sum()
    correct = np.trace(counts)
    true_counts, predicted_counts = counts.sum(axis=1), counts.sum(axis=0)
    covariance = correct * total - predicted_counts @ true_counts
    variance = (total ** 2 - predicted_counts @ predicted_counts) * (total ** 2 - true_counts @ true_counts)
    return float(covariance / math.sqrt(variance)) if variance > 0 else 0.0


def regression_scores(gold: list[float], predicted: list[float]) -> dict[str, float]:
    x, y = np.asarray(gold, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    return {"pearson": pearson(x, y), "spearman": pearson(ranks(x), ranks(y)),
            "mse": float(np.mean((x - y) ** 2))}


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r. A constant side has no correlation to speak of: scipy says NaN, we say 0.0, so a
    collapsed model scores the worst rather than poisoning the mean over seeds and the best-checkpoint
    comparison (NaN compares false with everything)."""
    dx, dy = x - x.mean(), y - y.mean()
    norm = math.sqrt(float(dx @ dx) * float(dy @ dy))
    return float(dx @ dy / norm) if norm > 0 else 0.0


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the average of the ranks they span (Spearman's convention)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    # each run of equal values [start, end) gets the rank (start + 1 + end) / 2
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    out = np.empty(len(values), dtype=np.float64)
    out[order] = np.repeat((starts + 1 + ends) / 2, ends - starts)
    return out


def entities(tags: list[str]) -> set[tuple[int, int, str]]:
    """The (start, end, type) spans of one sentence's BIO tags, with conlleval's reading: B- always
    starts an entity, and so does an I- after O or after an entity of another type."""
    spans = set()
    start, kind = None, None
    for i, tag in enumerate([*tags, "O"]):  # the trailing O closes an entity at the sentence end
        prefix, _, tag_type = tag.partition("-")
        continues = prefix == "I" and kind == tag_type
        if start is not None and not continues:
            spans.add((start, i, kind))
            start, kind = None, None
        if prefix in ("B", "I") and not continues:
            start, kind = i, tag_type
    return spans


def entity_scores(labels: tuple[str, ...], gold: list[list[int]],
                  predicted: list[list[int]]) -> dict[str, float]:
    """Exact-match entity precision/recall/F1 over all sentences, F1 per entity type, and the share
    of words tagged right (conlleval's "accuracy", O included)."""
    types = sorted({tag[2:] for tag in labels if tag != "O"})
    found = {t: [0, 0, 0] for t in types}  # type → [gold, predicted, correct]
    words = right = 0
    for gold_ids, predicted_ids in zip(gold, predicted, strict=True):
        words += len(gold_ids)
        right += sum(g == p for g, p in zip(gold_ids, predicted_ids, strict=True))
        gold_spans = entities([labels[i] for i in gold_ids])
        predicted_spans = entities([labels[i] for i in predicted_ids])
        for spans, column in ((gold_spans, 0), (predicted_spans, 1), (gold_spans & predicted_spans, 2)):
            for _, _, kind in spans:
                found[kind][column] += 1
    totals = [sum(counts[c] for counts in found.values()) for c in range(3)]
    precision, recall, f1 = prf(*totals)
    scores = {"entity_f1": f1, "entity_precision": precision, "entity_recall": recall,
              "token_accuracy": right / words if words else 0.0}
    scores.update({f"f1_{t}": prf(*found[t])[2] for t in types})
    return scores


def prf(gold: int, predicted: int, correct: int) -> tuple[float, float, float]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
