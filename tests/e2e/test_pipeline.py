"""The whole pipeline on a small real sample: layout, manifests, loadable artefacts, up-to-date rerun."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import yaml
from typer.testing import CliRunner

from pretrain_cli.cli.app import app

pytestmark = pytest.mark.slow

STAGE_DIRS = {"docs": "corpus", "tokens": "tokenize", "examples": "mask", "ckpt": "pretrain",
              "ft-full": "finetune", "ft-lora": "finetune", "report": "evaluate", "export": "export",
              "simcse": "pretrain", "embeddings": "evaluate", "simcse-st": "export"}


def pipeline(work: Path) -> dict:
    finetune = {"stage": "finetune", "task": "rotten_tomatoes", "model": f"{work}/ckpt/final",
                "seeds": "1,2", "epochs": 1, "train_limit": 400, "max_seq_length": 64}
    return {"steps": [
        {"stage": "corpus", "inputs": ["sample:enwiki", "sample:wiki_summaries"], "out": f"{work}/docs",
         "limit": 400, "docs_per_shard": 100},
        {"stage": "tokenize", "docs": f"{work}/docs", "out": f"{work}/tokens", "vocab_size": 1500},
        {"stage": "mask", "tokens": f"{work}/tokens", "out": f"{work}/examples", "max_seq_length": 64,
         "dupe_factor": 1, "valid_fraction": 0.05},
        {"stage": "pretrain", "examples": f"{work}/examples", "out": f"{work}/ckpt", "preset": "tiny",
         "max_steps": 12, "micro_batch_size": 16, "save_every": 5},
        {**finetune, "out": f"{work}/ft-full", "method": "full"},
        {**finetune, "out": f"{work}/ft-lora", "method": "lora"},
        {"stage": "evaluate", "runs": [f"{work}/ckpt", f"{work}/ft-full", f"{work}/ft-lora"],
         "examples": f"{work}/examples", "out": f"{work}/report", "compare": True},
        {"stage": "export", "run": f"{work}/ft-lora", "out": f"{work}/export", "merge": True},
        {"stage": "pretrain", "examples": f"{work}/examples", "out": f"{work}/simcse",
         "init": f"{work}/ckpt/final", "objective": "simcse", "max_steps": 6, "micro_batch_size": 16,
         "save_every": 3},
        {"stage": "evaluate", "runs": [f"{work}/ckpt", f"{work}/simcse"], "embeddings": True, "limit": 60,
         "out": f"{work}/embeddings"},
        {"stage": "export", "run": f"{work}/simcse", "sentence_transformers": f"{work}/simcse-st"},
    ]}


def test_pipeline_end_to_end(tmp_path: Path) -> None:
    work = tmp_path / "work"
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(yaml.safe_dump(pipeline(work)))

    result = CliRunner().invoke(app, ["run", str(spec)])
    assert result.exit_code == 0, result.output

    for name, stage in STAGE_DIRS.items():
        manifest = json.loads((work / name / "manifest.json").read_text())
        assert manifest["stage"] == stage
        for shard in manifest["shards"]:
            assert (work / name / shard["file"]).is_file()
            if shard["file"].endswith(".arrow"):
                assert len(datasets.Dataset.from_file(str(work / name / shard["file"]))) == shard["rows"]
    assert not list(work.rglob("_progress.json")), "a finished stage leaves no progress file"

    from transformers import AutoModelForPreTraining, AutoTokenizer

    model = AutoModelForPreTraining.from_pretrained(work / "ckpt" / "final")
    tokenizer = AutoTokenizer.from_pretrained(work / "ckpt" / "final")
    assert model.config.vocab_size >= len(tokenizer)
    assert AutoTokenizer.from_pretrained(work / "tokens" / "tokenizer").vocab == tokenizer.vocab

    report = json.loads((work / "report" / "report.json").read_text())
    assert report and (work / "report" / "report.md").is_file()
    assert list((work / "report").glob("*.png"))
    table = (work / "report" / "compare.md").read_text()
    assert table.count("\n|") >= 3 and "full" in table and "lora" in table

    from transformers import AutoModelForSequenceClassification

    merged = AutoModelForSequenceClassification.from_pretrained(work / "export")
    assert merged.config.id2label == {0: "negative", 1: "positive"}

    embeddings = json.loads((work / "embeddings" / "report.json").read_text())["embeddings"]
    assert [r["name"] for r in embeddings["runs"]] == ["ckpt", "simcse"]
    assert [r["pooling"] for r in embeddings["runs"]] == ["mean", "mean"]
    assert all(0 <= r["metrics"]["probe_accuracy/rotten_tomatoes"] <= 1 for r in embeddings["runs"])

    from sentence_transformers import SentenceTransformer

    from pretrain_cli.modeling.sentence import encode_texts, load_encoder

    texts = ["A short one.", "A much longer sentence about the history of the city and its people."]
    encoder, tokenizer, pooling = load_encoder(work / "simcse" / "final")
    ours = encode_texts(encoder, tokenizer, texts, pooling=pooling or "mean", max_length=64)
    theirs = SentenceTransformer(str(work / "simcse-st"), device="cpu").encode(texts)
    assert abs(ours - theirs).max() < 1e-5

    manifests = {p: p.read_bytes() for p in work.rglob("manifest.json")}
    again = CliRunner().invoke(app, ["run", str(spec)])
    assert again.exit_code == 0, again.output
    assert again.output.count("up to date") == len(STAGE_DIRS)
    assert {p: p.read_bytes() for p in work.rglob("manifest.json")} == manifests
