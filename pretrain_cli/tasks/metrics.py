"""Classification scores: accuracy and macro F1 over the task's labels.

    >>> scores([0, 1, 1, 0], [0, 1, 0, 0], num_labels=2)
    {'accuracy': 0.75, 'macro_f1': 0.7333333333333334}

Macro F1 averages every label's F1, including a label the model never predicts (F1 0), so a model
that collapses onto the majority class scores low even where accuracy looks fine (CoLA, MRPC, QQP).
"""

from __future__ import annotations

from collections import Counter


def scores(gold: list[int], predicted: list[int], num_labels: int) -> dict[str, float]:
    assert gold, "scores need at least one example"
    pairs = Counter(zip(gold, predicted, strict=True))  # (gold, predicted) → count: the confusion matrix
    f1s = []
    for label in range(num_labels):
        tp = pairs[label, label]
        fp = sum(n for (g, p), n in pairs.items() if p == label and g != label)
        fn = sum(n for (g, p), n in pairs.items() if g == label and p != label)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    correct = sum(pairs[label, label] for label in range(num_labels))
    return {"accuracy": correct / len(gold), "macro_f1": sum(f1s) / num_labels}
