"""`pretrain.run`: the checkpoint directory, skip/refuse/force, resume paths, NaN stop, --init."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from pretrain_fixtures import build_pipeline_examples
from safetensors.torch import load_file

from pretrain_cli.errors import UserError
from pretrain_cli.modeling.pretraining import PretrainingLoss
from pretrain_cli.samples import sample_path
from pretrain_cli.stages.pretrain import PretrainConfig, run
from pretrain_cli.store import read_manifest

SMALL = {"max_steps": 8, "micro_batch_size": 8, "save_every": 2, "keep_last": 2, "log_every": 2}


@pytest.fixture(scope="module")
def trained(examples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "ckpt"
    run(PretrainConfig(examples=examples, out=out, **SMALL))
    return out


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return x.keys() == y.keys() and all(x[k].equal(y[k]) for k in x)


def test_layout_manifest_and_metrics(examples: Path, trained: Path) -> None:
    upstream = read_manifest(examples, "mask")
    vocab, pairs = upstream.extra["vocab_size"], sum(s.rows for s in upstream.shards_of("train"))
    names = sorted(p.name for p in trained.iterdir())
    assert names == ["final", "manifest.json", "metrics.jsonl", "step-00000004", "step-00000006", "tb"]
    manifest = read_manifest(trained, "pretrain")
    assert manifest.stats["steps"] == 8 and manifest.stats["samples"] == 64 and manifest.stats["tokens"] > 0
    assert manifest.stats["tokens_per_s"] > 0 and manifest.stats["loss"] > 0
    assert manifest.extra["vocab_size"] == vocab and manifest.extra["model_vocab_size"] == -(-vocab // 8) * 8
    assert manifest.extra["tokenizer_sha256"] == upstream.extra["tokenizer_sha256"]
    assert manifest.extra["model"]["layers"] == 2 and manifest.extra["num_parameters"] > 500_000
    assert [s.file for s in manifest.shards] == ["final/model.safetensors"]
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6, 8]
    assert set(records[0]) == {"step", "tokens", "loss", "mlm_loss", "nsp_loss", "simcse_loss", "lr",
                               "tokens_per_s", "elapsed_s", "grad_norm", "padding", "mfu"}
    assert records[0]["mfu"] is None  # no peak FLOP/s is known for a CPU, so none is guessed
    assert all(0 <= r["padding"] < 1 and r["grad_norm"] > 0 for r in records)
    assert records[-1]["tokens"] == manifest.stats["tokens"]
    assert list((trained / "tb").glob("events.out.tfevents.*"))
    state = json.loads((trained / "step-00000006" / "trainer_state.json").read_text())
    assert state["step"] == 6 and state["data_cursor"] == {"epoch": 0, "index": 48, "num_examples": pairs,
                                                           "examples": upstream.fingerprint, "seed": 0}


def test_final_loads_with_auto_classes_offline(trained: Path) -> None:
    from transformers import AutoModelForPreTraining, AutoTokenizer

    model = AutoModelForPreTraining.from_pretrained(trained / "final")
    tokenizer = AutoTokenizer.from_pretrained(trained / "final")
    assert type(model).__name__ == "BertForPreTraining"
    assert model.config.vocab_size == read_manifest(trained, "pretrain").extra["model_vocab_size"]
    assert tokenizer("the film")["input_ids"][0] == tokenizer.cls_token_id


def test_rerun_is_up_to_date_and_other_options_are_refused(examples: Path, trained: Path) -> None:
    stamp = (trained / "manifest.json").stat().st_mtime_ns
    again = run(PretrainConfig(examples=examples, out=trained, **{**SMALL, "log_every": 1, "workers": 1}))
    assert again.stats["steps"] == 8 and (trained / "manifest.json").stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match="--force"):
        run(PretrainConfig(examples=examples, out=trained, **{**SMALL, "max_steps": 9}))


def test_resume_from_a_given_checkpoint_ends_bitwise_equal(examples: Path, trained: Path,
                                                           tmp_path: Path) -> None:
    start = trained / "step-00000004"
    manifest = run(PretrainConfig(examples=examples, out=tmp_path / "b", resume=str(start), **SMALL))
    assert manifest.stats["resumed_from"] == str(start)
    assert same_weights(trained / "final", tmp_path / "b" / "final")
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [6, 8]


def test_nan_loss_stops_keeps_the_checkpoint_and_the_rerun_recovers(
        examples: Path, trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = PretrainingLoss.forward

    def poisoned(self: PretrainingLoss, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        calls["n"] += 1
        mlm, nsp, simcse = real(self, *inputs)
        return (mlm * float("nan"), nsp, simcse) if calls["n"] == 5 else (mlm, nsp, simcse)

    monkeypatch.setattr(PretrainingLoss, "forward", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(UserError, match=r"step 5: the loss is nan .* last good checkpoint is .*step-0+4"):
        run(PretrainConfig(examples=examples, out=out, **SMALL))
    assert not (out / "manifest.json").exists() and (out / "step-00000004").is_dir()
    monkeypatch.undo()
    resumed = run(PretrainConfig(examples=examples, out=out, **SMALL))
    assert resumed.stats["resumed_from"] == str(out / "step-00000004")
    assert same_weights(trained / "final", out / "final")


def test_resume_no_and_force_start_over(examples: Path, trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    run(PretrainConfig(examples=examples, out=out, **{**SMALL, "max_steps": 5}))
    assert (out / "step-00000004").is_dir()
    forced = run(PretrainConfig(examples=examples, out=out, force=True, resume="no",
                                **{**SMALL, "save_every": 100}))
    assert forced.stats["resumed_from"] is None and not (out / "step-00000004").exists()
    assert same_weights(trained / "final", out / "final")


@pytest.mark.slow
def test_init_from_minilm_reports_fresh_heads(tmp_path: Path) -> None:
    minilm = sample_path("minilm")
    examples = build_pipeline_examples(tmp_path, tokenizer=minilm, articles=30)
    manifest = run(PretrainConfig(examples=examples, out=tmp_path / "ckpt", init=minilm, max_steps=2,
                                  micro_batch_size=4, learning_rate=1e-4))
    assert manifest.extra["model"]["hidden"] == 384 and manifest.extra["model_vocab_size"] == 30528
    assert "cls.seq_relationship" in manifest.extra["freshly_initialised"]
    assert not any(name.startswith("bert.") for name in manifest.extra["freshly_initialised"])


def test_sequences_longer_than_the_position_table_are_refused(examples: Path, tmp_path: Path) -> None:
    longer = tmp_path / "examples"
    shutil.copytree(examples, longer)
    record = json.loads((longer / "manifest.json").read_text())
    record["extra"]["max_seq_length"] = 1024
    (longer / "manifest.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match="up to 1024 tokens, but the model reads at most 512 positions"):
        run(PretrainConfig(examples=longer, out=tmp_path / "o", **SMALL))
    assert not (tmp_path / "o").exists()


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(
        examples: Path, trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    calls = {"n": 0}
    real = PretrainingLoss.forward

    def stop_at_step_7(self: PretrainingLoss, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt  # the run dies after saving step-4 and step-6
        return real(self, *inputs)

    monkeypatch.setattr(PretrainingLoss, "forward", stop_at_step_7)
    out = tmp_path / "o"
    with pytest.raises(KeyboardInterrupt):
        run(PretrainConfig(examples=examples, out=out, **SMALL))
    monkeypatch.undo()
    optimizer = out / "step-00000006" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:1000])  # a truncated copy
    resumed = run(PretrainConfig(examples=examples, out=out, **SMALL))
    assert "step-00000006 is damaged" in capsys.readouterr().err
    assert resumed.stats["resumed_from"] == str(out / "step-00000004")
    assert (out / "corrupt-step-00000006" / "optimizer.pt").stat().st_size == 1000  # kept, not deleted
    assert same_weights(trained / "final", out / "final")


def test_an_infinite_gradient_with_a_finite_loss_stops_before_the_update(
        examples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = torch.nn.utils.clip_grad_norm_

    def overflowing(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
        calls["n"] += 1
        norm = real(params, max_norm)
        return norm * float("inf") if calls["n"] == 5 else norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", overflowing)
    out = tmp_path / "inf"
    with pytest.raises(UserError, match=r"step 5: the gradient norm is inf .* last good checkpoint is "
                                        r".*step-0+4.*--resume .*step-0+4 --out NEW_DIR"):
        run(PretrainConfig(examples=examples, out=out, **SMALL))
    assert not (out / "manifest.json").exists() and not (out / "step-00000006").exists()


@pytest.mark.slow
def test_a_budget_spent_at_the_checkpoint_still_finishes(examples: Path, tmp_path: Path) -> None:
    """Saved after the step that crossed the budget, the checkpoint has nothing left to train."""
    options = {"micro_batch_size": 8, "max_steps": 10_000, "budget": "2s", "save_every": 1, "keep_last": 1,
               "log_every": 1}
    first = run(PretrainConfig(examples=examples, out=tmp_path / "a", **options))
    last = max((tmp_path / "a").glob("step-*"))
    resumed = run(PretrainConfig(examples=examples, out=tmp_path / "b", resume=str(last), **options))
    assert resumed.stats["steps"] == int(last.name.split("-")[1]) <= first.stats["steps"]
    assert (tmp_path / "b" / "final" / "model.safetensors").is_file()
