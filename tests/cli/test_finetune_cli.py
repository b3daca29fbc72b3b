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
    assert "parameters (" in result.output and "± " in result.output
    manifest = read_manifest(out, "finetune")
    assert manifest.extra["labels"] == ["entailment", "not_entailment"] and manifest.extra["seeds"] == [3, 4]
    assert set(manifest.stats["seeds"]) == {"3", "4"}
    curve = [json.loads(line) for line in (out / "seed-3" / "metrics.jsonl").read_text().split("\n") if line]
    assert [r["step"] for r in curve] == [3, 6]  # every 3 steps, and the last step
    prediction = json.loads((out / "seed-3" / "dev_predictions.jsonl")
                            .read_text(encoding="utf-8").split("\n")[0])
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
    assert_clean_failure(result, tmp_path / "ft", "train.tsv", "--data-dir", "--hub")
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
                      "--seeds", "1,x", "--lora-dropout", "1.5", "--adapter-size", "0")
    assert_clean_failure(result, tmp_path / "ft", "--seeds '1,x'", "--lora-dropout", "--adapter-size")


def test_unknown_method_is_one_line(tiny_bert: Path, tmp_path: Path) -> None:
    result = finetune("rotten_tomatoes", "--model", str(tiny_bert), "--out", str(tmp_path / "ft"),
                      "--method", "qlora")
    assert_clean_failure(result, tmp_path / "ft", "qlora", "lora", "bitfit")


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


COLUMNS = ("--text-column", "review", "--label-column", "verdict")


def write_reviews_csv(path: Path, rows: int = 80) -> Path:
    """A user's CSV: real review sentences under custom column names."""
    import csv

    from pretrain_cli.tasks import TaskSource, load_task

    train = load_task(TaskSource(task="rotten_tomatoes")).train  # sorted by label: take both ends
    examples = train[:rows // 2] + train[-(rows // 2):]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "verdict"])
        writer.writerows([e.text, ["bad", "good"][e.label]] for e in examples)
    return path


def test_user_csv_with_named_columns(tiny_bert: Path, tmp_path: Path) -> None:
    data, out = write_reviews_csv(tmp_path / "reviews.csv"), tmp_path / "ft"
    result = finetune(str(data), "--text-column", "review", "--label-column", "verdict", "--model",
                      str(tiny_bert), "--out", str(out), "--method", "bitfit", "--max-steps", "3", *TRAIN)
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out, "finetune")
    assert manifest.extra["labels"] == ["bad", "good"] and manifest.extra["dev_examples"] == 8


@pytest.mark.parametrize(("options", "needles"), [
    (["--text-column", "body"], ("reviews.csv", "'body'", "review", "verdict")),
    (["--text-column", "review", "--label-column", "verdict", "--text-pair-column", "answer"],
     ("reviews.csv", "'answer'")),
])
def test_user_csv_column_problems(tiny_bert: Path, tmp_path: Path, options: list[str],
                                  needles: tuple[str, ...]) -> None:
    data = write_reviews_csv(tmp_path / "reviews.csv")
    result = finetune(str(data), *options, "--model", str(tiny_bert), "--out", str(tmp_path / "ft"))
    assert_clean_failure(result, tmp_path / "ft", *needles)


def test_user_csv_with_a_single_label(tiny_bert: Path, tmp_path: Path) -> None:
    data = tmp_path / "reviews.csv"
    data.write_text("review,verdict\n" + "".join(f"Review number {i}.,good\n" for i in range(20)))
    result = finetune(str(data), "--text-column", "review", "--label-column", "verdict",
                      "--model", str(tiny_bert), "--out", str(tmp_path / "ft"))
    assert_clean_failure(result, tmp_path / "ft", "reviews.csv", "one label", "'good'")


@pytest.mark.parametrize(("dev_text", "needles"), [
    ("review,verdict\nA fine film.,good\nNo opinion.,meh\n", ("dev.csv", "'meh'", "bad", "good")),
    ("review,verdict\n", ("dev.csv", "no")),
])
def test_user_csv_bad_dev_file(tiny_bert: Path, tmp_path: Path, dev_text: str,
                               needles: tuple[str, ...]) -> None:
    data = write_reviews_csv(tmp_path / "reviews.csv")
    dev = tmp_path / "dev.csv"
    dev.write_text(dev_text)
    result = finetune(str(data), "--dev-file", str(dev), *COLUMNS, "--model", str(tiny_bert),
                      "--out", str(tmp_path / "ft"))
    assert_clean_failure(result, tmp_path / "ft", *needles)


def test_export_merges_lora_into_a_plain_model(tiny_bert: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "ft"
    assert finetune("rotten_tomatoes", "--model", str(tiny_bert), "--out", str(out), "--method", "lora",
                    "--train-limit", "64", "--max-steps", "4", "--seeds", "1,2", *TRAIN).exit_code == 0
    refused = runner.invoke(app, ["export", str(out), "--out", str(tmp_path / "plain")])
    assert_clean_failure(refused, tmp_path / "plain", "lora", "--merge")
    result = runner.invoke(app, ["export", str(out), "--merge", "--out", str(tmp_path / "plain")])
    assert result.exit_code == 0, result.output
    export = read_manifest(tmp_path / "plain", "export")
    seed = export.stats["seed"]
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "plain").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "plain")
    predictions = [json.loads(line) for line in
                   (out / f"seed-{seed}" / "dev_predictions.jsonl").read_text().split("\n")[:16]]
    batch = tokenizer([p["text"] for p in predictions], truncation=True, max_length=64, padding=True,
                      return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert torch.allclose(logits, torch.tensor([p["logits"] for p in predictions]), atol=1e-5)
    assert model.config.id2label == {0: "negative", 1: "positive"}


def test_export_refuses_an_adapter_whose_base_changed(tiny_bert: Path, tmp_path: Path) -> None:
    base = tmp_path / "base"
    shutil.copytree(tiny_bert, base)
    out = tmp_path / "ft"
    assert finetune("rotten_tomatoes", "--model", str(base), "--out", str(out), "--method", "lora",
                    "--train-limit", "32", "--max-steps", "2", *TRAIN).exit_code == 0
    build_tiny_bert(tmp_path / "other", vocab_size=700)
    shutil.copy(tmp_path / "other" / "model.safetensors", base / "model.safetensors")  # another base model
    result = runner.invoke(app, ["export", str(out), "--merge", "--out", str(tmp_path / "plain")])
    assert_clean_failure(result, tmp_path / "plain", "model.safetensors", str(base))


def test_export_refuses_bottleneck_adapters(tiny_bert: Path, tmp_path: Path) -> None:
    out = tmp_path / "ft"
    assert finetune("rotten_tomatoes", "--model", str(tiny_bert), "--out", str(out), "--method", "adapter",
                    "--train-limit", "32", "--max-steps", "2", *TRAIN).exit_code == 0
    result = runner.invoke(app, ["export", str(out), "--merge", "--out", str(tmp_path / "plain")])
    assert_clean_failure(result, tmp_path / "plain", "adapter")
