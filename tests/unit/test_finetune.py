"""`finetune.run` on real rotten_tomatoes sentences with a tiny BERT built here: saved models and
adapters reload to the exact dev predictions, seeds are deterministic and resumable, early stopping
keeps the best checkpoint; one slow test shows the real MiniLM learns the task."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import build_tiny_bert

from pretrain_cli.errors import UserError
from pretrain_cli.samples import sample_path
from pretrain_cli.stages import finetune
from pretrain_cli.stages.finetune import FinetuneConfig
from pretrain_cli.store import read_manifest
from pretrain_cli.tasks import load_task


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models gain nothing from a second thread and lose a lot to it on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def config(model: Path, out: Path, **options: object) -> FinetuneConfig:
    values = {"epochs": 1, "train_limit": 128, "batch_size": 16, "max_seq_length": 48, "learning_rate": 1e-3,
              **options}
    return FinetuneConfig(task="rotten_tomatoes", model=model, out=out, **values)  # type: ignore[arg-type]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def reload_logits(seed_dir: Path, max_seq_length: int = 48, batch_size: int = 16) -> torch.Tensor:
    """Dev logits of the saved model or adapter, computed from scratch."""
    from pretrain_cli.modeling.peft_setup import load_classifier
    from pretrain_cli.tasks.encode import encode

    model, tokenizer = load_classifier(seed_dir)
    dev = encode(tokenizer, load_task("rotten_tomatoes").dev, max_seq_length)
    return finetune.predict(model, dev, batch_size, tokenizer.pad_token_id)


def test_full_finetune_writes_seeds_and_reloads_exactly(tiny_bert: Path, tmp_path: Path) -> None:
    manifest = finetune.run(config(tiny_bert, tmp_path / "ft", seeds="1,2"))
    assert read_manifest(tmp_path / "ft", "finetune").fingerprint == manifest.fingerprint
    results = [json.loads((tmp_path / "ft" / f"seed-{s}" / "result.json").read_text()) for s in (1, 2)]
    assert manifest.stats["accuracy_mean"] == pytest.approx((results[0]["dev_accuracy"]
                                                             + results[1]["dev_accuracy"]) / 2)
    assert manifest.stats["accuracy_std"] == pytest.approx(abs(results[0]["dev_accuracy"]
                                                               - results[1]["dev_accuracy"]) / 2 ** 0.5)
    assert manifest.extra["labels"] == ["negative", "positive"] and manifest.extra["init"] == "pretrained"
    assert {s.file for s in manifest.shards} >= {"seed-1/result.json", "seed-2/model/model.safetensors"}
    for result in results:
        assert result["trainable_share"] == 1.0 and result["steps"] == 8 and result["train_examples"] == 128
    seed_dir = tmp_path / "ft" / "seed-1"
    saved = json.loads((seed_dir / "model" / "config.json").read_text())
    assert saved["id2label"] == {"0": "negative", "1": "positive"}
    predictions = read_jsonl(seed_dir / "dev_predictions.jsonl")
    assert len(predictions) == 852 and predictions[0].keys() >= {"text", "label", "prediction", "logits"}
    assert torch.equal(reload_logits(seed_dir), torch.tensor([p["logits"] for p in predictions]))
    curve = read_jsonl(seed_dir / "metrics.jsonl")
    assert [r["step"] for r in curve] == [8] and curve[0]["dev_accuracy"] == results[0]["dev_accuracy"]

    # the same seed in another directory trains the same model; another seed does not
    finetune.run(config(tiny_bert, tmp_path / "again", seeds="1"))
    again = (tmp_path / "again" / "seed-1" / "dev_predictions.jsonl").read_bytes()
    assert again == (seed_dir / "dev_predictions.jsonl").read_bytes()
    assert again != (tmp_path / "ft" / "seed-2" / "dev_predictions.jsonl").read_bytes()


def test_lora_saves_adapter_and_head_and_reloads_exactly(tiny_bert: Path, tmp_path: Path) -> None:
    from safetensors import safe_open
    from transformers import BertModel

    from pretrain_cli.modeling.peft_setup import load_classifier

    finetune.run(config(tiny_bert, tmp_path / "ft", method="lora", lora_r=4))
    seed_dir = tmp_path / "ft" / "seed-1"
    result = json.loads((seed_dir / "result.json").read_text())
    assert 0 < result["trainable_share"] < 0.2 and result["saved"] == "adapter"
    with safe_open(str(seed_dir / "adapter" / "adapter_model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert any("classifier" in k for k in keys) and any("lora_A" in k for k in keys)
    assert not any("attention.self.key" in k or "intermediate" in k for k in keys)
    base = json.loads((seed_dir / "base_model.json").read_text())
    assert Path(base["path"]) == tiny_bert.resolve()
    assert set(base["files"]) == {"config.json", "model.safetensors"}
    logits = torch.tensor([p["logits"] for p in read_jsonl(seed_dir / "dev_predictions.jsonl")])
    assert torch.equal(reload_logits(seed_dir), logits)
    # the base stays frozen: outside the adapters, the encoder is the base model's
    model, _ = load_classifier(seed_dir)
    name = "encoder.layer.0.output.dense.weight"
    assert torch.equal(model.base_model.model.bert.state_dict()[name],
                       BertModel.from_pretrained(tiny_bert).state_dict()[name])

    # a changed base is refused, not silently used
    (tiny_bert / "config.json").write_text((tiny_bert / "config.json").read_text() + " ")
    try:
        with pytest.raises(UserError, match="config.json: missing or changed since the adapter"):
            reload_logits(seed_dir)
    finally:
        (tiny_bert / "config.json").write_text((tiny_bert / "config.json").read_text()[:-1])


def test_random_init_lora_keeps_its_random_base(tiny_bert: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    manifest = finetune.run(config(tiny_bert, tmp_path / "ft", method="lora", random_init=True))
    assert manifest.extra["init"] == "random"
    seed_dir = tmp_path / "ft" / "seed-1"
    base = json.loads((seed_dir / "base_model.json").read_text())
    assert base["inside_seed_dir"] and base["path"] == "base_model"
    random_weights = load_file(seed_dir / "base_model" / "model.safetensors")
    pretrained = load_file(tiny_bert / "model.safetensors")
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(random_weights[name], pretrained[name])
    logits = torch.tensor([p["logits"] for p in read_jsonl(seed_dir / "dev_predictions.jsonl")])
    assert torch.equal(reload_logits(seed_dir), logits)


def test_rerun_skips_and_an_interrupted_run_keeps_finished_seeds(tiny_bert: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    original = finetune.train_seed

    def crash_on_seed_2(*args: object, **kwargs: object) -> dict:
        if args[5] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)  # type: ignore[arg-type]

    out = tmp_path / "ft"
    monkeypatch.setattr(finetune, "train_seed", crash_on_seed_2)
    with pytest.raises(KeyboardInterrupt):
        finetune.run(config(tiny_bert, out, seeds="1,2"))
    assert not (out / "manifest.json").exists() and (out / "seed-1" / "result.json").is_file()
    first = (out / "seed-1" / "result.json").stat().st_mtime_ns

    monkeypatch.setattr(finetune, "train_seed", original)
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
    from pretrain_cli.tasks import metrics

    real_scores = metrics.scores
    calls = []

    def worse_each_time(gold: list[int], predicted: list[int], num_labels: int) -> dict[str, float]:
        calls.append(1)  # the first evaluation scores best, every later one worse
        return {**real_scores(gold, predicted, num_labels), "macro_f1": 1.0 / len(calls)}

    monkeypatch.setattr(metrics, "scores", worse_each_time)
    finetune.run(config(tiny_bert, tmp_path / "ft", eval_every=2, patience=2, epochs=3))
    seed_dir = tmp_path / "ft" / "seed-1"
    result = json.loads((seed_dir / "result.json").read_text())
    assert result["stopped_early"] and result["steps"] == 6 and result["best_step"] == 2
    assert [r["step"] for r in read_jsonl(seed_dir / "metrics.jsonl")] == [2, 4, 6]
    # what was saved is the step-2 model, not the step-6 one
    first_eval = read_jsonl(seed_dir / "metrics.jsonl")[0]
    predictions = read_jsonl(seed_dir / "dev_predictions.jsonl")
    accuracy = sum(p["label"] == p["prediction"] for p in predictions) / len(predictions)
    assert accuracy == first_eval["dev_accuracy"]
    assert torch.equal(reload_logits(seed_dir), torch.tensor([p["logits"] for p in predictions]))


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
    assert manifest.stats["accuracy_mean"] > 0.65  # chance is 0.5 on the balanced 852-sentence dev set
