"""`ptk evaluate` through the CLI: a pretrain-stage directory (written here through `StageOutput`, as
the real stage writes it), masked examples from real sentences, and real fine-tunes in, one report out."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import assert_clean_failure, build_tiny_bert
from typer.testing import CliRunner

from pretrain_cli.cli.app import app
from pretrain_cli.config import StageConfig, option
from pretrain_cli.store import StageOutput, file_sha256, iter_shards, read_manifest, shard_name
from pretrain_cli.tasks import load_task

runner = CliRunner()


@dataclasses.dataclass(kw_only=True)
class FakeStageConfig(StageConfig):
    """Stands in for the pretrain and mask stages' configs in tests (the stage is set per instance)."""

    stage: ClassVar[str] = ""
    out: Path = option(help="Output directory.", hashed=False)


class FakePretrain(FakeStageConfig):
    stage: ClassVar[str] = "pretrain"


class FakeMask(FakeStageConfig):
    stage: ClassVar[str] = "mask"


def write_pretrain_run(out: Path, model: Path) -> Path:
    """CKPT/: final/ (a BertForPreTraining + tokenizer), metrics.jsonl and a pretrain manifest."""
    import shutil

    stage = StageOutput(FakePretrain(out=out), out, owned=("final", "metrics.jsonl"))
    assert stage.up_to_date() is None
    shutil.copytree(model, out / "final")
    curve = [{"step": s, "tokens": 640 * s, "loss": 7.0 - s / 10, "mlm_loss": 6.3 - s / 10, "nsp_loss": 0.7,
              "lr": 1e-4, "tokens_per_s": 1000.0, "elapsed_s": s / 10} for s in range(10, 60, 10)]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curve))
    stage.record_file("final/model.safetensors")
    stage.finish(stats={"steps": 50, "tokens": 32000, "loss": 2.0, "mlm_loss": 1.3, "nsp_loss": 0.7},
                 extra={"final": "final", "tokenizer_sha256": file_sha256(model / "tokenizer.json"),
                        "num_parameters": 50000})
    return out


def write_mask_examples(out: Path, model: Path, tokenizer_sha256: str | None = None) -> Path:
    """A `ptk mask`-schema directory: real review sentences paired (next or random), 15% masked."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    texts = [e.text for e in load_task("rotten_tomatoes").dev[:80]]
    rng = np.random.default_rng(0)
    columns = ("input_ids", "segment_b_start", "masked_positions", "masked_labels", "next_sentence_label")
    rows: dict[str, list] = {k: [] for k in columns}
    for i in range(0, len(texts) - 1, 2):
        is_random = int(rng.random() < 0.5)
        a = tokenizer(texts[i], add_special_tokens=False)["input_ids"][:20]
        b = tokenizer(texts[(i + 37) % len(texts)] if is_random else texts[i + 1],
                      add_special_tokens=False)["input_ids"][:20]
        ids = np.array([tokenizer.cls_token_id, *a, tokenizer.sep_token_id, *b, tokenizer.sep_token_id])
        candidates = np.flatnonzero(~np.isin(ids, [tokenizer.cls_token_id, tokenizer.sep_token_id]))
        positions = np.sort(rng.choice(candidates, size=max(1, len(candidates) // 7), replace=False))
        labels = ids[positions].copy()
        ids[positions] = tokenizer.mask_token_id
        for key, value in (("input_ids", ids.tolist()), ("segment_b_start", len(a) + 2),
                           ("masked_positions", positions.tolist()), ("masked_labels", labels.tolist()),
                           ("next_sentence_label", is_random)):
            rows[key].append(value)
    table = pa.table({"input_ids": pa.array(rows["input_ids"], pa.list_(pa.uint16())),
                      "segment_b_start": pa.array(rows["segment_b_start"], pa.int16()),
                      "masked_positions": pa.array(rows["masked_positions"], pa.list_(pa.int16())),
                      "masked_labels": pa.array(rows["masked_labels"], pa.list_(pa.uint16())),
                      "next_sentence_label": pa.array(rows["next_sentence_label"], pa.int8())})
    stage = StageOutput(FakeMask(out=out), out)
    assert stage.up_to_date() is None
    stage.write_shard(shard_name(0, "train"), table.slice(0, 10), split="train")
    stage.write_shard(shard_name(0, "valid"), table.slice(10), split="valid")
    stage.finish(extra={"tokenizer_sha256": tokenizer_sha256 or file_sha256(model / "tokenizer.json"),
                        "special_ids": {"pad": tokenizer.pad_token_id}})
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny model, its pretrain run and examples, and two real fine-tunes of it (full, random-init lora)."""
    root = tmp_path_factory.mktemp("evaluate")
    model = build_tiny_bert(root / "model")
    ckpt = write_pretrain_run(root / "ckpt", model)
    examples = write_mask_examples(root / "examples", model)
    common = ["--train-limit", "64", "--epochs", "2", "--batch-size", "16", "--max-seq-length", "48",
              "--learning-rate", "1e-3", "--workers", "1"]
    runs = {"ft-full": ["--seeds", "1,2"], "ft-random-lora": ["--random-init", "--method", "lora"]}
    for name, extra in runs.items():
        result = runner.invoke(app, ["finetune", "rotten_tomatoes", "--model", str(ckpt / "final"),
                                     "--out", str(root / name), *common, *extra])
        assert result.exit_code == 0, result.output
    return {"root": root, "model": model, "ckpt": ckpt, "examples": examples,
            "full": root / "ft-full", "lora": root / "ft-random-lora"}


