"""Chinese end to end at test scale: tagged People's Daily text to a character-level WordPiece
vocabulary, a pretrained tiny BERT, a zh_sentiment fine-tune and its report (examples/zh.yaml)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from typer.testing import CliRunner

from pretrain_cli.cli.app import app
from pretrain_cli.samples import sample_path
from pretrain_cli.store import iter_shards, read_manifest
from pretrain_cli.tasks import TaskSource, load_task

pytestmark = pytest.mark.slow

HAN = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models gain nothing from a second thread and lose a lot to it on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pipeline(news: Path, work: Path) -> dict:
    finetune = {"stage": "finetune", "task": "zh_sentiment", "model": f"{work}/ckpt/final", "seeds": "1",
                "epochs": 1, "train_limit": 400, "max_seq_length": 64}
    return {"steps": [
        {"stage": "corpus", "inputs": [str(news)], "out": f"{work}/docs", "format": "tagged",
         "languages": "zh"},
        {"stage": "tokenize", "docs": f"{work}/docs", "out": f"{work}/tokens", "vocab_size": 2500},
        {"stage": "mask", "tokens": f"{work}/tokens", "out": f"{work}/examples", "max_seq_length": 64,
         "dupe_factor": 1, "valid_fraction": 0.05},
        {"stage": "pretrain", "examples": f"{work}/examples", "out": f"{work}/ckpt", "preset": "tiny",
         "max_steps": 20, "micro_batch_size": 16, "save_every": 10},
        {**finetune, "out": f"{work}/ft", "method": "full"},
        {**finetune, "out": f"{work}/ft-lora", "method": "lora", "learning_rate": 1e-3},
        {"stage": "evaluate", "runs": [f"{work}/ckpt", f"{work}/ft", f"{work}/ft-lora"],
         "examples": f"{work}/examples", "out": f"{work}/report", "compare": True},
    ]}


def test_chinese_pipeline_end_to_end(tmp_path: Path) -> None:
    # The first 500 paragraphs of People's Daily, January 1998, as the sample has them: word/POS-tagged.
    news = tmp_path / "199801.txt"
    with sample_path("zh_news").open(encoding="utf-8") as lines:
        news.write_text("".join(next(lines) for _ in range(500)), encoding="utf-8")
    work = tmp_path / "work"
    spec = tmp_path / "zh.yaml"
    spec.write_text(yaml.safe_dump(pipeline(news, work), allow_unicode=True))

    result = CliRunner().invoke(app, ["run", str(spec)])
    assert result.exit_code == 0, result.output

    # Documents are the untagged paragraphs, one per line of the file.
    docs = pa.concat_tables(table for _, table in iter_shards(read_manifest(work / "docs", "corpus")))
    assert docs.num_rows > 200 and set(docs.column("lang").to_pylist()) == {"zh"}
    assert all(re.fullmatch(r"199801\.txt:\d+", doc_id) for doc_id in docs.column("id").to_pylist())
    texts = docs.column("text").to_pylist()
    assert not any(re.search(r"/[A-Za-z]", text) for text in texts)
    assert any(text.startswith("在１９９８年来临之际，我十分高兴地通过中央人民广播电台") for text in texts)

    # Every Han character is one token, in the tokenizer the fine-tune used.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(work / "ckpt" / "final")
    assert tokenizer.tokenize("迈向充满希望的新世纪") == list("迈向充满希望的新世纪")
    review = "质量还不错，内容只适合消遣"  # a sentence of zh_sentiment: characters the news may lack
    assert len(tokenizer.tokenize(review)) == len(review)
    assert not any(HAN.search(token) and len(token) > 1 for token in tokenizer.get_vocab())

    # The fine-tune finished with a dev accuracy and a prediction for every dev example.
    manifest = json.loads((work / "ft" / "manifest.json").read_text())
    assert manifest["stage"] == "finetune" and manifest["extra"]["task"] == "zh_sentiment"
    labels = manifest["extra"]["labels"]
    outcome = json.loads((work / "ft" / "seed-1" / "result.json").read_text())
    assert 0.0 <= outcome["dev"]["accuracy"] <= 1.0 and outcome["train_examples"] == 400
    rows = [json.loads(line) for line in (work / "ft" / "seed-1" / "dev_predictions.jsonl").open()]
    dev = load_task(TaskSource(task="zh_sentiment")).dev  # the whole dev split, whatever the train limit
    assert [row["index"] for row in rows] == list(range(len(dev))) and outcome["dev_examples"] == len(dev)
    assert [(row["text"], row["label"]) for row in rows] == [(e.text, labels[e.label]) for e in dev]
    assert {row["prediction"] for row in rows} <= set(labels)
    accuracy = sum(row["label"] == row["prediction"] for row in rows) / len(rows)
    assert accuracy == pytest.approx(outcome["dev"]["accuracy"])

    lora = json.loads((work / "ft-lora" / "seed-1" / "result.json").read_text())
    assert lora["method"] == "lora" and 0 < lora["trainable_share"] < 1 and "accuracy" in lora["dev"]

    assert (work / "report" / "report.json").is_file()
    table = (work / "report" / "compare.md").read_text()
    assert "zh_sentiment" in table and "full" in table and "lora" in table
