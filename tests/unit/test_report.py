"""Pieces of `ptk evaluate` that the CLI tests cannot pin down exactly: the seed band of a learning
curve where a seed stopped early, and per-entity-type scores where spans of two types touch."""

from __future__ import annotations

from pathlib import Path

import pytest

from pretrain_cli.stages.evaluate import entity_type_scores
from pretrain_cli.stages.report import seed_band
from pretrain_cli.tasks.metrics import task_scores


def test_seed_band_keeps_the_seeds_still_running() -> None:
    curves = {"1": [{"step": 10, "dev_accuracy": 0.5}, {"step": 20, "dev_accuracy": 0.7},
                    {"step": 30, "dev_accuracy": 0.8}],
              "2": [{"step": 10, "dev_accuracy": 0.7}, {"step": 20, "dev_accuracy": 0.6}]}  # stopped early
    steps, mean, low, high = seed_band(curves, "dev_accuracy", 100.0)
    assert steps == [10, 20, 30]
    assert mean == pytest.approx([60.0, 65.0, 80.0])
    assert (low, high) == (pytest.approx([50.0, 60.0, 80.0]), pytest.approx([70.0, 70.0, 80.0]))


def test_entity_type_scores_where_spans_of_two_types_touch() -> None:
    labels = ("O", "B-loc", "I-loc", "B-per", "I-per")
    # gold: loc (0, 2) then per (2, 3); predicted: loc (0, 1), per (1, 2) and per (2, 3), as conlleval
    # reads an I-per after a loc entity
    rows = [{"label": ["B-loc", "I-loc", "B-per", "O"], "prediction": ["B-loc", "I-per", "B-per", "O"]}]
    table = {t["type"]: t for t in entity_type_scores(Path("ft"), labels, {"1": rows, "2": rows})}
    assert list(table) == ["loc", "per"]
    assert {k: table["loc"][k]["mean"] for k in ("precision", "recall", "f1")} == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert table["per"]["precision"]["mean"] == 0.5 and table["per"]["recall"]["mean"] == 1.0
    whole = task_scores("tokens", labels, [[1, 2, 3, 0]], [[1, 4, 3, 0]])
    assert table["per"]["f1"] == {"mean": pytest.approx(whole["f1_per"]), "std": 0.0}
    assert table["loc"]["f1"]["mean"] == whole["f1_loc"]
