"""`finetune.run` on real task data with a tiny BERT built here: every method saves what reloads to
the exact dev predictions, seeds are deterministic, a killed seed resumes to the same result, early
stopping keeps the best checkpoint, and every task type gets its own metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import build_tiny_bert

from pretrain_cli.errors import UserError
from pretrain_cli.samples import sample_path
from pretrain_cli.stages import finetune
from pretrain_cli.stages.finetune import FinetuneConfig
from pretrain_cli.store import read_manifest
from pretrain_cli.training import finetune_loop

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def config(model: Path, out: Path, task: str = "rotten_tomatoes", **options: object) -> FinetuneConfig:
    values = {"epochs": 1, "train_limit": 128, "batch_size": 16, "max_seq_length": 48, "learning_rate": 1e-3,
              **options}
    return FinetuneConfig(task=task, model=model, out=out, **values)  # type: ignore[arg-type]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def reload_outputs(run_dir: Path, seed: int = 1, batch_size: int = 16) -> list[torch.Tensor]:
    """Dev outputs of the saved model or adapter, computed from scratch in a fresh model."""
    from pretrain_cli.modeling.finetuned import load_finetuned
    from pretrain_cli.tasks import load_task
    from pretrain_cli.tasks.encode import encode

    cfg = FinetuneConfig.from_dict(read_manifest(run_dir, "finetune").config, "manifest")
    result = json.loads((run_dir / f"seed-{seed}" / "result.json").read_text())
    ft, tokenizer = load_finetuned(run_dir / f"seed-{seed}" / result["saved"])
    task = load_task(cfg.source)
    dev = encode(tokenizer, task.dev, task.kind, cfg.max_seq_length)
    return finetune_loop.predict(ft, dev, batch_size, torch.device("cpu"), tokenizer.pad_token_id)


def reloads_exactly(run_dir: Path) -> bool:
    """Whether the saved model, loaded afresh, gives bit for bit the logits of dev_predictions.jsonl."""
    saved = [torch.tensor(p["logits"]) for p in read_jsonl(run_dir / "seed-1" / "dev_predictions.jsonl")]
    return all(torch.equal(a, b) for a, b in zip(reload_outputs(run_dir), saved, strict=True))


def test_full_finetune_writes_seeds_and_reloads_exactly(tiny_bert: Path, tmp_path: Path) -> None:
    manifest = finetune.run(config(tiny_bert, tmp_path / "ft", seeds="1,2"))
    assert read_manifest(tmp_path / "ft", "finetune").fingerprint == manifest.fingerprint
    results = [json.loads((tmp_path / "ft" / f"seed-{s}" / "result.json").read_text()) for s in (1, 2)]
    accuracy = manifest.stats["summary"]["accuracy"]
    first, second = (r["dev"]["accuracy"] for r in results)
    assert accuracy["mean"] == pytest.approx((first + second) / 2)
    assert accuracy["std"] == pytest.approx(abs(first - second) / 2 ** 0.5)
    assert set(manifest.stats["summary"]) >= {"accuracy", "macro_f1", "mcc", "f1", "dev_loss"}
    assert manifest.extra["labels"] == ["negative", "positive"] and manifest.extra["metric"] == "accuracy"
    assert manifest.extra["kind"] == "classification" and manifest.extra["init"] == "pretrained"
    assert {s.file for s in manifest.shards} >= {"seed-1/result.json", "seed-2/model/model.safetensors"}
    for result in results:
        assert result["trainable_share"] == 1.0 and result["steps"] == 8 and result["train_examples"] == 128
        assert result["time_per_step_s"] > 0 and result["metric"] == "accuracy"
    seed_dir = tmp_path / "ft" / "seed-1"
    assert not (seed_dir / "checkpoint").exists()  # the saved model supersedes the resume state
    saved = json.loads((seed_dir / "model" / "config.json").read_text())
    assert saved["id2label"] == {"0": "negative", "1": "positive"}
    predictions = read_jsonl(seed_dir / "dev_predictions.jsonl")
    assert len(predictions) == 852 and predictions[0].keys() >= {"text", "label", "prediction", "logits"}
    assert reloads_exactly(tmp_path / "ft")
    curve = read_jsonl(seed_dir / "metrics.jsonl")
    assert [r["step"] for r in curve] == [8] and curve[0]["dev_accuracy"] == results[0]["dev"]["accuracy"]

    # the same seed in another directory trains the same model; another seed does not
    finetune.run(config(tiny_bert, tmp_path / "again", seeds="1"))
    again = (tmp_path / "again" / "seed-1" / "dev_predictions.jsonl").read_bytes()
    assert again == (seed_dir / "dev_predictions.jsonl").read_bytes()
    assert again != (tmp_path / "ft" / "seed-2" / "dev_predictions.jsonl").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "adalora", "ia3", "prompt", "prefix", "adapter", "bitfit"])
def test_every_method_trains_saves_and_reloads_to_the_same_predictions(tiny_bert: Path, tmp_path: Path,
                                                                        method: str) -> None:
    out = tmp_path / method
    manifest = finetune.run(config(tiny_bert, out, method=method, max_steps=6, train_limit=96,
                                   virtual_tokens=4, adapter_size=8, lora_r=4))
    result = manifest.stats["seeds"]["1"]
    assert result["saved"] == "adapter" and 0 < result["trainable_share"] < 0.5
    assert manifest.extra["method_options"]["name"] == method
    assert (out / "seed-1" / "adapter" / "base_model.json").is_file()
    assert reloads_exactly(out)


@pytest.mark.parametrize("method", ["lora", "adalora", "adapter"])
def test_a_killed_seed_resumes_to_the_result_of_an_uninterrupted_run(tiny_bert: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     method: str) -> None:
    # train_limit 80 = 5 batches an epoch: the kill after step 4 resumes inside the first epoch, and
    # the run crosses an epoch boundary afterwards; adalora's rank pattern is final from step 5 on
    options = {"method": method, "seeds": "1", "eval_every": 2, "max_steps": 6, "lora_r": 4,
               "adapter_size": 8, "train_limit": 80}
    finetune.run(config(tiny_bert, tmp_path / "whole", **options))

    saves = []
    real_save = finetune_loop.save_checkpoint

    def killed_after_the_second_checkpoint(*args: object, **kwargs: object) -> None:
        real_save(*args, **kwargs)  # type: ignore[arg-type]
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    monkeypatch.setattr(finetune_loop, "save_checkpoint", killed_after_the_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        finetune.run(config(tiny_bert, cut, **options))
    assert not (cut / "manifest.json").exists() and (cut / "seed-1" / "checkpoint" / "state.json").is_file()
    # a line the killed run wrote after its checkpoint is redone, not kept twice
    with open(cut / "seed-1" / "metrics.jsonl", "a") as curve:
        curve.write(json.dumps({"step": 5}) + "\n")
    monkeypatch.setattr(finetune_loop, "save_checkpoint", real_save)
    finetune.run(config(tiny_bert, cut, **options))

    def comparable(run_dir: Path) -> tuple[list[dict], dict]:
        curve = [{k: v for k, v in r.items() if k != "elapsed_s"}
                 for r in read_jsonl(run_dir / "seed-1" / "metrics.jsonl")]
        result = json.loads((run_dir / "seed-1" / "result.json").read_text())
        return curve, {k: result[k] for k in ("dev", "dev_loss", "best_step", "steps")}

    assert comparable(cut) == comparable(tmp_path / "whole")
    assert [r["step"] for r in comparable(cut)[0]] == [2, 4, 6]
    assert ((cut / "seed-1" / "dev_predictions.jsonl").read_bytes()
            == (tmp_path / "whole" / "seed-1" / "dev_predictions.jsonl").read_bytes())


def test_rerun_skips_and_an_interrupted_run_keeps_finished_seeds(tiny_bert: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    original = finetune.finetune_seed

    def crash_on_seed_2(*args: object, **kwargs: object) -> dict:
        if args[3] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)  # type: ignore[arg-type]

    out = tmp_path / "ft"
    monkeypatch.setattr(finetune, "finetune_seed", crash_on_seed_2)
    with pytest.raises(KeyboardInterrupt):
        finetune.run(config(tiny_bert, out, seeds="1,2"))
    assert not (out / "manifest.json").exists() and (out / "seed-1" / "result.json").is_file()
    first = (out / "seed-1" / "result.json").stat().st_mtime_ns

    monkeypatch.setattr(finetune, "finetune_seed", original)
    manifest = finetune.run(config(tiny_bert, out, seeds="1,2"))
    assert (out / "seed-1" / "result.json").stat().st_mtime_ns == first
    assert set(manifest.stats["seeds"]) == {"1", "2"}
    written = (out / "manifest.json").stat().st_mtime_ns
    again = finetune.run(config(tiny_bert, out, seeds="1,2", workers=2))  # workers: not part of the key
    assert again.fingerprint == manifest.fingerprint and (out / "manifest.json").stat().st_mtime_ns == written
    with pytest.raises(UserError, match="--force"):
        finetune.run(config(tiny_bert, out, seeds="1,2", epochs=2))


def test_early_stopping_restores_the_best_checkpoint(tiny_bert: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    real_scores = finetune_loop.task_scores
    calls = []

    def worse_each_time(*args: object) -> dict[str, float]:
        calls.append(1)  # the first evaluation scores best, every later one worse
        return {**real_scores(*args), "accuracy": 1.0 / len(calls)}  # type: ignore[arg-type]

    monkeypatch.setattr(finetune_loop, "task_scores", worse_each_time)
    finetune.run(config(tiny_bert, tmp_path / "ft", eval_every=2, patience=2, epochs=3))
    seed_dir = tmp_path / "ft" / "seed-1"
    result = json.loads((seed_dir / "result.json").read_text())
    assert result["stopped_early"] and result["steps"] == 6 and result["best_step"] == 2
    curve = read_jsonl(seed_dir / "metrics.jsonl")
    assert [r["step"] for r in curve] == [2, 4, 6]
    # what was saved is the step-2 model, not the step-6 one: its dev predictions score as step 2 did
    predictions = read_jsonl(seed_dir / "dev_predictions.jsonl")
    names = ["negative", "positive"]
    saved = real_scores("classification", tuple(names), [names.index(p["label"]) for p in predictions],
                        [names.index(p["prediction"]) for p in predictions])
    assert saved["macro_f1"] == curve[0]["dev_macro_f1"] == result["dev"]["macro_f1"]
    assert reloads_exactly(tmp_path / "ft")


def write_stsb(directory: Path, train: int = 96, dev: int = 32) -> Path:
    """STS-B-layout files from real review sentences: a sentence against itself scores 5, against a
    shortened copy 2.5, against another review 0."""
    from pretrain_cli.tasks import TaskSource, load_task

    texts = [e.text for e in load_task(TaskSource(task="rotten_tomatoes")).train[:train + dev]]
    rows = []
    for i, text in enumerate(texts):
        words = text.split()
        other, half = texts[(i + 5) % len(texts)], " ".join(words[:max(1, len(words) // 2)])
        pair, score = [(text, 5.0), (half, 2.5), (other, 0.0)][i % 3]
        rows.append(f"main-captions\tMSRvid\t2012test\t{i:04d}\tnone\tnone\t{text}\t{pair}\t{score}")
    directory.mkdir(parents=True, exist_ok=True)
    header = "genre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    (directory / "train.tsv").write_text(header + "\n".join(rows[:train]) + "\n")
    (directory / "dev.tsv").write_text(header + "\n".join(rows[train:]) + "\n")
    return directory


def test_regression_task_reports_correlations_and_reloads(tiny_bert: Path, tmp_path: Path) -> None:
    data, out = write_stsb(tmp_path / "STS-B"), tmp_path / "stsb"
    manifest = finetune.run(config(tiny_bert, out, task="stsb", data_dir=data, method="bitfit", max_steps=6))
    assert manifest.extra["kind"] == "regression" and manifest.extra["metric"] == "spearman"
    assert set(manifest.stats["summary"]) >= {"pearson", "spearman", "mse"}
    predictions = read_jsonl(out / "seed-1" / "dev_predictions.jsonl")
    assert len(predictions) == 32 and isinstance(predictions[0]["score"], float)
    assert [float(o) for o in reload_outputs(out)] == [p["score"] for p in predictions]


def test_ner_reports_entity_f1_and_word_level_predictions(tiny_bert: Path, tmp_path: Path) -> None:
    out = tmp_path / "ner"
    manifest = finetune.run(config(tiny_bert, out, task="wnut_ner", method="lora", max_steps=6, lora_r=4))
    assert manifest.extra["kind"] == "tokens" and manifest.extra["metric"] == "entity_f1"
    assert manifest.extra["labels"][0] == "O" and "B-person" in manifest.extra["labels"]
    assert set(manifest.stats["summary"]) >= {"entity_f1", "entity_precision", "entity_recall"}
    predictions = read_jsonl(out / "seed-1" / "dev_predictions.jsonl")
    assert all(len(p["prediction"]) == len(p["label"]) == len(p["text"]) for p in predictions)
    assert reloads_exactly(out)


def test_tokenizer_larger_than_the_embedding_is_refused(tmp_path: Path) -> None:
    model = build_tiny_bert(tmp_path / "model", vocab_size=400, model_vocab=300)
    with pytest.raises(UserError, match=r"vocabulary mismatch: the tokenizer has 400 tokens but the model's "
                                        r"embedding matrix has 300 rows"):
        finetune.run(config(model, tmp_path / "ft"))
    assert not (tmp_path / "ft").exists()


@pytest.mark.slow
def test_minilm_learns_rotten_tomatoes(tmp_path: Path) -> None:
    # MiniLM is a sentence-embedding model whose [CLS] was never trained as a summary, so the
    # pooler-based head needs a few dozen steps at a higher rate than BERT's usual 5e-5
    manifest = finetune.run(FinetuneConfig(task="rotten_tomatoes", model=sample_path("minilm"),
                                           out=tmp_path / "ft", train_limit=768, max_steps=48, batch_size=16,
                                           max_seq_length=64, learning_rate=2e-4))
    assert manifest.stats["summary"]["accuracy"]["mean"] > 0.65  # chance: 0.5 on the balanced dev set
