"""`ptk evaluate --embeddings` through the CLI: tiny BERTs (two seeds of one `ptk pretrain` config and a
plain HF directory) scored on small slices of the real probe tasks and a synthetic STS file; reruns,
changed models and every bad input."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import assert_clean_failure, build_tiny_bert
from typer.testing import CliRunner

from pretrain_cli.cli.app import app
from pretrain_cli.config import StageConfig, option
from pretrain_cli.store import StageOutput

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

STS = [("A man is playing a guitar.", "A man plays the guitar.", 4.8),
       ("A woman is slicing an onion.", "A woman is cutting an onion.", 4.2),
       ("A dog runs on the grass.", "A man is playing a flute.", 0.2),
       ("The cat sleeps on the sofa.", "A cat is sleeping on a couch.", 4.6),
       ("Two men are fighting.", "A child eats an apple.", 0.0),
       ("A plane is taking off.", "An airplane is taking off.", 5.0),
       ("A girl is singing.", "A boy is riding a bike.", 1.1)]


@dataclasses.dataclass(kw_only=True)
class FakePretrain(StageConfig):
    """Stands in for the pretrain stage's config: every field but `out` hashed, as there."""

    stage: ClassVar[str] = "pretrain"
    out: Path = option(help="Output directory.", hashed=False)
    seed: int = option(0, "Seed of the initial weights.")


def write_pretrain_run(out: Path, model: Path, seed: int) -> Path:
    """CKPT/final/ = `model` with its weights re-drawn from `seed`, and a pretrain manifest."""
    import torch
    from transformers import BertConfig, BertForPreTraining

    stage = StageOutput(FakePretrain(out=out, seed=seed), out, owned=("final",))
    assert stage.up_to_date() is None
    shutil.copytree(model, out / "final")
    torch.manual_seed(seed)
    BertForPreTraining(BertConfig.from_pretrained(model)).save_pretrained(out / "final")
    stage.finish(extra={"final": "final", "global_batch": 32})
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("encoders")
    model = build_tiny_bert(root / "tiny")
    sts = root / "sts.csv"
    sts.write_text("sentence1,sentence2,score\n" + "".join(f"{a},{b},{s}\n" for a, b, s in STS))
    return {"tiny": model, "s1": write_pretrain_run(root / "s1" / "ckpt", model, 1),
            "s2": write_pretrain_run(root / "s2" / "ckpt", model, 2), "sts": sts, "root": root}


def embeddings(*args: object) -> object:
    return runner.invoke(app, ["evaluate", "--embeddings", *map(str, args)])


