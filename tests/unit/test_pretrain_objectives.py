"""`ptk pretrain` on every kind of `ptk mask` output: SOP pairs, RoBERTa packing, dynamic masking."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pretrain_fixtures import build_pipeline_examples

from pretrain_cli.stages.evaluate import masked_lm_scores
from pretrain_cli.stages.pretrain import PretrainConfig, run
from pretrain_cli.store import read_manifest
from pretrain_cli.training.data import PairExamples

SMALL = {"max_steps": 4, "micro_batch_size": 8, "save_every": 4, "log_every": 2}


@pytest.fixture(scope="module")
def packed_dynamic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RoBERTa-style examples: packed full sentences, no sentence task, span masks drawn at load time."""
    return build_pipeline_examples(tmp_path_factory.mktemp("packed"), articles=80, objective="none",
                                   masking="span", dynamic=True)


def test_sop_examples_train_the_sentence_head(tmp_path: Path) -> None:
    examples = build_pipeline_examples(tmp_path / "sop", articles=80, objective="sop",
                                       masking="whole-word")
    assert read_manifest(examples, "mask").extra["objective"] == "mlm+sop"
    run(PretrainConfig(examples=examples, out=tmp_path / "ckpt", **SMALL))
    records = [json.loads(line) for line in (tmp_path / "ckpt" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["nsp_loss"] > 0 and np.isfinite(r["loss"]) for r in records)
    scores = masked_lm_scores(tmp_path / "ckpt" / "final", read_manifest(examples, "mask"), 32)
    assert scores["sentence_task"] == "SOP" and 0 <= scores["nsp_accuracy"] <= 1


def test_packed_examples_train_mlm_only(packed_dynamic: Path, tmp_path: Path) -> None:
    run(PretrainConfig(examples=packed_dynamic, out=tmp_path / "ckpt", **SMALL))
    records = [json.loads(line) for line in (tmp_path / "ckpt" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["nsp_loss"] == 0 and r["mlm_loss"] > 0 for r in records)
    scores = masked_lm_scores(tmp_path / "ckpt" / "final", read_manifest(packed_dynamic, "mask"), 32)
    assert "nsp_accuracy" not in scores and scores["masked_tokens"] > 0  # the valid split is masked


def test_dynamic_masks_change_by_epoch_not_by_batch(packed_dynamic: Path) -> None:
    manifest = read_manifest(packed_dynamic, "mask")
    examples = PairExamples.from_manifest(manifest, "train", manifest.extra["vocab_size"], seed=3)
    rows = np.arange(6)
    first = examples.collate(rows, pad_id=0, epochs=np.zeros(6, np.int64))
    assert first.masked > 0 and first.nsp_labels.numel() == 0
    # Example 4 alone, or inside another batch, gets the same masks in the same epoch ...
    alone = examples.collate(np.array([4]), pad_id=0, epochs=np.zeros(1, np.int64))
    width = int(alone.attention_mask.sum())
    assert first.input_ids[4, :width].equal(alone.input_ids[0, :width])
    # ... and other masks in the next epoch, or under another training seed.
    later = examples.collate(rows, pad_id=0, epochs=np.ones(6, np.int64))
    other = PairExamples.from_manifest(manifest, "train", manifest.extra["vocab_size"], seed=4)
    assert not first.input_ids.equal(later.input_ids)
    assert not first.input_ids.equal(other.collate(rows, pad_id=0, epochs=np.zeros(6, np.int64)).input_ids)
    # The held-out split is masked once, by `ptk mask`, so every evaluation scores the same positions.
    valid = PairExamples.from_manifest(manifest, "valid", manifest.extra["vocab_size"], seed=3)
    assert valid.dynamic is None
