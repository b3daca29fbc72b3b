"""`ptk finetune` through the CLI: a GLUE-layout pair task built from real text, and every user
error as one line, exit code 2 and no manifest."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import assert_clean_failure, build_tiny_bert
from typer.testing import CliRunner

from pretrain_cli.cli.app import app
from pretrain_cli.samples import sample_path
from pretrain_cli.store import read_manifest

runner = CliRunner()
TRAIN = ["--epochs", "1", "--batch-size", "16", "--max-seq-length", "64", "--learning-rate", "1e-3",
         "--workers", "1"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def write_rte(directory: Path, train: int = 96, dev: int = 32) -> Path:
    """RTE-layout files from real Wikipedia leads: an article's second sentence follows from its first
    (entailment) or comes from another article (not_entailment)."""
    summaries = json.loads(sample_path("wiki_summaries").read_text())
    pairs = []
    for entry in summaries.values():
        sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z])", entry.get("extract") or "")
        if len(sentences) >= 2:
            pairs.append((sentences[0], sentences[1]))
        if len(pairs) == train + dev:
            break
    rows = []
    for i, (first, second) in enumerate(pairs):
        other = pairs[(i + 7) % len(pairs)][1]
        label = "entailment" if i % 2 else "not_entailment"
        rows.append(f"{i}\t{first}\t{second if i % 2 else other}\t{label}")
    directory.mkdir(parents=True, exist_ok=True)
    header = "index\tsentence1\tsentence2\tlabel\n"
    (directory / "train.tsv").write_text(header + "\n".join(rows[:train]) + "\n")
    (directory / "dev.tsv").write_text(header + "\n".join(rows[train:]) + "\n")
    return directory


def finetune(*args: str):
    return runner.invoke(app, ["finetune", *args])


def test_pair_task_with_lora_over_two_seeds(tiny_bert: Path, tmp_path: Path) -> None:
    data, out = write_rte(tmp_path / "RTE"), tmp_path / "ft"
    result = finetune("rte", "--data-dir", str(data), "--model", str(tiny_bert), "--out", str(out),
                      "--method", "lora", "--seeds", "3,4", "--eval-every", "3", *TRAIN)
    assert result.exit_code == 0, result.output
    assert "trainable parameters" in result.output and "± " in result.output
    manifest = read_manifest(out, "finetune")
    assert manifest.extra["labels"] == ["entailment", "not_entailment"] and manifest.extra["seeds"] == [3, 4]
    assert set(manifest.stats["seeds"]) == {"3", "4"}
    curve = [json.loads(line) for line in (out / "seed-3" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve] == [3, 6]  # every 3 steps, and the last step
    prediction = json.loads((out / "seed-3" / "dev_predictions.jsonl").read_text().splitlines()[0])
    assert prediction["text_pair"] and prediction["label"] in ("entailment", "not_entailment")

    again = finetune("rte", "--data-dir", str(data), "--model", str(tiny_bert), "--out", str(out),
                     "--method", "lora", "--seeds", "3,4", "--eval-every", "3", *TRAIN)
    assert again.exit_code == 0 and "up to date" in again.output
    # edited data is a different input: refused without --force, the finished output left alone
    written = (out / "manifest.json").stat().st_mtime_ns
    with open(data / "dev.tsv", "a") as handle:
        handle.write("999\tOne more.\tAnother.\tentailment\n")
    changed = finetune("rte", "--data-dir", str(data), "--model", str(tiny_bert), "--out", str(out),
                       "--method", "lora", "--seeds", "3,4", "--eval-every", "3", *TRAIN)
    assert changed.exit_code == 2 and "already holds" in changed.output and "--force" in changed.output
    assert (out / "manifest.json").stat().st_mtime_ns == written


def test_unknown_task(tiny_bert: Path, tmp_path: Path) -> None:
    result = finetune("sst3", "--model", str(tiny_bert), "--out", str(tmp_path / "ft"))
    assert_clean_failure(result, tmp_path / "ft", "unknown task 'sst3'", "rotten_tomatoes", "sst2")


def test_glue_task_without_data_dir(tiny_bert: Path, tmp_path: Path) -> None:
    result = finetune("sst2", "--model", str(tiny_bert), "--out", str(tmp_path / "ft"))
    assert_clean_failure(result, tmp_path / "ft", "train.tsv and dev.tsv", "sentence, label", "--data-dir",
                         "rotten_tomatoes")
    assert not (tmp_path / "ft").exists()


def test_data_dir_with_the_offline_task(tiny_bert: Path, tmp_path: Path) -> None:
    result = finetune("rotten_tomatoes", "--data-dir", str(tmp_path), "--model", str(tiny_bert),
                      "--out", str(tmp_path / "ft"))
    assert_clean_failure(result, tmp_path / "ft", "reads no --data-dir")


@pytest.mark.parametrize(("dev", "needles"), [
    ("index\tsentence1\tsentence2\tlabel\n0\tA man sleeps.\tA person rests.\tentailment\n"
     "1\tA dog runs.\tA cat sleeps.\tcontradiction\n", ("dev.tsv line 3", "label 'contradiction'")),
    ("index\tsentence1\tsentence2\tgold\n0\tA man sleeps.\tA person rests.\tentailment\n",
     ("dev.tsv", "no column 'label'")),
    ("index\tsentence1\tsentence2\tlabel\n", ("dev.tsv: no examples",)),
])
def test_malformed_glue_files(tiny_bert: Path, tmp_path: Path, dev: str, needles: tuple[str, ...]) -> None:
    data = write_rte(tmp_path / "RTE", train=8, dev=0)
    (data / "dev.tsv").write_text(dev)
    result = finetune("rte", "--data-dir", str(data), "--model", str(tiny_bert),
                      "--out", str(tmp_path / "ft"))
    assert_clean_failure(result, tmp_path / "ft", *needles)


def test_vocabulary_mismatch(tmp_path: Path) -> None:
    model = build_tiny_bert(tmp_path / "model", vocab_size=300, model_vocab=200)
    result = finetune("rotten_tomatoes", "--model", str(model), "--out", str(tmp_path / "ft"))
    assert_clean_failure(result, tmp_path / "ft", "vocabulary mismatch", "300 tokens", "200 rows")


def test_model_dir_problems(tiny_bert: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_bert, ckpt / "final")
    result = finetune("rotten_tomatoes", "--model", str(ckpt), "--out", str(tmp_path / "ft"))
    assert_clean_failure(result, tmp_path / "ft", "no config.json", f"pass {ckpt / 'final'}")
    (ckpt / "final" / "model.safetensors").unlink()
    result = finetune("rotten_tomatoes", "--model", str(ckpt / "final"), "--out", str(tmp_path / "ft"))
    assert_clean_failure(result, tmp_path / "ft", "no *.safetensors")


def test_bad_options_are_reported_together(tiny_bert: Path, tmp_path: Path) -> None:
    result = finetune("rotten_tomatoes", "--model", str(tiny_bert), "--out", str(tmp_path / "ft"),
                      "--method", "adapter", "--seeds", "1,x", "--lora-dropout", "1.5")
    assert_clean_failure(result, tmp_path / "ft", "--method 'adapter'", "--seeds '1,x'", "--lora-dropout")


def test_sequence_longer_than_the_position_table(tiny_bert: Path, tmp_path: Path) -> None:
    result = finetune("rotten_tomatoes", "--model", str(tiny_bert), "--out", str(tmp_path / "ft"),
                      "--max-seq-length", "512")
    assert_clean_failure(result, tmp_path / "ft", "--max-seq-length 512", "at most 128 positions")


def test_foreign_output_directory(tiny_bert: Path, tmp_path: Path) -> None:
    (tmp_path / "ft").mkdir()
    (tmp_path / "ft" / "notes.txt").write_text("mine")
    result = finetune("rotten_tomatoes", "--model", str(tiny_bert), "--out", str(tmp_path / "ft"))
    assert_clean_failure(result, tmp_path / "ft", "not empty")
    assert (tmp_path / "ft" / "notes.txt").read_text() == "mine"