def test_report_groups_seeds_and_reruns_up_to_date(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = (models["s1"], models["s2"] / "final", models["tiny"], "--sts", models["sts"], "--limit", 30,
            "--out", out)
    result = embeddings(*args)
    assert result.exit_code == 0, result.output
    section = json.loads((out / "report.json").read_text())["embeddings"]
    names = ["s1/ckpt", "s2/ckpt", f"{models['root'].name}/tiny"]  # one depth makes every name unique
    assert [r["name"] for r in section["runs"]] == names
    columns = ["probe_accuracy/rotten_tomatoes", "knn_accuracy/rotten_tomatoes", "probe_accuracy/wiki_topics",
               "knn_accuracy/wiki_topics", "alignment", "uniformity", "sts_spearman/sts.csv",
               "sts_alignment/sts.csv"]
    assert section["columns"] == columns
    for record in section["runs"]:
        assert set(record) >= {"name", "path", "model", "pooling", "dims", "max_seq_length", "metrics"}
        assert (record["pooling"], record["dims"], record["max_seq_length"]) == ("mean", 32, 128)
        assert set(record["metrics"]) == set(columns)
        assert all(0 <= record["metrics"][c] <= 1 for c in columns if "accuracy" in c)
        assert 0 <= record["metrics"]["alignment"] <= 4 and record["metrics"]["uniformity"] <= 0
    assert [t["train_examples"] for t in section["probe_tasks"]] == [30, 30]
    assert section["sts"] == [{"name": "sts.csv", "file": str(models["sts"]), "pairs": 7,
                               "positive_pairs": 4}]  # scores ≥ 4.0 of 0.0–5.0
    # the two seeds of one config form a group; the plain directory stands alone
    [group] = section["groups"]
    assert (group["runs"], group["seeds"]) == (names[:2], [1, 2])
    values = [r["metrics"]["uniformity"] for r in section["runs"][:2]]
    assert group["metrics"]["uniformity"]["mean"] == pytest.approx(sum(values) / 2)
    assert group["metrics"]["uniformity"]["std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
    table = (out / "report.md").read_text()
    assert "| s1/ckpt, s2/ckpt: mean ± std |" in table and "| STS sts.csv |" in table
    assert f"| {names[2]} | mean | 32 |" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert {s["file"] for s in manifest["shards"]} == {"report.json", "report.md"}

    rerun = embeddings(*args)
    assert rerun.exit_code == 0 and "up to date" in rerun.output
    assert f"| {names[2]} | mean | 32 |" in rerun.stdout  # the table is the command's output either way
    # a retrained model is another input: the report is no longer up to date
    shutil.copy(models["s1"] / "final" / "model.safetensors", tmp_path / "saved.safetensors")
    (models["s1"] / "final" / "model.safetensors").write_bytes(
        (models["s2"] / "final" / "model.safetensors").read_bytes())
    try:
        changed = embeddings(*args)
        assert changed.exit_code == 2 and "--force" in changed.output
    finally:
        shutil.copy(tmp_path / "saved.safetensors", models["s1"] / "final" / "model.safetensors")


def test_pooling_option_and_one_probe_task(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cls"
    result = embeddings(models["tiny"], "--pooling", "cls", "--probe-tasks", "rotten_tomatoes", "--limit", 20,
                        "--out", out)
    assert result.exit_code == 0, result.output
    section = json.loads((out / "report.json").read_text())["embeddings"]
    assert section["runs"][0]["pooling"] == "cls" and section["groups"] == []
    assert section["columns"] == ["probe_accuracy/rotten_tomatoes", "knn_accuracy/rotten_tomatoes",
                                  "alignment", "uniformity"]


def test_bad_inputs_write_nothing(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text('{"model_type": "gpt2"}')
    empty = tmp_path / "empty"
    empty.mkdir()
    no_score = tmp_path / "no_score.tsv"
    no_score.write_text("sentence1\tsentence2\nA man sings.\tA man is singing.\n")
    word_score = tmp_path / "word.jsonl"
    word_score.write_text('{"sentence1": "a", "sentence2": "b", "score": 1}\n'
                          '{"sentence1": "c", "sentence2": "d", "score": "high"}\n')
    tiny = models["tiny"]
    cases = [
        ((gpt, "--out", out), ("gpt2", "BERT")),
        ((empty, "--out", out), ("no config.json",)),
        ((tmp_path / "nowhere", "--out", out), ("no such directory",)),
        ((tiny, "--sts", no_score, "--out", out), ("no_score.tsv", "no column 'score'")),
        ((tiny, "--sts", word_score, "--out", out), ("word.jsonl line 2", "score 'high' is not a number")),
        ((tiny, "--probe-tasks", "sst9", "--out", out), ("--probe-tasks sst9", "rotten_tomatoes")),
        ((tiny, "--probe-tasks", "wnut_ner", "--out", out), ("--probe-tasks wnut_ner",)),
        ((tiny, "--compare", "--out", out), ("--examples and --compare",)),
        ((tiny, "--examples", tmp_path, "--out", out), ("--examples and --compare",)),
        ((tiny, "--sts", tmp_path / "missing.csv", "--out", out), ("no such file",)),
        ((tiny, "--sts", tmp_path / "pairs.txt", "--out", out), ("cannot read .txt",)),
        ((tiny, models["tiny"], "--out", out), ("named twice",)),
        ((models["s1"], models["s1"] / "final", "--out", out), ("the same model",)),
        ((tiny, "--limit", 5, "--out", out), ("--limit",)),
    ]
    for args, needles in cases:
        assert_clean_failure(embeddings(*args), out, *needles)
    # the embedding options without --embeddings
    result = runner.invoke(app, ["evaluate", str(models["s1"]), "--sts", str(models["sts"]), "--out",
                                 str(out)])
    assert_clean_failure(result, out, "--sts goes with --embeddings")


@pytest.mark.slow
def test_minilm_probes_reviews_better_than_a_random_tiny_bert(models: dict[str, Path],
                                                              tmp_path: Path) -> None:
    out = tmp_path / "minilm"
    result = embeddings("sample:minilm", models["tiny"], "--probe-tasks", "rotten_tomatoes", "--limit", 100,
                        "--out", out)
    assert result.exit_code == 0, result.output
    minilm, tiny = json.loads((out / "report.json").read_text())["embeddings"]["runs"]
    assert (minilm["name"], minilm["pooling"], minilm["dims"], minilm["max_seq_length"]) == \
        ("sample:minilm", "mean", 384, 256)  # its sentence-transformers records
    probe = "probe_accuracy/rotten_tomatoes"
    assert minilm["metrics"][probe] > tiny["metrics"][probe] + 0.05