def evaluate(*args: str):
    return runner.invoke(app, ["evaluate", *args])


def reference_scores(model_dir: Path, examples: Path) -> tuple[float, float]:
    """MLM and NSP accuracy the slow way: the full BertForPreTraining forward, one pair at a time."""
    from transformers import BertForPreTraining

    model = BertForPreTraining.from_pretrained(model_dir).eval()
    mlm_hits = masked = nsp_hits = pairs = 0
    for _, table in iter_shards(read_manifest(examples, "mask"), "valid"):
        for row in table.to_pylist():
            ids = torch.tensor([row["input_ids"]])
            types = torch.zeros_like(ids)
            types[0, row["segment_b_start"]:] = 1
            with torch.no_grad():
                out = model(input_ids=ids, token_type_ids=types)
            predicted = out.prediction_logits[0, row["masked_positions"]].argmax(-1).tolist()
            mlm_hits += sum(p == t for p, t in zip(predicted, row["masked_labels"], strict=True))
            masked += len(row["masked_labels"])
            nsp_hits += int(out.seq_relationship_logits[0].argmax()) == row["next_sentence_label"]
            pairs += 1
    return mlm_hits / masked, nsp_hits / pairs


def test_report_of_a_checkpoint_and_its_fine_tunes(workspace: dict[str, Path]) -> None:
    out = workspace["root"] / "report"
    # runs in any order, and CKPT/final stands for its pretrain run
    result = evaluate(str(workspace["lora"]), str(workspace["ckpt"] / "final"), str(workspace["full"]),
                      "--examples", str(workspace["examples"]), "--out", str(out), "--title", "Tiny demo")
    assert result.exit_code == 0, result.output
    assert "report.md" in result.output and "MLM accuracy" in result.output

    report = json.loads((out / "report.json").read_text())
    [pretrain] = report["pretrain"]
    mlm, nsp = reference_scores(workspace["model"], workspace["examples"])
    assert pretrain["mlm_accuracy"] == pytest.approx(mlm) and pretrain["nsp_accuracy"] == pytest.approx(nsp)
    assert pretrain["mlm_loss"] > 0 and pretrain["steps"] == 50 and len(pretrain["curve"]) == 5
    full, lora = report["finetune"]  # pretrained before its random baseline
    assert (full["init"], full["method"], full["seeds"]) == ("pretrained", "full", [1, 2])
    assert (lora["init"], lora["method"], lora["seeds"]) == ("random", "lora", [1])
    stats = read_manifest(workspace["full"], "finetune").stats
    assert full["accuracy_mean"] == stats["accuracy_mean"] and full["accuracy_std"] == stats["accuracy_std"]
    assert full["trainable_share"] == 1.0 and 0 < lora["trainable_share"] < 0.2
    assert len(full["curves"]["1"]) == 2  # one dev evaluation per epoch

    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# Tiny demo")
    assert "| run | task | init | method | seeds | accuracy | macro F1 | trainable | train time |" in markdown
    accuracy = f"{100 * full['accuracy_mean']:.1f} ± "
    assert f"| ft-full | rotten_tomatoes | pretrained | full | 2 | {accuracy}" in markdown
    assert "| ft-random-lora | rotten_tomatoes | random | lora | 1 |" in markdown
    assert f"| ckpt | 50 | 32,000 | 2.0000 | {100 * pretrain['mlm_accuracy']:.1f} |" in markdown
    for figure in ("loss.png", "finetune_curves.png"):
        assert (out / figure).read_bytes().startswith(b"\x89PNG") and f"]({figure})" in markdown
    manifest = read_manifest(out, "evaluate")
    assert {s.file for s in manifest.shards} == {"report.json", "report.md", "loss.png",
                                                 "finetune_curves.png"}

    again = evaluate(str(workspace["lora"]), str(workspace["ckpt"] / "final"), str(workspace["full"]),
                     "--examples", str(workspace["examples"]), "--out", str(out), "--title", "Tiny demo")
    assert again.exit_code == 0 and "up to date" in again.output


def test_fine_tunes_alone(workspace: dict[str, Path], tmp_path: Path) -> None:
    result = evaluate(str(workspace["full"]), "--out", str(tmp_path / "report"))
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "report" / "loss.png").exists()
    assert "## Pretrained checkpoints" not in (tmp_path / "report" / "report.md").read_text()


def test_errors(workspace: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    (tmp_path / "empty").mkdir()
    assert_clean_failure(evaluate(str(tmp_path / "empty"), "--out", str(out)), out,
                         "no manifest.json", "`ptk pretrain` or `ptk finetune`")
    assert_clean_failure(evaluate(str(tmp_path / "missing"), "--out", str(out)), out,
                         "missing: no such directory")
    assert_clean_failure(evaluate(str(workspace["examples"]), "--out", str(out)), out,
                         "holds `ptk mask` output", "reads `ptk pretrain` and `ptk finetune`")
    assert_clean_failure(evaluate(str(workspace["full"]), "--examples", str(workspace["examples"]),
                                  "--out", str(out)), out, "no `ptk pretrain` run")
    other = write_mask_examples(tmp_path / "other-examples", workspace["model"], tokenizer_sha256="0" * 64)
    assert_clean_failure(evaluate(str(workspace["ckpt"]), "--examples", str(other), "--out", str(out)), out,
                         "another tokenizer")
    assert not out.exists()
